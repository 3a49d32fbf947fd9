"""Wrong input to the command line is refused up front: exit 2, one line naming the problem, nothing written, and
(for `samp eval` and `samp lowrank`) before the model loads."""
import json
from pathlib import Path

import pytest
import torch

import samp
import samp.models
import samp.models.registry
from samp.cli import main
from samp.methods.reference import METHODS as REFERENCE_METHODS

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "fixtures" / "speech_tiny" / "model"
MANIFEST = ROOT / "fixtures" / "speech_tiny" / "test" / "manifest.jsonl"


def _eval(work, *options):
    return main(["eval", "--model", str(MODEL), "--data", str(MANIFEST), "--work-dir", str(work), "--limit", "2",
                 "--no-progress", *options])


def _no_method_outside_the_reference():
    outside = [spec.name for spec in samp.methods.available() if spec.name not in REFERENCE_METHODS]
    return outside[0] if outside else None


EVAL_CASES = [
    (["--method", "nope"], "unknown method 'nope'; available: samp, base"),
    (["--flavor", "nonsense"], "unknown flavor 'nonsense'; available: samp, qwen2_audio"),
    (["--method", "base", "--keep-ratio", "0.5"], "method 'base' keeps every token"),
    (["--keep-ratio", "0"], "keep_ratio must be in (0, 1]"),
    (["--keep-ratio", "1.5"], "keep_ratio must be in (0, 1]"),
    (["--threshold", "7"], "threshold must be a finite number in [-1, 1]"),
    (["--threshold", "nan"], "threshold must be a finite number in [-1, 1]"),
    (["--flavor", "glm_asr"], "flavor 'glm_asr' does not apply to qwen2_audio; use 'samp' or 'qwen2_audio'"),
    (["--method", "uniform", "--flavor", "qwen2_audio"], "method 'uniform' has no 'qwen2_audio' reference flavour"),
    (["--device", "gpu"], "unknown device 'gpu'; this machine has: cpu"),
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be a positive integer"),
    (["--lowrank-encoder", "/nonexistent/encoder"], "--lowrank-encoder /nonexistent/encoder does not exist"),
]


@pytest.mark.parametrize("options, message", EVAL_CASES, ids=[" ".join(c[0]) for c in EVAL_CASES])
def test_eval_refuses_bad_options_before_the_model_loads(options, message, tmp_path, capsys, no_model_load):
    work = tmp_path / "work"
    assert _eval(work, *options) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1, "one line, printed once (not once per item)"
    assert not work.exists(), "nothing written: no result lines, no record"


def test_every_registered_method_outside_the_reference_refuses_a_reference_flavour(tmp_path, capsys, no_model_load):
    method = _no_method_outside_the_reference()
    assert _eval(tmp_path / "work", "--method", method, "--flavor", "qwen2_audio") == 2
    assert f"method {method!r} has no 'qwen2_audio' reference flavour" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_eval_refuses_cuda_without_cuda(tmp_path, capsys, no_model_load):
    assert _eval(tmp_path / "work", "--device", "cuda") == 2
    err = capsys.readouterr().err
    assert "device 'cuda': CUDA is not available on this machine" in err and "it has: cpu" in err
    assert not (tmp_path / "work").exists()


def test_eval_refuses_a_folder_that_is_not_a_checkpoint(tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path), "--data", str(MANIFEST), "--work-dir", str(tmp_path / "w")]) == 2
    assert "has no config.json: not a model checkpoint directory" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_a_manifest_in_the_current_folder_gets_its_folders_name(tmp_path, monkeypatch, capsys):
    from samp.eval.identity import manifest_dataset

    folder = tmp_path / "my_set"
    folder.mkdir()
    monkeypatch.chdir(folder)
    spec = manifest_dataset("manifest.jsonl")
    assert spec.name == "my_set"
    assert manifest_dataset(Path(".") / "manifest.jsonl").name == "my_set"
    assert manifest_dataset(MANIFEST).name == "test"


# --- samp dashboard ----------------------------------------------------------------------------------------------
def test_dashboard_of_a_missing_records_file(tmp_path, capsys):
    assert main(["dashboard", str(tmp_path / "nonexistent.jsonl"), "--out", str(tmp_path / "site")]) == 2
    assert "samp dashboard: records file" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()


def test_dashboard_of_a_records_file_with_a_bad_line(tmp_path, capsys):
    from bench_records import record

    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps(record(0.1)) + "\n{not json\n")
    assert main(["dashboard", str(records), "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    assert f"{records}, line 2: not valid JSON" in err
    assert not (tmp_path / "site").exists()


def test_dashboard_of_an_empty_records_file(tmp_path, capsys):
    records = tmp_path / "records.jsonl"
    records.write_text("")
    assert main(["dashboard", str(records)]) == 2
    assert f"samp dashboard: {records} holds no records" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()


def test_dashboard_without_out_writes_beside_the_records(tmp_path, capsys):
    from bench_records import record

    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps(record(0.1)) + "\n")
    assert main(["dashboard", str(records)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "site" / "index.html")
    assert (tmp_path / "site" / "index.html").read_text().startswith("<!DOCTYPE html>")


# --- samp lowrank ------------------------------------------------------------------------------------------------
def test_lowrank_plan_without_stats(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    assert main(["lowrank", "plan", "--stats", str(tmp_path / "stats.safetensors"), "--out", str(plan)]) == 2
    err = capsys.readouterr().err
    assert "samp lowrank plan: --stats" in err and "does not exist (write it with 'samp lowrank calibrate')" in err
    assert not plan.exists()


def test_lowrank_apply_without_stats_or_plan(tmp_path, capsys, no_model_load):
    out = tmp_path / "encoder"
    argv = ["lowrank", "apply", "--model", str(MODEL), "--stats", str(tmp_path / "stats.safetensors"),
            "--plan", str(tmp_path / "plan.json"), "--out", str(out)]
    assert main(argv) == 2
    assert "--stats" in capsys.readouterr().err and not out.exists()
    (tmp_path / "stats.safetensors").write_bytes(b"")
    assert main(argv) == 2
    assert "--plan" in capsys.readouterr().err and not out.exists()


def test_lowrank_plan_refuses_a_device_this_machine_lacks(tmp_path, capsys):
    stats = tmp_path / "stats.safetensors"
    stats.write_bytes(b"")
    assert main(["lowrank", "plan", "--stats", str(stats), "--device", "gpu", "--out", str(tmp_path / "p.json")]) == 2
    assert "unknown device 'gpu'" in capsys.readouterr().err


def test_lowrank_calibrate_checks_its_output_location_first(tmp_path, capsys, no_model_load):
    blocker = tmp_path / "lr"
    blocker.write_text("a file where the folder should be")
    assert main(["lowrank", "calibrate", "--model", str(MODEL), "--manifest", str(MANIFEST), "--limit", "1",
                 "--out", str(blocker / "stats.safetensors")]) == 2
    assert "cannot create the folder of --out" in capsys.readouterr().err
    assert main(["lowrank", "calibrate", "--model", str(tmp_path), "--manifest", str(MANIFEST),
                 "--out", str(tmp_path / "x" / "stats.safetensors")]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_lowrank_calibrate_creates_the_output_folder(tmp_path, capsys):
    out = tmp_path / "lr" / "stats.safetensors"
    assert main(["lowrank", "calibrate", "--model", str(MODEL), "--manifest", str(MANIFEST), "--limit", "1",
                 "--out", str(out)]) == 0
    assert out.is_file() and f"-> {out}" in capsys.readouterr().out
