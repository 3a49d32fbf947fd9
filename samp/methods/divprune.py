"""DivPrune (Alvar et al., CVPR 2025): keep the most diverse tokens by greedy max–min cosine distance.

The clean rule (spec/new-methods.md §1.2), per utterance: the first pick is the most isolated token (largest distance
to its nearest other token); every further pick is the not-yet-kept token farthest from everything kept so far.
It is Samp's DPP pruning without the relevance term.

Distance ``d = 1 − cos`` is a decreasing function of the cosine, so the rule is run on cosines directly ("farthest"
= smallest largest cosine): that avoids rounding ``1 − cos`` near 1, where distinct cosines could become equal
distances. Unlike the original: kept tokens are never picked again (it repeats tokens on duplicates and zero rows),
zero rows have cosine 0 with everything (no NaN), the count is ``keep_count`` and ties go to the lowest index.
"""
from __future__ import annotations

import torch

from samp.methods.baselines import _keep_mask_plan
from samp.methods.batch import Batch, Plan
from samp.methods.primitives import gram, inverse_norms, on_device

# Up to this many tokens the n×n cosine matrix is built once (64 MiB in float32 at 4096); above it, rows are
# computed as needed so that memory stays O(n·C) — five minutes of Qwen2-Audio audio is 7,500 tokens (225 MB).
FULL_MATRIX_UP_TO = 4096
# Rows per block when the nearest-neighbour cosines are computed without the full matrix.
ROW_CHUNK = 512


def divprune(batch: Batch) -> Plan:
    if batch.device_path and batch.features.shape[1] <= FULL_MATRIX_UP_TO:
        return _keep_mask_plan(batch, divprune_batched(batch.features, batch.valid, batch.counts,
                                                       max(batch.host_counts)))
    keep = torch.zeros_like(batch.valid)
    for b, (length, count) in enumerate(zip(batch.host_lengths, batch.host_counts)):
        keep[b, divprune_order(batch.features[b, :length], count)] = True
    return _keep_mask_plan(batch, keep)


def divprune_order(rows: torch.Tensor, count: int, full_matrix_up_to: int = FULL_MATRIX_UP_TO) -> torch.Tensor:
    """Indices of ``count`` distinct tokens of ``rows`` ``[n, C]`` in the order DivPrune picks them.
    ``full_matrix_up_to``: the largest ``n`` for which the n×n cosine matrix is materialised."""
    n = rows.shape[0]
    if count >= n:
        return torch.arange(n, device=rows.device)
    rows = rows.float()
    # Products of the raw rows, scaled afterwards: cheaper than a normalised copy of the input.
    scale = inverse_norms(rows)
    if n <= full_matrix_up_to:
        cosine = gram(rows).mul_(scale[:, None]).mul_(scale[None, :])
        cosine.fill_diagonal_(float("-inf"))  # a token is not its own nearest neighbour
        nearest = cosine.amax(dim=1)

        def row(i):
            return cosine[i] if isinstance(i, int) else cosine.index_select(0, i)[0]
    else:
        nearest = torch.empty(n, device=rows.device)
        for start in range(0, n, ROW_CHUNK):
            block = (rows[start : start + ROW_CHUNK] @ rows.T).mul_(scale[None, :])
            block.mul_(scale[start : start + ROW_CHUNK, None])
            block.diagonal(offset=start).fill_(float("-inf"))
            nearest[start : start + block.shape[0]] = block.amax(dim=1)

        def row(i):
            if isinstance(i, int):
                return (rows @ rows[i]).mul_(scale).mul_(scale[i])
            return (rows @ rows.index_select(0, i)[0]).mul_(scale).mul_(scale.index_select(0, i))

    # The most isolated token first: the smallest cosine to its nearest other token. argmin returns the first
    # minimum, so ties go to the lowest index.
    if on_device(rows):
        return _picks_on_device(nearest, row, count)
    pick = int(nearest.argmin())
    picks = [pick]
    closest = row(pick).clone()  # each token's largest cosine to the kept set; +inf once kept
    closest[pick] = float("inf")
    for _ in range(count - 1):
        pick = int(closest.argmin())
        picks.append(pick)
        torch.maximum(closest, row(pick), out=closest)
        closest[pick] = float("inf")  # a maximum never lowers an entry, so earlier picks stay at +inf
    return torch.tensor(picks, dtype=torch.long, device=rows.device)


def _picks_on_device(nearest: torch.Tensor, row, count: int) -> torch.Tensor:
    """The same greedy picks with every pick left on the device (a ``[1]`` index tensor): no read-back per step.
    The count steps stay sequential — each pick depends on the running maxima the previous ones left."""
    inf = torch.tensor([float("inf")], device=nearest.device)
    picks = torch.empty(count, dtype=torch.long, device=nearest.device)
    pick = nearest.argmin().view(1)
    picks[0:1] = pick
    closest = row(pick).clone()
    closest.index_copy_(0, pick, inf)
    for step in range(1, count):
        pick = closest.argmin().view(1)
        picks[step : step + 1] = pick
        torch.maximum(closest, row(pick), out=closest)
        closest.index_copy_(0, pick, inf)
    return picks


def divprune_batched(features: torch.Tensor, valid: torch.Tensor, counts: torch.Tensor, steps: int) -> torch.Tensor:
    """:func:`divprune_order`'s picks for a padded batch at once (the device path): one batched cosine product, then
    ``steps`` (the largest count) greedy steps over every utterance together. Returns the ``[B, N]`` kept mask;
    utterances asking for all their tokens keep them all."""
    batch, n, _ = features.shape
    rows = torch.where(valid[..., None], features.float(), 0.0)
    scale = inverse_norms(rows)
    cosine = torch.bmm(rows, rows.transpose(1, 2)).mul_(scale[:, :, None]).mul_(scale[:, None, :])
    # a token is not its own nearest neighbour, and padding is nobody's
    cosine.masked_fill_(torch.eye(n, dtype=torch.bool, device=rows.device) | ~valid[:, None, :], float("-inf"))
    nearest = cosine.amax(dim=2).masked_fill(~valid, float("inf"))
    picks = torch.zeros(batch, steps, dtype=torch.long, device=rows.device)
    pick = nearest.argmin(dim=1, keepdim=True)  # the most isolated token first; ties to the lowest index
    picks[:, :1] = pick
    inf = torch.full((batch, 1), float("inf"), device=rows.device)
    closest = cosine.gather(1, pick[:, :, None].expand(batch, 1, n))[:, 0].masked_fill(~valid, float("inf"))
    closest.scatter_(1, pick, inf)
    for step in range(1, steps):
        pick = closest.argmin(dim=1, keepdim=True)
        picks[:, step : step + 1] = pick
        torch.maximum(closest, cosine.gather(1, pick[:, :, None].expand(batch, 1, n))[:, 0], out=closest)
        closest.scatter_(1, pick, inf)
    wanted = torch.arange(steps, device=rows.device)[None, :] < counts[:, None]
    keep = torch.zeros(batch, n, dtype=torch.long, device=rows.device).scatter_add_(1, picks, wanted.long()) > 0
    lengths = valid.sum(1)
    return torch.where((counts >= lengths)[:, None], valid, keep)
