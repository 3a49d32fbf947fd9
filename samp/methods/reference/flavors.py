"""What differs between the three reference models, as data (reference-algorithms.md §1.1, §5, quirks 2, 6, 9, 16).

Every method is written once (``methods.py``); a :class:`FlavorSpec` tells it which attention score plays which
role, whether similarities are cast to float32, and how SA-MAP and A-ToMe end.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FlavorSpec:
    """One reference model's variant of every method.

    trimmed_attention: Kimi-Audio cuts the attention to the valid frames before every reduction (§1).
    scores: role (which method uses the score for what) → :class:`~samp.methods.reference.scores.UtteranceScores`
        attribute (table §1.1).
    float32_similarity: methods whose cosine matrix is cast to float32 (Kimi-Audio, quirk 16); the others compute
        it in the feature dtype.
    samp_prune: how SA-MAP turns ``M`` groups into ``T`` tokens: ``"dpp"`` (Qwen2-Audio: DPP even when
        ``M < T``, quirk 1), ``"dpp_without_edges"`` (GLM-ASR drops the first and last group, quirk 2) or
        ``"dpp_or_release"`` (Kimi-Audio's exact-count rule, §5.3).
    samp_release_copies_singles: Kimi-Audio's release path (``M < T``) rebuilds the sequence by writing re-merged
        groups over it, so single tokens keep their input features; elsewhere single groups go through the weighted
        mean like any group (which can move them by an ulp).
    atome_overflow: what happens when A-ToMe returns more than ``T`` rows (quirk 6): ``"keep"`` (the model
        returns them all and the LLM plumbing truncates), ``"cut_tail"`` or ``"second_round"`` (Kimi-Audio).
    """

    name: str
    trimmed_attention: bool
    scores: dict[str, str]
    float32_similarity: frozenset[str] = frozenset()
    samp_prune: str = "dpp"
    samp_release_copies_singles: bool = False
    atome_overflow: dict[str, str] = field(default_factory=dict)


_QWEN_SCORES = {
    "visionzip_dominant": "visionzip_frame_colsum",
    "vispruner_importance": "colmean_all_max",
    "cdpruner_relevance": "diag_max",
    "fastadasp_weight": "colmean_valid_max",
    "fastadasp_dpp_relevance": "diag_max",
    "atome_weight": "colmean_valid_max",
    "atome_dpp_weight": "diag_max",
    "atome_dpp_relevance": "diag_mean",
    "samp_weight": "colmean_valid_max",
    "samp_relevance": "diag_mean",
}

QWEN2_AUDIO = FlavorSpec(name="qwen2_audio", trimmed_attention=False, scores=_QWEN_SCORES)

GLM_ASR = FlavorSpec(
    name="glm_asr",
    trimmed_attention=False,
    scores={
        **_QWEN_SCORES,
        "visionzip_dominant": "colmean_all_max",
        "fastadasp_dpp_relevance": "diag_mean",
        "atome_dpp_weight": "colmean_valid_max",
    },
    samp_prune="dpp_without_edges",
)

KIMI_AUDIO = FlavorSpec(
    name="kimi_audio",
    trimmed_attention=True,
    scores={
        **_QWEN_SCORES,
        # With trimmed attention colmean_all and colmean_valid coincide (L valid rows, divided by L).
        "visionzip_dominant": "colmean_valid_max",
        "vispruner_importance": "colmean_valid_max",
        "atome_dpp_weight": "colmean_valid_max",
        "atome_dpp_relevance": "diag_max",
        "samp_relevance": "diag_max",
    },
    # atome-merge-attention-dpp's merged-token similarity stays in the feature dtype (bf16 on Kimi, quirk 16).
    float32_similarity=frozenset({"cdpruner", "cdpruner-attention", "samp", "fastadasp-attention-dpp"}),
    samp_prune="dpp_or_release",
    samp_release_copies_singles=True,
    atome_overflow={"atome-merge": "cut_tail", "atome-merge-attention": "second_round"},
)

SPECS = {spec.name: spec for spec in (QWEN2_AUDIO, GLM_ASR, KIMI_AUDIO)}
