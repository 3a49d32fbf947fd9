"""Multiple-choice (MQA) scoring by deterministic string matching: no LLM judge, no random fallback.

The options are read from the prompt the model saw (``(A) text`` items, up to ``Your answer is:``); the gold
answer is the option *text* stored in the manifest.

``flavor="evalkit"`` reproduces SA-MAP's string-match scorer verdict for verdict on the golden cases: the
response is lower-cased and searched for answer templates (``the answer is b``, `` b.``, ``(b)`` ...) by bare
substring, first template and first option letter winning; MELD alone also accepts the gold text as a
case-sensitive substring of the response. Where the reference raises (the gold answer is not an option text,
e.g. TUT2017's ``cafe/restaurant`` against the option ``cafe or restaurant``), a ``ValueError`` says so.

``flavor="samp"`` (default) is one scorer for every dataset and model, and differs on purpose:

* letters are read only where they stand alone (``B``, ``(B)``, ``B.``/``B)``/``B:`` at the start, ``answer is
  B``, a capital ``B.`` at the end of a clause), so ``the answer is absolutely D`` reads D, not A, and ``the
  answer is option B`` reads B, not O;
* a response naming exactly one option's text as whole words (``Car horn``, ``It was recorded at a beach.``)
  selects that option, for every dataset (not only MELD, and not by substring: ``joyful`` is not ``joy``);
* a response that names two different options (``A or B``) is wrong rather than resolved by template order;
* gold labels are matched to option texts loosely (case, ``_`` and ``/``: ``residential_area`` ->
  ``residential area``, ``cafe/restaurant`` -> ``cafe or restaurant``), so TUT2017 scores instead of crashing;
* a prompt without options (Qwen2-Audio's MELD prompt) is scored against the dataset's label set from the
  registry, by option text only (no letters were shown);
* a failed item (prediction ``None``) is wrong and is reported as lost coverage.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from samp.eval.normalize import check_flavor

_ANSWER_CUE = "Your answer is:"
_OPTION = re.compile(r"\(([A-Z])\)\s*(.*?)(?=\s*\([A-Z]\)|\n|$)")


def parse_options(prompt: str) -> dict[str, list[str]]:
    """``{option text lower-cased: [letters lower-cased]}`` from ``(A) text`` items of ``prompt`` (the part
    before ``Your answer is:``), in option order. Repeated texts keep every letter."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
    options: dict[str, list[str]] = {}
    for letter, text in _OPTION.findall(prompt.split(_ANSWER_CUE)[0]):
        options.setdefault(text.strip().lower(), []).append(letter.lower())
    return options


# --- evalkit flavour -------------------------------------------------------------------------------------------
# Answer templates in the reference's order of precedence ("{}" = a lower-case option letter). The reference
# lists 163; these are the ones that can fire on plain-text answers (its Markdown- and LaTeX-specific templates are
# left out), in the same relative order.
_EVALKIT_TEMPLATES = (
    "答案是{}", "答案是 {}", "答案是选项{}", "答案应该是{}", "答案应该是 {}", "答案就是选项{}", "答案选{}", "{}是正确",
    "选项{}是最合适的", "answer is: **{}", "answer is **{}", "the answer is '{}'", "{} is the best answer",
    "the answer is {}", "the correct answer is {}", "would select {}", "would choose {}", "would select option {}",
    "would choose option {}", 'is "{}"', 'is "{}.', 'is typically "{})', "is: \n\n{})", "would be {}",
    "would be option {}", "would be ({})", "would be option ({})", "is {},", "is typically {},", "is typically {}.",
    "i'd say {}.", "option {}.", "option {}:", "option {},", "is {}:", "is {}.", "is: {}.", "is ({})", ":\n{}.",
    ":\n{})", ":\n{},", ": \n{}.", ":  \n{}.", ":\n\n{}.", ":\n\n{})", ":\n\n{},", ": \n\n{}.", "is option {},",
    "({}) would be", "is ({}).", "is {})", "is: {})", "is:\n\n{}:", "(option {})", "answer is ({})",
    'select option "{}"', "is: {}", "is likely '{}'", "is option '{}'", "would be '{}'", "question is {} (",
    "the answer to the question is '{}'", "known as '{}'", "is '{}')", "be: \n\n{})", 'is likely "{})', 'is "{})',
    "is:  \n{})", " {}.", " {},", " {}:", " {})", "**{}.", "**{})", '"{}.', '"{},', '"{}:', "({})", '"{}"',
)
_EVALKIT_PHRASES = (("would be a.", "A"), ('would be "a.', "A"))


