"""Samp (the reference calls it SA-MAP): merge runs of similar adjacent tokens with attention weights, then prune
the merged tokens with a DPP whose kernel combines similarity and attention."""
from __future__ import annotations

import numpy as np
import torch

from samp.methods.batch import Batch, Plan
from samp.methods.primitives import NORM_EPS, dpp_kernel, greedy_dpp_items, slots_from_groups, weighted_slots


def similarity_groups(rows: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy left-to-right grouping of one utterance's rows ``[n, C]`` (any scale: cosines are compared).

    Token ``j`` joins the open group when its mean cosine to *all* current members is at least ``threshold``.
    Returns ``starts`` (bool ``[n]``: token opens a group) and ``join_scores`` (the mean cosine each joining
    token passed with; NaN for group starts).

    The decision for ``j`` depends on the groups before it, so this is a loop over tokens; it keeps a running sum
    of the open group's unit rows, making each step one dot product instead of a slice of the N×N similarity
    matrix (which is never built), and it scales by inverse norms instead of making a normalised copy.
    """
    n = rows.shape[0]
    starts = np.zeros(n, dtype=bool)
    join_scores = np.full(n, np.nan, dtype=np.float64)
    if n == 0:
        return starts, join_scores
    starts[0] = True
    # a zero row has cosine 0 with everything; einsum makes no squared copy of the rows
    inverse = 1.0 / np.maximum(np.sqrt(np.einsum("ij,ij->i", rows, rows)), NORM_EPS)
    adjacent = np.einsum("ij,ij->i", rows[:-1], rows[1:]).astype(np.float64) * inverse[:-1] * inverse[1:]
    group_sum = None
    size = 1
    for j in range(1, n):
        score = adjacent[j - 1] if size == 1 else float(group_sum @ rows[j]) * inverse[j] / size
        if score >= threshold:
            unit = rows[j] * inverse[j]
            group_sum = rows[j - 1] * inverse[j - 1] + unit if size == 1 else group_sum + unit
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
    groups_of, kernels, pruned = [], [], []
    for b, (length, count) in enumerate(zip(batch.lengths.tolist(), batch.counts.tolist())):
        features = batch.features[b, :length]
        starts, scores = similarity_groups(features.cpu().numpy(), batch.threshold)
        shortfall = count - int(starts.sum())
        if shortfall > 0:
            # lowest join scores first (group starts score +inf); a stable sort gives ties to the earlier token
            weakest = np.argsort(np.nan_to_num(scores, nan=np.inf), kind="stable")[:shortfall]
            starts[weakest] = True
        ids = torch.from_numpy(np.cumsum(starts) - 1).to(device)
        groups = int(starts.sum())
        groups_of.append((ids, groups))
        if groups > count:
            # Only the M×M kernel outlives this step: holding every utterance's merged [M, C] rows until the
            # batch's DPP is done would cost more (fresh pages) than merging the kept groups once more at the end.
            merged, _ = weighted_slots(features[None], ids[None], batch.received[b : b + 1, :length], groups)
            members = torch.bincount(ids, minlength=groups).float()
            relevance = torch.zeros(groups, device=device).index_add_(0, ids, batch.self_attention[b, :length])
            kernels.append(dpp_kernel(merged[0], relevance / members))
            pruned.append(b)
    picks = dict(zip(pruned, greedy_dpp_items(kernels, [int(batch.counts[b]) for b in pruned])))
    for b, (length, (ids, groups)) in enumerate(zip(batch.lengths.tolist(), groups_of)):
        keep = torch.ones(groups, dtype=torch.bool, device=device)
        if b in picks:
            keep.zero_()
            keep[torch.as_tensor(picks[b], dtype=torch.long, device=device)] = True
        slots[b, :length] = slots_from_groups(ids[None], keep[None])[0]
    return Plan(slots=slots, weights=batch.received)
