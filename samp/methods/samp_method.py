"""Samp (the reference calls it SA-MAP): merge runs of similar adjacent tokens with attention weights, then prune
the merged tokens with a DPP whose kernel combines similarity and attention."""
from __future__ import annotations

import numpy as np
import torch

from samp.methods.batch import Batch, Plan
from samp.methods.primitives import greedy_dpp_items, unit_rows, weighted_slots


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

    The feature-sized work runs one utterance at a time on its valid rows: no padded ``[B, N, C]`` temporaries
    (which on CPU cost fresh pages on every call), while the DPP's greedy loop runs once for the whole batch.
    """
    device = batch.features.device
    slots = torch.full(batch.valid.shape, -1, dtype=torch.long, device=device)
    kept = batch.features.new_zeros(batch.features.shape[0], int(batch.counts.max()), batch.features.shape[2])
    items = []
    for b, (length, count) in enumerate(zip(batch.lengths.tolist(), batch.counts.tolist())):
        features = batch.features[b, :length]
        unit = unit_rows(features)
        starts, scores = similarity_groups(unit.cpu().numpy(), batch.threshold)
        shortfall = count - int(starts.sum())
        if shortfall > 0:
            # lowest join scores first (group starts score +inf); a stable sort gives ties to the earlier token
            weakest = np.argsort(np.nan_to_num(scores, nan=np.inf), kind="stable")[:shortfall]
            starts[weakest] = True
        ids = torch.from_numpy(np.cumsum(starts) - 1).to(device)
        groups = int(starts.sum())
        weights = batch.received[b, :length]
        merged, _ = weighted_slots(features[None], ids[None], weights[None], groups)
        members = torch.bincount(ids, minlength=groups).float()
        relevance = torch.zeros(groups, device=device).index_add_(0, ids, batch.self_attention[b, :length])
        items.append((b, length, count, ids, merged[0], relevance / members))

    pruned = [item for item in items if item[5].shape[0] > item[2]]
    picks = greedy_dpp_items(
        [unit_rows(merged) for *_, merged, _ in pruned],
        [count for _, _, count, *_ in pruned],
        [relevance for *_, relevance in pruned],
    )
    picks_of = {item[0]: torch.as_tensor(np.sort(p), dtype=torch.long, device=device) for item, p in zip(pruned, picks)}
    for b, length, count, ids, merged, _ in items:
        keep = picks_of.get(b, torch.arange(merged.shape[0], device=device))
        group_slot = torch.full((merged.shape[0],), -1, dtype=torch.long, device=device)
        group_slot[keep] = torch.arange(count, device=device)
        slots[b, :length] = group_slot[ids]
        kept[b, :count] = merged[keep]
    return Plan(slots=slots, weights=batch.received, features=kept)
