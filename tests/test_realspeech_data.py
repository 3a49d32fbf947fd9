"""`samp data prepare` for the recorded speech in Debian packages: the recipes on the installed packages, every
transcript pitfall of ../shared/spec/real-speech.md §3, the split, and clear errors for broken installs."""
import gzip
import hashlib
import json
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from samp.cli import main as samp_main
from samp.eval import get_dataset, load_manifest, score_asr, tokenize
from samp.eval.packaged_speech import (
    CI_ITEMS,
    CI_MIN_SECONDS,
    REFERENCE_TYPOS,
    collect_asterisk,
    collect_pocketsphinx,
    read_asterisk_transcripts,
    split_of,
)
from samp.eval.prepare import prepare, prepare_packaged
from samp.realspeech import ASTERISK_TRANSCRIPTS, ASTERISK_VOICE, POCKETSPHINX_DATA

ROOT = Path("/")
HOW = "scripts/bootstrap.sh installs it (apt-get, as root)"


def require(path: Path, package: str) -> None:
    if not (ROOT / path).exists():
        pytest.skip(f"Debian package {package} is not installed ({ROOT / path} missing); {HOW}")


@pytest.fixture(scope="module")
def pocketsphinx(tmp_path_factory):
    require(POCKETSPHINX_DATA, "pocketsphinx-testdata")
    return prepare_packaged(get_dataset("PocketSphinx-en"), ROOT, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def asterisk(tmp_path_factory):
    require(ASTERISK_VOICE, "asterisk-core-sounds-en-wav")
    require(ASTERISK_TRANSCRIPTS, "asterisk-core-sounds-en")
    return prepare_packaged(get_dataset("Asterisk-en"), ROOT, tmp_path_factory.mktemp("data"))


def rows(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


# --- pocketsphinx-testdata ---------------------------------------------------------------------------------------

def test_pocketsphinx_recipe_on_the_installed_package(pocketsphinx):
    items = load_manifest(pocketsphinx.manifest)
    assert Counter(i.subset for i in items) == {"librivox": 5, "cards": 5, "goforward": 1}
    assert {i.question for i in items} == {get_dataset("PocketSphinx-en").question}
    assert set(pocketsphinx.split_manifests) == {"test", "ci"}  # no calibration part: see packaged_speech
    assert [i.index for i in load_manifest(pocketsphinx.split_manifests["ci"])] == [i.index for i in items]
    for item in items:
        info = soundfile.info(str(item.audio_paths[0]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert pocketsphinx.summary["splits"]["test"] == {"items": 11, "seconds": 37.2}


def test_pocketsphinx_audio_is_copied_sample_for_sample(pocketsphinx):
    for item in load_manifest(pocketsphinx.manifest):
        written, _ = soundfile.read(str(item.audio_paths[0]), dtype="int16")
        source = Path(item.meta["source"])
        if source.suffix == ".raw":  # headerless 16 kHz s16le
            original = np.frombuffer(source.read_bytes(), dtype="<i2")
        else:
            original, _ = soundfile.read(str(source), dtype="int16")
        np.testing.assert_array_equal(written, original)


def test_pocketsphinx_transcript_pitfalls(pocketsphinx):
    answers = {i.meta["key"]: i.answer for i in load_manifest(pocketsphinx.manifest)}
    # cards lines have two spaces before </s>
    assert answers["cards/001"] == "ten of clubs"
    assert answers["cards/005"] == "eight of spades four of clubs seven of hearts"
    # goforward's text is only in its grammar; its audio is headerless
    assert answers["goforward"] == "go forward ten meters"
    # the LibriVox reference keeps the reader's disfluency, verbatim
    assert answers["librivox/sense_and_sensibility_01_austen_64kb-0920"] == (
        "had he married a more a amiable woman he might have been made still more respectable than he was")


def test_the_librivox_disfluency_costs_one_deletion_for_a_fluent_transcript():
    reference = "had he married a more a amiable woman he might have been made still more respectable than he was"
    score = score_asr([reference], ["Had he married a more amiable woman, he might have been made still more "
                                    "respectable than he was."], "en")
    assert (score.errors, score.deletions, score.ref_tokens) == (1, 1, 19)


# --- asterisk-core-sounds-en -------------------------------------------------------------------------------------

def test_asterisk_recipe_on_the_installed_package(asterisk):
    items = load_manifest(asterisk.manifest)
    summary = asterisk.summary
    assert len(items) == 548 == summary["splits"]["all"]["items"]
    reasons = defaultdict(set)
    for entry in summary["excluded"]:
        reasons[entry["reason"]].add(entry["key"])
    assert reasons["silence"] == {f"silence/{n}" for n in range(1, 11)}
    assert reasons["non-speech annotation only"] == {
        "ascending-2tone", "descending-2tone", "beep", "beeperr", "tt-monkeys", "confbridge-join",
        "confbridge-leave"}
    assert reasons["longer than the 30 s window"] == {"demo-instruct", "priv-callee-options", "demo-congrats"}
    assert reasons["transcript line without an audio file"] == {"pls-try-call-later"}
    assert sum(map(len, reasons.values())) == len(summary["excluded"]) == 21  # 568 files + 1 line - 548 - 21 = 0
    assert all(i.meta["seconds"] <= 30.0 for i in items)
    assert Counter(i.subset for i in items) == {"prompts": 348, "digits": 94, "letters": 61, "phonetic": 27,
                                                "dictate": 12, "followme": 6}


def test_asterisk_audio_is_resampled_band_limited_to_16k(asterisk):
    items = {i.meta["key"]: i for i in load_manifest(asterisk.manifest)}
    for key in ("auth-incorrect", "digits/10", "vm-intro", "basic-pbx-ivr-main"):
        item = items[key]
        original, rate = soundfile.read(item.meta["source"], dtype="float32")
        written, written_rate = soundfile.read(str(item.audio_paths[0]), dtype="float32")
        assert (rate, written_rate) == (8000, 16000) and written.size == 2 * original.size
        # every other sample of a band-limited 2x upsampling is the original (up to 16-bit rounding)
        torch.testing.assert_close(torch.from_numpy(written[::2]), torch.from_numpy(original), rtol=0, atol=3e-3)
        # nothing above the 4 kHz band edge of the 8 kHz source but 16-bit rounding noise
        power = np.abs(np.fft.rfft(written.astype(np.float64))) ** 2
        above = power[int(power.size * 4100 / 8000):].sum() / power.sum()
        assert above < 1e-5, f"{key}: {above:.2e} of the power is above 4.1 kHz"


def test_asterisk_annotations_are_removed_and_typos_fixed(asterisk):
    items = {i.meta["key"]: i for i in load_manifest(asterisk.manifest)}
    assert items["letters/at"].answer == "at" and items["letters/at"].meta["transcript_as_shipped"] == "at [@]"
    assert items["spy-iax2"].answer == "IAX"
    assert items["vm-intro"].answer.endswith("press the pound key.")
    assert not any(char in item.answer for item in items.values() for char in "[]()<>")
    assert items["digits/h-40"].answer == "fortieth"
    assert items["unidentified-no-callback"].answer == "Unidentified or withheld and therefore cannot be called back."
    assert "unmute all" in items["conf-adminmenu-menu8"].answer
    every_word = " ".join(i.answer.lower() for i in items.values())
    assert not any(typo in every_word.split() for typo in REFERENCE_TYPOS)
    # the spec's 0.5-30 s annotation-free subset: 537 prompts; annotation-stripped ones come on top
    clean = [i for i in items.values()
             if i.meta["seconds"] >= 0.5 and not set(i.meta.get("transcript_as_shipped", "")) & set("[(<")]
    assert len(clean) == 537


def test_asterisk_split_is_disjoint_grouped_and_deterministic(asterisk, tmp_path):
    by_split = {name: load_manifest(path) for name, path in asterisk.split_manifests.items()}
    calibration = {i.index for i in by_split["calibration"]}
    test = {i.index for i in by_split["test"]}
    everything = load_manifest(asterisk.manifest)
    assert not calibration & test and calibration | test == {i.index for i in everything}
    assert len(calibration) == 182 and len(test) == 366
    # identical transcripts (the same words, case and punctuation aside) never straddle the split; 38 texts
    # are read in more than one file ("thank you", the confbridge -in/-out pairs...)
    split_by_words = defaultdict(list)
    for item in everything:
        split_by_words[" ".join(re.findall(r"[a-z0-9]+", item.answer.lower()))].append(item.meta["split"])
    assert sum(len(splits) > 1 for splits in split_by_words.values()) == 38
    assert all(len(set(splits)) == 1 for splits in split_by_words.values())
    # the CI share: test prompts of 2 s or more, in sha256 order of their keys
    ci = by_split["ci"]
    assert len(ci) == CI_ITEMS and {i.index for i in ci} <= test
    assert all(i.meta["seconds"] >= CI_MIN_SECONDS and i.meta["ci"] for i in ci)
    ranks = [hashlib.sha256(i.meta["key"].encode()).hexdigest() for i in ci]
    assert ranks == sorted(ranks)
    # the same again, byte for byte
    again = prepare_packaged(get_dataset("Asterisk-en"), ROOT, tmp_path)
    for name, path in asterisk.split_manifests.items():
        assert again.split_manifests[name].read_bytes() == path.read_bytes()


def test_a_prompts_split_does_not_depend_on_the_other_files(asterisk, tmp_path):
    """A partial install (20 files, their transcript lines) splits those 20 exactly as the full one does."""
    full = {i.meta["key"]: i for i in load_manifest(asterisk.manifest)}
    keys = sorted(full)[::27][:20]
    voice, transcripts = tmp_path / ASTERISK_VOICE, tmp_path / ASTERISK_TRANSCRIPTS
    entries = read_asterisk_transcripts(ROOT / ASTERISK_TRANSCRIPTS)
    for key in keys:
        (voice / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(full[key].meta["source"], voice / f"{key}.wav")
    transcripts.parent.mkdir(parents=True)
    with gzip.open(transcripts, "wt", encoding="utf-8") as handle:
        handle.write("; a partial copy\n" + "".join(f"{key}: {entries[key]}\n" for key in keys))
    partial = collect_asterisk(tmp_path)
    assert {i.key: i.split for i in partial.items} == {key: full[key].meta["split"] for key in keys}


# --- the normaliser on these references ----------------------------------------------------------------------------

@pytest.mark.parametrize("reference, transcript", [
    ("ten of clubs", "10 of clubs"),                                         # numerals against words
    ("four queen of clubs", "4. Queen of clubs."),
    ("eight of spades four of clubs seven of hearts", "8 of spades, 4 of clubs, 7 of hearts"),
    ("five five", "5 5"),                                                    # digits read one by one
    ("nine one one", "9-1-1"),
    ("fortieth", "40th"),                                                    # ordinals
    ("tenth", "10th"),
    ("Press 1 for", "Press one for"),
    ("press zero for mailbox options", "Press 0 for mailbox options."),
    ("sixty years", "60 years"),
    ("and mister john dashwood had then leisure", "And Mr. John Dashwood had then leisure"),   # Mr. / mister
    ("he was not an ill disposed young man", "He was not an ill-disposed young man."),         # hyphens
    ("Sorry you're having problems.", "Sorry, you are having problems."),                     # contractions
    ("press * to toggle pause, press # to enter a new dictation filename",                    # keypad symbols
     "Press star to toggle pause. Press pound to enter a new dictation file name."),
    ("... using your touchtone keypad.", "using your touch-tone keypad"),                     # compounds
    ("To check voice mail for the user", "To check voicemail for the user"),
    ("When you are muted you can not send audio", "When you are muted, you cannot send audio"),
    ("come straight thru to you", "come straight through to you"),
    ("Please leave your message after the tone. (simple tone sound plays)",                    # annotations
     "Please leave your message after the tone."),
    ("at [@]", "at"),
    ("A.M.", "AM"),                                                          # initialisms
    ("De-activated.", "Deactivated."),                                       # prefixes
    ("press 3 to rerecord your message", "Press 3 to re-record your message."),
    ("Agent login.", "Agent log in."),
    ("removed from the blacklist", "removed from the black list"),
    ("the user's mail box can't accept", "The user's mailbox cannot accept"),
])
def test_english_normaliser_reads_both_spellings_alike(reference, transcript):
    assert tokenize(reference, "en") == tokenize(transcript, "en")


# --- bad input -----------------------------------------------------------------------------------------------------

def tone_wav(path: Path, seconds: float, rate: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, subtype="PCM_16")


def fake_asterisk(root: Path, lines: list[str], files=("hello",)) -> Path:
    for key in files:
        tone_wav(root / ASTERISK_VOICE / f"{key}.wav", 1.0)
    (root / ASTERISK_TRANSCRIPTS).parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(root / ASTERISK_TRANSCRIPTS, "wt", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
    return root


def fake_pocketsphinx(root: Path, librivox_lines: list[str]) -> Path:
    data = root / POCKETSPHINX_DATA
    (data / "librivox").mkdir(parents=True)
    (data / "cards").mkdir()
    tone_wav(data / "librivox" / "a-1.wav", 1.0, 16000)
    (data / "librivox" / "transcription").write_text("\n".join(librivox_lines) + "\n")
    (data / "cards" / "cards.transcription").write_text("<s> five five  </s> (004)\n")
    tone_wav(data / "cards" / "004.wav", 1.0, 16000)
    return root


def test_missing_packages_are_named(tmp_path):
    with pytest.raises(ValueError, match="Debian package pocketsphinx-testdata; install it with 'apt-get install"):
        prepare(get_dataset("PocketSphinx-en"), tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="Debian package asterisk-core-sounds-en-wav"):
        prepare(get_dataset("Asterisk-en"), tmp_path, tmp_path / "out")
    (tmp_path / ASTERISK_VOICE).mkdir(parents=True)
    (tmp_path / "usr/share/doc/other-package").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"asterisk-core-sounds-en;.*excludes /usr/share/doc"):
        prepare(get_dataset("Asterisk-en"), tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="install root .* does not exist"):
        prepare(get_dataset("Asterisk-en"), tmp_path / "nowhere", tmp_path / "out")


@pytest.mark.parametrize("lines, match", [
    (["hello: Hello.", "this line has no key"], r"line 2: expected 'key: text'"),
    (["hello:"], r"line 1: 'hello' has no text"),
    (["hello: Hello.", "", "hello: Hello again."], r"line 3: 'hello' already given on line 1"),
    (["; only a comment"], "hold no 'key: text' lines"),
])
def test_bad_asterisk_transcript_lines_are_errors_with_their_line(tmp_path, lines, match):
    with pytest.raises(ValueError, match=match):
        prepare(get_dataset("Asterisk-en"), fake_asterisk(tmp_path, lines), tmp_path / "out")


def test_asterisk_transcripts_that_are_not_gzip_are_an_error(tmp_path):
    fake_asterisk(tmp_path, ["hello: Hello."])
    (tmp_path / ASTERISK_TRANSCRIPTS).write_text("hello: Hello.\n")
    with pytest.raises(ValueError, match="cannot be read as gzip"):
        prepare(get_dataset("Asterisk-en"), tmp_path, tmp_path / "out")


def test_a_small_asterisk_install_is_prepared(tmp_path):
    root = fake_asterisk(tmp_path, ["; header", "hello: Hello there.", "beep: [this is a simple beep tone]",
                                    "gone: A prompt without a file."], files=("hello", "beep", "extra"))
    assert samp_main(["data", "prepare", "Asterisk-en", str(root), "--out", str(tmp_path / "out")]) == 0
    manifest = tmp_path / "out" / "Asterisk-en" / "Asterisk-en.jsonl"
    assert [(r["answer"], r["subset"], r["audio_path"]) for r in rows(manifest)] == [
        ("Hello there.", "prompts", "audio/hello.wav")]
    summary = json.loads((manifest.parent / "Asterisk-en.summary.json").read_text())
    assert {(e["key"], e["reason"]) for e in summary["excluded"]} == {
        ("beep", "non-speech annotation only"), ("gone", "transcript line without an audio file"),
        ("extra", "audio file without a transcript line")}
    assert soundfile.info(str(manifest.parent / "audio" / "hello.wav")).frames == 16000


@pytest.mark.parametrize("line, match", [
    ("he was not </s> (a-1)", r"transcription, line 1: expected '<s> words </s> \(utterance-id\)'"),
    ("<s> he was not </s>", r"line 1: expected"),
    ("<s>   </s> (a-1)", r"line 1: no words between <s> and </s>"),
])
def test_bad_pocketsphinx_transcript_lines_are_errors_with_their_line(tmp_path, line, match):
    with pytest.raises(ValueError, match=match):
        collect_pocketsphinx(fake_pocketsphinx(tmp_path, [line]))


def test_cli_errors(tmp_path, capsys):
    assert samp_main(["data", "prepare", "LibriSpeech", "--out", str(tmp_path)]) == 2
    assert "LibriSpeech needs a source" in capsys.readouterr().err
    assert samp_main(["data", "prepare", "Asterisk-en", str(tmp_path), "--out", str(tmp_path), "--subset", "x"]) == 2
    assert "--subset does not apply" in capsys.readouterr().err


def test_split_rule_is_the_documented_hash():
    for answer in ("Activated.", "press 1 to call this number", "ten"):
        words = " ".join(answer.lower().replace(".", "").split())
        expected = "calibration" if int(hashlib.sha256(words.encode()).hexdigest()[:16], 16) % 3 == 0 else "test"
        assert split_of(answer) == expected
    assert split_of("Press 1, to call this number!") == split_of("press 1 to call this number")
