"""The one method registry: names, what each needs, and the clean implementation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from samp.methods import baselines
from samp.methods.batch import Batch, Plan
from samp.methods.dart import dart, dart_attention
from samp.methods.divprune import divprune
from samp.methods.samp_method import samp


# Where a method prunes: on the projected audio tokens, through samp.compress, or inside the LLM before decoder
# layer K, through hooks during adapter.generate (samp.models.llm_pruning).
KINDS = ("post-projector", "in-llm")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    summary: str
    needs_attention: bool
    needs_keys: bool
    plan: Optional[Callable[[Batch], Plan]]  # None for in-LLM methods
    kind: str = "post-projector"


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
    MethodSpec("fastv", "inside the LLM before layer K=2: the audio tokens the last prompt token attends to most",
               False, False, None, kind="in-llm"),
    MethodSpec("dart-llm", "inside the LLM before layer K=2: key-norm pivots (audio and text) keep the tokens least "
               "similar to them", False, False, None, kind="in-llm"),
)
_BY_NAME = {spec.name: spec for spec in _METHODS}


def available(kind: str | None = None) -> tuple[MethodSpec, ...]:
    """Every method (of ``kind``, one of :data:`KINDS`, when given), with what it needs (``needs_attention``,
    ``needs_keys``) and where it prunes (``kind``)."""
    if kind is None:
        return _METHODS
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; available: {', '.join(KINDS)}")
    return tuple(spec for spec in _METHODS if spec.kind == kind)


def get(name: str) -> MethodSpec:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(_BY_NAME)}") from None
