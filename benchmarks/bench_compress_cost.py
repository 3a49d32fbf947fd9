"""What compression costs, in the currency that matters: the work it is meant to save.

(a) every method's compress time per utterance at N = 75 … 1500 tokens (C = 4096, batch 1 and 8) as a ratio to one
    N×N×C similarity product timed in the same run, interleaved (CPU). CI runs three cases; the full grid is
    ``slow`` and runs only when a marker expression names it (``-m slow``).
(b) on the committed tiny speech LLM, the compress stage's time as a share of the prefill's, at batch 1 and 16
    (CPU; recorded; samp's share at batch 16 is gated loosely, at SHARE_BUDGET: the tiny model's prefill is a few
    milliseconds, so the shares move with the load).
(c) ``gpu``: every method at Qwen2-Audio size (N = 750, C = 4096, bf16) on CUDA with synchronised timers, against
    the prefill of a bf16 stack of stock Qwen2 decoder layers of Qwen2-7B width (random weights; a few layers
    timed, scaled to the 28 of the real model), uncompressed and at the kept length.

    pytest benchmarks/bench_compress_cost.py --benchmark-only [-m slow] [-m gpu]
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import samp
from samp.bench.syncs import HostSyncCounter
from samp.bench.timers import fastest_seconds, ratio_to_baseline, synced
from samp.methods.primitives import unit_rows

ROOT = Path(__file__).resolve().parents[1]
C, KEEP_RATIO, THRESHOLD, KEY_DIM = 4096, 0.6, 0.85, 64
METHODS = [spec.name for spec in samp.methods.available("post-projector")]
GRID_N = (75, 188, 375, 750, 1500)
GRID_BATCH = (1, 8)
# The cases CI times (about 30 s on one loaded core); the rest of the grid is marked slow.
CI_CASES = ((75, 1), (750, 1), (188, 8))
ROUNDS = 3


def speech_like(batch: int, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, samp.AttentionStats]:
    """Runs of 1–2 near-copies (cosine ≈ 0.92 within a run, ≈ 0 across: ~70 % of tokens survive Samp's grouping
    at 0.85, as in bench_methods), lengths from N down to 0.86·N, random attention statistics and token keys."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, n, C, generator=g)
    index = torch.repeat_interleave(torch.arange(n), torch.randint(1, 3, (n,), generator=g))[:n]
    features = base[:, index] + 0.3 * torch.randn(batch, n, C, generator=g)
    lengths = torch.tensor([n - (b * n) // 50 for b in range(batch)])
    stats = samp.AttentionStats(received_attention=torch.rand(batch, n, generator=g),
                                self_attention=torch.rand(batch, n, generator=g),
                                token_keys=torch.randn(batch, n, KEY_DIM, generator=g))
    return features, lengths, stats


def compress_call(method, features, lengths, stats):
    keep_ratio = 1.0 if method == "base" else KEEP_RATIO
    return lambda: samp.compress(features, lengths, method=method, keep_ratio=keep_ratio, threshold=THRESHOLD,
                                 attention=stats)


def grid_params():
    for n in GRID_N:
        for batch in GRID_BATCH:
            marks = () if (n, batch) in CI_CASES else (pytest.mark.slow,)
            yield pytest.param(n, batch, marks=marks, id=f"N{n}-B{batch}")


@pytest.fixture(scope="module")
def grid_inputs():
    cache = {}

    def get(n, batch):
        if (n, batch) not in cache:
            cache.clear()  # one case's inputs at a time: the largest is 200 MB
            cache[(n, batch)] = speech_like(batch, n, seed=n + batch)
        return cache[(n, batch)]

    return get


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n, batch", list(grid_params()))
def test_compress_cost_per_utterance(benchmark, grid_inputs, n, batch, method):
    """(a) compress time per utterance / one N×N×C similarity product, interleaved, fastest round of each."""
    features, lengths, stats = grid_inputs(n, batch)
    run = compress_call(method, features, lengths, stats)
    benchmark.group = f"compress cost: N={n} C={C} B={batch}"
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    if benchmark.disabled:  # --benchmark-disable: one smoke call, nothing timed
        return
    unit = unit_rows(features)
    seconds = fastest_seconds({"compress": run, "product": lambda: unit @ unit.transpose(1, 2)}, rounds=ROUNDS)
    benchmark.extra_info.update(
        n=n, batch=batch, channels=C, method=method, threads=torch.get_num_threads(),
        compress_seconds_per_utterance=seconds["compress"] / batch,
        product_seconds_per_utterance=seconds["product"] / batch,
        ratio_to_similarity_product=seconds["compress"] / seconds["product"],
    )


# (b) --------------------------------------------------------------------------------------------------------------

MODEL_DIR = ROOT / "fixtures" / "speech_tiny" / "model"
MANIFEST = ROOT / "fixtures" / "speech_tiny" / "test" / "manifest.jsonl"
SHARE_ROUNDS = 5
# samp's compress stage over the prefill of its compressed prompt, batch 16. Issue 15's target is 0.25: measured
# 0.21–0.23 with the compiled CPU loops and per-batch statistics (0.48–0.64 before), so 0.35 passes a loaded box and
# fails a return of the per-utterance, per-head Python work.
SHARE_BUDGET = 0.35


@pytest.fixture(scope="module")
def speech_tiny_batches():
    """The tiny model, and its encoded test utterances at batch 1 and 16 (encoded once: the encoder's cost does not
    depend on the method)."""
    import samp.models
    from samp.eval.audio import read_audio
    from samp.eval.identity import manifest_dataset
    from samp.eval.manifest import load_manifest
    from samp.eval.runner import prompt_for

    model, processor = samp.models.load(MODEL_DIR, device="cpu")
    adapter = samp.models.adapter_for(model, processor)
    items = load_manifest(MANIFEST)[:16]
    audios = [read_audio(item.audio_paths[0], adapter.sampling_rate) for item in items]
    prompt = prompt_for(adapter, manifest_dataset(MANIFEST), items[0])
    encoded = {size: adapter.encode(audios[:size], sampling_rate=adapter.sampling_rate, attention=True)
               for size in (1, 16)}
    return adapter, prompt, encoded


def prefill_call(adapter, prompt, kept):
    """The LLM's prefill of the compressed prompt: one forward over the prompt with the kept rows scattered in."""
    inputs = adapter.build_inputs(prompt, [rows.shape[0] for rows in kept.rows])
    rows = adapter._scatter_rows(inputs, kept.rows)
    with torch.inference_mode():
        embeds = torch.where(inputs.audio_rows[..., None], rows, adapter.model.get_input_embeddings()(inputs.input_ids))

    def run():
        with torch.inference_mode():
            adapter.model(inputs_embeds=embeds, attention_mask=inputs.attention_mask, use_cache=False)

    return run


@pytest.mark.parametrize("batch", [1, 16])
def test_compress_share_of_prefill_on_speech_tiny(benchmark, speech_tiny_batches, batch):
    """(b) per method: the adapter's compress stage (statistics from the captured attention, the method, the
    kept rows) over the prefill of its own compressed prompt and over the uncompressed prefill."""
    adapter, prompt, encoded = speech_tiny_batches
    tokens = encoded[batch]

    def compress(method):
        keep_ratio = 1.0 if method == "base" else KEEP_RATIO
        return lambda: adapter.compress(tokens, method=method, keep_ratio=keep_ratio, threshold=THRESHOLD,
                                        flavor="samp")

    runs = {f"compress:{m}": compress(m) for m in METHODS}
    runs.update({f"prefill:{m}": prefill_call(adapter, prompt, runs[f"compress:{m}"]()) for m in ("base", "samp")})
    benchmark.group = f"speech_tiny compress share of prefill, B={batch}"
    benchmark.pedantic(runs["compress:samp"], rounds=SHARE_ROUNDS, iterations=1, warmup_rounds=1)
    if benchmark.disabled:
        return
    seconds = fastest_seconds(runs, rounds=SHARE_ROUNDS)
    prefill_full = seconds["prefill:base"]
    kept_prefill = {m: seconds["prefill:samp"] for m in METHODS}  # every method keeps the same counts
    benchmark.extra_info.update(
        batch=batch, threads=torch.get_num_threads(), prefill_seconds_uncompressed=prefill_full,
        prefill_seconds_kept=seconds["prefill:samp"],
        compress_seconds={m: seconds[f"compress:{m}"] for m in METHODS},
        share_of_own_prefill={m: seconds[f"compress:{m}"] / kept_prefill[m] for m in METHODS},
        share_of_uncompressed_prefill={m: seconds[f"compress:{m}"] / prefill_full for m in METHODS},
    )
    if batch == 16:
        share = ratio_to_baseline(runs["compress:samp"], runs["prefill:samp"], rounds=SHARE_ROUNDS, budget=SHARE_BUDGET)
        benchmark.extra_info.update(samp_share_gated=share, share_budget=SHARE_BUDGET)
        assert share <= SHARE_BUDGET, f"samp's compress stage took {share:.2f}× its prefill (budget {SHARE_BUDGET}×)"


# (c) --------------------------------------------------------------------------------------------------------------

QWEN2_AUDIO_N = 750  # 30 s of audio
TEXT_TOKENS = 50  # the prompt around the audio
QWEN2_7B = dict(hidden_size=3584, intermediate_size=18944, num_attention_heads=28, num_key_value_heads=4,
                rms_norm_eps=1e-6, rope_theta=1_000_000.0, max_position_embeddings=32768, vocab_size=1024)
QWEN2_7B_LAYERS = 28
TIMED_LAYERS = 4
CUDA_ROUNDS = 20


def llm_stack(layers: int, device, dtype=torch.bfloat16, **dims):
    """A stock ``Qwen2Model`` with ``layers`` decoder layers of the given width and random weights, SDPA attention,
    in ``dtype`` on ``device``: what a Qwen2-7B prefill costs per layer, without its checkpoint."""
    from transformers import Qwen2Config, Qwen2Model

    config = Qwen2Config(num_hidden_layers=layers, **dims)
    config._attn_implementation = "sdpa"
    with torch.device(device):
        model = Qwen2Model(config).to(dtype).eval()
    return model


def prefill_seconds(model, tokens: int, rounds: int) -> float:
    """Fastest of ``rounds`` synchronised prefills of ``tokens`` random embeddings (one utterance, no cache)."""
    device = next(model.parameters()).device
    embeds = torch.randn(1, tokens, model.config.hidden_size, device=device, dtype=next(model.parameters()).dtype)

    def run():
        with torch.inference_mode():
            model(inputs_embeds=embeds, use_cache=False)

    return fastest_seconds({"prefill": synced(run, device)}, rounds=rounds)["prefill"]


def test_llm_stack_is_a_stock_qwen2_and_times_a_prefill(benchmark):
    """(c)'s parts that run anywhere: a two-layer stack of a tiny width, on CPU in float32."""
    from transformers import Qwen2Model

    model = llm_stack(2, "cpu", torch.float32, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=32)
    assert type(model) is Qwen2Model and len(model.layers) == 2
    benchmark.group = "compress cost: the LLM stack (c) times, at a tiny width on CPU"
    seconds = benchmark.pedantic(prefill_seconds, args=(model, 16), kwargs={"rounds": 1}, rounds=1, iterations=1)
    assert seconds > 0


@pytest.fixture(scope="module")
def qwen2_7b_prefill():
    """Prefill seconds of the full 28-layer Qwen2-7B stack, scaled from TIMED_LAYERS layers (per-layer cost is the
    same in every layer; embedding and final norm are negligible), uncompressed and at the kept length."""
    device = torch.device("cuda")
    model = llm_stack(TIMED_LAYERS, device, **QWEN2_7B)
    kept = samp.keep_count(QWEN2_AUDIO_N, KEEP_RATIO)
    scale = QWEN2_7B_LAYERS / TIMED_LAYERS
    out = {"uncompressed": scale * prefill_seconds(model, QWEN2_AUDIO_N + TEXT_TOKENS, CUDA_ROUNDS),
           "kept": scale * prefill_seconds(model, kept + TEXT_TOKENS, CUDA_ROUNDS)}
    del model
    torch.cuda.empty_cache()
    return out


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("method", METHODS)
def test_compress_against_prefill_on_cuda(benchmark, qwen2_7b_prefill, method, batch):
    """(c) compress time per utterance at Qwen2-Audio size in bf16 on CUDA (synchronised), as a share of the
    Qwen2-7B-width prefill it feeds and of the prefill time it saves."""
    device = torch.device("cuda")
    features, lengths, stats = speech_like(batch, QWEN2_AUDIO_N, seed=7)
    features = features.to(device, torch.bfloat16)
    stats = samp.AttentionStats(*(t.to(device) for t in (stats.received_attention, stats.self_attention,
                                                        stats.token_keys)))
    lengths = lengths.tolist()  # host lengths, as an adapter has them: no read-back for the counts
    run = synced(compress_call(method, features, lengths, stats), device)
    unit = unit_rows(features)
    product = synced(lambda: unit @ unit.transpose(1, 2), device)
    benchmark.group = f"compress on CUDA: N={QWEN2_AUDIO_N} C={C} bf16 B={batch}"
    benchmark.pedantic(run, rounds=CUDA_ROUNDS, iterations=1, warmup_rounds=2)
    if benchmark.disabled:
        return
    seconds = fastest_seconds({"compress": run, "product": product}, rounds=CUDA_ROUNDS)
    per_utterance = seconds["compress"] / batch
    with HostSyncCounter() as syncs:  # what the device path read back, counted on the real device
        compress_call(method, features, lengths, stats)()
    saved = qwen2_7b_prefill["uncompressed"] - qwen2_7b_prefill["kept"]
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name(), method=method, batch=batch, host_syncs=syncs.total,
        compress_seconds_per_utterance=per_utterance,
        ratio_to_similarity_product=seconds["compress"] / seconds["product"],
        prefill_seconds_qwen2_7b=qwen2_7b_prefill["uncompressed"],
        prefill_seconds_qwen2_7b_kept=qwen2_7b_prefill["kept"],
        share_of_prefill=per_utterance / qwen2_7b_prefill["uncompressed"],
        share_of_saving=per_utterance / saved if saved > 0 else None,
    )


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 8])
def test_greedy_dpp_eager_or_cuda_graph(benchmark, batch):
    """The measured choice for the greedy DPP's T sequential steps on CUDA: launched one kernel at a time (what
    compress runs) or replayed from a captured CUDA graph (samp.methods.primitives.greedy_picks_captured). Both must
    pick the same items; the times go to extra_info (eager / captured)."""
    from samp.methods.primitives import dpp_kernels_batched, greedy_picks_captured, greedy_picks_device

    device = torch.device("cuda")
    m = samp.keep_count(QWEN2_AUDIO_N, 0.7)  # ~70 % of the tokens survive grouping
    steps = samp.keep_count(QWEN2_AUDIO_N, KEEP_RATIO)
    features, _, stats = speech_like(batch, m, seed=9)
    valid = torch.ones(batch, m, dtype=torch.bool, device=device)
    kernels, diags = dpp_kernels_batched(features.to(device), valid, stats.self_attention.to(device))
    eager = synced(lambda: greedy_picks_device(kernels, diags, valid, steps), device)
    captured = synced(lambda: greedy_picks_captured(kernels, diags, valid, steps), device)
    assert torch.equal(greedy_picks_captured(kernels, diags, valid, steps),
                       greedy_picks_device(kernels, diags, valid, steps))
    benchmark.group = f"greedy DPP on CUDA: M={m} T={steps} B={batch}"
    benchmark.pedantic(captured, rounds=CUDA_ROUNDS, iterations=1, warmup_rounds=1)
    if benchmark.disabled:
        return
    seconds = fastest_seconds({"eager": eager, "captured": captured}, rounds=CUDA_ROUNDS)
    benchmark.extra_info.update(device=torch.cuda.get_device_name(), eager_seconds=seconds["eager"],
                                captured_seconds=seconds["captured"],
                                eager_over_captured=seconds["eager"] / seconds["captured"])
