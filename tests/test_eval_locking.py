"""Runs that cannot collide: a run holds a lock (a second one of the same setting waits, naming the holder, then
finds the work done), a finished run appends nothing unless asked, a resumed run says how much was done."""
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from samp.eval import load_manifest, read_records
from samp.eval.jsonl import iter_jsonl
from samp.eval.runner import RunConfig, dataset_dir, evaluate
from test_eval_runner import LIBRI, ITEMS, scripted_transcriber, write_manifest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "fixtures" / "speech_tiny"

GATED_RUN = textwrap.dedent("""
    import os, sys, time
    from samp.eval import get_dataset, load_manifest
    from samp.eval.runner import Prediction, RunConfig, evaluate

    def gated(spec, items):
        with open(sys.argv[3], "a") as log:  # every item this process infers
            log.write("".join(f"{item.index}\\n" for item in items))
        deadline = time.monotonic() + 120
        while not os.path.exists(sys.argv[4]) and time.monotonic() < deadline:  # held until the test opens it
            time.sleep(0.02)
        return [Prediction(text=item.meta["heard"], prompt="p") for item in items]

    evaluate(RunConfig(model="m"), [(get_dataset("LibriSpeech"), load_manifest(sys.argv[1]))], sys.argv[2], gated,
             progress=False)
""")


def test_a_second_run_waits_for_the_first_and_duplicates_no_work(tmp_path):
    manifest = write_manifest(tmp_path / "data")
    work, log, gate = tmp_path / "work", tmp_path / "inferred.txt", tmp_path / "gate"
    command = [sys.executable, "-c", GATED_RUN, str(manifest), str(work), str(log), str(gate)]
    first = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (log.exists() and log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first.poll() is None, "the first run holds the lock, inferring its first item"
    second = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    waiting = ""
    while "waiting" not in waiting:  # the second run says whom it waits for, then blocks
        line = second.stderr.readline()
        if not line:
            break
        waiting += line
    gate.touch()
    second_err = waiting + second.communicate(timeout=120)[1]
    first_err = first.communicate(timeout=120)[1]
    assert first.returncode == 0 and second.returncode == 0, first_err + second_err

    assert "this run is in progress elsewhere" in waiting and f"pid {first.pid} on " in waiting
    assert "waiting for it to finish" in waiting
    assert "LibriSpeech: already complete (6 items" in second_err and "nothing appended" in second_err
    inferred = sorted(int(line) for line in log.read_text().split())
    assert inferred == list(range(len(ITEMS))), "each item inferred once, by the first run"
    rank_file = dataset_dir(work, RunConfig(model="m"), LIBRI) / "predictions.rank0.jsonl"
    assert sorted(row["index"] for _, row in iter_jsonl(rank_file)) == list(range(len(ITEMS)))
    assert len(read_records(work / "records.jsonl")) == 2  # one per subset, from the first run only


def test_two_samp_eval_processes_on_the_tiny_model(tmp_path):
    work = tmp_path / "work"
    command = [sys.executable, "-m", "samp.cli", "eval", "--model", str(FIXTURE / "model"), "--data",
               str(FIXTURE / "test" / "manifest.jsonl"), "--method", "uniform", "--work-dir", str(work), "--limit",
               "16", "--max-new-tokens", "8", "--no-progress"]
    processes = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    (rank_file,) = work.glob("*/*/test/predictions.rank0.jsonl")
    assert sorted(row["index"] for _, row in iter_jsonl(rank_file)) == list(range(16))
    (record,) = read_records(work / "records.jsonl")
    assert record.n_items == 16 and record.coverage == 1.0
    assert sum("already complete" in err for _, err in outputs) == 1
    assert sum("records appended" in out for out, _ in outputs) == 1


def test_a_finished_run_appends_nothing_unless_asked(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "data")
    work, config = tmp_path / "work", RunConfig(model="m", batch_size=2)
    datasets = [(LIBRI, load_manifest(manifest))]
    assert len(evaluate(config, datasets, work, scripted_transcriber, progress=False)) == 2
    capsys.readouterr()
    assert evaluate(config, datasets, work, scripted_transcriber, progress=False) == []
    err = capsys.readouterr().err
    assert "LibriSpeech: resuming: 6 of 6 done" in err
    assert "LibriSpeech: already complete (6 items, recorded " in err and "--reeval scores it again" in err
    assert len(read_records(work / "records.jsonl")) == 2
    # asked: --reeval scores again and appends
    assert len(evaluate(config, datasets, work, None, reeval=True)) == 2
    assert len(read_records(work / "records.jsonl")) == 4
    # another setting of the same data is not complete
    assert len(evaluate(RunConfig(model="m", keep_ratio=0.5), datasets, work, scripted_transcriber,
                        progress=False)) == 2


def test_a_run_with_failures_is_complete_until_retried(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "data")
    text = manifest.read_text().replace('"heard": "hello word"', '"heard": "FAIL"')
    manifest.write_text(text)
    work, config = tmp_path / "work", RunConfig(model="m")
    datasets = [(LIBRI, load_manifest(manifest))]
    evaluate(config, datasets, work, scripted_transcriber, progress=False)
    capsys.readouterr()
    assert evaluate(config, datasets, work, scripted_transcriber, progress=False) == []
    assert "--retry-failed infers its 1 failed items again" in capsys.readouterr().err
    # the retry (failing again) is asked for, so it is recorded
    assert len(evaluate(config, datasets, work, scripted_transcriber, progress=False, retry_failed=True)) == 2


def test_resume_says_how_much_was_done_and_a_single_process_has_no_rank_label(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "data")
    work, config = tmp_path / "work", RunConfig(model="m")
    evaluate(config, [(LIBRI, load_manifest(manifest, limit=4))], work, scripted_transcriber, skip_eval=True,
             progress=True)
    first = capsys.readouterr().err
    assert "resuming" not in first and "LibriSpeech:" in first and "rank" not in first
    evaluate(config, [(LIBRI, load_manifest(manifest))], work, scripted_transcriber, progress=True)
    err = capsys.readouterr().err
    assert "LibriSpeech: resuming: 4 of 6 done" in err
    assert "rank" not in err
