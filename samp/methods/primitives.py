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
    """Greedy DPP MAP on a padded batch: unit ``[B, M, C]``, valid ``[B, M]``, counts ``[B]``, relevance ``[B, M]``
    or None. Returns a ``[B, M]`` mask of exactly ``counts[b]`` distinct valid candidates per row."""
    sizes = valid.sum(1).tolist()
    picks = greedy_dpp_items(
        [unit[b, :size] for b, size in enumerate(sizes)],
        counts.tolist(),
        None if relevance is None else [relevance[b, :size] for b, size in enumerate(sizes)],
    )
    selected = torch.zeros_like(valid)
    for b, item_picks in enumerate(picks):
        selected[b, torch.as_tensor(item_picks, dtype=torch.long, device=valid.device)] = True
    return selected


def greedy_dpp_items(
    units: list[torch.Tensor], counts: list[int], relevances: list[torch.Tensor] | None = None
) -> list[np.ndarray]:
    """Greedy MAP of a DPP with kernel ``diag(ρ) · (U Uᵀ) · diag(ρ)`` (Chen et al. 2018) for several utterances.

    units: per utterance the ``[M_b, C]`` unit rows of its candidates; counts: items to pick (at most ``M_b``);
    relevances: per utterance ``[M_b]`` (ρ) or None (ρ = 1). Returns each utterance's picks in pick order.

    Unlike the reference: the diagonal is set exactly (ρ², or 0 for a zero row) so round-off never decides a pick,
    a candidate already spanned by the picks adds no direction (so collinear candidates cannot produce NaN or blow
    up), argmax ties go to the lowest index — spanned candidates are then taken in index order — and picks never
    exceed the candidates, so every pick is distinct.
    """
    sizes = [unit.shape[0] for unit in units]
    if any(count > size for count, size in zip(counts, sizes)):
        raise ValueError(f"greedy_dpp asked for {counts} items from {sizes} candidates")
    batch, m = len(units), max(sizes, default=0)
    # Kernels are built per utterance (no padded [B, M, C] copy) and stacked small; the greedy loop then runs once
    # for the whole batch in numpy, whose per-call cost on these small vectors is a fraction of torch's.
    kernels = np.zeros((batch, m, m), dtype=np.float32)
    diags = np.zeros((batch, m), dtype=np.float32)
    for b, unit in enumerate(units):
        size = sizes[b]
        kernel = unit.float() @ unit.float().T
        nonzero = (kernel.diagonal() > 0.5).float()  # unit rows: 1 ± round-off, zero rows: 0
        diag = nonzero
        if relevances is not None:
            rho = relevances[b].float()
            kernel = rho[:, None] * kernel * rho[None, :]
            diag = rho.square() * nonzero
        kernel.diagonal().copy_(diag)
        kernels[b, :size, :size] = kernel.cpu().numpy()
        diags[b, :size] = diag.cpu().numpy()
    valid = np.arange(m)[None, :] < np.asarray(sizes)[:, None]
    return _greedy_picks(kernels, diags, valid, np.asarray(counts, dtype=np.int64))


def _greedy_picks(kernels: np.ndarray, diags: np.ndarray, valid: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    batch, m = diags.shape
    steps = int(counts.max(initial=0))
    # Below this share of its own relevance a candidate adds no new direction: the picked set already spans it
    # (float32 round-off leaves residuals of ±1e-7 there, and dividing by them blows the basis up).
    spanned = diags * EXHAUSTED_SHARE
    residual = diags.copy()
    blocked = np.where(valid, np.float32(0), np.float32(-np.inf))
    basis = np.zeros((batch, steps, m), dtype=np.float32)  # basis[b, t]: the t-th orthogonalised kernel row
    picks = np.zeros((batch, steps), dtype=np.int64)
    rows = np.arange(batch)
    for step in range(steps):
        gain = np.where(residual > spanned, residual, np.float32(0))
        pick = np.argmax(gain + blocked, axis=1)  # first maximum: ties go to the lower index
        picks[:, step] = pick
        blocked[rows, pick] = -np.inf
        row = kernels[rows, pick]  # [B, M]
        if step:
            row = row - np.matmul(basis[rows, :step, pick][:, None, :], basis[:, :step])[:, 0]
        picked_gain = gain[rows, pick]
        # a spanned pick (gain 0) contributes no direction and leaves the residuals as they are
        scale = np.where(picked_gain > 0, 1.0 / np.sqrt(np.maximum(picked_gain, 1e-30)), 0.0).astype(np.float32)
        row *= scale[:, None]
        basis[:, step] = row
        residual -= row * row
    return [picks[b, :count] for b, count in enumerate(counts.tolist())]


def slots_from_groups(ids: torch.Tensor, keep_groups: torch.Tensor) -> torch.Tensor:
    """Output slot of every token given its group id and a ``[B, M]`` mask of kept groups (kept order = slot order)."""
    group_slot = torch.cumsum(keep_groups.long(), dim=1) - 1
    group_slot = group_slot.masked_fill(~keep_groups, -1)
    slots = group_slot.gather(1, ids.clamp_min(0))
    return slots.masked_fill(ids < 0, -1)
