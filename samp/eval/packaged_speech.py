"""Recorded English speech with transcripts from Debian packages: what to take, what to leave out, and the split.

Two datasets, each read from an install root (``/`` after ``apt-get install``, or a folder the ``.deb`` files were
unpacked into with ``dpkg-deb -x``):

* ``PocketSphinx-en`` (``pocketsphinx-testdata``): subsets ``librivox`` (5 utterances of a LibriVox reading of
  *Sense and Sensibility*), ``cards`` (5 playing-card phrases) and ``goforward`` (1 command; its text is the first
  rule of ``goforward.gram``, its audio headerless 16 kHz s16le). All 16 kHz.
* ``Asterisk-en`` (``asterisk-core-sounds-en-wav`` + ``asterisk-core-sounds-en``): the studio-recorded telephone
  prompts of one speaker, 8 kHz WAV, transcripts in ``core-sounds-en.txt.gz`` (``key: text``, the key being the path
  under the voice folder without ``.wav``). Subsets by folder: ``prompts`` (top level), ``digits``, ``letters``,
  ``phonetic``, ``dictate``, ``followme``.

What is left out (and reported in the summary with its reason): ``silence/``; prompts whose transcript is only a
non-speech annotation (``[ascending tones]``, ``<beep ascending>``, ``[sound of monkeys screaming]``); clips longer
than 30 s (Whisper's window; samp does no long-form decoding); transcript lines without an audio file (the package
has one: ``pls-try-call-later``) and audio files without a transcript line.

What is changed in a reference (the text as shipped stays in ``meta.transcript_as_shipped``): annotations inside a
spoken prompt are removed (``at [@]`` -> ``at``, ``IAX (note: does not say "2")`` -> ``IAX``, the trailing
``(simple tone sound plays)``), and seven misspellings are corrected (:data:`REFERENCE_TYPOS`), so that a correct
transcript is not scored as an error. The LibriVox line keeps the reader's disfluency ("married a more a amiable
woman"): the reference says what was spoken; a model that drops the repeated "a" gets one deletion, and because
every method is scored on the same reference it cancels out of paired method comparisons.

Split (deterministic, independent of which other files exist): an Asterisk prompt goes to ``calibration`` when the
first 64 bits of sha256 of its transcript's words (lower case, letters and digits only) are divisible by 3, else to
``test`` -- so about a third calibrates and identical transcripts never straddle the two parts (38 texts are read in
more than one file). The key is the text itself, not the scoring normaliser's output, so the split does not move
when the normaliser changes. PocketSphinx-en is ``test`` only: its 11 utterances are the only other voices, and
holding them out lets a low-rank encoder calibrated on the 8 kHz telephone band be tested on wideband speech. The
``ci`` subset is a fixed sample of ``test``: every PocketSphinx-en utterance, and the first :data:`CI_ITEMS` Asterisk
test prompts of 2 s or more in sha256 order of their keys (any prefix of it is a fixed sample too). Short prompts
are kept out of it because single words, letters and ordinals carry most of the errors and few frames to compress.
"""
from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from samp.realspeech import ASTERISK_TRANSCRIPTS, ASTERISK_VOICE, POCKETSPHINX_DATA

SPLITS = ("calibration", "test", "ci")
MAX_SECONDS = 30.0
CI_MIN_SECONDS = 2.0
CI_ITEMS = 32
RAW_RATE = 16000  # pocketsphinx's headerless .raw files: 16 kHz mono s16le
REFERENCE_TYPOS = {
    "un-indentified": "unidentified", "umute": "unmute", "fourtieth": "fortieth", "exclaimation": "exclamation",
    "represenatives": "representatives", "indentified": "identified", "witheld": "withheld",
}
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>")
_POCKETSPHINX_LINE = re.compile(r"^<s>\s+(?P<text>.*?)\s*</s>\s*\((?P<id>[^()\s]+)\)\s*$")
_ASTERISK_LINE = re.compile(r"^(?P<key>[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*):(?P<text>.*)$")
_GRAMMAR_RULE = re.compile(r"^\s*public\s+<[^>]+>\s*=\s*(?P<body>[^;]*);")
_TYPO = re.compile(r"\b(" + "|".join(map(re.escape, sorted(REFERENCE_TYPOS, key=len, reverse=True))) + r")\b",
                   re.IGNORECASE)


@dataclass(frozen=True)
class PackagedItem:
    """One utterance to write: where its audio is, its reference, its subset and split."""

    key: str  # path under the package's speech folder without the extension; names the output file
    subset: str
    answer: str
    audio: Path
    seconds: float
    split: str  # "calibration" or "test"
    package: str
    raw: bool = False  # headerless s16le at RAW_RATE
    transcript_as_shipped: str | None = None  # set when the reference was changed


