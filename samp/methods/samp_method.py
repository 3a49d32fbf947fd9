"""Samp (the reference calls it SA-MAP): merge runs of similar adjacent tokens with attention weights, then prune
the merged tokens with a DPP whose kernel combines similarity and attention."""
from __future__ import annotations

import numpy as np
import torch

from samp.methods import cpu_kernels
from samp.methods.batch import Batch, Plan
from samp.methods.primitives import (
    NORM_EPS,
    dpp_kernel,
    greedy_picks_device,
    inverse_norms,
    inverse_norms_of_gram,
    normalised_weights,
    ranks_descending,
    segment_sum,
    slots_from_groups,
    with_exact_diagonal,
)


def similarity_groups(rows: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy left-to-right grouping of one utterance's rows ``[n, C]`` (any scale: cosines are compared).

    Token ``j`` joins the open group when its mean cosine to *all* current members is at least ``threshold``.
    Returns ``starts`` (bool ``[n]``: token opens a group) and ``join_scores`` (the mean cosine each joining
    token passed with; NaN for group starts). The decision for ``j`` depends on the groups before it, so this is
    a compiled loop over tokens (:func:`samp.methods.cpu_kernels.group_and_merge`, which :func:`samp` calls to
    get the merged tokens in the same pass).
    """
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    zeros = np.zeros(rows.shape[0], dtype=np.float32)
    starts, join_scores, _, _ = cpu_kernels.group_and_merge(rows, float(threshold), NORM_EPS, zeros, zeros)
    return starts, join_scores


def samp(batch: Batch) -> Plan:
    """Group, then keep exactly ``counts[b]`` groups.

    * more groups than the budget: greedy DPP over the merged tokens, kernel ``diag(ρ) Ŝ diag(ρ)`` with ρ the
      group's mean self-attention;
    * fewer groups than the budget (heavy merging: silence, long vowels): the weakest joins are undone — the
      members that joined with the lowest scores open new groups — so exactly ``counts[b]`` contiguous groups
      remain. The reference instead asks the DPP for more items than exist and emits duplicated tokens.

    On a CPU, one utterance at a time on its valid rows (no padded ``[B, N, C]`` temporaries), in numpy and
    compiled loops: at a few dozen tokens an utterance, torch's per-call cost would exceed the arithmetic.
    """
    if batch.device_path:
        return samp_on_device(batch)
    features = batch.features.detach().numpy()
    received = batch.received.detach().float().numpy()
    self_attention = batch.self_attention.detach().float().numpy()
    ids = np.full(batch.valid.shape, -1, dtype=np.int64)  # group of each token, -1 on padding
    keep = np.zeros(batch.valid.shape, dtype=bool)  # kept groups (at most N per utterance)
    for b, (length, count) in enumerate(zip(batch.host_lengths, batch.host_counts)):
        rows = np.ascontiguousarray(features[b, :length])
        starts, scores, merged, relevance = cpu_kernels.group_and_merge(
            rows, float(batch.threshold), NORM_EPS, received[b, :length], self_attention[b, :length])
        shortfall = count - int(starts.sum())
        if shortfall > 0:
            # lowest join scores first (group starts score +inf); a stable sort gives ties to the earlier token
            weakest = np.argsort(np.nan_to_num(scores, nan=np.inf), kind="stable")[:shortfall]
            starts[weakest] = True
        np.cumsum(starts, out=ids[b, :length])
        ids[b, :length] -= 1
        groups = int(ids[b, length - 1]) + 1
        if groups > count:
            # the groups are the grouping's own (no join was undone), so its merged tokens are theirs
            kernel, diag = dpp_kernel(torch.from_numpy(merged), torch.from_numpy(relevance))
            keep[b, cpu_kernels.greedy_dpp_picks(kernel, diag, count)] = True
        else:
            keep[b, :groups] = True
    device = batch.features.device
    return Plan(slots=slots_from_groups(torch.from_numpy(ids).to(device), torch.from_numpy(keep).to(device)),
                weights=batch.received)


def similarity_groups_device(cosine: torch.Tensor, valid: torch.Tensor, threshold: float) -> tuple[torch.Tensor,
                                                                                                    torch.Tensor]:
    """:func:`similarity_groups` for a padded batch from its token cosines ``[B, N, N]``, without a loop over
    tokens. Returns ``starts`` ``[B, N]`` and ``join_scores`` ``[B, N]`` (+inf for starts and padding).

    With column prefix sums ``P[k, j] = Σ_{i<k} cos(i, j)`` (float64, so that differences of long sums keep their
    digits), a group opened at ``s`` admits ``j`` when ``(P[j, j] − P[s, j]) / (j − s) ≥ threshold``, given that
    every token between joined. So the first ``j > s`` that fails closes the group: ``end[s]``, for every ``s`` at
    once, in O(N²) element-wise work. The starts are the chain ``0, end[0], end[end[0]], …``, marked by pointer
    doubling in ⌈log₂ N⌉ + 1 whole-batch steps: the only sequential part, and its length does not depend on the
    groups.
    """
    batch, n, _ = cosine.shape
    device = cosine.device
    lengths = valid.sum(1)
    prefix = torch.zeros(batch, n + 1, n, dtype=torch.float64, device=device)
    torch.cumsum(cosine.double(), dim=1, out=prefix[:, 1:])
    token = torch.arange(n, device=device)
    span = (token[None, :] - token[:, None]).clamp_min(1).double()  # [s, j]: j − s
    scores = (prefix.diagonal(dim1=1, dim2=2)[:, None, :] - prefix[:, :n]) / span  # [B, s, j]
    after = token[None, :] > token[:, None]
    fails = after & ((token[None, None, :] >= lengths[:, None, None]) | (scores < threshold))
    end = torch.where(fails, token, n).amin(dim=2)  # [B, N]: the token that opens the next group
    jump = torch.cat([end, torch.full((batch, 1), n, dtype=torch.long, device=device)], dim=1)
    marked = torch.zeros(batch, n + 1, dtype=torch.bool, device=device)
    marked[:, 0] = True
    for _ in range(max(1, n).bit_length() + 1):
        reached = torch.zeros(batch, n + 1, device=device).scatter_add_(1, jump, marked.float()) > 0
        marked |= reached
        jump = jump.gather(1, jump)
    starts = marked[:, :n] & valid
    opener = torch.where(starts, token, 0).cummax(dim=1).values  # each token's group start
    joined = scores.gather(1, opener[:, None, :])[:, 0]  # scores[b, opener[j], j]
    join_scores = torch.where(starts | ~valid, float("inf"), joined)
    return starts, join_scores


def samp_on_device(batch: Batch) -> Plan:
    """:func:`samp` without host reads: one batched N×N×C product gives the token cosines for the grouping and,
    summed by group, the merged tokens' DPP kernel (so the merged rows are never formed); groups are padded to N
    candidates, and the greedy DPP runs for the largest count, batched over utterances."""
    valid = batch.valid
    rows = torch.where(valid[..., None], batch.features, 0.0)
    products = torch.bmm(rows, rows.transpose(1, 2))  # the one N×N×C product
    scale = inverse_norms(rows)
    cosine = products * scale[:, :, None] * scale[:, None, :]
    starts, join_scores = similarity_groups_device(cosine, valid, batch.threshold)
    # too few groups: undo the weakest joins (lowest scores first, ties to the earlier token)
    shortfall = (batch.counts - starts.sum(1)).clamp_min(0)
    starts = starts | (ranks_descending(-join_scores) < shortfall[:, None])
    ids = (torch.cumsum(starts.long(), dim=1) - 1).masked_fill(~valid, -1)
    groups = starts.sum(1)
    n = valid.shape[1]
    weights = normalised_weights(ids, batch.received, n)  # weights inside each merged token
    # merged rows' products: Σ_i Σ_k w_i w_k ⟨x_i, x_k⟩ over the two groups, from the token products
    by_row = segment_sum(products * weights[:, :, None], ids, n)  # [B, group, token]
    merged = segment_sum((by_row * weights[:, None, :]).transpose(1, 2), ids, n)  # [B, group, group]
    members = segment_sum(valid.float(), ids, n).clamp_min(1)
    relevance = segment_sum(batch.self_attention, ids, n) / members
    group_valid = torch.arange(n, device=ids.device)[None, :] < groups[:, None]
    inverse = inverse_norms_of_gram(merged)
    relevance = torch.where(group_valid, relevance, 0.0)
    kernel_scale = inverse * relevance
    kernels = merged.mul_(kernel_scale[:, :, None]).mul_(kernel_scale[:, None, :])
    kernels, diags = with_exact_diagonal(kernels, relevance.square() * (inverse > 0).float())
    picks = greedy_picks_device(kernels, diags, group_valid, max(batch.host_counts))
    wanted = torch.arange(picks.shape[1], device=ids.device)[None, :] < batch.counts[:, None]
    keep = torch.zeros(valid.shape, dtype=torch.long, device=ids.device).scatter_add_(1, picks, wanted.long()) > 0
    return Plan(slots=slots_from_groups(ids, keep), weights=batch.received)
