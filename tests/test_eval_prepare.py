"""`samp data prepare` on small synthetic copies of the OpenSLR LibriSpeech layout and of HF parquet with audio."""
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile

from samp.cli import main as samp_main
from samp.eval import get_dataset, load_manifest
from samp.eval.audio import read_audio, resample
from samp.eval.prepare import prepare


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_librispeech(root):
    """``<root>/LibriSpeech/<split>/<speaker>/<chapter>/`` with a transcript and flac files."""
    for split, speaker, chapter, lines in [
        ("test-clean", "61", "70968", ["HELLO WORLD", "GOOD MORNING"]),
        ("dev-other", "116", "288045", ["A SHORT ONE"]),
    ]:
        folder = root / "LibriSpeech" / split / speaker / chapter
        folder.mkdir(parents=True)
        transcript = []
        for n, text in enumerate(lines):
            utterance = f"{speaker}-{chapter}-{n:04d}"
            soundfile.write(str(folder / f"{utterance}.flac"), tone(0.5 + n * 0.1, 16000), 16000)
            transcript.append(f"{utterance} {text}")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(transcript) + "\n")
    return root / "LibriSpeech"


def wav_bytes(wave, rate):
    buffer = io.BytesIO()
    soundfile.write(buffer, wave, rate, format="WAV")
    return buffer.getvalue()


def test_librispeech_folder(tmp_path):
    source = make_librispeech(tmp_path / "download")
    manifest = prepare(get_dataset("LibriSpeech"), source, tmp_path / "data")
    assert manifest == tmp_path / "data" / "LibriSpeech" / "LibriSpeech.jsonl"
    items = load_manifest(manifest)
    assert sorted((i.subset, i.answer) for i in items) == [
        ("dev_other", "A SHORT ONE"), ("test_clean", "GOOD MORNING"), ("test_clean", "HELLO WORLD")]
    assert all(i.question == get_dataset("LibriSpeech").question for i in items)
    assert read_audio(items[0].audio_paths[0]).dtype == np.float32


def test_parquet_with_embedded_audio_is_resampled(tmp_path):
    table = pa.table({
        "audio": [{"bytes": wav_bytes(tone(1.0, 8000), 8000), "path": "a.wav"},
                  {"bytes": wav_bytes(tone(0.5, 22050), 22050), "path": "b.wav"}],
        "transcription": ["你好世界", "今天天气很好"],
    })
    source = tmp_path / "fleurs" / "test-00000-of-00001.parquet"
    source.parent.mkdir()
    pq.write_table(table, source)
    code = samp_main(["data", "prepare", "Fleurs-zh", str(source.parent), "--out", str(tmp_path / "data")])
    assert code == 0
    items = load_manifest(tmp_path / "data" / "Fleurs-zh" / "Fleurs-zh.jsonl")
    assert [i.answer for i in items] == ["你好世界", "今天天气很好"]
    assert {i.subset for i in items} == {"fleurs_cmn_hans_cn"}
    info = soundfile.info(str(items[0].audio_paths[0]))
    assert info.samplerate == 16000 and info.frames == 16000


def test_resample_keeps_a_tone():
    wave = resample(tone(1.0, 8000, freq=300.0), 8000, 16000)
    assert wave.size == 16000
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16000 / wave.size - 300.0) < 2


def test_bad_sources_name_the_problem(tmp_path, capsys):
    spec = get_dataset("LibriSpeech")
    source = make_librispeech(tmp_path / "download")
    next(source.rglob("*-0001.flac")).unlink()
    with pytest.raises(ValueError, match=r"line 2: audio file .*0001.flac does not exist"):
        prepare(spec, source, tmp_path / "out")

    no_audio = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"text": ["x"]}), no_audio)
    with pytest.raises(ValueError, match="no 'audio' column"):
        prepare(spec, no_audio, tmp_path / "out")

    corrupt = tmp_path / "corrupt.parquet"
    pq.write_table(pa.table({"audio": [{"bytes": b"RIFFnonsense", "path": "x.wav"}], "text": ["x"]}), corrupt)
    with pytest.raises(ValueError, match="row 0: embedded audio cannot be decoded"):
        prepare(spec, corrupt, tmp_path / "out")

    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="not a readable parquet file"):
        prepare(spec, tmp_path / "broken.parquet", tmp_path / "out")

    assert samp_main(["data", "prepare", "LibriSpeech", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unreadable_audio_is_an_error_naming_the_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....")
    with pytest.raises(ValueError, match="bad.wav cannot be read"):
        read_audio(bad)
    with pytest.raises(ValueError, match="does not exist"):
        read_audio(tmp_path / "missing.wav")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"index": 0, "audio_path": "gone.wav", "question": "", "answer": "a",
                                    "subset": "s"}) + "\n")
    with pytest.raises(ValueError, match="line 1: audio file .*gone.wav does not exist"):
        load_manifest(manifest)
