"""`samp bench compare`: one budget format (the speech_tiny bounds are read by the gate), a comparison that compared
nothing fails, and bad input is exit 2."""
import json
from pathlib import Path

from bench_records import record
from samp.bench.budgets import load_budgets
from samp.cli import main
from samp.eval.identity import manifest_dataset, model_identity

ROOT = Path(__file__).resolve().parents[1]
SPEECH_TINY_BUDGETS = ROOT / "benchmarks" / "bench_speech_tiny_budgets.toml"
FIXTURE = ROOT / "fixtures" / "speech_tiny"


def _speech_tiny(value, method="samp", keep_ratio=0.6):
    return record(value, ci=(value - 0.01, value + 0.01), model=model_identity(FIXTURE / "model").name,
                  method=method, keep_ratio=keep_ratio,
                  dataset=manifest_dataset(FIXTURE / "test" / "manifest.jsonl").name, subset="speech_tiny")


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_the_speech_tiny_bounds_are_in_the_gates_format():
    budgets = load_budgets(SPEECH_TINY_BUDGETS)
    assert len(budgets) > 1 and {b.key.model for b in budgets} == {"speech_tiny"}
    assert {(b.key.dataset, b.key.subset) for b in budgets} == {("test", "speech_tiny")}


def test_records_named_as_samp_eval_names_them_meet_the_speech_tiny_budgets(tmp_path, capsys):
    records = _write(tmp_path / "records.jsonl", [_speech_tiny(0.0156, "base", 1.0), _speech_tiny(0.434)])
    assert main(["bench", "compare", str(records), str(SPEECH_TINY_BUDGETS), "--all"]) == 0
    out = capsys.readouterr().out
    assert "2 unchanged" in out and "speech_tiny samp r0.6 test/speech_tiny" in out
    regressed = _write(tmp_path / "worse.jsonl", [_speech_tiny(0.60)])
    assert main(["bench", "compare", str(regressed), str(SPEECH_TINY_BUDGETS)]) == 1
    assert "REGRESSED" in capsys.readouterr().out


def test_a_comparison_that_compared_nothing_fails(tmp_path, capsys):
    empty = _write(tmp_path / "empty.jsonl", [])
    assert main(["bench", "compare", str(empty), str(SPEECH_TINY_BUDGETS)]) == 1
    assert "nothing compared" in capsys.readouterr().err
    other = _write(tmp_path / "other.jsonl", [record(0.1)])
    reference = _write(tmp_path / "reference.jsonl", [_speech_tiny(0.4)])
    assert main(["bench", "compare", str(other), str(reference)]) == 1  # every reference result missing
    captured = capsys.readouterr()
    assert "1 missing" in captured.out and "nothing compared" in captured.err
    assert main(["bench", "compare", str(empty), str(SPEECH_TINY_BUDGETS), "--allow-empty"]) == 0


def test_bad_input_is_exit_2(tmp_path, capsys):
    records = _write(tmp_path / "records.jsonl", [_speech_tiny(0.4)])
    assert main(["bench", "compare", str(tmp_path / "none.jsonl"), str(SPEECH_TINY_BUDGETS)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["bench", "compare", str(records), str(tmp_path / "none.toml")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[[budget]]\nmethod = 'samp'\n")
    assert main(["bench", "compare", str(records), str(bad)]) == 2
    assert "expected a non-empty 'rows' array" in capsys.readouterr().err
