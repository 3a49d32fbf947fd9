"""The synthetic corpus generator is deterministic and rebuilds the committed test utterances."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "speech_tiny"))
import corpus  # noqa: E402

FIXTURE = ROOT / "fixtures" / "speech_tiny"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (scripts/bootstrap.sh installs it)")


def _manifest():
    with open(FIXTURE / "test" / "manifest.jsonl") as f:
        return [json.loads(line) for line in f]


def _corpus_info():
    return json.loads((FIXTURE / "test" / "corpus.json").read_text())


def test_manifest_is_samp_format_and_audio_is_16bit_16khz():
    records = _manifest()
    assert len(records) == 400
    vocabulary = set(_corpus_info()["vocabulary"])
    for position, rec in enumerate(records):
        assert rec["index"] == position
        assert set(rec) >= {"index", "audio_path", "question", "answer", "subset"}
        assert set(rec["answer"].split()) <= vocabulary
        assert 2 <= len(rec["answer"].split()) <= 6
    for rec in records[:20]:
        samples = corpus.read_wav(FIXTURE / "test" / rec["audio_path"])
        assert 0 < len(samples) <= 3 * corpus.SAMPLE_RATE
        assert np.abs(samples.astype(np.int32)).max() > 1000, "clip is (nearly) silent"


def test_read_wav_rejects_other_formats(tmp_path):
    import wave

    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0" * 400)
    with pytest.raises(ValueError, match="mono 16-bit"):
        corpus.read_wav(path)


def test_edit_distance():
    assert corpus.edit_distance("kitten", "sitting") == 3
    assert corpus.edit_distance("", "abc") == 3
    assert corpus.edit_distance("same", "same") == 0


@needs_espeak
def test_vocabulary_is_rebuilt_and_words_are_phonetically_apart():
    vocabulary = corpus.choose_vocabulary()
    assert list(vocabulary) == _corpus_info()["vocabulary"]
    ph = [corpus.phonemes(w) for w in vocabulary[:30]]
    assert min(corpus.edit_distance(a, b) for i, a in enumerate(ph) for b in ph[i + 1:]) >= 3


@needs_espeak
@pytest.mark.parametrize("index", [0, 1, 7])
def test_utterance_is_deterministic_and_matches_committed_audio(index):
    vocabulary = tuple(_corpus_info()["vocabulary"])
    first_utt, first_pcm = corpus.make_utterance("test", index, vocabulary, seed=0)
    again_utt, again_pcm = corpus.make_utterance("test", index, vocabulary, seed=0)
    assert first_utt == again_utt
    np.testing.assert_array_equal(first_pcm, again_pcm)
    other_utt, _ = corpus.make_utterance("test", index, vocabulary, seed=1)
    assert other_utt != first_utt

    rec = _manifest()[index]
    assert rec["answer"] == first_utt.text
    assert rec["meta"]["voice"] == first_utt.voice and rec["meta"]["speed"] == first_utt.speed
    if corpus.espeak_version() != _corpus_info()["espeak_ng_version"]:
        pytest.skip("espeak-ng version differs from the one that made the committed audio")
    committed = corpus.read_wav(FIXTURE / "test" / rec["audio_path"])
    assert committed.shape == first_pcm.shape
    # FFT rounding may differ by one step of 16-bit quantisation across numpy builds.
    assert np.abs(committed.astype(np.int32) - first_pcm.astype(np.int32)).max() <= 1
