"""The GPU path end to end on a tiny real-architecture Qwen2-Audio (no checkpoint, no dataset): stage timings with
synchronised clocks, decode tokens/s and peak memory, uncompressed and at keep 0.5. Reported in extra_info, never
gated: a tiny model's time is launch overhead, not work.

    pytest -m gpu --benchmark-only benchmarks/bench_gpu_tiny.py --benchmark-json tiny.json
"""
import pytest
import torch

import samp
from samp.bench.gpu_suite import measure_latency

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def tiny_adapter():
    import samp.models
    from samp.models.tiny import tiny_qwen2_audio

    model, processor = tiny_qwen2_audio()
    return samp.models.adapter_for(model.to("cuda"), processor)


@pytest.mark.parametrize("method, keep_ratio", [("base", 1.0), ("samp", 0.5), ("fastadasp", 0.5), ("divprune", 0.5),
                                               ("dart", 0.5)])
def test_tiny_qwen2_audio_latency(method, keep_ratio, tiny_adapter, benchmark):
    benchmark.group = "tiny Qwen2-Audio on CUDA"
    result = measure_latency(tiny_adapter, method=method, keep_ratio=keep_ratio, flavor="samp", benchmark=benchmark,
                             seconds=20.0, new_tokens=16, rounds=5)
    benchmark.extra_info.update({name: value for name, value in vars(result).items()})
    before, after = result.audio_tokens
    assert after == samp.keep_count(before, keep_ratio)
    assert result.peak_memory_bytes and result.peak_memory_bytes > 0
    assert result.prefill_s > 0 and result.decode_tokens_per_s > 0
    assert torch.cuda.is_available()


@pytest.mark.parametrize("method", ["base", "fastv", "dart-llm"])
def test_speech_tiny_in_llm_latency(method, benchmark):
    """FastV and DART inside the LLM need a pruning layer below the last one: the committed speech_tiny model (3 LLM
    layers, pruning before layer 2), on its ≤ 3 s clips. Recorded, not gated."""
    from pathlib import Path

    import samp.models

    model_dir = Path(__file__).resolve().parents[1] / "fixtures" / "speech_tiny" / "model"
    adapter = samp.models.adapter_for(*samp.models.load(model_dir, device="cuda"))
    benchmark.group = "speech_tiny in-LLM pruning on CUDA"
    keep_ratio = 1.0 if method == "base" else 0.5
    result = measure_latency(adapter, method=method, keep_ratio=keep_ratio, flavor="samp", benchmark=benchmark,
                             seconds=2.5, new_tokens=8, rounds=5)
    benchmark.extra_info.update({name: value for name, value in vars(result).items()})
    before, after = result.audio_tokens
    assert after == samp.keep_count(before, keep_ratio)
    assert result.prefill_s > 0
