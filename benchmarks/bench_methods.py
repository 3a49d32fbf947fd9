"""Every method at Qwen2-Audio size, as a ratio to one N×N×C cosine-similarity matmul timed in the same run.

Qwen2-Audio: N = 750 tokens (30 s), C = 4096, 20 heads, a 1500×1500 last-layer attention map. Inputs are in the
"typical" regime (about 70 % of tokens survive Samp's grouping at threshold 0.85). Absolute times on a shared CPU
mean little; the ratios are what is compared and what the budgets gate.
"""
from __future__ import annotations

import pytest
import torch

import samp
from samp.bench.flops import dart_flops, divprune_flops, similarity_flops
from samp.bench.timers import fastest_seconds, ratio_to_baseline, synced
from samp.methods.dart import DEFAULT_PIVOTS
from samp.methods.primitives import unit_rows

N, C, HEADS, P, KEY_DIM = 750, 4096, 20, 2, 64
KEEP_RATIO, THRESHOLD = 0.6, 0.85
# Samp with precomputed attention statistics, as a ratio to one similarity matmul (the reference: ~5×). Issue 15's
# target is 0.5×: with compiled loops and the DPP kernel as a BLAS syrk, samp measures 0.47–0.52× on an AVX-512
# Xeon whose single-thread matmul runs at ~160 GFLOP/s (1.1–1.3× before). The ratio moves with the CPU's balance of
# FLOPs to memory bandwidth (the grouping and merging are memory-bound), so the gate leaves room for other CPUs and
# a loaded box; it still fails a real regression (the code before, a numpy call loop per DPP step, measured 1.1×+).
SAMP_BUDGET = 0.75
BATCHED_BUDGET = 1.3  # a batch of 8 against a loop of eight single calls (see the test)
# Selection FLOPs by the spec's cost formulas (spec/new-methods.md), where it states one: recorded beside the time.
KEPT = samp.keep_count(N, KEEP_RATIO)
SELECTION_FLOPS = {
    "divprune": divprune_flops(N, C, KEPT),
    "dart": dart_flops(N, C, DEFAULT_PIVOTS),
    "dart-attention": dart_flops(N, C, DEFAULT_PIVOTS),
}


def typical_tokens(batch: int, seed: int = 0) -> torch.Tensor:
    """Runs of 1–2 near-copies (cosine ≈ 0.92 within a run, ≈ 0 across): ~70 % survive grouping at 0.85."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, N, C, generator=g)
    run_lengths = torch.randint(1, 3, (N,), generator=g)
    index = torch.repeat_interleave(torch.arange(N), run_lengths)[:N]
    return base[:, index] + 0.3 * torch.randn(batch, N, C, generator=g)


@pytest.fixture(scope="module")
def qwen_sized():
    features = typical_tokens(1)
    lengths = torch.tensor([N])
    g = torch.Generator().manual_seed(1)
    attention = torch.softmax(torch.randn(1, HEADS, P * N, P * N, generator=g), dim=-1)
    keys = torch.randn(1, HEADS, P * N, KEY_DIM, generator=g)
    stats = samp.attention_stats(attention, lengths, P, keys)
    return features, lengths, attention, keys, stats


def ratio_benchmark(benchmark, run, features, rounds=5, budget=None):
    """Time ``run`` with pytest-benchmark, then its ratio to the similarity matmul, the two interleaved."""
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    if benchmark.disabled:  # --benchmark-disable: the call ran once as a smoke test, nothing was timed
        return 0.0
    unit = unit_rows(features)
    matmul = fastest_seconds({"matmul": lambda: unit @ unit.transpose(1, 2)}, rounds=3)["matmul"]
    ratio = ratio_to_baseline(run, lambda: unit @ unit.transpose(1, 2), rounds=rounds, budget=budget)
    benchmark.extra_info.update(matmul_seconds=matmul, ratio_to_matmul=ratio)
    return ratio


@pytest.mark.parametrize("method", [spec.name for spec in samp.methods.available("post-projector")])
def test_method_at_qwen2_audio_size(benchmark, qwen_sized, method):
    features, lengths, _, _, stats = qwen_sized
    keep_ratio = 1.0 if method == "base" else KEEP_RATIO
    benchmark.group = "methods: N=750 C=4096, attention statistics precomputed"
    ratio = ratio_benchmark(
        benchmark,
        lambda: samp.compress(features, lengths, method=method, keep_ratio=keep_ratio, threshold=THRESHOLD,
                              attention=stats),
        features,
        budget=SAMP_BUDGET if method == "samp" else None,
    )
    if method in SELECTION_FLOPS:
        benchmark.extra_info.update(selection_flops=SELECTION_FLOPS[method], matmul_flops=similarity_flops(N, C))
    if method == "samp":
        assert ratio <= SAMP_BUDGET, f"samp took {ratio:.2f}× the similarity matmul (budget {SAMP_BUDGET}×)"


def test_samp_from_the_full_attention_map(benchmark, qwen_sized):
    """The same call when the caller hands over the 20×1500×1500 map instead of the hook's statistics."""
    features, lengths, attention, keys, _ = qwen_sized
    benchmark.group = "samp: where the attention statistics come from"
    ratio_benchmark(
        benchmark,
        lambda: samp.compress(features, lengths, method="samp", keep_ratio=KEEP_RATIO, attention=attention),
        features,
        rounds=2,
    )


