"""The accuracy gate: a regression needs both a move beyond the tolerance and the reference outside this run's
confidence interval; references load from budgets, records JSONL or pytest-benchmark JSON."""
import json

import pytest

from samp.bench.budgets import AccuracyBudget, BudgetTable, ResultKey
from samp.bench.gate import (compare, compare_to_budgets, compare_to_run, format_movements, judge, load_reference,
                             regressions)
from samp.bench.observations import observation_from_record, read_observations
from samp.eval.records import Record
from bench_records import record

KEY = dict(model="Qwen/Qwen2-Audio-7B", method="samp", keep_ratio=0.6, dataset="librispeech", subset="test_clean")


@pytest.mark.parametrize("metric, reference, current, ci, verdict", [
    ("wer", 0.027, 0.040, None, "regressed"),
    ("wer", 0.027, 0.030, None, "unchanged"),          # inside the tolerance
    ("wer", 0.027, 0.040, (0.020, 0.060), "unchanged"),  # beyond it, but the reference is inside the CI
    ("wer", 0.027, 0.040, (0.035, 0.045), "regressed"),
    ("wer", 0.040, 0.027, None, "improved"),
    ("accuracy", 0.64, 0.60, None, "regressed"),      # higher is better
    ("accuracy", 0.60, 0.64, (0.62, 0.66), "improved"),
])
def test_judge(metric, reference, current, ci, verdict):
    assert judge(metric, reference, current, 0.005, ci) == verdict


def test_negative_tolerance_is_refused():
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        judge("wer", 0.1, 0.1, -0.1, None)
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        compare_to_run([], [], -0.01)


def test_compare_to_run_lists_regressed_missing_and_new():
    reference = [observation_from_record(record(0.027)),
                 observation_from_record(record(0.05, dataset="fleurs-en", subset=""))]
    current = [observation_from_record(record(0.020)), observation_from_record(record(0.040)),  # last one wins
               observation_from_record(record(0.30, method="visionzip"))]
    movements = {m.key.method + "/" + m.key.dataset: m for m in compare_to_run(current, reference, 0.005)}
    assert movements["samp/librispeech"].verdict == "regressed"
    assert movements["samp/librispeech"].delta == pytest.approx(0.013)
    assert movements["samp/fleurs-en"].verdict == "missing"
    assert movements["visionzip/librispeech"].verdict == "new"
    assert [m.key.method for m in regressions(list(movements.values()))] == ["samp"]


def test_compare_to_budgets_uses_each_rows_band_and_only_measured_rows():
    key = ResultKey(**KEY)
    budgets = BudgetTable((AccuracyBudget(key, "wer", 2.72, 0.5),
                           AccuracyBudget(ResultKey(**dict(KEY, dataset="aishell-1", subset=None)), "cer", 2.69, 0.5)))
    inside = compare_to_budgets([observation_from_record(record(0.0300))], budgets)
    assert [m.verdict for m in inside] == ["unchanged"]
    outside = compare_to_budgets([observation_from_record(record(0.0330))], budgets)
    assert [m.verdict for m in outside] == ["regressed"]
    everything = compare_to_budgets([observation_from_record(record(0.0330))], budgets, only_measured=False)
    assert sorted(m.verdict for m in everything) == ["missing", "regressed"]


def test_table_shows_what_moved_worst_first():
    reference = [observation_from_record(record(0.027)), observation_from_record(record(0.05, method="cdpruner")),
                 observation_from_record(record(0.06, method="fastadasp"))]
    current = [observation_from_record(record(0.034)), observation_from_record(record(0.08, method="cdpruner")),
               observation_from_record(record(0.06, method="fastadasp"))]
    table = format_movements(compare_to_run(current, reference, 0.005))
    lines = table.splitlines()
    assert "REGRESSED" in lines[2] and "cdpruner" in lines[2] and "+3.00" in lines[2]
    assert "REGRESSED" in lines[3] and " samp " in lines[3]
    assert "fastadasp" not in table
    assert lines[-1] == "2 regressed, 1 unchanged (unchanged rows not shown)"
    assert format_movements([]).startswith("nothing moved")


