"""The GPU suites' parts that run anywhere: the parameters come from the budget files, the latency measurement
works on a tiny real model (CPU here, CUDA on a GPU machine), and missing checkpoints skip with a reason."""
import pytest

import samp
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
    assert ("samp", 0.6) in latency and ("samp", 0.5) in latency and len(latency) == 1 + 6 * 2
    with pytest.raises(ValueError, match="no budget rows for nobody/none"):
        accuracy_params("nobody/none")


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