def extract_choice_evalkit(response: str, choices: Sequence[str]) -> str:
    """The reference's letter extraction: an upper-case letter, or the lower-cased response if nothing fired."""
    response = response.lower()
    if response[:3] in ("<1>", "<2>", "<3>"):
        response = response[3:].strip()
    for template in _EVALKIT_TEMPLATES:
        for choice in choices:
            if template.format(choice) in response:
                return choice.upper()
    for choice in choices:
        if response.strip() == choice or any(response.startswith(choice + p) for p in ".,:)"):
            return choice.upper()
    for phrase, letter in _EVALKIT_PHRASES:
        if phrase in response:
            return letter
    return response


def _score_evalkit(prompt: str, prediction: str | None, answer: str, dataset: str) -> bool:
    # The reference reads predictions with pandas and str(); a skipped item was written as 'null'.
    prediction = "null" if prediction is None else str(prediction)
    options = parse_options(prompt)
    key = str(answer).strip().lower()
    if key not in options:
        raise ValueError(
            f"gold answer {answer!r} is not one of the prompt's options {sorted(options)}: the reference scorer "
            f"raises KeyError here and aborts the whole dataset")
    choices = [letter for letters in options.values() for letter in letters]
    extracted = extract_choice_evalkit(prediction, choices)
    if extracted.lower() in options[key]:
        return True
    return dataset == "MELD" and str(answer) in prediction


# --- samp flavour ----------------------------------------------------------------------------------------------
def _label_key(text: str) -> str:
    text = text.strip().lower().replace("_", " ").replace("/", " or ")
    return " ".join(text.split())


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"[^\W_]+", text.lower())) + " "


_WHOLE_LETTER = re.compile(r"^\W*\(?([A-Za-z])\)?\W*$")
_LEADING_LETTER = re.compile(r"^\s*\(?([A-Za-z])[.):,](?:\s|$)")
_CUED_LETTER = re.compile(r"(?:answer|option|choice)(?:\s+is)?\s*[:\s]\s*\(?([A-Z])\b(?![\w'])")
# a lower-case letter after a cue only where nothing follows it ("the answer is c."), not "the answer is a cough"
_CUED_FINAL_LETTER = re.compile(r"(?:answer|option|choice)(?:\s+is)?\s*[:\s]\s*\(?([a-z])\)?[.,;!]?\s*$", re.I)
_BRACKETED_LETTER = re.compile(r"\(([A-Z])\)")
_CLAUSE_END_LETTER = re.compile(r"(?<![\w'])([A-Z])(?:[.,;!](?:\s|$)|$)")
_ALTERNATIVE_LETTERS = re.compile(r"(?<![\w'])\(?([A-Z])\)?\s+(?:or|and)\s+\(?([A-Z])\b")


def _letters_named(response: str, letters: set[str]) -> set[str]:
    whole = _WHOLE_LETTER.match(response)
    if whole:
        return {whole.group(1).lower()} & letters
    found = set()
    leading = _LEADING_LETTER.match(response)
    if leading:
        found.add(leading.group(1).lower())
    for pattern in (_CUED_LETTER, _CUED_FINAL_LETTER, _BRACKETED_LETTER, _CLAUSE_END_LETTER):
        found.update(m.lower() for m in pattern.findall(response))
    for first, second in _ALTERNATIVE_LETTERS.findall(response):  # "B or C" names two options
        found.update((first.lower(), second.lower()))
    return found & letters


