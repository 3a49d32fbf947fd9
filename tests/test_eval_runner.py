"""The runner with an injected per-batch inference callable: result lines, records, resume after a kill,
--skip-eval / --reeval, failures, and sharding over two gloo processes with torchrun."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from samp.cli import main as samp_main
from samp.eval import get_dataset, load_manifest, read_records, score_asr
from samp.eval.jsonl import iter_jsonl
from samp.eval.runner import Prediction, RunConfig, collect_predictions, dataset_dir, evaluate, format_table

ROOT = Path(__file__).resolve().parents[1]
LIBRI = get_dataset("LibriSpeech")
# reference, what the scripted transcriber "hears", subset
ITEMS = [
    ("the cat sat on the mat", "the cat sat on the mat", "test_clean"),
    ("a quick brown fox", "a quick brown box", "test_clean"),
    ("hello world", "hello word", "test_other"),
    ("good morning everyone", "good morning", "test_other"),
    ("it is twenty five past two", "it is 25 past 2", "test_clean"),
    ("one more example here", "one more example here", "test_other"),
]


def write_manifest(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(directory / "tone.wav"), np.zeros(1600, dtype=np.float32), 16000)
    rows = [{"index": i, "audio_path": "tone.wav", "question": LIBRI.question, "answer": ref, "subset": subset,
             "meta": {"heard": heard}} for i, (ref, heard, subset) in enumerate(ITEMS)]
    path = directory / "LibriSpeech.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def scripted_transcriber(spec, items):
    """Test inference: returns what the manifest says was heard (no model involved)."""
    if any(item.meta.get("heard") == "FAIL" for item in items):
        raise RuntimeError("decoder exploded")
    return [Prediction(text=item.meta["heard"], prompt=f"transcribe {spec.name}", tokens_in=10, tokens_out=6,
                       encode_s=0.5, compress_s=0.1, prefill_s=0.2, decode_s=1.0) for item in items]


@pytest.fixture
def manifest(tmp_path):
    return write_manifest(tmp_path / "data")


CONFIG = RunConfig(model="/models/tiny-qwen", method="samp", keep_ratio=0.6, threshold=0.85, batch_size=2)


def test_evaluate_writes_result_lines_records_and_table(tmp_path, manifest):
    items = load_manifest(manifest)
    work = tmp_path / "work"
    records = evaluate(CONFIG, [(LIBRI, items)], work, scripted_transcriber, progress=False)
    assert [r.subset for r in records] == ["test_clean", "test_other"]
    # fixed set: "twenty five ... two" normalises to "25 ... 2" (no error), fox/box and world/word are
    # substitutions, "everyone" is deleted
    clean, other = records
    assert (clean.errors, clean.ref_tokens, clean.substitutions) == (1, 15, 1) and clean.wer == 1 / 15
    assert (other.errors, other.ref_tokens, other.substitutions, other.deletions) == (2, 9, 1, 1)
    for record in records:
        subset_items = [it for it in ITEMS if it[2] == record.subset]
        expected = score_asr([r for r, _, _ in subset_items], [h for _, h, _ in subset_items], "en")
        assert record.wer == expected.wer and record.errors == expected.errors
        assert record.ci_low <= record.wer <= record.ci_high
        assert record.n_items == len(subset_items) and record.coverage == 1.0
        assert record.tokens_in == 10 * len(subset_items) and record.tokens_out == 6 * len(subset_items)
        assert record.decode_s == pytest.approx(1.0 * len(subset_items))
        assert (record.model, record.method, record.keep_ratio, record.dataset) == ("/models/tiny-qwen", "samp", 0.6,
                                                                                    "LibriSpeech")
    assert read_records(work / "records.jsonl") == records
    merged = [json.loads(line) for line in (dataset_dir(work, CONFIG, LIBRI) / "predictions.jsonl").open()]
    assert [row["index"] for row in merged] == list(range(len(ITEMS)))
    assert merged[1]["prediction"] == "a quick brown box" and merged[1]["prompt"] == "transcribe LibriSpeech"
    table = format_table(records)
    assert "test_clean" in table and "LibriSpeech" in table and "100.0%" in table


def test_skip_eval_then_reeval_with_another_scorer(tmp_path, manifest):
    items = load_manifest(manifest)
    work = tmp_path / "work"
    assert evaluate(CONFIG, [(LIBRI, items)], work, scripted_transcriber, skip_eval=True, progress=False) == []
    assert not (work / "records.jsonl").exists()

    def must_not_infer(spec, batch):
        raise AssertionError("--reeval must not infer")

    evalkit = RunConfig(**{**CONFIG.__dict__, "scorer": "evalkit"})
    records = evaluate(evalkit, [(LIBRI, items)], work, must_not_infer, reeval=True, progress=False)
    assert [r.scorer for r in records] == ["evalkit", "evalkit"]
    # "25 past 2" vs "twenty five past two": the double normalisation does not change this one
    assert records[0].errors == evaluate(CONFIG, [(LIBRI, items)], work, None, reeval=True)[0].errors
    with pytest.raises(ValueError, match="exclude each other"):
        evaluate(CONFIG, [(LIBRI, items)], work, None, skip_eval=True, reeval=True)


def test_reeval_without_results_names_the_missing_items(tmp_path, manifest):
    items = load_manifest(manifest)
    with pytest.raises(ValueError, match="6 of 6 items .* have no result line"):
        evaluate(CONFIG, [(LIBRI, items)], tmp_path / "work", None, reeval=True)


def test_a_failing_batch_is_recorded_as_failed_items(tmp_path, manifest):
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[3]["meta"]["heard"] = "FAIL"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = load_manifest(manifest)
    records = evaluate(RunConfig(model="m", batch_size=2), [(LIBRI, items)], tmp_path / "work",
                       scripted_transcriber, progress=False)
    other = next(r for r in records if r.subset == "test_other")
    assert other.n_failed == 1 and other.coverage == pytest.approx(2 / 3)
    lines = collect_predictions(dataset_dir(tmp_path / "work", RunConfig(model="m"), LIBRI), items)
    assert lines[3]["prediction"] is None and "RuntimeError: decoder exploded" in lines[3]["error"]
    # its batch-mate (index 2) was retried alone and kept its prediction
    assert lines[2]["prediction"] == "hello word" and lines[2]["error"] is None
    # the failed item counts as deleting its 3 reference tokens
    assert other.deletions >= 3


def test_failed_items_are_retried_only_when_asked(tmp_path, manifest):
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[3]["meta"]["heard"] = "FAIL"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    work, config = tmp_path / "work", RunConfig(model="m", batch_size=2)
    inferred = []

    def recording(spec, items):
        inferred.extend(item.index for item in items)
        return scripted_transcriber(spec, items)

    evaluate(config, [(LIBRI, load_manifest(manifest))], work, recording, progress=False)
    inferred.clear()
    evaluate(config, [(LIBRI, load_manifest(manifest))], work, recording, progress=False)
    assert inferred == [], "a resumed run skips failed items"
    # a retry that fails again stays a failure; once the file is mended, the retry's success supersedes it
    evaluate(config, [(LIBRI, load_manifest(manifest))], work, recording, progress=False, retry_failed=True)
    assert inferred == [3]
    assert collect_predictions(dataset_dir(work, config, LIBRI), load_manifest(manifest))[3]["prediction"] is None
    rows[3]["meta"]["heard"] = "good morning"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    inferred.clear()
    records = evaluate(config, [(LIBRI, load_manifest(manifest))], work, recording, progress=False,
                       retry_failed=True)
    assert inferred == [3]
    assert sum(r.n_failed for r in records) == 0 and all(r.coverage == 1.0 for r in records)
    directory = dataset_dir(work, config, LIBRI)
    lines = [row for _, row in iter_jsonl(directory / "predictions.rank0.jsonl")]
    assert [row["index"] for row in lines].count(3) == 3, "every attempt stays on record"
    assert collect_predictions(directory, load_manifest(manifest))[3]["prediction"] == "good morning"
    inferred.clear()
    evaluate(config, [(LIBRI, load_manifest(manifest))], work, recording, progress=False, retry_failed=True)
    assert inferred == [], "nothing left to retry"
    with pytest.raises(ValueError, match="--retry-failed and --reeval exclude each other"):
        evaluate(config, [(LIBRI, load_manifest(manifest))], work, None, reeval=True, retry_failed=True)


KILLABLE = textwrap.dedent("""
    import sys, time
    from samp.eval import get_dataset, load_manifest
    from samp.eval.runner import Prediction, RunConfig, evaluate

    def slow(spec, items):
        time.sleep(0.3)
        return [Prediction(text=item.meta["heard"], prompt="p") for item in items]

    evaluate(RunConfig(model="m"), [(get_dataset("LibriSpeech"), load_manifest(sys.argv[1]))], sys.argv[2], slow,
             skip_eval=True, progress=False)
