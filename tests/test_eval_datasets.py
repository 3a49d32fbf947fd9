"""Dataset registry, prompts, manifest loading (errors name the row) and manifest lookup."""
import json

import pytest

from samp.eval import DATASETS, dataset_names, find_manifest, get_dataset, load_manifest, task_prompt
from samp.eval.datasets import custom_dataset

SEED_DATASETS = ["LibriSpeech", "Fleurs-zh", "Fleurs-en", "AISHELL-1", "AISHELL-2", "WenetSpeech", "mmau-test-mini",
                 "MELD", "Nonspeech7k", "TUT2017", "VocalSound"]
DEBIAN_DATASETS = ["PocketSphinx-en", "Asterisk-en"]  # recorded speech from Debian packages (samp.eval.packaged_speech)


def test_registry_holds_the_seed_datasets():
    assert sorted(dataset_names()) == sorted(SEED_DATASETS + DEBIAN_DATASETS)
    assert get_dataset("librispeech").subsets == ("dev_clean", "dev_other", "test_clean", "test_other")
    assert get_dataset("WenetSpeech").subsets == ("test_meeting", "test_net")
    assert get_dataset("mmau-test-mini").subsets == ("music", "sound", "speech")
    assert {s.lang for s in DATASETS if s.task == "asr"} == {"en", "zh"}
    assert all(s.metric == ("wer" if s.task == "asr" else "accuracy") for s in DATASETS)
    with pytest.raises(ValueError, match="unknown dataset 'LibriSpeak'"):
        get_dataset("LibriSpeak")


def test_prompts_per_model_family():
    libri, meld, vocal = get_dataset("LibriSpeech"), get_dataset("MELD"), get_dataset("VocalSound")
    assert task_prompt(libri, "qwen2_audio", libri.question) == "Detect the language and recognize the speech: <|en|>"
    assert task_prompt(meld, "qwen2_audio", meld.question) == "Recognize the emotion with keywords in English:"
    # the reference's VocalSound branch is unreachable: it gets the AudioEvent prompt
    assert task_prompt(vocal, "qwen2_audio", "Q?").endswith("question: Q? Your answer is:")
    assert task_prompt(libri, "glm_asr", "") == "Please transcribe this audio into text"
    assert task_prompt(libri, "kimi", "") == libri.question


def _write_manifest(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _row(index, audio="a.wav", **extra):
    return {"index": index, "audio_path": audio, "question": "", "answer": "hi", "subset": "test_clean", **extra}


def test_manifest_loads_and_resolves_relative_audio(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    manifest = _write_manifest(tmp_path / "m.jsonl", [_row(0), _row("1", meta={"k": 1}), "", _row(2, ["a.wav"])])
    items = load_manifest(manifest)
    assert [i.index for i in items] == [0, 1, 2]
    assert items[0].audio_paths == (tmp_path / "a.wav",)
    assert items[1].meta == {"k": 1}
    assert len(load_manifest(manifest, limit=2)) == 2


@pytest.mark.parametrize("row, match", [
    ("{not json", "line 2: not valid JSON"),
    ({"index": 1, "audio_path": "a.wav", "question": "", "subset": "s"}, "line 2: missing field\\(s\\) answer"),
    (_row("one"), "line 2: 'index' must be an integer"),
    (_row(0), "line 2: index 0 already used on line 1"),
    (_row(1, audio="missing.wav"), "line 2: audio file .*missing.wav does not exist"),
    (_row(1, audio=[]), "line 2: 'audio_path'"),
    (_row(1, subset=""), "line 2: 'subset' is empty"),
    (_row(1, meta=[1]), "line 2: 'meta' must be an object"),
    ([1, 2], "line 2: expected a JSON object"),
])
def test_malformed_rows_name_the_line(tmp_path, row, match):
    (tmp_path / "a.wav").write_bytes(b"")
    manifest = _write_manifest(tmp_path / "m.jsonl", [_row(0), row])
    with pytest.raises(ValueError, match=match):
        load_manifest(manifest)


def test_missing_or_empty_manifest(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="has no items"):
        load_manifest(_write_manifest(tmp_path / "e.jsonl", [""]))


@pytest.mark.parametrize("layout", ["{name}/{name}.jsonl", "{series}/{name}.jsonl", "{series}/{name}/{name}.jsonl",
                                    "{name}.jsonl"])
def test_find_manifest_layouts(tmp_path, layout):
    spec = get_dataset("AISHELL-1")
    path = tmp_path / layout.format(name=spec.name, series=spec.series)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    assert find_manifest(spec, data_root=tmp_path) == path


def test_find_manifest_from_config(tmp_path):
    spec = get_dataset("MELD")
    explicit = tmp_path / "elsewhere.jsonl"
    explicit.write_text("")
    config = tmp_path / "config.yaml"
    config.write_text(f"DATASETS:\n  dataset_root: {tmp_path}/root\n  datasets:\n    MELD: {explicit}\n")
    assert find_manifest(spec, config=config) == explicit
    (tmp_path / "root" / "TUT2017").mkdir(parents=True)
    (tmp_path / "root" / "TUT2017" / "TUT2017.jsonl").write_text("")
    assert find_manifest(get_dataset("TUT2017"), config=config).parent.name == "TUT2017"
    with pytest.raises(ValueError, match="looked for"):
        find_manifest(get_dataset("VocalSound"), config=config)
    with pytest.raises(ValueError, match="give a data root or a config"):
        find_manifest(spec)
    bad = tmp_path / "bad.yaml"
    bad.write_text("DATASETS: [1, 2]\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        find_manifest(spec, config=bad)


def test_custom_dataset_needs_a_language_for_asr():
    assert custom_dataset("mine", "mqa", None).metric == "accuracy"
    with pytest.raises(ValueError, match="needs a language"):
        custom_dataset("mine", "asr", None)
    with pytest.raises(ValueError, match="task must be"):
        custom_dataset("mine", "tts", "en")


def test_evalkit_paths_relative_to_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "data" / "wav").mkdir(parents=True)
    (tmp_path / "data" / "wav" / "0.wav").write_bytes(b"")
    (tmp_path / "manifests").mkdir()
    manifest = _write_manifest(tmp_path / "manifests" / "m.jsonl", [_row(0, audio="data/wav/0.wav")])
    monkeypatch.chdir(tmp_path)
    (item,) = load_manifest(manifest)
    assert item.audio_paths == ((tmp_path / "data" / "wav" / "0.wav").resolve(),)