def choose_option_samp(response: str, options: dict[str, list[str]], *, read_letters: bool = True) -> str | None:
    """The option key ``response`` selects, or ``None`` when it names none or several. With ``read_letters=False``
    (the model was shown no lettered options) only option texts count."""
    letter_to_option = {letter: text for text, letters in options.items() for letter in letters}
    named = set()
    if read_letters:
        named = {letter_to_option[letter] for letter in _letters_named(response, set(letter_to_option))}
    if not named:
        words = _words(response)
        named = {text for text in options if _words(text).strip() and _words(text) in words}
        # "throat clearing" also contains an option "clearing": the longer, more specific text wins.
        named = {t for t in named if not any(t != u and _words(t) in _words(u) for u in named)}
    return named.pop() if len(named) == 1 else None


def _score_samp(prompt: str, prediction: str | None, answer: str, dataset: str) -> bool:
    if prediction is None:
        return False
    options = parse_options(prompt)
    shown = bool(options)
    if not shown:
        from samp.eval.datasets import get_dataset

        labels = get_dataset(dataset).labels
        if not labels:
            raise ValueError(f"the prompt lists no '(A) text' options and dataset {dataset!r} has no label set")
        options = {label.lower(): [chr(ord("a") + i)] for i, label in enumerate(labels)}
    gold = [text for text in options if _label_key(text) == _label_key(str(answer))]
    if not gold:
        raise ValueError(f"gold answer {answer!r} matches none of the options {sorted(options)}")
    return choose_option_samp(prediction, options, read_letters=shown) in gold


def score_mqa(prompt: str, prediction: str | None, answer: str, dataset: str, flavor: str = "samp") -> bool:
    """Whether ``prediction`` picks the option whose text is ``answer`` among the options listed in ``prompt``."""
    check_flavor(flavor)
    if prediction is not None and not isinstance(prediction, str):
        raise ValueError(f"prediction must be a string or None, got {type(prediction).__name__}")
    if flavor == "evalkit":
        return _score_evalkit(prompt, prediction, answer, dataset)
    return _score_samp(prompt, prediction, answer, dataset)


@dataclass(frozen=True)
class MqaScore:
    """Accuracy of one set of items (a fraction). Failed items count as wrong and lower ``coverage``."""

    accuracy: float
    correct: int
    total: int
    n_failed: int

    @property
    def n_items(self) -> int:
        return self.total

    @property
    def coverage(self) -> float:
        return (self.total - self.n_failed) / self.total if self.total else 0.0

    @property
    def accuracy_percent_evalkit(self) -> float:
        return round(self.accuracy * 100, 2)


def score_mqa_items(
    prompts: Sequence[str], predictions: Sequence[str | None], answers: Sequence[str], dataset: str,
    flavor: str = "samp",
) -> tuple[MqaScore, list[bool]]:
    """Aggregate accuracy and the per-item verdicts (for a bootstrap interval)."""
    if not len(prompts) == len(predictions) == len(answers):
        raise ValueError(
            f"prompts, predictions and answers differ in length: {len(prompts)}, {len(predictions)}, {len(answers)}")
    if not prompts:
        raise ValueError("no items to score")
    verdicts = []
    for i, (prompt, prediction, answer) in enumerate(zip(prompts, predictions, answers)):
        try:
            verdicts.append(score_mqa(prompt, prediction, answer, dataset, flavor))
        except ValueError as error:
            raise ValueError(f"item {i}: {error}") from error
    correct = sum(verdicts)
    score = MqaScore(accuracy=correct / len(verdicts), correct=correct, total=len(verdicts),
                     n_failed=sum(p is None for p in predictions))
    return score, verdicts
