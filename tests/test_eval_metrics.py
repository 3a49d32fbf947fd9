"""WER/CER scoring: reference parity on the golden corpus cases, samp's failed-item rule, and the bootstrap."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from samp.eval import bootstrap_ci, score_asr
from samp.eval.metrics import ItemEdits, PairedDifference, item_edits, paired_difference

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "eval" / "golden"
CORPUS = json.loads((GOLDEN / "corpus_cases.json").read_text(encoding="utf-8"))["datasets"]
NORMALIZE = [json.loads(line) for line in (GOLDEN / "normalize_cases.jsonl").read_text(encoding="utf-8").splitlines()]


def _reference_subsets(items):
    """Read items as the reference's pandas path does: null subsets skipped, the string 'null' is a failed item,
    a JSON null prediction becomes the text 'None' (pandas 2 ``astype(str)``)."""
    subsets = {}
    for item in items:
        if item["subset"] is None:
            continue
        prediction = item["prediction"]
        prediction = None if prediction == "null" else ("None" if prediction is None else prediction)
        subsets.setdefault(item["subset"], []).append((item["answer"], prediction))
    return subsets


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_evalkit_flavour_reproduces_reported_corpus_wer(case):
    performance = {}
    try:
        for subset, pairs in sorted(_reference_subsets(case["items"]).items()):
            refs, hyps = zip(*pairs)
            score = score_asr(list(refs), list(hyps), case["lang"], flavor="evalkit")
            expected = case["per_subset"][subset]
            assert (score.errors, score.ref_tokens) == (expected["edit_distance_sum"], expected["ref_token_sum"])
            performance[subset] = {"wer": score.wer_percent_evalkit, "total": score.n_items - score.n_failed}
    except ValueError as error:
        assert case["error"] is not None, f"the reference did not fail, but samp raised: {error}"
        return
    assert case["error"] is None, f"the reference fails with {case['error']}"
    assert performance == case["performance"]


@pytest.mark.parametrize("case", NORMALIZE, ids=[c["id"] for c in NORMALIZE])
def test_item_edit_distance_matches_reference(case):
    (edits,) = item_edits([case["ref"]], [case["hyp"]], case["lang"], flavor="evalkit")
    assert edits.errors == case["edit_distance"]
    assert edits.ref_tokens == case["ref_token_count"]


def test_evalkit_crashes_become_clear_errors():
    with pytest.raises(ValueError, match="all 2 items failed"):
        score_asr(["a b", "c"], [None, None], "en", flavor="evalkit")
    with pytest.raises(ValueError, match="empty reference"):
        score_asr(["", "a b"], ["x", "a b"], "en", flavor="evalkit")
    # the same set is scoreable in samp: the empty reference only adds its inserted token
    assert score_asr(["", "a b"], ["x", "a b"], "en").errors == 1


def test_failed_items_count_as_deletions_in_samp_and_are_dropped_in_evalkit():
    refs = ["the cat sat", "on the mat"]
    hyps = ["the cat sat", None]
    samp_score = score_asr(refs, hyps, "en")
    assert (samp_score.errors, samp_score.deletions, samp_score.ref_tokens) == (3, 3, 6)
    assert samp_score.wer == 0.5 and samp_score.n_failed == 1 and samp_score.coverage == 0.5
    evalkit_score = score_asr(refs, hyps, "en", flavor="evalkit")
    assert (evalkit_score.wer, evalkit_score.ref_tokens, evalkit_score.n_failed) == (0.0, 3, 1)


def test_substitutions_deletions_insertions():
    score = score_asr(["a b c d"], ["a x c d e"], "en")
    assert (score.substitutions, score.deletions, score.insertions, score.errors) == (1, 0, 1, 2)
    assert score.wer == 0.5


def test_chinese_is_a_character_error_rate():
    score = score_asr(["今天天气很好"], ["今天天气不好"], "zh")
    assert (score.errors, score.ref_tokens) == (1, 6)


@pytest.mark.parametrize("refs, hyps, match", [
    (["a"], ["a", "b"], "differ in length"),
    ([], [], "no items"),
    (["a"], [3], "hypothesis 0"),
    ([None], ["a"], "reference 0"),
    (["..."], ["x"], "no tokens"),
])
def test_bad_input(refs, hyps, match):
    with pytest.raises(ValueError, match=match):
        score_asr(refs, hyps, "en")


words = st.lists(st.sampled_from(["alpha", "beta", "gamma", "delta"]), max_size=6).map(" ".join)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(words.filter(bool), words), min_size=1, max_size=5))
def test_corpus_wer_is_summed_edits_over_summed_tokens(pairs):
    refs, hyps = map(list, zip(*pairs))
    score = score_asr(refs, hyps, "en")
    edits = item_edits(refs, hyps, "en")
    assert score.errors == score.substitutions + score.deletions + score.insertions == sum(e.errors for e in edits)
    assert score.wer == pytest.approx(score.errors / score.ref_tokens)
    assert score_asr(refs, refs, "en").wer == 0.0


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    errors = rng.integers(0, 4, size=200)
    tokens = rng.integers(5, 15, size=200)
    low, high = bootstrap_ci(errors, tokens, seed=3)
    assert (low, high) == bootstrap_ci(errors, tokens, seed=3)
    assert low < errors.sum() / tokens.sum() < high
    assert bootstrap_ci(errors, tokens, seed=4) != (low, high)
    # accuracy form: 0/1 verdicts
    acc_low, acc_high = bootstrap_ci([1, 0, 1, 1] * 25)
    assert 0.6 < acc_low < 0.75 < acc_high < 0.9


@pytest.mark.parametrize("args, match", [
    (([], None), "at least one"),
    (([1.0, float("nan")], None), "NaN"),
    (([1, 2], [1]), "equally long"),
    (([0, 0], [0, 0]), "zero denominator"),
])
def test_bootstrap_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(*args)


def _edits(errors, tokens):
    return [ItemEdits(int(t), int(e), 0, 0, False) for e, t in zip(errors, tokens)]


def test_paired_difference_is_the_paired_resample_of_both_wers():
    rng = np.random.default_rng(5)
    tokens = rng.integers(3, 40, size=60)
    errors_a = rng.binomial(tokens, 0.1)
    errors_b = rng.binomial(tokens, 0.12)
    result = paired_difference(_edits(errors_a, tokens), _edits(errors_b, tokens), n_resamples=500, seed=7)
    # written out: both methods' WER on the same resampled utterances, then the percentiles of their difference
    picks = np.random.default_rng(7).integers(0, 60, size=(500, 60))
    resampled = (errors_a[picks].sum(1) - errors_b[picks].sum(1)) / tokens[picks].sum(1)
    expected = np.percentile(resampled, [2.5, 97.5])
    torch.testing.assert_close((result.ci_low, result.ci_high), (float(expected[0]), float(expected[1])), rtol=0, atol=1e-12)
    assert result.difference == pytest.approx((errors_a.sum() - errors_b.sum()) / tokens.sum(), abs=1e-15)
    assert (result.wins, result.losses, result.ties) == (
        int((errors_a < errors_b).sum()), int((errors_a > errors_b).sum()), int((errors_a == errors_b).sum()))
    assert result.n_items == 60


def test_pairing_separates_what_overlapping_intervals_cannot():
    # utterances of very different difficulty; B makes one more error than A on every fifth utterance
    rng = np.random.default_rng(2)
    tokens = rng.integers(5, 30, size=100)
    errors_a = rng.binomial(tokens, rng.uniform(0.0, 0.6, size=100))
    errors_b = errors_a + (np.arange(100) % 5 == 0)
    alone_a, alone_b = bootstrap_ci(errors_a, tokens), bootstrap_ci(errors_b, tokens)
    assert alone_a[1] > alone_b[0]  # the unpaired intervals overlap
    paired = paired_difference(_edits(errors_a, tokens), _edits(errors_b, tokens))
    assert paired.ci_high < 0  # the paired one says A is better
    assert (paired.wins, paired.losses, paired.ties) == (20, 0, 80)


def test_paired_difference_of_a_method_with_itself_is_zero():
    edits = _edits([1, 0, 3], [5, 4, 9])
    assert paired_difference(edits, edits) == PairedDifference(0.0, 0.0, 0.0, wins=0, losses=0, ties=3)


@pytest.mark.parametrize("a, b, match", [
    (_edits([1, 2], [5, 5]), _edits([1], [5]), "same items"),
    (_edits([1, 2], [5, 5]), _edits([1, 2], [5, 6]), "different reference lengths"),
    (_edits([0], [0]), _edits([0], [0]), "no tokens"),
])
def test_paired_difference_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        paired_difference(a, b)
