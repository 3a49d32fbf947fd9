"""Samp (the reference calls it SA-MAP): merge runs of similar adjacent tokens with attention weights, then prune
the merged tokens with a DPP whose kernel combines similarity and attention."""
from __future__ import annotations

import numpy as np
import torch

from samp.methods.batch import Batch, Plan
from samp.methods.primitives import (
    greedy_dpp,
    group_ids,
    ranks_descending,
    segment_sum,
    slots_from_groups,
    unit_rows,
    weighted_slots,
)


def similarity_groups(unit: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy left-to-right grouping of one utterance's unit rows ``[n, C]``.

    Token ``j`` joins the open group when its mean cosine to *all* current members is at least ``threshold``.
    Returns ``starts`` (bool ``[n]``: token opens a group) and ``join_scores`` (the mean cosine each joining
    token passed with; NaN for group starts).

    The decision for ``j`` depends on the groups before it, so this is a loop over tokens; it keeps a running sum
    of the open group's unit rows, making each step one dot product instead of a slice of the N×N similarity
    matrix (which is never built).
    """
    n = unit.shape[0]
    starts = np.zeros(n, dtype=bool)
    join_scores = np.full(n, np.nan, dtype=np.float64)
    if n == 0:
        return starts, join_scores
    starts[0] = True
    adjacent = np.einsum("ij,ij->i", unit[:-1], unit[1:]).astype(np.float64)
    group_sum = None
    size = 1
    for j in range(1, n):
        score = adjacent[j - 1] if size == 1 else float(group_sum @ unit[j]) / size
        if score >= threshold:
            group_sum = unit[j - 1] + unit[j] if size == 1 else group_sum + unit[j]
            size += 1
            join_scores[j] = score
        else:
            starts[j] = True
            size = 1
    return starts, join_scores


def samp(batch: Batch) -> Plan:
    """Group, then keep exactly ``counts[b]`` groups.

    * more groups than the budget: greedy DPP over the merged tokens, kernel ``diag(ρ) Ŝ diag(ρ)`` with ρ the
      group's mean self-attention;
    * fewer groups than the budget (heavy merging: silence, long vowels): the weakest joins are undone — the
      members that joined with the lowest scores open new groups — so exactly ``counts[b]`` contiguous groups
      remain. The reference instead asks the DPP for more items than exist and emits duplicated tokens.
    """
    valid = batch.valid
    unit_np = batch.unit.cpu().numpy()
    starts = torch.zeros_like(valid)
    scores = torch.full(valid.shape, float("inf"), dtype=torch.float64)
    for b, length in enumerate(batch.lengths.tolist()):
        item_starts, item_scores = similarity_groups(unit_np[b, :length], batch.threshold)
        starts[b, :length] = torch.from_numpy(item_starts)
        scores[b, :length] = torch.from_numpy(np.nan_to_num(item_scores, nan=np.inf))
    starts = starts.to(valid.device)
    scores = scores.to(valid.device)

    groups = starts.sum(1)
    shortfall = (batch.counts - groups).clamp_min(0)
    # Lowest join scores first; ties go to the earlier token.
    starts = starts | (ranks_descending(-scores) < shortfall[:, None])
    groups = starts.sum(1)

    ids = group_ids(starts, valid)
    num_groups = int(groups.max())
    merged, _ = weighted_slots(batch.features, ids, batch.received, num_groups)
    group_valid = torch.arange(num_groups, device=valid.device)[None, :] < groups[:, None]
    member_count = segment_sum(valid.float(), ids, num_groups).clamp_min(1)
    relevance = segment_sum(batch.self_attention, ids, num_groups) / member_count

    needs_pruning = groups > batch.counts
    keep = group_valid
    if bool(needs_pruning.any()):
        picked = greedy_dpp(
            unit_rows(merged), group_valid, torch.where(needs_pruning, batch.counts, 0), relevance
        )
        keep = torch.where(needs_pruning[:, None], picked, group_valid)
    kept = merged.new_zeros(merged.shape[0], int(batch.counts.max()), merged.shape[2])
    slot_mask = torch.arange(kept.shape[1], device=keep.device)[None, :] < batch.counts[:, None]
    kept[slot_mask] = merged[keep]
    return Plan(slots=slots_from_groups(ids, keep), weights=batch.received, features=kept)
