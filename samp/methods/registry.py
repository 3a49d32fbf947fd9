"""The one method registry: names, what each needs, and the clean implementation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from samp.methods import baselines
from samp.methods.batch import Batch, Plan
from samp.methods.dart import dart, dart_attention
from samp.methods.divprune import divprune
from samp.methods.samp_method import samp


@dataclass(frozen=True)
class MethodSpec:
    name: str
    summary: str
    needs_attention: bool
    needs_keys: bool
    plan: Callable[[Batch], Plan]


_METHODS = (
    MethodSpec("samp", "merge similar adjacent runs (attention-weighted), then DPP-prune with an attention kernel",
               True, False, samp),
    MethodSpec("base", "no compression (keep_ratio must be 1)", False, False, baselines.base),
    MethodSpec("uniform", "evenly spaced contiguous segments, each averaged", False, False, baselines.uniform),
    MethodSpec("random", "tokens drawn uniformly without replacement (seeded)", False, False, baselines.random),
    MethodSpec("visionzip", "dominant tokens by attention + contextual tokens merged by key similarity",
               True, True, baselines.visionzip),
    MethodSpec("vispruner", "half by attention, half by iterative de-duplication", True, False,
               baselines.vispruner),
    MethodSpec("cdpruner", "greedy DPP on cosine similarity", False, False, baselines.cdpruner),
    MethodSpec("cdpruner-attention", "greedy DPP, kernel weighted by self-attention", True, False,
               baselines.cdpruner_attention),
    MethodSpec("fastadasp", "merge the most similar adjacent pairs (mean)", False, False, baselines.fastadasp),
    MethodSpec("fastadasp-attention", "merge the most similar adjacent pairs (attention-weighted)", True, False,
               baselines.fastadasp_attention),
    MethodSpec("fastadasp-attention-dpp", "adjacent merges above the threshold, then DPP pruning", True, False,
               baselines.fastadasp_attention_dpp),
    MethodSpec("atome-merge", "merge the most similar disjoint pairs (mean)", False, False, baselines.atome_merge),
    MethodSpec("atome-merge-attention", "merge the most similar disjoint pairs (attention-weighted)", True, False,
               baselines.atome_merge_attention),
    MethodSpec("atome-merge-attention-dpp", "disjoint-pair merges above the threshold, then DPP pruning", True,
               False, baselines.atome_merge_attention_dpp),
    MethodSpec("divprune", "greedy max-min cosine diversity (the most isolated token first)", False, False,
               divprune),
    MethodSpec("dart", "pivots by L1 norm, each keeps the tokens least similar to it", False, False, dart),
    MethodSpec("dart-attention", "pivots by received attention, each keeps the tokens least similar to it", True,
               False, dart_attention),
)
_BY_NAME = {spec.name: spec for spec in _METHODS}


def available() -> tuple[MethodSpec, ...]:
    """Every method, with what it needs (``needs_attention``, ``needs_keys``)."""
    return _METHODS


def get(name: str) -> MethodSpec:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(_BY_NAME)}") from None
