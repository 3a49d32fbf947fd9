"""`samp eval` scores the committed tiny speech model on its committed manifest (the fixture's intended use)."""
import json
from pathlib import Path

from samp.cli import main

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "speech_tiny"


def test_samp_eval_base_on_speech_tiny(tmp_path, capsys):
    code = main(["eval", "--model", str(FIXTURE / "model"), "--data", str(FIXTURE / "test" / "manifest.jsonl"),
                 "--method", "base", "--keep-ratio", "1.0", "--work-dir", str(tmp_path), "--limit", "32",
                 "--batch-size", "32", "--max-new-tokens", "8", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    (record,) = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert record["n_items"] == 32 and record["coverage"] == 1.0
    # Measured 3 errors in 133 words on these 32 utterances (the whole set: 1.56 %).
    assert record["wer"] <= 0.05
    assert record["tokens_in"] == record["tokens_out"] > 32 * 20


def test_samp_eval_compression_costs_accuracy(tmp_path, capsys):
    code = main(["eval", "--model", str(FIXTURE / "model"), "--data", str(FIXTURE / "test" / "manifest.jsonl"),
                 "--method", "uniform", "--keep-ratio", "0.4", "--work-dir", str(tmp_path), "--limit", "32",
                 "--batch-size", "32", "--max-new-tokens", "8", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    (record,) = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert record["tokens_out"] < 0.45 * record["tokens_in"]
    assert record["wer"] > 0.3  # the full 400-utterance set measures 70.6 % at keep 0.4
