"""MQA scoring: verdict-for-verdict parity with SA-MAP's string-match scorer (evalkit flavour) and samp's fixes."""
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samp.eval import get_dataset, parse_options, score_mqa, score_mqa_items
from samp.eval.mqa import extract_choice_evalkit

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "eval" / "golden"
CASES = [json.loads(line) for line in (GOLDEN / "mqa_cases.jsonl").read_text(encoding="utf-8").splitlines()]
MMAU = "What is the primary sound source in the audio?\n(A) Dog barking (B) Car horn (C) Rain (D) Thunder"
TUT = get_dataset("TUT2017").question
MELD_QWEN = "<|audio_bos|><|AUDIO|><|audio_eos|>Recognize the emotion with keywords in English:"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_evalkit_flavour_reproduces_reference_verdicts(case):
    assert parse_options(case["real_prompt"]) == case["parsed_options"]
    assert extract_choice_evalkit(case["prediction"], case["choices"]) == case["extracted"]
    if case["error"] is not None:
        with pytest.raises(ValueError, match="not one of the prompt's options"):
            score_mqa(case["real_prompt"], case["prediction"], case["answer"], case["dataset"], flavor="evalkit")
    else:
        verdict = score_mqa(case["real_prompt"], case["prediction"], case["answer"], case["dataset"], flavor="evalkit")
        assert verdict == case["correct"]


def test_registry_questions_are_the_reference_questions():
    for case in CASES:
        if case["dataset"] != "mmau-test-mini":
            assert get_dataset(case["dataset"]).question == case["question"]


@pytest.mark.parametrize("prediction, answer, samp_verdict, evalkit_verdict", [
    ("The answer is absolutely D", "Thunder", True, False),   # evalkit reads "the answer is a(bsolutely)"
    ("Car horn", "Car horn", True, False),                     # option text is an answer for every dataset
    ("It sounds like a car horn.", "Car horn", True, False),
    ("A or B", "Dog barking", False, False),                   # two options named: wrong, not "first template wins"
    ("It is either B or C.", "Rain", False, True),
    ("(B)", "Car horn", True, True),
    ("b", "Car horn", True, True),
    ("B) Car horn", "Car horn", True, True),
])
def test_samp_flavour_differences(prediction, answer, samp_verdict, evalkit_verdict):
    assert score_mqa(MMAU, prediction, answer, "mmau-test-mini") is samp_verdict
    assert score_mqa(MMAU, prediction, answer, "mmau-test-mini", flavor="evalkit") is evalkit_verdict


def test_samp_flavour_maps_tut2017_labels_and_meld_without_options():
    assert score_mqa(TUT, "C", "cafe/restaurant", "TUT2017")
    assert score_mqa(TUT, "The answer is M.", "residential_area", "TUT2017")
    with pytest.raises(ValueError, match="KeyError"):
        score_mqa(TUT, "C", "cafe/restaurant", "TUT2017", flavor="evalkit")
    # Qwen2-Audio's MELD prompt lists no options: the dataset's labels are used, whole words only
    assert score_mqa(MELD_QWEN, "joy", "joy", "MELD")
    assert not score_mqa(MELD_QWEN, "joyful", "joy", "MELD")
    assert not score_mqa(MELD_QWEN, "B", "joy", "MELD")  # no letters were shown, so none is read


def test_meld_substring_fallback_is_evalkit_only():
    meld = get_dataset("MELD").question
    assert score_mqa(meld, "The speaker sounds joyful.", "joy", "MELD", flavor="evalkit")
    assert not score_mqa(meld, "The speaker sounds joyful.", "joy", "MELD")


def test_failed_items_are_wrong_and_lower_coverage():
    score, verdicts = score_mqa_items([MMAU] * 3, ["B", None, "A"], ["Car horn"] * 3, "mmau-test-mini")
    assert verdicts == [True, False, False]
    assert (score.correct, score.total, score.n_failed) == (1, 3, 1)
    assert score.accuracy == pytest.approx(1 / 3) and score.coverage == pytest.approx(2 / 3)


def test_bad_input():
    with pytest.raises(ValueError, match="matches none of the options"):
        score_mqa(MMAU, "B", "Trumpet", "mmau-test-mini")
    with pytest.raises(ValueError, match="no label set"):
        score_mqa("Describe the audio.", "B", "x", "mmau-test-mini")
    with pytest.raises(ValueError, match="unknown flavor"):
        score_mqa(MMAU, "B", "Car horn", "mmau-test-mini", flavor="gpt")
    with pytest.raises(ValueError, match="item 1"):
        score_mqa_items([MMAU, MMAU], ["B", "B"], ["Car horn", "Trumpet"], "mmau-test-mini")


LABELS = ["Dog barking", "Car horn", "Rain", "Thunder", "Siren", "Bird song"]


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 6), st.data())
def test_samp_reads_every_common_answer_form(n_options, data):
    texts = LABELS[:n_options]
    prompt = "Which sound is it?\n" + " ".join(f"({chr(65 + i)}) {t}" for i, t in enumerate(texts))
    gold = data.draw(st.integers(0, n_options - 1))
    other = data.draw(st.integers(0, n_options - 1).filter(lambda i: i != gold))
    form = data.draw(st.sampled_from(["{L}", "({L})", "{L}.", "{l}", "{L}) {T}", "The answer is {L}.",
                                      "Answer: ({L})", "the answer is {l}.", "I would choose {L}.", "{T}",
                                      "It sounds like {t}."]))
    say = lambda i: form.format(L=chr(65 + i), l=chr(97 + i), T=texts[i], t=texts[i].lower())  # noqa: E731
    assert score_mqa(prompt, say(gold), texts[gold], "mmau-test-mini")
    assert not score_mqa(prompt, say(other), texts[gold], "mmau-test-mini")
