"""The clean versions of Samp's baselines, plus `base`, `uniform` and `random`.

Each keeps exactly ``counts[b]`` distinct output tokens in temporal order, every output is a weighted mean of the
inputs assigned to it, and every ranking breaks ties by the lower index. Where a method's speech port in the
reference differs (counts, score choices, VisionZip's ``target + mean``), the docstring says what is done here.
"""
from __future__ import annotations

import torch

from samp.methods.batch import Batch, Plan
from samp.methods.primitives import (
    adjacent_cosine,
    greedy_dpp,
    group_ids,
    ranks_descending,
    segment_sum,
    slots_from_groups,
    unit_rows,
    weighted_slots,
)


def _ones(batch: Batch) -> torch.Tensor:
    return batch.valid.to(batch.features.dtype)


def _keep_mask_plan(batch: Batch, keep: torch.Tensor) -> Plan:
    """Pruning only: every kept token is its own slot."""
    slots = torch.cumsum(keep.long(), dim=1) - 1
    return Plan(slots=slots.masked_fill(~keep, -1), weights=_ones(batch))


def _top(scores: torch.Tensor, valid: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mask of the ``counts[b]`` highest-scoring valid entries per row (ties → lower index)."""
    scores = scores.masked_fill(~valid, float("-inf"))
    return (ranks_descending(scores) < counts[:, None]) & valid


def base(batch: Batch) -> Plan:
    return _keep_mask_plan(batch, batch.valid)


def uniform(batch: Batch) -> Plan:
    """``counts[b]`` contiguous, evenly sized segments, each averaged (token ``i`` → segment ``⌊i·T/n⌋``)."""
    positions = torch.arange(batch.valid.shape[1], device=batch.valid.device)[None, :]
    slots = positions * batch.counts[:, None] // batch.lengths.clamp_min(1)[:, None]
    return Plan(slots=slots.masked_fill(~batch.valid, -1), weights=_ones(batch))


def random(batch: Batch) -> Plan:
    """``counts[b]`` tokens drawn uniformly without replacement; the same ``seed`` and length give the same draw,
    whatever else is in the batch."""
    keep = torch.zeros_like(batch.valid)
    for b, (length, count) in enumerate(zip(batch.host_lengths, batch.host_counts)):
        generator = torch.Generator().manual_seed(batch.seed)
        keep[b, torch.randperm(length, generator=generator)[:count].to(keep.device)] = True
    return _keep_mask_plan(batch, keep)


def cdpruner(batch: Batch) -> Plan:
    """Diversity only: greedy DPP with kernel = cosine similarity. The first pick is token 0 (all relevances tie)."""
    return _keep_mask_plan(batch, greedy_dpp(batch.unit, batch.valid, batch.counts, steps=max(batch.host_counts)))


def cdpruner_attention(batch: Batch) -> Plan:
    """Greedy DPP with kernel ``diag(ρ) S diag(ρ)``, ρ = self-attention."""
    return _keep_mask_plan(
        batch, greedy_dpp(batch.unit, batch.valid, batch.counts, batch.self_attention, max(batch.host_counts))
    )


def vispruner(batch: Batch) -> Plan:
    """Half the budget to the most attended tokens (``round_half_up(T/2)``), the rest to diverse tokens.

    The diverse half repeats the reference's de-duplication rounds — split the remaining list alternately into
    ``a``/``b``, drop the (at most 4) ``a`` tokens most similar to some ``b`` token — but re-sorts the list
    temporally each round and computes the similarity matrix once, not once per round. Every size here follows
    from the host counts (the attended half holds exactly ``round_half_up(T/2)`` valid tokens), so the rounds run
    without reading the device; only which tokens drop depends on the data.
    """
    important = _top(batch.received, batch.valid, (batch.counts + 1) // 2)
    keep = important.clone()
    for b, (length, count) in enumerate(zip(batch.host_lengths, batch.host_counts)):
        attended = (count + 1) // 2
        target = count - attended
        remaining = torch.nonzero_static(batch.valid[b] & ~important[b], size=length - attended)[:, 0]
        similarity = batch.unit[b, remaining] @ batch.unit[b, remaining].T
        alive = torch.arange(remaining.numel(), device=remaining.device)
        while alive.numel() > target:
            a, b_side = alive[0::2], alive[1::2]
            if b_side.numel():
                redundancy = similarity[a][:, b_side].amax(dim=1)
            else:
                redundancy = torch.zeros(a.numel(), device=a.device)
            drop = min(4, alive.numel() - target, a.numel())
            survives = torch.ones(alive.numel(), dtype=torch.bool, device=alive.device)
            survives[0::2] = ranks_descending(redundancy) >= drop
            alive = alive[torch.nonzero_static(survives, size=alive.numel() - drop)[:, 0]]
        keep[b, remaining[alive]] = True
    return _keep_mask_plan(batch, keep)


def visionzip(batch: Batch) -> Plan:
    """Dominant tokens by received attention plus contextual tokens that absorb the rest.

    ``n_ctx = round_half_up(5 % of n)`` (at least 1, at most ``T − 1``) contextual targets are spaced evenly over
    the non-dominant tokens; every other non-dominant token joins the target whose key is most similar. A target's
    output is the *mean* of itself and its joiners (the reference emits ``target + mean(joiners)``, which is not a
    mean of inputs).
    """
    keys = unit_rows(batch.stats.token_keys)
    device = batch.valid.device
    slots = torch.full(batch.valid.shape, -1, dtype=torch.long, device=device)
    for b, (length, count) in enumerate(zip(batch.host_lengths, batch.host_counts)):
        contextual = 0 if count < 2 else min(max(1, (length * 5 + 50) // 100), count - 1)
        dominant = _top(batch.received[b : b + 1], batch.valid[b : b + 1],
                        torch.tensor([count - contextual], device=device))[0]
        # exactly count − contextual tokens dominate, so the rest has a size the host knows
        candidates = torch.nonzero_static(batch.valid[b] & ~dominant, size=length - count + contextual)[:, 0]
        owner = torch.arange(batch.valid.shape[1], device=candidates.device)  # token → token whose slot it joins
        if contextual:
            picks = torch.arange(contextual) * candidates.numel() // contextual
            targets = candidates[picks.to(candidates.device)]
            nearest = (keys[b, candidates] @ keys[b, targets].T).argmax(dim=1)
            owner[candidates] = targets[nearest]
        kept = dominant.clone()
        if contextual:
            kept[targets] = True
        slot_of_kept = torch.cumsum(kept.long(), dim=0) - 1
        item = slot_of_kept[owner].masked_fill(~batch.valid[b], -1)
        if not contextual:
            item = item.masked_fill(~kept, -1)
        slots[b] = item
    return Plan(slots=slots, weights=_ones(batch))


def _adjacent_merges(batch: Batch, merges: torch.Tensor) -> torch.Tensor:
    """Group ids after merging, per row, the ``merges[b]`` most similar adjacent pairs (runs chain together)."""
    similarity = adjacent_cosine(batch.unit).masked_fill(~batch.valid[:, 1:], float("-inf"))
    merged_with_next = ranks_descending(similarity) < merges[:, None]
    starts = torch.ones_like(batch.valid)
    starts[:, 1:] = ~merged_with_next
    return group_ids(starts, batch.valid)


def fastadasp(batch: Batch) -> Plan:
    """Merge the ``n − T`` most similar adjacent pairs (chains form runs); each run → its mean."""
    return Plan(slots=_adjacent_merges(batch, batch.lengths - batch.counts), weights=_ones(batch))


def fastadasp_attention(batch: Batch) -> Plan:
    """As fastadasp, runs averaged with received-attention weights."""
    return Plan(slots=_adjacent_merges(batch, batch.lengths - batch.counts), weights=batch.received)


def _prune_groups(batch: Batch, ids: torch.Tensor) -> Plan:
    """Greedy DPP over attention-weighted group means, relevance = mean self-attention of the group."""
    groups = (ids.amax(dim=1) + 1).clamp_min(0)
    # the device path cannot read the group count: it pads the groups to one per token
    num_groups = ids.shape[1] if batch.device_path else int(groups.max())
    merged, _ = weighted_slots(batch.features, ids, batch.received, num_groups)
    members = segment_sum(batch.valid.float(), ids, num_groups).clamp_min(1)
    relevance = segment_sum(batch.self_attention, ids, num_groups) / members
    group_valid = torch.arange(num_groups, device=ids.device)[None, :] < groups[:, None]
    keep = greedy_dpp(merged, group_valid, batch.counts, relevance, max(batch.host_counts))
    return Plan(slots=slots_from_groups(ids, keep), weights=batch.received)


def fastadasp_attention_dpp(batch: Batch) -> Plan:
    """Merge adjacent pairs above ``threshold`` (at most ``n − T``), then DPP-prune the runs to ``T``."""
    similarity = adjacent_cosine(batch.unit).masked_fill(~batch.valid[:, 1:], float("-inf"))
    above = (similarity > batch.threshold).sum(1)
    merges = torch.minimum(above, batch.lengths - batch.counts)
    return _prune_groups(batch, _adjacent_merges(batch, merges))


def _pair_rounds(batch: Batch, weights: torch.Tensor, limit_by_threshold: bool) -> torch.Tensor:
    """A-ToMe as ported: merge disjoint even-aligned pairs ``(2j, 2j+1)``, most similar first.

    One round merges at most half the tokens, so when ``T < ⌈n/2⌉`` further rounds run on the merged sequence
    (pairs of groups, compared by their weighted means) until exactly ``T`` remain; the reference stops after one
    round and emits more than ``T`` tokens. With ``limit_by_threshold`` a single round merges only pairs whose
    cosine exceeds ``threshold``.
    """
    ids_out = torch.full(batch.valid.shape, -1, dtype=torch.long, device=batch.valid.device)
    for b, (length, count) in enumerate(zip(batch.host_lengths, batch.host_counts)):
        ids = torch.arange(length, device=batch.valid.device)
        units = length
        while units > count:
            groups, group_weights = weighted_slots(
                batch.features[b : b + 1, :length], ids[None], weights[b : b + 1, :length], units
            )
            vectors = unit_rows(groups[0])
            pairs = units // 2
            cosine = (vectors[0 : 2 * pairs : 2] * vectors[1 : 2 * pairs : 2]).sum(-1)
            merges = min(units - count, pairs)
            if limit_by_threshold:
                # how many pass is data: kept as a tensor (no read-back), and this is the last round anyway
                merge_pair = ranks_descending(cosine) < torch.clamp((cosine > batch.threshold).sum(), max=merges)
            else:
                merge_pair = ranks_descending(cosine) < merges
            starts = torch.ones(units, dtype=torch.bool, device=ids.device)
            starts[1 : 2 * pairs : 2] = ~merge_pair
            new_of_old = torch.cumsum(starts.long(), dim=0) - 1
            ids = new_of_old[ids]
            units -= merges
            if limit_by_threshold:
                break
        ids_out[b, :length] = ids
    return ids_out


def atome_merge(batch: Batch) -> Plan:
    return Plan(slots=_pair_rounds(batch, _ones(batch), limit_by_threshold=False), weights=_ones(batch))


def atome_merge_attention(batch: Batch) -> Plan:
    return Plan(slots=_pair_rounds(batch, batch.received, limit_by_threshold=False), weights=batch.received)


def atome_merge_attention_dpp(batch: Batch) -> Plan:
    """Merge disjoint pairs above ``threshold`` (at most ``n − T``), then DPP-prune to ``T``."""
    return _prune_groups(batch, _pair_rounds(batch, batch.received, limit_by_threshold=True))