def test_reference_samp_qwen2_audio_flavour(benchmark, qwen_sized):
    """The SA-MAP reference's algorithm (flavor="qwen2_audio": full map, per-utterance Python loops)."""
    features, lengths, attention, keys, _ = qwen_sized
    benchmark.group = "samp: where the attention statistics come from"
    ratio_benchmark(
        benchmark,
        lambda: samp.compress(features, lengths, method="samp", keep_ratio=KEEP_RATIO, threshold=THRESHOLD,
                              attention=attention, flavor="qwen2_audio"),
        features,
        rounds=1,
    )


def test_batched_costs_no_more_per_utterance_than_a_loop(benchmark):
    """B = 8 padded utterances in one call against eight B = 1 calls, timed alternately in one run."""
    batch = 8
    features = typical_tokens(batch, seed=3)
    lengths = torch.tensor([750, 700, 650, 600, 750, 720, 680, 740])
    g = torch.Generator().manual_seed(4)
    stats = samp.AttentionStats(
        received_attention=torch.rand(batch, N, generator=g), self_attention=torch.rand(batch, N, generator=g)
    )

    def batched():
        samp.compress(features, lengths, method="samp", keep_ratio=KEEP_RATIO, attention=stats)

    def looped():
        for b in range(batch):
            length = int(lengths[b])
            item = samp.AttentionStats(stats.received_attention[b : b + 1, :length],
                                       stats.self_attention[b : b + 1, :length])
            samp.compress(features[b : b + 1, :length], lengths[b : b + 1], method="samp",
                          keep_ratio=KEEP_RATIO, attention=item)

    benchmark.group = "samp: batch of 8 vs loop"
    benchmark.pedantic(batched, rounds=3, iterations=1, warmup_rounds=1)
    if benchmark.disabled:
        return
    # Both do the same per-utterance compiled work; the batch's 59 MB output costs fresh pages that the loop's small
    # outputs may not (0.91–1.25× on an idle AVX-512 Xeon with the numpy loops before). The gate catches a batch
    # path that costs materially more than the loop (a per-pair or per-utterance blow-up), not the fresh pages.
    ratio = ratio_to_baseline(batched, looped, rounds=3, budget=BATCHED_BUDGET)
    benchmark.extra_info.update(batched_to_loop_ratio=ratio)
    assert ratio <= BATCHED_BUDGET, f"batched took {ratio:.2f}× the loop of eight single-utterance calls"


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["samp", "fastadasp", "cdpruner-attention", "divprune", "dart"])
def test_method_at_qwen2_audio_size_on_cuda(benchmark, qwen_sized, method):
    features, lengths, _, _, stats = qwen_sized
    device = torch.device("cuda")
    features = features.to(device)
    stats = samp.AttentionStats(stats.received_attention.to(device), stats.self_attention.to(device))
    unit = unit_rows(features)
    compress = synced(lambda: samp.compress(features, lengths.to(device), method=method, keep_ratio=KEEP_RATIO,
                                            attention=stats), device)
    matmul = synced(lambda: unit @ unit.transpose(1, 2), device)
    benchmark.group = "methods on CUDA"
    benchmark.pedantic(compress, rounds=5, iterations=1, warmup_rounds=1)
    if benchmark.disabled:
        return
    benchmark.extra_info.update(matmul_seconds=fastest_seconds({"matmul": matmul}, rounds=10)["matmul"],
                                ratio_to_matmul=ratio_to_baseline(compress, matmul, rounds=10),
                                device=torch.cuda.get_device_name())


@pytest.mark.gpu
def test_divprune_on_five_minutes_of_audio_on_cuda(benchmark):
    """7,500 tokens (5 min at Qwen2-Audio's rate): DivPrune computes cosine rows as needed instead of the 225 MB
    n×n matrix; its time is compared with that matrix's product, and its peak memory is recorded beside the matrix's
    size (the unit-row copies of the input, 123 MB each, are of the same order; tests/test_methods_new.py checks
    that no n×n allocation happens)."""
    n, device = 7500, torch.device("cuda")
    features = torch.randn(1, n, C, generator=torch.Generator().manual_seed(5)).to(device)
    lengths = torch.tensor([n], device=device)
    unit = unit_rows(features)
    compress = synced(lambda: samp.compress(features, lengths, method="divprune", keep_ratio=KEEP_RATIO), device)
    matmul = synced(lambda: unit @ unit.transpose(1, 2), device)
    benchmark.group = "divprune on CUDA, 7,500 tokens"
    benchmark.pedantic(compress, rounds=2, iterations=1, warmup_rounds=1)
    if benchmark.disabled:
        return
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    compress()
    extra = torch.cuda.max_memory_allocated(device) - before
    benchmark.extra_info.update(ratio_to_matmul=ratio_to_baseline(compress, matmul, rounds=2),
                                peak_extra_bytes=extra, matrix_bytes=4 * n * n,
                                selection_flops=divprune_flops(n, C, samp.keep_count(n, KEEP_RATIO)),
                                device=torch.cuda.get_device_name())