""")


def test_killed_run_resumes_without_duplicates_or_losses(tmp_path, manifest):
    work = tmp_path / "work"
    config = RunConfig(model="m")
    rank_file = dataset_dir(work, config, LIBRI) / "predictions.rank0.jsonl"
    process = subprocess.Popen([sys.executable, "-c", KILLABLE, str(manifest), str(work)], cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if rank_file.exists() and len(list(iter_jsonl(rank_file))) >= 2:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = [row["index"] for _, row in iter_jsonl(rank_file)]
    assert 2 <= len(done_before) < len(ITEMS)
    with open(rank_file, "ab") as handle:  # as if the kill had landed inside a write
        handle.write(b'{"index": 99, "predic')

    inferred = []

    def recording(spec, items):
        inferred.extend(item.index for item in items)
        return scripted_transcriber(spec, items)

    records = evaluate(config, [(LIBRI, load_manifest(manifest))], work, recording, progress=False)
    assert sorted(inferred) == sorted(set(range(len(ITEMS))) - set(done_before))
    indices = [row["index"] for _, row in iter_jsonl(rank_file)]
    assert sorted(indices) == list(range(len(ITEMS)))  # each item exactly once, the torn line gone
    assert sum(r.n_items for r in records) == len(ITEMS)


SHARDED = textwrap.dedent("""
    import os, sys
    from samp.eval import get_dataset, load_manifest
    from samp.eval.runner import Prediction, RunConfig, distributed_context, evaluate

    rank, world, barrier, close = distributed_context()

    def infer(spec, items):
        return [Prediction(text=item.meta["heard"], prompt=f"rank{rank}") for item in items]

    records = evaluate(RunConfig(model="m"), [(get_dataset("LibriSpeech"), load_manifest(sys.argv[1]))], sys.argv[2],
                       infer, rank=rank, world_size=world, barrier=barrier, progress=False)
    print(f"rank {rank} of {world} wrote {len(records)} records")
    close()
