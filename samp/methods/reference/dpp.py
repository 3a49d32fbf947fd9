"""Exact primitives of the reference: cosine matrices without epsilon and CDPruner's greedy DPP MAP (§3)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def unit_rows(features: torch.Tensor) -> torch.Tensor:
    """Row normalisation by plain division, no epsilon: a zero row becomes NaN (§3.1, quirk 10)."""
    return features / features.norm(dim=-1, keepdim=True)


def cosine_matrix(features: torch.Tensor, *, as_float32: bool = False) -> torch.Tensor:
    """``X̂ X̂ᵀ`` in the feature dtype; Kimi-Audio casts the result to float32 for some methods (§3.1, quirk 16)."""
    unit = unit_rows(features)
    similarity = unit @ unit.T
    return similarity.float() if as_float32 else similarity


def neighbour_cosines(unit: torch.Tensor, step: int) -> torch.Tensor:
    """``F.cosine_similarity`` (eps 1e-8) of rows that are already unit (double normalisation, §3.1).

    ``step=1``: adjacent pairs ``(i, i+1)`` (FastAdaSP); ``step=2``: disjoint pairs ``(2j, 2j+1)`` (A-ToMe).
    """
    if step == 1:
        return F.cosine_similarity(unit[:-1], unit[1:], dim=-1)
    pairs = unit.shape[0] // 2
    return F.cosine_similarity(unit[0 : 2 * pairs : 2], unit[1 : 2 * pairs : 2], dim=-1)


def relevance_kernel(similarity: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """``diag(ρ) S diag(ρ)`` computed as ``(ρ[:, None] · S) · ρ[None, :]`` like the reference (§3.2)."""
    return (relevance[:, None] * similarity) * relevance[None, :]


def greedy_dpp_map(kernel: torch.Tensor, count: int) -> tuple[torch.Tensor, bool]:
    """CDPruner's fast greedy MAP (Chen et al. 2018) exactly as the reference runs it (§3.2).

    Returns the ``count`` picks in selection order and whether any projection went NaN (Kimi-Audio asserts that
    none does, §5.3). Reproduced quirks (quirk 1, §3.2):

    * exactly ``count`` iterations even when ``count`` exceeds the number of items: once every residual is −∞,
      ``argmax`` returns 0, ``sqrt(−∞)`` is NaN and the remaining picks alternate 0, 1, 0, 1, … (duplicates);
    * ``argmax`` takes the first maximum and treats NaN as maximal, so a NaN row poisons every later residual;
    * ``c`` is float32 (the default dtype) while the residual vector ``d`` keeps the kernel's dtype and is
      updated in place (bf16 for GLM-ASR).
    """
    items = kernel.shape[0]
    projections = torch.zeros((count, items), device=kernel.device)
    residuals = torch.diagonal(kernel).clone()
    picks = torch.empty(count, dtype=torch.long, device=kernel.device)
    for step in range(count):
        best = torch.argmax(residuals)
        picks[step] = best
        update = (
            kernel[best, :] - torch.einsum("t,tn->n", projections[:step, best], projections[:step, :])
        ) / torch.sqrt(residuals[best])
        projections[step, :] = update
        residuals -= torch.square(update)
        residuals[best] = -float("inf")
    return picks, bool(torch.isnan(projections).any())
