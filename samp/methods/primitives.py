"""Shared tensor primitives of the clean (``flavor="samp"``) methods.

Every clean method decides, per input token, an output slot (``-1`` when pruned) and a non-negative weight;
:func:`weighted_slots` turns that plan into features. So "each output token is the weighted mean of exactly the
inputs assigned to it" holds by construction for every method.
"""
from __future__ import annotations

import numpy as np
import torch

# Rows whose norm is below this are treated as zero vectors (cosine 0 with everything) instead of producing NaN.
NORM_EPS = 1e-12
# A DPP candidate whose residual falls below this share of its kernel diagonal counts as spanned by the picks.
EXHAUSTED_SHARE = 1e-5


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm; zero rows stay zero."""
    norms = x.norm(dim=-1, keepdim=True)
    return x / norms.clamp_min(NORM_EPS)


def adjacent_cosine(unit: torch.Tensor) -> torch.Tensor:
    """``[B, N, C]`` unit rows → ``[B, N-1]`` cosine between each token and the next."""
    return (unit[:, :-1] * unit[:, 1:]).sum(-1)


def ranks_descending(scores: torch.Tensor) -> torch.Tensor:
    """Rank of every entry along the last axis when sorted by decreasing score, ties broken by lower index first.

    ``ranks < m`` then selects the top ``m`` per row, with a different ``m`` per row.
    """
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(scores.shape[-1], device=scores.device).expand_as(order))
    return ranks


def valid_mask(lengths: torch.Tensor, n: int) -> torch.Tensor:
    return torch.arange(n, device=lengths.device)[None, :] < lengths[:, None]


def group_ids(starts: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Contiguous groups from a ``[B, N]`` "token starts a new group" mask → group index per token (-1 padding)."""
    ids = torch.cumsum(starts.long(), dim=1) - 1
    return ids.masked_fill(~valid, -1)


def segment_sum(values: torch.Tensor, ids: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Sum ``values [B, N, ...]`` into ``[B, num_segments, ...]`` by ``ids [B, N]``; entries with id -1 are dropped."""
    batch, n = ids.shape
    # Dropped entries go to one extra bin that is cut off, which avoids copying the kept rows out first.
    spill = batch * num_segments
    offsets = num_segments * torch.arange(batch, device=ids.device)[:, None]
    flat_ids = torch.where(ids >= 0, ids + offsets, spill).reshape(-1)
    out = values.new_zeros((spill + 1,) + values.shape[2:])
    out.index_add_(0, flat_ids, values.reshape((batch * n,) + values.shape[2:]))
    return out[:spill].view((batch, num_segments) + values.shape[2:])


def normalised_weights(ids: torch.Tensor, raw: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Weights that sum to one inside each segment; a segment whose raw weights are all zero is averaged evenly."""
    raw = torch.where(ids >= 0, raw.clamp_min(0), torch.zeros_like(raw))
    totals = segment_sum(raw, ids, num_segments)
    counts = segment_sum((ids >= 0).to(raw.dtype), ids, num_segments)
    gather_ids = ids.clamp_min(0)
    member_total = totals.gather(1, gather_ids)
    member_count = counts.gather(1, gather_ids)
    even = (ids >= 0).to(raw.dtype) / member_count.clamp_min(1)
    weights = torch.where(member_total > 0, raw / member_total.clamp_min(torch.finfo(raw.dtype).tiny), even)
    return torch.where(ids >= 0, weights, torch.zeros_like(weights))


def weighted_slots(
    features: torch.Tensor, ids: torch.Tensor, raw_weights: torch.Tensor, num_segments: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean of the inputs of each segment. Returns ``(segment features [B, S, C], weights [B, N])``."""
    weights = normalised_weights(ids, raw_weights, num_segments)
    merged = segment_sum(features * weights[..., None], ids, num_segments)
    return merged, weights


def greedy_dpp(
    unit: torch.Tensor,
    valid: torch.Tensor,
    counts: torch.Tensor,
    relevance: torch.Tensor | None = None,
) -> torch.Tensor:
    """Greedy MAP of a DPP with kernel ``diag(ρ) · (U Uᵀ) · diag(ρ)`` (Chen et al. 2018), batched.

    unit ``[B, M, C]`` unit rows of the candidates, valid ``[B, M]`` real candidates, counts ``[B]`` items to pick
    (each at most the number of valid candidates), relevance ``[B, M]`` or None (ρ = 1).
    Returns a ``[B, M]`` mask of exactly ``counts[b]`` distinct candidates per row.

    Unlike the reference: the diagonal is set exactly (ρ², or 0 for a zero row) so round-off never decides a pick,
    a candidate already spanned by the picks adds no direction (so collinear candidates cannot
    produce NaN or blow up), and argmax ties go to the lowest index — spanned candidates are then taken in index
    order; picks never exceed the candidates, so every pick is distinct.
    """
    batch, m, _ = unit.shape
    if bool((counts > valid.sum(1)).any()):
        raise ValueError("greedy_dpp asked for more items than there are candidates")
    kernel = unit @ unit.transpose(1, 2)
    nonzero = (unit != 0).any(-1).to(unit.dtype)
    diag = nonzero if relevance is None else relevance.square() * nonzero
    if relevance is not None:
        kernel = relevance[:, :, None] * kernel * relevance[:, None, :]
    kernel.diagonal(dim1=1, dim2=2).copy_(diag)

    # The greedy loop is sequential and made of tiny vector operations, where numpy's per-call cost is a fraction
    # of torch's; the kernel (the real work) stays a batched matmul on the input's device.
    kernel_np = kernel.float().cpu().numpy()
    diag_np = diag.float().cpu().numpy()
    valid_np = valid.cpu().numpy()
    selected = np.zeros((batch, m), dtype=bool)
    for b, count in enumerate(counts.tolist()):
        selected[b, _greedy_picks(kernel_np[b], diag_np[b], valid_np[b], count)] = True
    return torch.from_numpy(selected).to(unit.device)


def _greedy_picks(kernel: np.ndarray, diag: np.ndarray, valid: np.ndarray, count: int) -> list[int]:
    m = kernel.shape[0]
    # Below this share of its own relevance a candidate adds no new direction: the picked set already spans it
    # (float32 round-off leaves residuals of ±1e-7 there, and dividing by them blows the basis up).
    spanned = diag * EXHAUSTED_SHARE
    residual = diag.copy()
    blocked = np.where(valid, 0.0, -np.inf).astype(np.float32)
    basis = np.zeros((count, m), dtype=np.float32)  # row t: the t-th orthogonalised kernel row
    picks = []
    for step in range(count):
        gain = np.where(residual > spanned, residual, np.float32(0))
        pick = int(np.argmax(gain + blocked))  # first maximum: ties go to the lower index
        picks.append(pick)
        blocked[pick] = -np.inf
        if gain[pick] <= 0:
            continue  # spanned: contributes no direction, residuals stay as they are
        row = kernel[pick] - basis[:step, pick] @ basis[:step] if step else kernel[pick].copy()
        row *= np.float32(1.0 / np.sqrt(gain[pick]))
        basis[step] = row
        residual -= row * row
    return picks


def slots_from_groups(ids: torch.Tensor, keep_groups: torch.Tensor) -> torch.Tensor:
    """Output slot of every token given its group id and a ``[B, M]`` mask of kept groups (kept order = slot order)."""
    group_slot = torch.cumsum(keep_groups.long(), dim=1) - 1
    group_slot = group_slot.masked_fill(~keep_groups, -1)
    slots = group_slot.gather(1, ids.clamp_min(0))
    return slots.masked_fill(ids < 0, -1)