""")


def test_sharding_over_two_gloo_processes(tmp_path, manifest):
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED)
    work = tmp_path / "work"
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
         str(manifest), str(work)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rank 0 of 2 wrote 2 records" in out.stdout and "rank 1 of 2 wrote 0 records" in out.stdout
    directory = dataset_dir(work, RunConfig(model="m"), LIBRI)
    for rank in (0, 1):
        rows = [row for _, row in iter_jsonl(directory / f"predictions.rank{rank}.jsonl")]
        assert [row["index"] for row in rows] == [i for i in range(len(ITEMS)) if i % 2 == rank]
        assert {row["prompt"] for row in rows} == {f"rank{rank}"}
    assert len(read_records(work / "records.jsonl")) == 2


def test_cli_reeval_and_errors(tmp_path, manifest, capsys):
    work = tmp_path / "work"
    config = RunConfig(model="tiny")
    evaluate(config, [(LIBRI, load_manifest(manifest))], work, scripted_transcriber, skip_eval=True, progress=False)
    code = samp_main(["eval", "--model", "tiny", "--data", str(manifest), "--work-dir", str(work), "--reeval",
                      "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "test_other" in out and "records appended" in out
    assert samp_main(["eval", "--model", "tiny", "--data", "LibriSpeak", "--work-dir", str(work), "--reeval"]) == 2
    assert "unknown dataset 'LibriSpeak'" in capsys.readouterr().err
    assert samp_main(["eval", "--model", "tiny", "--data", "LibriSpeech", "--work-dir", str(work), "--reeval"]) == 2
    assert "give a data root" in capsys.readouterr().err
    code = samp_main(["eval", "--model", "tiny", "--data", "LibriSpeech", "--data-root", str(manifest.parent.parent),
                      "--work-dir", str(work), "--reeval", "--limit", "2"])
    assert code == 2 and "no manifest for LibriSpeech" in capsys.readouterr().err
    code = samp_main(["eval", "--model", "tiny", "--data", str(manifest), "--work-dir", str(work), "--reeval",
                      "--retry-failed"])
    assert code == 2 and "--retry-failed and --reeval exclude each other" in capsys.readouterr().err


def test_mqa_dataset_through_the_runner(tmp_path):
    vocal = get_dataset("VocalSound")
    directory = tmp_path / "data"
    directory.mkdir()
    soundfile.write(str(directory / "tone.wav"), np.zeros(1600, dtype=np.float32), 16000)
    said = [("Laughter", "A"), ("Cough", "The answer is C."), ("Sniff", "sniff"), ("Sigh", "D"), ("Sneeze", "FAIL")]
    rows = [{"index": i, "audio_path": "tone.wav", "question": vocal.question, "answer": answer,
             "subset": "voice_classification", "meta": {"heard": heard}} for i, (answer, heard) in enumerate(said)]
    (directory / "VocalSound.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def answering(spec, items):
        if any(item.meta["heard"] == "FAIL" for item in items):
            raise RuntimeError("no answer")
        return [Prediction(text=item.meta["heard"], prompt=item.question) for item in items]

    (record,) = evaluate(RunConfig(model="m"), [(vocal, load_manifest(directory / "VocalSound.jsonl"))],
                         tmp_path / "work", answering, progress=False)
    assert (record.metric, record.correct, record.total, record.n_failed) == ("accuracy", 3, 5, 1)
    assert record.accuracy == 0.6 and record.wer is None and record.coverage == 0.8
    assert 0.0 <= record.ci_low <= 0.6 <= record.ci_high <= 1.0
