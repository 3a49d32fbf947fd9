"""The seed's evaluation datasets: language, task, subsets, question and the prompt each model family gets.

Names and subsets follow Kimi-Audio-Evalkit (its manifests work unchanged). ``get_dataset("LibriSpeech")``;
``DATASETS`` lists them all; ``task_prompt(spec, family, question)`` gives the text a model family is prompted
with, as the reference harness prompts it (SA-MAP §8.3).
"""
from __future__ import annotations

from dataclasses import dataclass

ASR_QUESTIONS = {
    "en_librispeech": "Please transcribe the spoken content into written text.",
    "en_fleurs": "Please transcribe this audio.",
    "zh_fleurs": "请将这段语音转写成文字。",
    "zh_mandarin": "请把这段语音转录成文本。",
}
_MCQ_TAIL = "\n.Answer with the option's letter from the given choices directly and only give the best option."


def _options_question(stem: str, labels: tuple[str, ...], option_texts: tuple[str, ...] | None = None) -> str:
    texts = option_texts or labels
    lines = "".join(f"({chr(ord('A') + i)}) {text}\n" for i, text in enumerate(texts))
    return f"{stem}\nOptions:\n{lines}".rstrip("\n") + _MCQ_TAIL


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset. ``task`` is ``"asr"`` (scored by WER/CER) or ``"mqa"`` (accuracy); ``lang`` picks the text
    normaliser for ASR; ``labels`` is the fixed answer set of a classification dataset (MQA only)."""

    name: str
    task: str
    series: str
    subsets: tuple[str, ...]
    audio_type: str
    lang: str | None = None
    question: str = ""
    labels: tuple[str, ...] = ()
    reference_prompts: bool = True  # False for a manifest outside the registry: its own question is the prompt

    @property
    def metric(self) -> str:
        return "wer" if self.task == "asr" else "accuracy"


_MELD_LABELS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")
_NONSPEECH_LABELS = ("Breath", "Cough", "Cry", "Laugh", "Scream", "Sneeze", "Yawn")
_VOCALSOUND_LABELS = ("Laughter", "Sigh", "Cough", "Throat clearing", "Sneeze", "Sniff")
_TUT_LABELS = ("beach", "bus", "cafe/restaurant", "car", "city_center", "forest_path", "grocery_store", "home",
               "library", "metro_station", "office", "park", "residential_area", "train", "tram")
_TUT_OPTIONS = tuple(label.replace("/", " or ").replace("_", " ") for label in _TUT_LABELS)

DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec("LibriSpeech", "asr", "LibriSpeech", ("dev_clean", "dev_other", "test_clean", "test_other"),
                "Speech", "en", ASR_QUESTIONS["en_librispeech"]),
    DatasetSpec("Fleurs-en", "asr", "Fleurs", ("fleurs_en_us",), "Speech", "en", ASR_QUESTIONS["en_fleurs"]),
    DatasetSpec("Fleurs-zh", "asr", "Fleurs", ("fleurs_cmn_hans_cn",), "Speech", "zh", ASR_QUESTIONS["zh_fleurs"]),
    DatasetSpec("AISHELL-1", "asr", "AISHELL", ("aishell1_test",), "Speech", "zh", ASR_QUESTIONS["zh_mandarin"]),
    DatasetSpec("AISHELL-2", "asr", "AISHELL", ("aishell2_test",), "Speech", "zh", ASR_QUESTIONS["zh_mandarin"]),
    DatasetSpec("WenetSpeech", "asr", "WenetSpeech", ("test_meeting", "test_net"), "Speech", "zh",
                ASR_QUESTIONS["zh_mandarin"]),
    # recorded speech shipped in Debian packages (samp.eval.packaged_speech); the question is the LibriSpeech one
    DatasetSpec("PocketSphinx-en", "asr", "PocketSphinx", ("cards", "goforward", "librivox"), "Speech", "en",
                ASR_QUESTIONS["en_librispeech"]),
    DatasetSpec("Asterisk-en", "asr", "Asterisk", ("dictate", "digits", "followme", "letters", "phonetic", "prompts"),
                "Speech", "en", ASR_QUESTIONS["en_librispeech"]),
    DatasetSpec("mmau-test-mini", "mqa", "MMAU", ("music", "sound", "speech"), "AudioEvent"),
    DatasetSpec("MELD", "mqa", "MELD", ("emotion",), "Speech",
                question=_options_question("Identify the predominant emotion in this speech.", _MELD_LABELS),
                labels=_MELD_LABELS),
    DatasetSpec("Nonspeech7k", "mqa", "Nonspeech7k", ("https://freesound.org/",), "AudioEvent",
                question=_options_question("Identify the human vocal sound in the audio.", _NONSPEECH_LABELS),
                labels=_NONSPEECH_LABELS),
    DatasetSpec("TUT2017", "mqa", "TUT2017", ("acoustic_scene_classification",), "AudioEvent",
                question=_options_question("Identify the acoustic scene in the audio.", _TUT_LABELS, _TUT_OPTIONS),
                labels=_TUT_LABELS),
    DatasetSpec("VocalSound", "mqa", "VocalSound", ("voice_classification",), "AudioEvent",
                question=_options_question("Identify the human vocal sound in the audio.", _VOCALSOUND_LABELS),
                labels=_VOCALSOUND_LABELS),
)
_BY_NAME = {spec.name.lower(): spec for spec in DATASETS}


def dataset_names() -> list[str]:
    return [spec.name for spec in DATASETS]


def get_dataset(name: str) -> DatasetSpec:
    """The registered dataset called ``name`` (case-insensitive)."""
    spec = _BY_NAME.get(str(name).lower())
    if spec is None:
        raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(dataset_names())}")
    return spec


def custom_dataset(name: str, task: str, lang: str | None) -> DatasetSpec:
    """A dataset outside the registry (a manifest given by path)."""
    if task not in ("asr", "mqa"):
        raise ValueError(f"task must be 'asr' or 'mqa', got {task!r}")
    if task == "asr" and not lang:
        raise ValueError(f"ASR dataset {name!r} needs a language (e.g. 'en', 'zh') to pick its normaliser")
    return DatasetSpec(name=name, task=task, series=name, subsets=(), audio_type="Speech", lang=lang,
                       reference_prompts=False)


def task_prompt(spec: DatasetSpec, family: str, question: str) -> str:
    """The instruction text (without the audio placeholder) that ``family`` gets for an item with ``question``.

    ``qwen2_audio`` reproduces the reference's Qwen2-Audio-7B (base) prompts; ``glm_asr`` its fixed transcription
    prompt; every other family is asked the manifest question itself (the reference's Kimi-Audio behaviour), or
    the dataset's default question when the row has none. A dataset outside the registry is always prompted with
    its rows' questions.
    """
    question = question or spec.question
    if not spec.reference_prompts:
        if not question:
            raise ValueError(f"dataset {spec.name!r} is not registered and its row has no question to prompt with")
        return question
    if family == "qwen2_audio":
        if spec.task == "asr":
            return f"Detect the language and recognize the speech: <|{spec.lang}|>"
        if spec.name == "MELD":
            return "Recognize the emotion with keywords in English:"
        if spec.audio_type == "AudioEvent":
            return f"Listen to the given audio carefully and answer this question: {question} Your answer is:"
        return f"{question} The answer is:"
    if family == "glm_asr":
        return "Please transcribe this audio into text"
    return question
