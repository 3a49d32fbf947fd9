"""Corpus-level WER/CER with substitutions, deletions, insertions and coverage, and a seeded bootstrap interval.

WER is Σ edits / Σ reference tokens over the items (never a mean of per-utterance rates). Tokens come from
:func:`samp.eval.normalize.tokenize`, so for Chinese the score is a character error rate.

Failed items (hypothesis ``None``: inference crashed, audio skipped) are handled per flavour:

* ``samp``: counted as deleting every reference token (100 % errors on that item) and reported in ``n_failed``,
  so ``coverage`` drops. A method that fails on hard items cannot look better by failing.
* ``evalkit``: dropped before scoring, as the reference drops ``'null'`` predictions; where the reference crashes
  (no item left, or an empty reference among the first five scored items, which its debug print indexes) a
  ``ValueError`` says so instead. Reading the reference's eval files with pandas (which turns a numeric-looking
  column such as ``007`` into ``7.0``) is not reproduced: samp's result lines are read as JSON strings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import jiwer
import numpy as np

from samp.eval.normalize import check_flavor, tokenize

_EVALKIT_DEBUG_PRINTED_ITEMS = 5


@dataclass(frozen=True)
class ItemEdits:
    """Edit counts of one (reference, hypothesis) pair."""

    ref_tokens: int
    substitutions: int
    deletions: int
    insertions: int
    failed: bool

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions


@dataclass(frozen=True)
class AsrScore:
    """Corpus score of one set of items. ``wer`` is a fraction (0.0523, not 5.23)."""

    wer: float
    errors: int
    ref_tokens: int
    substitutions: int
    deletions: int
    insertions: int
    n_items: int
    n_failed: int

    @property
    def coverage(self) -> float:
        """Fraction of items that produced a hypothesis."""
        return (self.n_items - self.n_failed) / self.n_items if self.n_items else 0.0

    @property
    def wer_percent_evalkit(self) -> float:
        """The value as the reference reports it: ``round(wer * 100, 2)`` (Python's float rounding)."""
        return round(self.wer * 100, 2)


def _check_pairs(refs: Sequence[str], hyps: Sequence[str | None]) -> None:
    if len(refs) != len(hyps):
        raise ValueError(f"refs and hyps differ in length: {len(refs)} references, {len(hyps)} hypotheses")
    for i, ref in enumerate(refs):
        if not isinstance(ref, str):
            raise ValueError(f"reference {i} is {type(ref).__name__}, expected a string")
    for i, hyp in enumerate(hyps):
        if hyp is not None and not isinstance(hyp, str):
            raise ValueError(f"hypothesis {i} is {type(hyp).__name__}, expected a string or None (failed item)")


def item_edits(refs: Sequence[str], hyps: Sequence[str | None], lang: str, flavor: str = "samp") -> list[ItemEdits]:
    """Per-item edit counts (failed items: all reference tokens deleted, ``failed=True``). No flavour-specific
    dropping happens here; :func:`score_asr` applies it."""
    check_flavor(flavor)
    _check_pairs(refs, hyps)
    ref_tokens = [tokenize(ref, lang, flavor) for ref in refs]
    hyp_tokens = [tokenize(hyp, lang, flavor) if hyp is not None else [] for hyp in hyps]
    edits = []
    # jiwer treats each token list as one sentence; tokens never contain spaces, so joining is lossless.
    for ref, hyp, raw_hyp in zip(ref_tokens, hyp_tokens, hyps):
        if not ref:
            edits.append(ItemEdits(0, 0, 0, len(hyp), raw_hyp is None))
            continue
        out = jiwer.process_words(" ".join(ref), " ".join(hyp) if hyp else "")
        edits.append(ItemEdits(len(ref), out.substitutions, out.deletions, out.insertions, raw_hyp is None))
    return edits


def aggregate_edits(edits: Sequence[ItemEdits]) -> AsrScore:
    """Sum per-item counts and divide once."""
    if not edits:
        raise ValueError("no items to score")
    ref_tokens = sum(e.ref_tokens for e in edits)
    substitutions = sum(e.substitutions for e in edits)
    deletions = sum(e.deletions for e in edits)
    insertions = sum(e.insertions for e in edits)
    errors = substitutions + deletions + insertions
    if ref_tokens == 0:
        raise ValueError(f"the references have no tokens after normalisation ({len(edits)} items); WER is undefined")
    return AsrScore(
        wer=errors / ref_tokens, errors=errors, ref_tokens=ref_tokens, substitutions=substitutions,
        deletions=deletions, insertions=insertions, n_items=len(edits), n_failed=sum(e.failed for e in edits),
    )


def score_asr(refs: Sequence[str], hyps: Sequence[str | None], lang: str, flavor: str = "samp") -> AsrScore:
    """Corpus WER/CER of ``hyps`` against ``refs`` in language ``lang`` (``None`` hypothesis = failed item)."""
    return score_edits(item_edits(refs, hyps, lang, flavor), flavor)


def scored_edits(edits: Sequence[ItemEdits], flavor: str = "samp") -> list[ItemEdits]:
    """The items that enter the score: all of them in samp, the non-failed ones in evalkit."""
    check_flavor(flavor)
    return list(edits) if flavor == "samp" else [e for e in edits if not e.failed]


def score_edits(edits: Sequence[ItemEdits], flavor: str = "samp") -> AsrScore:
    """:func:`score_asr` from per-item counts (see the module docstring for the flavours)."""
    if flavor == "samp":
        return aggregate_edits(scored_edits(edits, flavor))
    scored = scored_edits(edits, flavor)
    if not scored:
        raise ValueError(
            f"all {len(edits)} items failed: the reference harness divides 0 by 0 here (ZeroDivisionError)")
    for position, edit in enumerate(scored[:_EVALKIT_DEBUG_PRINTED_ITEMS]):
        if edit.ref_tokens == 0:
            raise ValueError(
                f"scored item {position} has an empty reference after normalisation: the reference harness "
                f"crashes on it (IndexError in its debug print of the first {_EVALKIT_DEBUG_PRINTED_ITEMS} items)")
    score = aggregate_edits(scored)
    # The failed items are dropped, but they are still items of the set: keep them visible as lost coverage.
    return AsrScore(**{**score.__dict__, "n_items": len(edits), "n_failed": len(edits) - len(scored)})


def bootstrap_ci(
    numerators: Sequence[float], denominators: Sequence[float] | None = None, *, n_resamples: int = 1000,
    confidence: float = 0.95, seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of Σ numerators / Σ denominators over items resampled with replacement.

    For corpus WER pass per-item errors and reference token counts; for accuracy pass per-item correctness
    (0/1) and leave ``denominators`` out. Seeded: the same inputs give the same interval.
    """
    num = np.asarray(numerators, dtype=np.float64)
    den = np.ones_like(num) if denominators is None else np.asarray(denominators, dtype=np.float64)
    if num.ndim != 1 or num.shape != den.shape:
        raise ValueError(f"numerators and denominators must be 1-D and equally long, got {num.shape} and {den.shape}")
    if num.size == 0:
        raise ValueError("bootstrap needs at least one item")
    if not np.isfinite(num).all() or not np.isfinite(den).all():
        raise ValueError("bootstrap inputs contain NaN or infinity")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, num.size, size=(n_resamples, num.size))
    totals = den[picks].sum(axis=1)
    # A resample whose references are all empty has no defined rate; it is left out of the percentiles.
    valid = totals > 0
    if not valid.any():
        raise ValueError("every resample has a zero denominator")
    ratios = num[picks].sum(axis=1)[valid] / totals[valid]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedDifference:
    """Method A against method B on the same items: ``difference`` = WER(A) − WER(B) (a fraction; negative means A
    made fewer errors), its paired bootstrap interval, and per item whether A made fewer (``wins``), more
    (``losses``) or as many (``ties``) errors as B."""

    difference: float
    ci_low: float
    ci_high: float
    wins: int
    losses: int
    ties: int

    @property
    def n_items(self) -> int:
        return self.wins + self.losses + self.ties


def paired_difference(edits_a: Sequence[ItemEdits], edits_b: Sequence[ItemEdits], *, n_resamples: int = 1000,
                      confidence: float = 0.95, seed: int = 0) -> PairedDifference:
    """Corpus WER difference of two methods scored on the same items, with a paired bootstrap interval.

    Both methods share each item's reference, so WER(A) − WER(B) = Σ(errors_A − errors_B) / Σ ref_tokens, and
    resampling items (the same picks for both methods) is :func:`bootstrap_ci` of the per-item error differences:
    what varies between utterances (hard clips, long references) cancels, unlike comparing two separate intervals.
    """
    if len(edits_a) != len(edits_b):
        raise ValueError(f"paired comparison needs the same items: {len(edits_a)} against {len(edits_b)}")
    mismatched = [i for i, (a, b) in enumerate(zip(edits_a, edits_b)) if a.ref_tokens != b.ref_tokens]
    if mismatched:
        raise ValueError(f"items {mismatched[:5]} have different reference lengths under the two methods: "
                         f"not the same references, so not a paired comparison")
    differences = [a.errors - b.errors for a, b in zip(edits_a, edits_b)]
    ref_tokens = [a.ref_tokens for a in edits_a]
    if sum(ref_tokens) == 0:
        raise ValueError("the references have no tokens; a WER difference is undefined")
    low, high = bootstrap_ci(differences, ref_tokens, n_resamples=n_resamples, confidence=confidence, seed=seed)
    return PairedDifference(
        difference=sum(differences) / sum(ref_tokens), ci_low=low, ci_high=high,
        wins=sum(d < 0 for d in differences), losses=sum(d > 0 for d in differences),
        ties=sum(d == 0 for d in differences),
    )
