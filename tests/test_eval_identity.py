"""Models and datasets have a stable identity (name + content fingerprint): the same checkpoint or manifest reached
by another path is the same, a changed one is not; records and tables carry it."""
import json
import os
import shutil
from pathlib import Path

from samp.cli import main
from samp.eval import load_manifest, read_records
from samp.eval.identity import dataset_fingerprint, manifest_dataset, model_identity

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "fixtures" / "speech_tiny"


def test_the_same_checkpoint_by_another_path_is_the_same_model(tmp_path, monkeypatch):
    absolute = model_identity(FIXTURE / "model")
    monkeypatch.chdir(FIXTURE / "test")
    relative = model_identity(Path("..") / ".." / ".." / "fixtures" / "speech_tiny" / "model/")
    assert absolute == relative
    assert absolute.name == "speech_tiny" and len(absolute.fingerprint) == 12
    assert absolute.label() == f"speech_tiny@{absolute.fingerprint[:8]}"


def test_changed_weights_are_another_model(tmp_path):
    copy = tmp_path / "speech_tiny" / "model"
    shutil.copytree(FIXTURE / "model", copy)
    assert model_identity(copy) == model_identity(FIXTURE / "model")
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the last byte of the last tensor
    weights.write_bytes(bytes(data))
    changed = model_identity(copy)
    assert changed.name == "speech_tiny" and changed.fingerprint != model_identity(FIXTURE / "model").fingerprint


def test_the_same_manifest_elsewhere_is_the_same_dataset(tmp_path):
    items = load_manifest(FIXTURE / "test" / "manifest.jsonl", check_audio=False)
    moved = tmp_path / "test" / "manifest.jsonl"
    moved.parent.mkdir()
    rows = [json.loads(line) for line in (FIXTURE / "test" / "manifest.jsonl").read_text().splitlines()]
    moved.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert dataset_fingerprint(load_manifest(moved, check_audio=False)) == dataset_fingerprint(items)
    assert manifest_dataset(moved).name == manifest_dataset(FIXTURE / "test" / "manifest.jsonl").name == "test"
    rows[5]["answer"] = "a different answer"
    moved.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert dataset_fingerprint(load_manifest(moved, check_audio=False)) != dataset_fingerprint(items)
    assert dataset_fingerprint(items[:10]) != dataset_fingerprint(items)


def test_records_and_the_table_carry_the_identity_whatever_the_path(tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    common = ["--data", str(FIXTURE / "test" / "manifest.jsonl"), "--work-dir", str(work), "--limit", "4",
              "--max-new-tokens", "8", "--no-progress", "--method", "base"]
    assert main(["eval", "--model", str(FIXTURE / "model"), *common]) == 0
    out = capsys.readouterr().out
    identity = model_identity(FIXTURE / "model")
    (record,) = read_records(work / "records.jsonl")
    assert (record.model, record.model_fingerprint) == (identity.name, identity.fingerprint)
    assert record.dataset == "test" and record.dataset_fingerprint is not None
    assert identity.label() in out and f"test@{record.dataset_fingerprint[:8]}" in out
    # the same model through a relative path: the same run, already complete
    monkeypatch.chdir(FIXTURE)
    assert main(["eval", "--model", os.path.join(".", "model", ""), *common]) == 0
    assert "already complete" in capsys.readouterr().err
    assert len(read_records(work / "records.jsonl")) == 1


def test_another_model_of_the_same_name_is_refused_in_a_used_run_folder(tmp_path, capsys):
    work = tmp_path / "work"
    common = ["--data", str(FIXTURE / "test" / "manifest.jsonl"), "--work-dir", str(work), "--limit", "2",
              "--max-new-tokens", "8", "--no-progress", "--method", "base"]
    assert main(["eval", "--model", str(FIXTURE / "model"), *common]) == 0
    other = tmp_path / "speech_tiny" / "model"
    shutil.copytree(FIXTURE / "model", other)
    config = json.loads((other / "config.json").read_text())
    config["comment"] = "another model"
    (other / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["eval", "--model", str(other), *common]) == 2
    assert "holds results of another model named 'speech_tiny'" in capsys.readouterr().err
    assert len(read_records(work / "records.jsonl")) == 1


# --- matching in the benchmark suite: the gate and the history ---------------------------------------------------
def _observation(value, model_fingerprint, time="2026-11-01T00:00:00Z", **changes):
    from bench_records import record
    from samp.bench.observations import observation_from_record

    return observation_from_record(record(value, time=time, model_fingerprint=model_fingerprint,
                                          dataset_fingerprint="d" * 12, **changes))


def test_the_gate_compares_only_results_of_the_same_model_and_data():
    from samp.bench.gate import compare_to_run

    reference = [_observation(0.10, "a" * 12)]
    (same,) = compare_to_run([_observation(0.30, "a" * 12)], reference, tolerance=0.005)
    assert same.verdict == "regressed"
    other = compare_to_run([_observation(0.30, "b" * 12)], reference, tolerance=0.005)
    assert sorted(m.verdict for m in other) == ["missing", "new"]
    # a record from before fingerprints matches by name, as it always did
    (legacy,) = compare_to_run([_observation(0.30, None)], reference, tolerance=0.005)
    assert legacy.verdict == "regressed"


def test_another_model_under_the_same_name_starts_its_own_history():
    from samp.bench.history import build_history

    observations = [_observation(0.10, "a" * 12, "2026-11-01T00:00:00Z"),
                    _observation(0.30, "b" * 12, "2026-11-02T00:00:00Z"),
                    _observation(0.102, "a" * 12, "2026-11-03T00:00:00Z")]
    first, second = build_history(observations, tolerance=0.005)
    assert [p.observation.value for p in first.points] == [0.10, 0.102] and not first.regressions
    assert [p.observation.value for p in second.points] == [0.30]
