"""Machine info names the software stack (and the GPU where there is one); stage timers accumulate per stage and
synchronise CUDA before reading."""
import time

import pytest
import torch

from samp.bench.machine import device_class, machine_info
from samp.bench.timers import StageTimer, fastest_seconds, peak_memory, ratio_to_baseline, synced


def test_machine_info_names_versions():
    info = machine_info()
    assert info["torch"] == torch.__version__
    assert info["transformers"]
    assert set(info) >= {"gpu", "gpu_count", "driver", "cuda", "python"}
    if not torch.cuda.is_available():
        assert info["gpu"] is None and info["gpu_count"] == 0 and device_class(info) == "cpu"


def test_cpu_stage_timer_accumulates_each_stage():
    timer = StageTimer("cpu")
    with timer.stage("encode"):
        time.sleep(0.02)
    with timer.stage("decode"):
        time.sleep(0.01)
    with timer.stage("encode"):
        time.sleep(0.02)
    seconds = timer.seconds()
    assert set(seconds) == {"encode", "decode"}
    assert seconds["encode"] >= 0.04 and seconds["decode"] >= 0.01
    assert seconds["encode"] > seconds["decode"]
    with pytest.raises(ValueError, match="needs a name"):
        with timer.stage(""):
            pass


def test_stage_is_recorded_even_when_the_block_raises():
    timer = StageTimer()
    with pytest.raises(RuntimeError):
        with timer.stage("prefill"):
            raise RuntimeError("boom")
    assert "prefill" in timer.seconds()


def test_synced_returns_the_result_and_peak_memory_is_none_on_cpu():
    assert synced(lambda a, b: a + b, "cpu")(2, b=3) == 5
    with peak_memory("cpu") as peak:
        torch.ones(10)
    assert peak["peak_memory_bytes"] is None


@pytest.mark.gpu
def test_cuda_stage_timer_measures_the_work_not_the_launch():
    device = torch.device("cuda")
    a = torch.randn(4096, 4096, device=device)
    timer = StageTimer(device)
    with peak_memory(device) as peak:
        with timer.stage("matmul"):
            for _ in range(20):
                a = a @ a / 64
    elapsed = timer.seconds()["matmul"]
    # 20 x 4096^3 x 2 flop: tens of milliseconds even on an H100 in fp32; an unsynchronised read sees ~0.
    assert elapsed > 1e-3
    assert peak["peak_memory_bytes"] >= a.numel() * 4


def test_fastest_seconds_interleaves_the_runs_and_keeps_each_ones_fastest_round():
    order = []
    seconds = fastest_seconds({"slow": lambda: (order.append("slow"), time.sleep(0.02)),
                               "fast": lambda: order.append("fast")}, rounds=3)
    assert order == ["slow", "fast"] * 3
    assert seconds["slow"] >= 0.02 > seconds["fast"]
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        fastest_seconds({"fast": lambda: None}, rounds=0)


def test_ratio_to_baseline_retries_only_while_over_budget():
    calls = []
    def run():
        calls.append(1)
        time.sleep(0.004)
    def baseline():
        time.sleep(0.001)
    ratio = ratio_to_baseline(run, baseline, rounds=2, budget=0.5, trials=3)  # never within: every trial runs
    assert len(calls) == 6 and ratio > 1.0
    calls.clear()
    assert ratio_to_baseline(run, baseline, rounds=2, budget=100.0, trials=3) > 1.0
    assert len(calls) == 2  # within the budget at the first trial
    calls.clear()
    ratio_to_baseline(run, baseline, rounds=2)  # no budget: one trial, reported only
    assert len(calls) == 2
    with pytest.raises(ValueError, match="trials must be at least 1"):
        ratio_to_baseline(run, baseline, rounds=1, trials=0)
