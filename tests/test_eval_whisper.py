"""`samp eval` on a Whisper checkpoint in CTranslate2 format (a tiny real-class Whisper written by the test-only
writer): loaded through samp.models.load, no instruction prompt, the dataset's language, compression recorded."""
import json
from pathlib import Path

import pytest

import samp
from samp.cli import main as samp_main
from samp.eval import read_records
from samp.eval.audio import read_audio
from samp.models import adapter_for, load
from samp.models.tiny import tiny_whisper
from ct2_writer import ct2_variables, write_checkpoint

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "fixtures" / "speech_tiny" / "test" / "manifest.jsonl"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model, processor = tiny_whisper(multilingual=False, chunk_seconds=10)
    return write_checkpoint(model, processor.tokenizer, tmp_path_factory.mktemp("tiny-whisper-ct2"),
                            ct2_variables(model, lambda t: t.detach().float().numpy()))


def test_samp_eval_runs_a_ctranslate2_whisper(checkpoint, tmp_path):
    work = tmp_path / "work"
    argv = ["eval", "--model", str(checkpoint), "--data", str(MANIFEST), "--limit", "4", "--work-dir", str(work),
            "--max-new-tokens", "6", "--batch-size", "2", "--no-progress", "--method", "uniform",
            "--keep-ratio", "0.4"]
    assert samp_main(argv) == 0
    (record,) = read_records(work / "records.jsonl")
    run_dir = next(work.glob("*/uniform-keep0.4-*/test"))
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").open()]
    assert {r["prompt"] for r in rows} == {""}
    assert all(r["tokens_out"] == samp.keep_count(r["tokens_in"], 0.4) for r in rows)
    assert record.tokens_out == sum(r["tokens_out"] for r in rows)
    adapter = adapter_for(*load(checkpoint))
    for batch in (rows[:2], rows[2:]):
        result = adapter.generate([read_audio(ROOT / r["audio_path"][0]) for r in batch], method="uniform",
                                  keep_ratio=0.4, max_new_tokens=6, do_sample=False)
        assert result.texts == [r["prediction"] for r in batch]
        assert [list(t) for t in result.audio_tokens] == [[r["tokens_in"], r["tokens_out"]] for r in batch]


@pytest.mark.parametrize("task, lang, message", [
    ("asr", "de", "English-only; it cannot transcribe language='de'"),
    ("mqa", "en", "Whisper only transcribes; dataset x is a mqa task"),
])
def test_eval_refuses_what_whisper_cannot_do_before_inference(checkpoint, task, lang, message):
    from samp.eval.datasets import DatasetSpec
    from samp.eval.runner import check_items

    adapter = adapter_for(*load(checkpoint))
    with pytest.raises(ValueError, match=message):
        check_items(adapter, [(DatasetSpec("x", task, "x", ("x",), "Speech", lang), [])])


def test_eval_refuses_an_in_llm_method_before_the_model_loads(checkpoint, tmp_path, capsys, no_model_load):
    work = tmp_path / "work"
    argv = ["eval", "--model", str(checkpoint), "--data", str(MANIFEST), "--limit", "2", "--work-dir", str(work),
            "--no-progress", "--method", "fastv"]
    assert samp_main(argv) == 2
    err = capsys.readouterr().err
    assert "'fastv' prunes inside the LLM, which the whisper adapter does not support: Whisper has no LLM" in err
    assert not work.exists()
