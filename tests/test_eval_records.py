"""Records: schema round trip, atomic appends from concurrent processes, torn lines."""
import multiprocessing
import os

import pytest

from samp.eval import Record, append_record, read_records
from samp.eval.jsonl import append_jsonl, drop_torn_tail, iter_jsonl
from samp.eval.records import identity


def make_record(**overrides) -> Record:
    fields = dict(
        **identity("cpu"), model="tiny", method="samp", keep_ratio=0.6, threshold=0.85, flavor="samp",
        lowrank_plan=None, scorer="samp", scorer_version="1", dataset="LibriSpeech", subset="test_clean", metric="wer",
        wer=0.05, accuracy=None, errors=5, ref_tokens=100, substitutions=3, deletions=1, insertions=1, correct=None,
        total=None, n_items=10, n_failed=0, coverage=1.0, ci_low=0.03, ci_high=0.08, tokens_in=750, tokens_out=450,
        encode_s=0.1, compress_s=0.01, prefill_s=0.2, decode_s=1.0, peak_memory_bytes=None,
    )
    fields.update(overrides)
    return Record(**fields)


def test_round_trip_and_value(tmp_path):
    path = tmp_path / "records.jsonl"
    first, second = make_record(), make_record(metric="accuracy", wer=None, accuracy=0.7, subset="sound")
    append_record(path, first)
    append_record(path, second)
    assert read_records(path) == [first, second]
    assert (first.value, second.value) == (0.05, 0.7)
    assert first.schema == 1 and first.time.endswith("Z")


def test_record_rejects_inconsistent_metric():
    with pytest.raises(ValueError, match="sets wer"):
        make_record(wer=None, accuracy=0.5)
    with pytest.raises(ValueError, match="metric must be"):
        make_record(metric="cer")


def test_read_records_names_bad_lines(tmp_path):
    path = tmp_path / "records.jsonl"
    append_record(path, make_record())
    append_jsonl(path, {"model": "x"})
    with pytest.raises(ValueError, match="line 2: record lacks field"):
        read_records(path)
    with pytest.raises(ValueError, match="does not exist"):
        read_records(tmp_path / "none.jsonl")


def _append_many(path, worker):
    for i in range(50):
        append_jsonl(path, {"worker": worker, "i": i, "pad": "x" * 5000})


def test_concurrent_appends_never_interleave(tmp_path):
    path = tmp_path / "rows.jsonl"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_many, args=(path, w)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    rows = [row for _, row in iter_jsonl(path)]
    assert len(rows) == 200
    assert {(r["worker"], r["i"]) for r in rows} == {(w, i) for w in range(4) for i in range(50)}


def test_torn_last_line_is_ignored_then_dropped(tmp_path):
    path = tmp_path / "rows.jsonl"
    append_jsonl(path, {"index": 0})
    with open(path, "ab") as handle:
        handle.write(b'{"index": 1, "predi')
    assert [row for _, row in iter_jsonl(path)] == [{"index": 0}]
    assert drop_torn_tail(path)
    append_jsonl(path, {"index": 1})
    assert [row["index"] for _, row in iter_jsonl(path)] == [0, 1]
    assert not drop_torn_tail(path) and os.path.getsize(path) > 0