@dataclass(frozen=True)
class Excluded:
    key: str
    reason: str  # one of a few fixed phrases, so they can be counted
    detail: str = ""


@dataclass(frozen=True)
class Collected:
    items: tuple[PackagedItem, ...]
    excluded: tuple[Excluded, ...]
    splits: dict[str, tuple[str, ...]]  # split -> keys; calibration/test in manifest order, ci in its own order


@dataclass(frozen=True)
class Recipe:
    dataset: str
    packages: tuple[str, ...]
    collect: Callable[[Path], Collected]


def _missing(what: Path, package: str, root: Path) -> ValueError:
    hint = (f"install it with 'apt-get install {package}', or unpack its .deb with 'dpkg-deb -x {package}_*.deb ROOT' "
            f"and pass ROOT as the source")
    where = "" if root == Path("/") else f" (under the install root {root})"
    return ValueError(f"{what} not found{where}: it comes from the Debian package {package}; {hint}")


def strip_annotations(text: str) -> str:
    """``text`` without ``[..]``, ``(..)`` and ``<..>`` annotations, whitespace collapsed."""
    return " ".join(_ANNOTATION.sub(" ", text).split())


def fix_typos(text: str) -> str:
    def replace(match: re.Match) -> str:
        word = match.group(0)
        fixed = REFERENCE_TYPOS[word.lower()]
        return fixed.capitalize() if word[0].isupper() else fixed

    return _TYPO.sub(replace, text)


