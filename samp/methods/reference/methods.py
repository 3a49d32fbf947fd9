"""Every token-compression method as the SA-MAP reference runs it on ONE utterance (reference-algorithms.md §4).

Each function takes the utterance's ``length`` valid feature rows ``x [L, C]``, its lazily computed attention
scores, the keep count ``T`` from :mod:`counts` and the model's :class:`FlavorSpec`, and returns
:class:`UtteranceRows`: the rows the reference method returns, in its order, with the input tokens behind each row.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from samp.methods.reference.counts import vispruner_important_count, visionzip_counts
from samp.methods.reference.dpp import (
    cosine_matrix,
    greedy_dpp_map,
    neighbour_cosines,
    relevance_kernel,
    unit_rows,
)
from samp.methods.reference.flavors import FlavorSpec
from samp.methods.reference.scores import UtteranceScores

# Methods whose Qwen2-Audio integration builds a boolean keep mask (the rest build a list of merged rows, §5.1).
KEEP_MASK_METHODS = frozenset({"visionzip", "vispruner", "cdpruner", "cdpruner-attention", "base"})


@dataclass(frozen=True)
class UtteranceRows:
    """What one reference method returns for one utterance.

    rows: ``[T_b, C]`` the returned rows in the reference's order (temporal; duplicates where it duplicates).
    members: the input tokens behind each row, the row's sequence position (its first member, where Kimi-Audio
        writes it) first.
    member_weights: the weight of each member inside its row (summing to one), or ``None`` where a row is not a
        weighted mean of its members (VisionZip's ``target + mean``).
    """

    rows: torch.Tensor
    members: tuple[tuple[int, ...], ...]
    member_weights: tuple[torch.Tensor, ...] | None

    @property
    def positions(self) -> torch.Tensor:
        """Sequence position of each row: its first member (Kimi-Audio keeps that position, §5.3)."""
        return torch.tensor([group[0] for group in self.members], dtype=torch.long)


def _rows_from_groups(
    x: torch.Tensor, groups: list[list[int]], weights: torch.Tensor | None, copy_singles: bool
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Merge each contiguous group: arithmetic mean, or ``Σ w x / Σ w`` with the reference's op order (§3.3).

    ``copy_singles``: A-ToMe copies an unmerged token as is; FastAdaSP and SA-MAP run every group, single ones
    included, through the (weighted) mean, which can move a single row by an ulp.
    """
    rows = []
    member_weights = []
    for group in groups:
        index = torch.tensor(group, dtype=torch.long, device=x.device)
        if copy_singles and len(group) == 1:
            rows.append(x[group[0]])
            member_weights.append(torch.ones(1))
        elif weights is None:
            rows.append(x[index].mean(dim=0))
            member_weights.append(torch.full((len(group),), 1.0 / len(group)))
        else:
            w = weights[index]
            total = w.sum()
            rows.append((w[:, None] * x[index]).sum(dim=0) / total)
            member_weights.append((w / total).float().cpu())
    return torch.stack(rows), member_weights


def _pruned(x: torch.Tensor, keep_mask: torch.Tensor) -> UtteranceRows:
    kept = torch.nonzero(keep_mask).flatten().tolist()
    return UtteranceRows(
        rows=x[keep_mask],
        members=tuple((i,) for i in kept),
        member_weights=tuple(torch.ones(1) for _ in kept),
    )


def _merged(
    x: torch.Tensor, groups: list[list[int]], weights: torch.Tensor | None, *, copy_singles: bool = False
) -> UtteranceRows:
    rows, member_weights = _rows_from_groups(x, groups, weights, copy_singles)
    return UtteranceRows(rows=rows, members=tuple(tuple(g) for g in groups), member_weights=tuple(member_weights))


def _select(result: UtteranceRows, chosen: list[int]) -> UtteranceRows:
    """The rows at ``chosen`` (repeats allowed), in the given order."""
    index = torch.tensor(chosen, dtype=torch.long, device=result.rows.device)
    return UtteranceRows(
        rows=result.rows[index],
        members=tuple(result.members[i] for i in chosen),
        member_weights=None if result.member_weights is None else tuple(result.member_weights[i] for i in chosen),
    )


def _checked_merge_count(merges: int, candidates: int, method: str) -> None:
    # The reference calls topk(k=merges) on `candidates` similarities; torch raises for k < 0 or k > candidates.
    if merges < 0 or merges > candidates:
        raise ValueError(
            f"{method}: the reference calls topk with k={merges} on {candidates} similarities and fails "
            f"(quirk 12: too few valid tokens for the keep count)"
        )


def _groups_from_adjacent_merges(length: int, merged_after: set[int]) -> list[list[int]]:
    """§4.6 step 3: token ``i`` absorbs ``i+1`` while ``i`` is a selected adjacent pair; runs chain."""
    groups = []
    i = 0
    while i < length:
        group = [i]
        while i in merged_after:
            i += 1
            group.append(i)
        groups.append(group)
        i += 1
    return groups


def _groups_from_pairs(length: int, merged_pairs: set[int]) -> list[list[int]]:
    """§4.9 step 3: selected disjoint pairs ``(2j, 2j+1)`` become one group, every other token stays alone."""
    groups = []
    i = 0
    while i < length:
        if i % 2 == 0 and i // 2 in merged_pairs:
            groups.append([i, i + 1])
            i += 2
        else:
            groups.append([i])
            i += 1
    return groups


def _top_indices(values: torch.Tensor, count: int) -> set[int]:
    return set(torch.topk(values, count).indices.tolist())


def _dpp_over_rows(
    result: UtteranceRows, relevance: torch.Tensor, keep: int, *, as_float32: bool
) -> tuple[UtteranceRows, bool]:
    """Greedy DPP over renormalised rows with kernel ``diag(ρ) Ŝ diag(ρ)``; picks sorted ascending (§3.2)."""
    kernel = relevance_kernel(cosine_matrix(result.rows, as_float32=as_float32), relevance)
    picks, had_nan = greedy_dpp_map(kernel, keep)
    return _select(result, sorted(picks.tolist())), had_nan


def _group_means(values: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    return torch.stack([values[torch.tensor(g, dtype=torch.long, device=values.device)].mean() for g in groups])


# --------------------------------------------------------------------------------------------------------------
# §4.1 – §4.12, one function per method


def base(x: torch.Tensor, scores: UtteranceScores, keep: int, spec: FlavorSpec, **_) -> UtteranceRows:
    """§4.1: the ``L`` valid rows unchanged."""
    return _pruned(x, torch.ones(x.shape[0], dtype=torch.bool, device=x.device))


def visionzip(
    x: torch.Tensor,
    scores: UtteranceScores,
    keep: int,
    spec: FlavorSpec,
    *,
    keep_ratio: float,
    keys: torch.Tensor | None,
    **_,
) -> UtteranceRows:
    """§4.2 VisionZip: top ``n_dom`` tokens by attention, plus ``n_ctx`` uniformly spaced contextual targets that
    absorb the rest by key cosine; each target becomes ``x_target + mean(x_assigned)`` (not a weighted mean).

    Not reproduced: quirk 3 (Qwen2-Audio/GLM-ASR pool the batch's key tensor inside the utterance loop, so a second
    utterance crashes). Each utterance's keys are pooled once, as at batch size 1, which is how the reference's
    evaluation runs and how the golden data was made.
    """
    if keys is None:
        raise ValueError("visionzip needs the last encoder layer's key states: pass keys [B, H, P·N, d]")
    length = x.shape[0]
    n_dominant, n_contextual = visionzip_counts(length, keep_ratio, spec.name)
    if n_dominant > length:
        raise ValueError(f"visionzip: {n_dominant} dominant tokens requested from {length} valid tokens")
    dominant_score = scores.get(spec.scores["visionzip_dominant"])
    dominant = torch.zeros(length, dtype=torch.bool, device=x.device)
    dominant[torch.topk(dominant_score, n_dominant).indices] = True

    candidates = torch.nonzero(~dominant).flatten()
    if candidates.numel() == 0:
        # The reference takes an argmax over an empty similarity matrix and fails (quirk 12).
        raise ValueError(
            f"visionzip: no contextual candidates left after {n_dominant} dominant tokens of {length} "
            "(the reference fails on an empty argmax, quirk 12)"
        )
    step = max(1, candidates.numel() // n_contextual)
    is_target = torch.zeros(candidates.numel(), dtype=torch.bool, device=x.device)
    is_target[torch.arange(0, candidates.numel(), step, device=x.device)[:n_contextual]] = True
    targets = candidates[is_target]
    others = candidates[~is_target]

    p = scores.frames_per_token
    token_keys = keys.mean(dim=0)[: p * length].reshape(length, p, -1).mean(dim=1)
    unit_keys = unit_rows(token_keys)
    nearest = torch.argmax(unit_keys[others] @ unit_keys[targets].T, dim=1)
    one_hot = torch.zeros(others.numel(), targets.numel(), dtype=x.dtype, device=x.device)
    one_hot[torch.arange(others.numel(), device=x.device), nearest] = 1
    counts = one_hot.sum(dim=0).clamp(min=1)[:, None]
    contextual_rows = x[targets] + (one_hot.T @ x[others]) / counts

    features = x.clone()
    features[targets] = contextual_rows
    kept = dominant.clone()
    kept[targets] = True
    members = []
    target_slot = {int(t): j for j, t in enumerate(targets.tolist())}
    for i in torch.nonzero(kept).flatten().tolist():
        if i in target_slot:
            absorbed = others[nearest == target_slot[i]].tolist()
            members.append((i, *absorbed))
        else:
            members.append((i,))
    return UtteranceRows(rows=features[kept], members=tuple(members), member_weights=None)


def vispruner(x: torch.Tensor, scores: UtteranceScores, keep: int, spec: FlavorSpec, **_) -> UtteranceRows:
    """§4.3 VisPruner: ``round(T/2)`` most attended tokens plus a diverse remainder chosen by removing, 4 per
    round, the residual tokens most similar to the other half of the (not re-sorted) residual list."""
    importance = scores.get(spec.scores["vispruner_importance"])
    n_important = vispruner_important_count(keep)
    n_diverse = keep - n_important
    order = torch.argsort(importance, descending=True)
    important = order[:n_important]
    residual = torch.sort(order[n_important:]).values
    unit = unit_rows(x)
    while n_diverse > 0:
        n = residual.numel()
        removals = min(4, n - n_diverse)
        if removals <= 0:
            break
        a, b = residual[0::2], residual[1::2]
        similarity = (unit[a] @ unit[b].T).max(dim=-1).values
        survivors = a[torch.argsort(similarity, descending=True)[removals:]]
        residual = torch.cat([survivors, b])
    keep_mask = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    keep_mask[important] = True
    keep_mask[residual] = True
    return _pruned(x, keep_mask)


def _cdpruner(x: torch.Tensor, keep: int, spec: FlavorSpec, method: str, relevance: torch.Tensor | None):
    similarity = cosine_matrix(x, as_float32=method in spec.float32_similarity)
    kernel = similarity if relevance is None else relevance_kernel(similarity, relevance)
    picks, _ = greedy_dpp_map(kernel, keep)
    # A boolean mask: duplicate picks after a NaN cascade collapse, so fewer than T rows survive (quirk 10).
    keep_mask = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    keep_mask[picks] = True
    return _pruned(x, keep_mask)


def cdpruner(x: torch.Tensor, scores: UtteranceScores, keep: int, spec: FlavorSpec, **_) -> UtteranceRows:
    """§4.4 CDPruner without relevance: greedy DPP on the cosine matrix (first pick decided by round-off)."""
    return _cdpruner(x, keep, spec, "cdpruner", None)


def cdpruner_attention(x: torch.Tensor, scores: UtteranceScores, keep: int, spec: FlavorSpec, **_) -> UtteranceRows:
    """§4.5 CDPruner with the self-attention diagonal as DPP relevance."""
    return _cdpruner(x, keep, spec, "cdpruner-attention", scores.get(spec.scores["cdpruner_relevance"]))


def _fastadasp(x: torch.Tensor, keep: int, weights: torch.Tensor | None, method: str) -> UtteranceRows:
    length = x.shape[0]
    adjacent = neighbour_cosines(unit_rows(x), step=1)
    merges = length - keep
    _checked_merge_count(merges, adjacent.numel(), method)
    groups = _groups_from_adjacent_merges(length, _top_indices(adjacent, merges))
    return _merged(x, groups, weights)


def fastadasp(x: torch.Tensor, scores: UtteranceScores, keep: int, spec: FlavorSpec, **_) -> UtteranceRows:
    """§4.6 FastAdaSP: the ``L − T`` most similar adjacent pairs merge (runs chain); groups averaged."""
    return _fastadasp(x, keep, None, "fastadasp")


def fastadasp_attention(x: torch.Tensor, scores: UtteranceScores, keep: int, spec: FlavorSpec, **_) -> UtteranceRows:
    """§4.7 FastAdaSP with attention-weighted group means."""
    return _fastadasp(x, keep, scores.get(spec.scores["fastadasp_weight"]), "fastadasp-attention")


def fastadasp_attention_dpp(
    x: torch.Tensor, scores: UtteranceScores, keep: int, spec: FlavorSpec, *, threshold: float, **_
) -> UtteranceRows:
    """§4.8: merge at most ``L − T`` adjacent pairs whose cosine is strictly above ``τ``, then a relevance DPP picks
    ``T`` of the merged tokens."""
    length = x.shape[0]
    adjacent = neighbour_cosines(unit_rows(x), step=1)
    merges = min(int((adjacent > threshold).sum()), length - keep)
    _checked_merge_count(merges, adjacent.numel(), "fastadasp-attention-dpp")
    groups = _groups_from_adjacent_merges(length, _top_indices(adjacent, merges))
    merged = _merged(x, groups, scores.get(spec.scores["fastadasp_weight"]))
    relevance = _group_means(scores.get(spec.scores["fastadasp_dpp_relevance"]), groups)
    chosen, _ = _dpp_over_rows(
        merged, relevance, keep, as_float32="fastadasp-attention-dpp" in spec.float32_similarity
    )
    return chosen


def _atome_round(x: torch.Tensor, keep: int, weights: torch.Tensor | None, method: str) -> tuple[list, UtteranceRows]:
    length = x.shape[0]
    pairs = neighbour_cosines(unit_rows(x), step=2)
    merges = min(length - keep, length // 2)
    _checked_merge_count(merges, pairs.numel(), method)
    groups = _groups_from_pairs(length, _top_indices(pairs, merges))
    return groups, _merged(x, groups, weights, copy_singles=True)


def _atome(x: torch.Tensor, keep: int, spec: FlavorSpec, weights: torch.Tensor | None, method: str) -> UtteranceRows:
    groups, merged = _atome_round(x, keep, weights, method)
    rows = merged.rows.shape[0]
    overflow = spec.atome_overflow.get(method, "keep")
    if rows <= keep or overflow == "keep":
        # Qwen2-Audio / GLM-ASR return max(T, ⌈L/2⌉) rows; their LLM plumbing drops the tail (quirk 6).
        return merged
    if overflow == "cut_tail":
        # Kimi-Audio atome-merge cuts the trailing rows: the end of the utterance is lost (§5.3).
        return _select(merged, list(range(keep)))
    return _kimi_second_atome_round(x, merged, groups, keep, weights, method)


def _kimi_second_atome_round(
    x: torch.Tensor,
    merged: UtteranceRows,
    groups: list[list[int]],
    keep: int,
    weights: torch.Tensor,
    method: str,
) -> UtteranceRows:
    """Kimi-Audio atome-merge-attention with more than ``T`` rows: a second disjoint-pair round on the merged
    rows, weighted by each row's mean importance, then the last row dropped if one too many remain (§5.3).

    The reference maps second-round rows back to sequence positions by doubling their first-round index. A second
    round only happens when every first-round pair merged (``m = ⌊L/2⌋``), where first-round row ``k`` does sit at
    position ``2k``, so the doubling lands on each row's first member, which is what ``members`` records.
    """
    row_importance = _group_means(weights, groups)
    second_groups, second = _atome_round(merged.rows, keep, row_importance, method)
    members = []
    member_weights = []
    for group, row_weights in zip(second_groups, second.member_weights):
        inputs = [i for g in group for i in merged.members[g]]
        combined = torch.cat([w * merged.member_weights[g] for g, w in zip(group, row_weights)])
        members.append(tuple(inputs))
        member_weights.append(combined)
    result = UtteranceRows(rows=second.rows, members=tuple(members), member_weights=tuple(member_weights))
    if result.rows.shape[0] == keep + 1:
        result = _select(result, list(range(keep)))
    return result


def atome_merge(x: torch.Tensor, scores: UtteranceScores, keep: int, spec: FlavorSpec, **_) -> UtteranceRows:
    """§4.9 A-ToMe as ported: the ``min(L − T, ⌊L/2⌋)`` most similar even-aligned pairs are averaged, so
    ``max(T, ⌈L/2⌉)`` rows come back (quirk 6)."""
    return _atome(x, keep, spec, None, "atome-merge")


def atome_merge_attention(x: torch.Tensor, scores: UtteranceScores, keep: int, spec: FlavorSpec, **_) -> UtteranceRows:
    """§4.10 A-ToMe with attention-weighted pairs."""
    return _atome(x, keep, spec, scores.get(spec.scores["atome_weight"]), "atome-merge-attention")


def atome_merge_attention_dpp(
    x: torch.Tensor, scores: UtteranceScores, keep: int, spec: FlavorSpec, *, threshold: float, **_
) -> UtteranceRows:
    """§4.11: merge the pairs whose cosine is strictly above ``τ`` (at most ``L − T``), then a relevance DPP picks
    ``T`` rows. Qwen2-Audio weights pairs by the head-max diagonal, the others by received attention (quirk 9)."""
    length = x.shape[0]
    pairs = neighbour_cosines(unit_rows(x), step=2)
    merges = min(int((pairs > threshold).sum()), int(length - keep))
    _checked_merge_count(merges, pairs.numel(), "atome-merge-attention-dpp")
    groups = _groups_from_pairs(length, _top_indices(pairs, merges))
    merged = _merged(x, groups, scores.get(spec.scores["atome_dpp_weight"]), copy_singles=True)
    relevance = _group_means(scores.get(spec.scores["atome_dpp_relevance"]), groups)
    chosen, _ = _dpp_over_rows(
        merged, relevance, keep, as_float32="atome-merge-attention-dpp" in spec.float32_similarity
    )
    return chosen


def samp_groups(similarity: torch.Tensor, threshold: float) -> tuple[list[list[int]], dict[int, torch.Tensor]]:
    """§4.12 step 1: contiguous greedy grouping; ``j`` joins when its mean cosine to ALL current members is ``≥ τ``
    (compared in the similarity dtype: bf16 turns 0.85 into 0.8515625, §3.1).

    Also returns each joiner's score recomputed after it was appended, i.e. including its self-similarity, which is
    what Kimi-Audio's release rule sorts (§5.3). A NaN similarity closes the group (NaN ≥ τ is False, quirk 10).
    """
    groups = [[0]]
    join_scores = {}
    for j in range(1, similarity.shape[0]):
        group = groups[-1]
        if similarity[group, j].mean() >= threshold:
            group.append(j)
            join_scores[j] = similarity[group, j].mean()
        else:
            groups.append([j])
    return groups, join_scores


def samp(x: torch.Tensor, scores: UtteranceScores, keep: int, spec: FlavorSpec, *, threshold: float, **_):
    """§4.12 SA-MAP: similarity grouping, attention-weighted merge, relevance DPP over the merged tokens."""
    similarity = cosine_matrix(x, as_float32="samp" in spec.float32_similarity)
    groups, join_scores = samp_groups(similarity, threshold)
    weights = scores.get(spec.scores["samp_weight"])
    relevance_per_token = scores.get(spec.scores["samp_relevance"])
    merged = _merged(x, groups, weights)
    relevance = _group_means(relevance_per_token, groups)

    if spec.samp_prune == "dpp":
        # Qwen2-Audio never checks M ≥ T: with M < T the DPP repeats groups 0 and 1 (quirk 1).
        chosen, _ = _dpp_over_rows(merged, relevance, keep, as_float32=False)
        return chosen
    if spec.samp_prune == "dpp_without_edges":
        # GLM-ASR drops the first and the last group before the DPP (quirk 2); torch.stack of nothing fails.
        if len(groups) <= 2:
            raise ValueError(
                f"samp (glm_asr flavour): only {len(groups)} merged group(s); the reference drops the first and "
                "last group before pruning and fails on an empty stack (quirk 2)"
            )
        inner = _select(merged, list(range(1, len(groups) - 1)))
        chosen, _ = _dpp_over_rows(inner, relevance[1:-1], keep, as_float32=False)
        return chosen
    return _kimi_samp_prune(x, groups, join_scores, merged, relevance, weights, keep, spec.samp_release_copies_singles)


def _kimi_samp_prune(
    x: torch.Tensor,
    groups: list[list[int]],
    join_scores: dict[int, torch.Tensor],
    merged: UtteranceRows,
    relevance: torch.Tensor,
    weights: torch.Tensor,
    keep: int,
    copy_singles: bool,
) -> UtteranceRows:
    """Kimi-Audio's exact-count rule (§5.3): ``M = T`` keeps every group, ``M > T`` runs the float32 DPP (and
    asserts it produced no NaN), ``M < T`` releases the ``T − M`` members with the lowest join scores.

    Release quirks reproduced: the join score includes the member's self-similarity; scores are matched by value,
    so an exact tie with the ``(T − M)``-th smallest score releases extra members (more than ``T`` rows).
    """
    n_groups = len(groups)
    if n_groups == keep:
        return merged
    if n_groups > keep:
        chosen, had_nan = _dpp_over_rows(merged, relevance, keep, as_float32=True)
        if had_nan:
            raise ValueError("samp (kimi_audio flavour): the DPP produced NaN; the reference's assertion fails")
        return chosen
    joiners = sorted(join_scores)
    if len(joiners) < keep - n_groups:
        raise ValueError(f"samp (kimi_audio flavour): cannot release {keep - n_groups} of {len(joiners)} members")
    scores = torch.stack([join_scores[j] for j in joiners])
    released_values = torch.sort(scores).values[: keep - n_groups]
    released = {j for j, hit in zip(joiners, torch.isin(scores, released_values).tolist()) if hit}
    new_groups = []
    for group in groups:
        remaining = [i for i in group if i not in released]
        new_groups.append(remaining)
        new_groups.extend([i] for i in group if i in released)
    new_groups.sort(key=lambda g: g[0])
    return _merged(x, new_groups, weights, copy_singles=copy_singles)


METHODS = {
    "base": base,
    "visionzip": visionzip,
    "vispruner": vispruner,
    "cdpruner": cdpruner,
    "cdpruner-attention": cdpruner_attention,
    "fastadasp": fastadasp,
    "fastadasp-attention": fastadasp_attention,
    "fastadasp-attention-dpp": fastadasp_attention_dpp,
    "atome-merge": atome_merge,
    "atome-merge-attention": atome_merge_attention,
    "atome-merge-attention-dpp": atome_merge_attention_dpp,
    "samp": samp,
}

# Methods that read no attention at all (the others need the full map).
ATTENTION_FREE = frozenset({"base", "cdpruner", "fastadasp", "atome-merge"})
