"""The GPU suites' parts that run anywhere: the parameters come from the budget files, the latency measurement
works on a tiny real model (CPU here, CUDA on a GPU machine), and missing checkpoints skip with a reason."""
from pathlib import Path

import pytest

from samp.bench.budgets import default_budget_dir, load_budgets
from samp.bench.gpu_suite import LatencyBook, ModelCache, accuracy_params, latency_params, measure_latency
from samp.bench.gpu_suite import run_latency_budget
from samp.bench.plugin import BenchPaths


def test_params_cover_every_budget_row_of_a_model():
    params = accuracy_params("zai-org/GLM-ASR-Nano-2512")
    assert len(params) == 7 * 10
    assert params[0].values[0].key.method == "base"
    assert "samp-r0.7-LibriSpeech-test_clean" in {p.id for p in params}
    latency = [p.values for p in latency_params("Qwen/Qwen2-Audio-7B")]
    assert latency[0] == ("base", 1.0)
    assert ("samp", 0.6) in latency and ("samp", 0.5) in latency and len(latency) == 1 + 6 * 2 + 2 * 2  # six published methods and two in-LLM ones, at 0.5 and 0.6
    with pytest.raises(ValueError, match="no budget rows for nobody/none"):
        accuracy_params("nobody/none")


def test_in_llm_methods_run_at_every_compressed_setting_of_a_model():
    from samp.bench.gpu_suite import in_llm_params

    keys = [p.values[0] for p in in_llm_params("Qwen/Qwen2-Audio-7B")]
    compressed = {(b.values[0].key.keep_ratio, b.values[0].key.dataset, b.values[0].key.subset)
                  for b in accuracy_params("Qwen/Qwen2-Audio-7B") if b.values[0].key.method != "base"}
    assert {k.method for k in keys} == {"fastv", "dart-llm"}
    assert {(k.keep_ratio, k.dataset, k.subset) for k in keys} == compressed
    assert len(keys) == 2 * len(compressed)
    latency = [p.values for p in latency_params("Qwen/Qwen2-Audio-7B")]
    assert ("fastv", 0.6) in latency and ("dart-llm", 0.5) in latency


def test_measure_latency_on_a_tiny_model(benchmark):
    import samp.models
    from samp.models.tiny import tiny_qwen2_audio

    adapter = samp.models.adapter_for(*tiny_qwen2_audio())
    result = measure_latency(adapter, method="fastadasp", keep_ratio=0.5, flavor="samp", benchmark=benchmark,
                             seconds=2.0, new_tokens=3, rounds=1)
    before, after = result.audio_tokens
    assert after == samp.keep_count(before, 0.5) and before > after
    assert min(result.encode_s, result.compress_s, result.prefill_s, result.decode_s) > 0
    assert result.decode_tokens_per_s == pytest.approx(2 / result.decode_s)
    assert result.peak_memory_bytes is None  # CPU
    with pytest.raises(ValueError, match="new_tokens >= 2"):
        measure_latency(adapter, method="base", keep_ratio=1.0, flavor="samp", benchmark=benchmark, new_tokens=1)


def test_latency_budget_skips_without_a_checkpoint(tmp_path):
    with pytest.raises(pytest.skip.Exception, match="not found: no config.json under"):
        run_latency_budget("Qwen/Qwen2-Audio-7B", "samp", 0.6, paths=BenchPaths(tmp_path, None), cache=ModelCache(),
                           benchmark=None, book=LatencyBook(), budgets=load_budgets(default_budget_dir()))