def _words_key(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def split_of(answer: str) -> str:
    """``calibration`` for about a third of transcripts, chosen by the sha256 of their words; else ``test``."""
    digest = hashlib.sha256(_words_key(answer).encode("utf-8")).hexdigest()
    return "calibration" if int(digest[:16], 16) % 3 == 0 else "test"


def _ci_rank(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _seconds(path: Path, raw: bool) -> float:
    if raw:
        return path.stat().st_size / 2 / RAW_RATE
    import soundfile

    try:
        return soundfile.info(str(path)).duration
    except Exception as error:  # libsndfile's own error type
        raise ValueError(f"audio file {path} cannot be read: {error}") from None


def _finish(items: list[PackagedItem], excluded: list[Excluded], ci_keys: list[str]) -> Collected:
    items.sort(key=lambda item: (item.subset, item.key))
    splits = {name: tuple(i.key for i in items if i.split == name) for name in ("calibration", "test")}
    splits["ci"] = tuple(ci_keys)
    return Collected(tuple(items), tuple(sorted(excluded, key=lambda e: e.key)), splits)


def _keep_or_exclude(item: PackagedItem, excluded: list[Excluded]) -> PackagedItem | None:
    if item.seconds > MAX_SECONDS:
        excluded.append(Excluded(item.key, f"longer than the {MAX_SECONDS:g} s window", f"{item.seconds:.1f} s"))
        return None
    return item


# --- pocketsphinx-testdata -----------------------------------------------------------------------------------

def _pocketsphinx_transcript(path: Path) -> list[tuple[str, str]]:
    """(utterance id, words) per line of a pocketsphinx ``transcription`` file."""
    if not path.is_file():
        raise ValueError(f"transcript {path} does not exist (damaged pocketsphinx-testdata install?)")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        match = _POCKETSPHINX_LINE.match(line)
        if match is None:
            raise ValueError(f"{path}, line {number}: expected '<s> words </s> (utterance-id)', got {line!r}")
        text = " ".join(match["text"].split())
        if not text:
            raise ValueError(f"{path}, line {number}: no words between <s> and </s>")
        rows.append((match["id"], text))
    if not rows:
        raise ValueError(f"transcript {path} has no utterances")
    return rows


def _grammar_sentence(path: Path) -> str:
    """The first public rule of a JSGF grammar when it is a plain word sequence (goforward.gram's one sentence)."""
    if not path.is_file():
        raise ValueError(f"grammar {path} does not exist (damaged pocketsphinx-testdata install?)")
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _GRAMMAR_RULE.match(line)
        if match is not None:
            body = " ".join(match["body"].split())
            if not re.fullmatch(r"[a-z' ]+", body):
                raise ValueError(f"{path}: the first public rule {body!r} is not a plain word sequence")
            return body
    raise ValueError(f"{path} holds no 'public <rule> = words;' line")


def collect_pocketsphinx(root: Path) -> Collected:
    package = "pocketsphinx-testdata"
    data = Path(root) / POCKETSPHINX_DATA
    if not data.is_dir():
        raise _missing(data, package, Path(root))
    items: list[PackagedItem] = []
    excluded: list[Excluded] = []
    for subset, transcript in (("librivox", data / "librivox" / "transcription"),
                               ("cards", data / "cards" / "cards.transcription")):
        for utterance, text in _pocketsphinx_transcript(transcript):
            audio = transcript.parent / f"{utterance}.wav"
            key = f"{subset}/{utterance}"
            if not audio.is_file():
                excluded.append(Excluded(key, "transcript line without an audio file", str(audio)))
                continue
            item = PackagedItem(key, subset, text, audio, _seconds(audio, False), "test", package)
            if _keep_or_exclude(item, excluded):
                items.append(item)
    audio = data / "goforward.raw"
    if audio.is_file():
        item = PackagedItem("goforward", "goforward", _grammar_sentence(data / "goforward.gram"), audio,
                            _seconds(audio, True), "test", package, raw=True)
        if _keep_or_exclude(item, excluded):
            items.append(item)
    else:
        excluded.append(Excluded("goforward", "transcript line without an audio file", str(audio)))
    # eleven utterances: all of them are the CI share, in manifest order
    ci = [item.key for item in sorted(items, key=lambda i: (i.subset, i.key))]
    return _finish(items, excluded, ci)


# --- asterisk-core-sounds-en(-wav) ---------------------------------------------------------------------------

def read_asterisk_transcripts(path: Path) -> dict[str, str]:
    """``key -> text`` from ``core-sounds-en.txt.gz`` (``;`` comments and blank lines skipped)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise ValueError(f"transcripts {path} cannot be read as gzip UTF-8 text: {error}") from None
    entries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        match = _ASTERISK_LINE.match(line)
        if match is None:
            raise ValueError(f"{path}, line {number}: expected 'key: text' (key = file path without .wav), "
                             f"got {line!r}")
        key, text = match["key"], " ".join(match["text"].split())
        if not text:
            raise ValueError(f"{path}, line {number}: {key!r} has no text")
        if key in entries:
            raise ValueError(f"{path}, line {number}: {key!r} already given on line {first_line[key]}")
        entries[key], first_line[key] = text, number
    if not entries:
        raise ValueError(f"transcripts {path} hold no 'key: text' lines")
    return entries


def collect_asterisk(root: Path) -> Collected:
    root = Path(root)
    voice, transcripts = root / ASTERISK_VOICE, root / ASTERISK_TRANSCRIPTS
    if not voice.is_dir():
        raise _missing(voice, "asterisk-core-sounds-en-wav", root)
    if not transcripts.is_file():
        error = _missing(transcripts, "asterisk-core-sounds-en", root)
        if (root / "usr/share/doc").is_dir() and not (root / "usr/share/doc/asterisk-core-sounds-en").is_dir():
            # slim images drop /usr/share/doc at install time (dpkg path-exclude); dpkg-deb -x does not
            error = ValueError(f"{error}. If the package is installed, this system excludes /usr/share/doc from "
                               "installs: 'apt-get download asterisk-core-sounds-en' and 'dpkg-deb -x' it instead")
        raise error
    entries = read_asterisk_transcripts(transcripts)
    files = {str(path.relative_to(voice).with_suffix("")): path for path in sorted(voice.rglob("*.wav"))}
    package = "asterisk-core-sounds-en-wav"
    items: list[PackagedItem] = []
    excluded = [Excluded(key, "audio file without a transcript line") for key in files if key not in entries]
    for key, shipped in entries.items():
        folder = key.split("/")[0] if "/" in key else None
        if folder == "silence":
            excluded.append(Excluded(key, "silence"))
            continue
        answer = fix_typos(strip_annotations(shipped))
        if not re.search(r"[A-Za-z0-9]", answer):
            excluded.append(Excluded(key, "non-speech annotation only", shipped))
            continue
        audio = files.get(key)
        if audio is None:
            excluded.append(Excluded(key, "transcript line without an audio file"))
            continue
        item = PackagedItem(key, folder or "prompts", answer, audio, _seconds(audio, False), split_of(answer),
                            package, transcript_as_shipped=None if answer == shipped else shipped)
        if _keep_or_exclude(item, excluded):
            items.append(item)
    ci_pool = [i for i in items if i.split == "test" and i.seconds >= CI_MIN_SECONDS]
    ci = [item.key for item in sorted(ci_pool, key=lambda i: _ci_rank(i.key))[:CI_ITEMS]]
    return _finish(items, excluded, ci)


RECIPES: dict[str, Recipe] = {
    "PocketSphinx-en": Recipe("PocketSphinx-en", ("pocketsphinx-testdata",), collect_pocketsphinx),
    "Asterisk-en": Recipe("Asterisk-en", ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-en"),
                          collect_asterisk),
}


def recipe_for(dataset: str) -> Recipe | None:
    """The Debian-package recipe of a registered dataset, or None for datasets prepared from a download."""
    return RECIPES.get(dataset)