def test_load_reference_from_each_format(tmp_path):
    budgets = tmp_path / "b.toml"
    budgets.write_text('rows = [{ model = "Qwen/Qwen2-Audio-7B", method = "samp", keep_ratio = 0.6, '
                       'dataset = "librispeech", subset = "test_clean", metric = "wer", published = 2.72, '
                       'tolerance = 0.5 }]\n')
    assert isinstance(load_reference(budgets), BudgetTable)
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps(record(0.027)) + "\n\n" + json.dumps(record(0.028)) + "\n")
    assert [o.value for o in load_reference(records)] == [0.027, 0.028]
    saved = tmp_path / "0001_run.json"
    saved.write_text(json.dumps({"benchmarks": [{"name": "a", "extra_info": {"samp_record": record(0.031)}},
                                                {"name": "timing only", "extra_info": {}}]}))
    current = [observation_from_record(record(0.040))]
    movements = compare(current, load_reference(saved), 0.005)
    assert [m.verdict for m in movements] == ["regressed"]
    assert compare(current, load_reference(budgets), 0.5)[0].verdict == "regressed"


def test_bad_references_and_records_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="reference not found"):
        load_reference(tmp_path / "nope.jsonl")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="expected a .toml budget file"):
        load_reference(tmp_path / "x.csv")
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="no 'benchmarks' list"):
        load_reference(tmp_path / "x.json")
    (tmp_path / "r.jsonl").write_text(json.dumps(record(0.02)) + "\n{not json\n")
    with pytest.raises(ValueError, match="line 2"):
        read_observations(tmp_path / "r.jsonl")
    (tmp_path / "r.jsonl").write_text(json.dumps({"model": "m", "metric": "wer"}) + "\n")
    with pytest.raises(ValueError, match="record lacks field"):
        read_observations(tmp_path / "r.jsonl")
    with pytest.raises(ValueError, match="metric must be 'wer' or 'accuracy'"):
        observation_from_record(record(0.1, metric="bleu"))
    with pytest.raises(ValueError, match="wer is not finite"):
        observation_from_record(record(float("nan")))
    with pytest.raises(TypeError, match="samp.eval Record"):
        observation_from_record([1, 2])


def test_observation_reads_stage_times_and_kept_fraction():
    observation = observation_from_record(Record.from_dict(record(0.03, encode_s=0.1, decode_s=0.5, subset="")))
    assert observation.key.subset is None
    assert observation.kept_fraction == pytest.approx(0.6)
    assert observation.seconds("prefill") == pytest.approx(0.02)
    assert observation.seconds("encode") == pytest.approx(0.1)
    assert observation.seconds("compress") is None
    assert observation.timestamp == "2026-11-25T10:00:00Z" and observation.git_sha == "0123456789abcdef"


def test_bench_compare_cli_exit_status_and_table(tmp_path, capsys):
    import samp.cli
    from samp.eval.records import append_record

    budgets = tmp_path / "b.toml"
    budgets.write_text('rows = [{ model = "Qwen/Qwen2-Audio-7B", method = "samp", keep_ratio = 0.6, '
                       'dataset = "librispeech", subset = "test_clean", metric = "wer", published = 2.72, '
                       'tolerance = 0.5 }]\n')
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    append_record(good, Record.from_dict(record(0.0275)))
    append_record(bad, Record.from_dict(record(0.0400, ci=(0.0390, 0.0410))))
    assert samp.cli.main(["bench", "compare", str(good), str(budgets)]) == 0
    assert "1 unchanged" in capsys.readouterr().out
    assert samp.cli.main(["bench", "compare", str(bad), str(budgets)]) == 1
    assert "REGRESSED" in capsys.readouterr().out
    # Against a saved run (records JSONL) with --all listing unchanged rows as well.
    assert samp.cli.main(["bench", "compare", str(good), str(good), "--all"]) == 0
    assert "unchanged" in capsys.readouterr().out.splitlines()[2]