@pytest.fixture(scope="module")
def tiny_checkout(tmp_path_factory):
    """A saved tiny Qwen2-Audio checkpoint and a three-utterance LibriSpeech manifest, laid out the way
    --samp-model-dir and --samp-data-root expect them."""
    import json

    import soundfile

    from samp.models.tiny import speechlike_waveform, tiny_qwen2_audio

    root = tmp_path_factory.mktemp("checkout")
    model, processor = tiny_qwen2_audio()
    checkpoint = root / "models" / "tiny" / "Qwen2-Audio"
    model.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    (root / "models" / "tiny" / "speech_tiny").symlink_to(Path(__file__).resolve().parents[1] / "fixtures" /
                                                           "speech_tiny" / "model")
    data = root / "data" / "LibriSpeech"
    data.mkdir(parents=True)
    rows = []
    for index in range(3):
        soundfile.write(data / f"{index}.wav", speechlike_waveform(2.0, seed=index), 16000)
        rows.append({"index": index, "audio_path": f"{index}.wav", "question": "Transcribe.",
                     "answer": "hello world again", "subset": "test_clean"})
    (data / "LibriSpeech.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


def test_accuracy_budget_end_to_end_on_a_tiny_checkpoint(tiny_checkout, tmp_path, benchmark):
    import torch

    from samp.bench.budgets import AccuracyBudget, ResultKey
    from samp.bench.gpu_suite import run_accuracy_budget
    from samp.bench.plugin import Recorder

    key = ResultKey("tiny/Qwen2-Audio", "samp", 0.5, "LibriSpeech", "test_clean")
    paths = BenchPaths(tiny_checkout / "models", tiny_checkout / "data")
    cache, records = ModelCache("cpu", torch.float32), tmp_path / "records.jsonl"
    recorder = Recorder(records)
    wide = AccuracyBudget(key, "wer", 100.0, 10_000.0, threshold=0.85, flavor="qwen2_audio")
    run_accuracy_budget(wide, paths=paths, cache=cache, benchmark=benchmark, recorder=recorder,
                        work_dir=tmp_path / "work", max_new_tokens=6)
    (observation,) = recorder.observations
    assert observation.key == key and observation.metric == "wer" and observation.coverage == 1.0
    assert observation.n_items == 3 and observation.value > 0 and observation.device == "cpu"
    assert observation.tokens_out < observation.tokens_in
    assert benchmark.extra_info["samp_record"]["flavor"] == "qwen2_audio"
    assert records.read_text().count("\n") == 1


def test_a_score_outside_its_band_fails_with_the_numbers(tiny_checkout, tmp_path, benchmark):
    import torch

    from samp.bench.budgets import AccuracyBudget, ResultKey
    from samp.bench.gpu_suite import run_accuracy_budget
    from samp.bench.plugin import Recorder

    narrow = AccuracyBudget(ResultKey("tiny/Qwen2-Audio", "base", 1.0, "LibriSpeech", "test_clean"), "wer", 0.0, 0.0)
    recorder = Recorder(None)
    with pytest.raises(AssertionError, match=r"wer \d+\.\d\d% left the band 0\.00–0\.00% \(published 0\.0%"):
        run_accuracy_budget(narrow, paths=BenchPaths(tiny_checkout / "models", tiny_checkout / "data"),
                            cache=ModelCache("cpu", torch.float32), benchmark=benchmark, recorder=recorder,
                            work_dir=tmp_path, max_new_tokens=6)
    assert recorder.observations[0].value > 0  # recorded before the band is checked


def test_in_llm_accuracy_is_recorded_not_gated(tiny_checkout, tmp_path, benchmark):
    import torch

    from samp.bench.budgets import ResultKey
    from samp.bench.gpu_suite import run_recorded_accuracy
    from samp.bench.plugin import Recorder

    # FastV prunes before LLM layer 2: the committed speech_tiny model has 3 (the tiny random one only 2)
    key = ResultKey("tiny/speech_tiny", "fastv", 0.5, "LibriSpeech", "test_clean")
    recorder = Recorder(None)
    record = run_recorded_accuracy(key, paths=BenchPaths(tiny_checkout / "models", tiny_checkout / "data"),
                                   cache=ModelCache("cpu", torch.float32), benchmark=benchmark, recorder=recorder,
                                   work_dir=tmp_path, max_new_tokens=6)
    (observation,) = recorder.observations
    assert observation.key == key and record.method == "fastv" and record.flavor == "samp"
    assert observation.coverage == 1.0 and observation.tokens_out < observation.tokens_in


def test_accuracy_budget_skips_without_the_dataset(tiny_checkout, tmp_path):
    from samp.bench.budgets import AccuracyBudget, ResultKey
    from samp.bench.gpu_suite import run_accuracy_budget

    budget = AccuracyBudget(ResultKey("tiny/Qwen2-Audio", "samp", 0.5, "AISHELL-1", "aishell1_test"), "cer", 3.0, 0.5)
    with pytest.raises(pytest.skip.Exception, match="dataset AISHELL-1 not found: no manifest for AISHELL-1"):
        run_accuracy_budget(budget, paths=BenchPaths(tiny_checkout / "models", tiny_checkout / "data"),
                            cache=ModelCache("cpu"), benchmark=None, recorder=None, work_dir=tmp_path)



@pytest.mark.parametrize("method, keep_ratio", [("base", 1.0), ("fastadasp", 0.5)])
def test_latency_budget_ratios_within_one_session(tiny_checkout, benchmark, method, keep_ratio, latency_session):
    from samp.bench.budgets import BudgetTable

    book, cache = latency_session
    # No latency gate here: on a tiny CPU model prefill is a few milliseconds of mostly fixed overhead, and one
    # round's ratio on a shared machine says nothing (the gate itself: test_prefill_gate_*).
    budgets = BudgetTable((), None)
    paths = BenchPaths(tiny_checkout / "models", None)
    run_latency_budget("tiny/Qwen2-Audio", method, keep_ratio, paths=paths, cache=cache, benchmark=benchmark,
                       book=book, budgets=budgets, seconds=2.0, new_tokens=3, rounds=1)
    assert (("tiny/Qwen2-Audio", method, keep_ratio)) in book.results
    assert benchmark.extra_info["method"] == method and benchmark.extra_info["prefill_s"] > 0
    if method == "base":
        assert "prefill_ratio_to_base" not in benchmark.extra_info
    else:
        base = book.results[("tiny/Qwen2-Audio", "base", 1.0)]
        assert benchmark.extra_info["prefill_ratio_to_base"] == pytest.approx(
            book.results[("tiny/Qwen2-Audio", method, keep_ratio)].prefill_s / base.prefill_s)


def test_prefill_gate_allows_the_kept_share_plus_slack():
    from samp.bench.budgets import LatencyBudget

    budget = LatencyBudget(prefill_slack=0.15)
    budget.check_prefill("m samp r0.6", 0.6, prefill_s=0.0749, base_prefill_s=0.1)
    with pytest.raises(AssertionError, match=r"m samp r0\.6: prefill 75\.1 ms is 0\.75x the uncompressed 100\.0 ms "
                                             r"\(budget 0\.75x\)"):
        budget.check_prefill("m samp r0.6", 0.6, prefill_s=0.0751, base_prefill_s=0.1)


@pytest.fixture(scope="module")
def latency_session():
    import torch

    return LatencyBook(), ModelCache("cpu", torch.float32)


def test_latency_budget_needs_the_uncompressed_run_first(tiny_checkout, benchmark):
    import torch

    with pytest.raises(pytest.skip.Exception, match="the uncompressed run of this session is missing"):
        run_latency_budget("tiny/Qwen2-Audio", "fastadasp", 0.5, paths=BenchPaths(tiny_checkout / "models", None),
                           cache=ModelCache("cpu", torch.float32), benchmark=benchmark, book=LatencyBook(),
                           budgets=load_budgets(default_budget_dir()), seconds=2.0, new_tokens=3, rounds=1)


@pytest.fixture(scope="module")
def speech_tiny_session():
    import torch

    return LatencyBook(), ModelCache("cpu", torch.float32)


@pytest.mark.parametrize("method, keep_ratio", [("base", 1.0), ("fastv", 0.5)])
def test_in_llm_latency_is_recorded_not_gated(tiny_checkout, benchmark, method, keep_ratio, speech_tiny_session):
    """A gate no run could pass (slack −1) is not applied to FastV: its layers before the pruning layer see every
    token, so keep_ratio bounds no prefill time."""
    from samp.bench.budgets import BudgetTable, LatencyBudget

    book, cache = speech_tiny_session
    budgets = BudgetTable((), LatencyBudget(prefill_slack=-1.0))
    run_latency_budget("tiny/speech_tiny", method, keep_ratio, paths=BenchPaths(tiny_checkout / "models", None),
                       cache=cache, benchmark=benchmark, book=book, budgets=budgets, seconds=2.0, new_tokens=3,
                       rounds=1)
    if method == "fastv":
        assert benchmark.extra_info["prefill_ratio_to_base"] > 0
        before, after = book.results[("tiny/speech_tiny", "fastv", 0.5)].audio_tokens
        assert after < before
