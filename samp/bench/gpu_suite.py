"""The GPU budget suites behind ``benchmarks/bench_gpu_*.py``: accuracy against the published tables and latency as
ratios to the uncompressed run, per model × method × keep ratio (× dataset). Each benchmark file names its model and
calls these; everything that needs a checkpoint, a dataset or CUDA skips with the reason.

The in-LLM methods (FastV, DART inside the LLM) have no published numbers on the seed's datasets: they run at the
same settings as the budget rows and are recorded, never gated (``in_llm_params``, ``run_recorded_accuracy``).

Model and data locations come from ``--samp-model-dir`` / ``--samp-data-root`` (see :mod:`samp.bench.plugin`);
nothing is downloaded.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from samp.bench.budgets import AccuracyBudget, BudgetTable, ResultKey, default_budget_dir, load_budgets
from samp.bench.timers import peak_memory, synchronizing_forward, synchronize

LATENCY_SECONDS = 20.0        # one utterance of this length, synthetic speech-like audio (content-independent cost)
LATENCY_NEW_TOKENS = 32       # decode exactly this many tokens so tokens/s compares across methods
LATENCY_ROUNDS = 5


def _budgets() -> BudgetTable:
    return load_budgets(default_budget_dir())


def accuracy_params(model_id: str) -> list:
    """One pytest param per budget row of ``model_id`` (the uncompressed rows first)."""
    rows = sorted(_budgets().select(model=model_id), key=lambda b: (b.key.method != "base", b.key.method))
    if not rows:
        raise ValueError(f"no budget rows for {model_id}")
    return [pytest.param(budget, id=f"{budget.key.method}-r{budget.key.keep_ratio:g}-{budget.key.dataset}-"
                                    f"{budget.key.subset}") for budget in rows]


def in_llm_methods() -> tuple[str, ...]:
    import samp

    return tuple(spec.name for spec in samp.methods.available("in-llm"))


def in_llm_params(model_id: str) -> list:
    """One pytest param (``ResultKey``) per in-LLM method × each (keep ratio, dataset, subset) of the model's
    compressed budget rows: the same settings as the published methods, recorded, not gated."""
    settings = sorted({(b.key.keep_ratio, b.key.dataset, b.key.subset) for b in _budgets().select(model=model_id)
                       if b.key.method != "base"})
    if not settings:
        raise ValueError(f"no compressed budget rows for {model_id}")
    return [pytest.param(ResultKey(model_id, method, ratio, dataset, subset),
                         id=f"{method}-r{ratio:g}-{dataset}-{subset}")
            for method in in_llm_methods() for ratio, dataset, subset in settings]


def latency_params(model_id: str) -> list:
    """(method, keep_ratio) for every compressed setting of the model's budget rows, after ``base`` at 1.0."""
    settings = sorted({(b.key.method, b.key.keep_ratio) for b in _budgets().select(model=model_id)
                       if b.key.method != "base"})
    settings = set(settings) | {(method, ratio) for method in in_llm_methods() for _, ratio in settings}
    return [pytest.param("base", 1.0, id="base-r1")] + [pytest.param(m, r, id=f"{m}-r{r:g}") for m, r in sorted(settings)]


class ModelCache:
    """Keeps one loaded model at a time (two 7B models do not fit next to each other on every GPU). The GPU suites
    use bfloat16 on CUDA; tests of the suite's plumbing pass ``device="cpu"``."""

    def __init__(self, device: str = "cuda", dtype: torch.dtype = torch.bfloat16):
        self.device, self.dtype = torch.device(device), dtype
        self.model_id = None
        self.adapter = None

    @property
    def device_name(self) -> str:
        """What records call the device: the GPU model, or ``cpu``."""
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"

    def adapter_for(self, model_id: str, checkpoint: Path):
        if self.model_id != model_id:
            import samp.models

            self.adapter, self.model_id = None, None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            model, processor = samp.models.load(checkpoint, dtype=self.dtype, device=str(self.device))
            self.adapter, self.model_id = samp.models.adapter_for(model, processor), model_id
        return self.adapter


def run_accuracy_budget(budget: AccuracyBudget, *, paths, cache: ModelCache, benchmark, recorder, work_dir: Path,
                        max_new_tokens: int = 256):
    """Evaluate one budget row with the reference's flavour, scorer and ``max_new_tokens``, record it, and fail
    outside the band."""
    record = _evaluate_setting(budget.key, threshold=budget.threshold, flavor=budget.flavor, paths=paths, cache=cache,
                               benchmark=benchmark, recorder=recorder, work_dir=work_dir,
                               max_new_tokens=max_new_tokens)
    low, high = budget.band
    assert budget.contains(record.value), (
        f"{budget.key.label()}: {record.metric} {100 * record.value:.2f}% left the band "
        f"{100 * low:.2f}–{100 * high:.2f}% (published {budget.published}%, ±{budget.tolerance})")


def run_recorded_accuracy(key: ResultKey, *, paths, cache: ModelCache, benchmark, recorder, work_dir: Path,
                          max_new_tokens: int = 256):
    """Evaluate one setting that has no published number (an in-LLM method) and record it; skips where the model's
    family cannot run the method."""
    import samp.models

    try:
        samp.models.adapter_class(paths.checkpoint(key.model)).check_method(key.method)
    except ValueError as error:
        pytest.skip(str(error))
    return _evaluate_setting(key, threshold=None, flavor=None, paths=paths, cache=cache, benchmark=benchmark,
                             recorder=recorder, work_dir=work_dir, max_new_tokens=max_new_tokens)


def _evaluate_setting(key: ResultKey, *, threshold, flavor, paths, cache: ModelCache, benchmark, recorder,
                      work_dir: Path, max_new_tokens: int):
    from samp.eval.datasets import get_dataset
    from samp.eval.manifest import find_manifest, load_manifest
    from samp.eval.runner import RunConfig, adapter_inference, evaluate

    checkpoint = paths.checkpoint(key.model)
    spec = get_dataset(key.dataset)
    try:
        manifest = find_manifest(spec, data_root=paths.data(key.dataset))
    except ValueError as error:
        pytest.skip(f"dataset {key.dataset} not found: {error}")
    items = [item for item in load_manifest(manifest) if item.subset == key.subset]
    if not items:
        pytest.skip(f"{manifest} has no items of subset {key.subset!r}")
    adapter = cache.adapter_for(key.model, checkpoint)
    config = RunConfig(model=key.model, method=key.method, keep_ratio=key.keep_ratio,
                       threshold=threshold if threshold is not None else 0.85,
                       flavor=flavor or "samp", scorer="evalkit")
    records = benchmark.pedantic(
        evaluate, args=(config, [(spec, items)], work_dir, adapter_inference(adapter, config,
                                                                            max_new_tokens=max_new_tokens)),
        kwargs={"device": cache.device_name, "progress": False}, rounds=1, iterations=1)
    (record,) = [r for r in records if r.subset == key.subset]
    recorder.add(record, benchmark)
    return record


@dataclass(frozen=True)
class LatencyResult:
    encode_s: float
    compress_s: float
    prefill_s: float
    decode_s: float
    decode_tokens_per_s: float
    peak_memory_bytes: int | None
    audio_tokens: tuple[int, int]


class LatencyBook:
    """This session's latency results per (model, method, keep ratio): ratios are taken within one session."""

    def __init__(self):
        self.results: dict[tuple[str, str, float], LatencyResult] = {}


def measure_latency(adapter, *, method: str, keep_ratio: float, flavor: str, benchmark,
                    seconds: float = LATENCY_SECONDS, new_tokens: int = LATENCY_NEW_TOKENS,
                    rounds: int = LATENCY_ROUNDS) -> LatencyResult:
    """Time ``adapter.generate`` on one synthetic utterance: ``benchmark.pedantic`` over synchronised calls, and
    the median of each stage (the adapter's stage clocks, made to see finished GPU work by synchronising after
    every forward)."""
    from samp.models.tiny import speechlike_waveform

    if rounds < 1 or new_tokens < 2:
        raise ValueError(f"need rounds >= 1 and new_tokens >= 2, got {rounds} and {new_tokens}")
    audio = speechlike_waveform(seconds, seed=0, sampling_rate=adapter.sampling_rate)
    prompt = _latency_prompt(adapter)
    device = next(adapter.model.parameters()).device
    results = []

    def generate():
        with synchronizing_forward(adapter.model):
            result = adapter.generate([audio], prompt, method=method, keep_ratio=keep_ratio, flavor=flavor,
                                      sampling_rate=adapter.sampling_rate, max_new_tokens=new_tokens,
                                      min_new_tokens=new_tokens, do_sample=False)
        synchronize(device)
        results.append(result)

    with peak_memory(device) as peak:
        benchmark.pedantic(generate, rounds=rounds, warmup_rounds=1, iterations=1)
    timed = results[1:]  # the warm-up round is not a measurement
    median = {stage: statistics.median(getattr(r.timings, stage) for r in timed)
              for stage in ("encode", "compress", "prefill", "decode")}
    decoded = new_tokens - 1  # the first token comes out of the prefill
    return LatencyResult(
        encode_s=median["encode"], compress_s=median["compress"], prefill_s=median["prefill"],
        decode_s=median["decode"], decode_tokens_per_s=decoded / median["decode"] if median["decode"] else 0.0,
        peak_memory_bytes=peak["peak_memory_bytes"], audio_tokens=timed[0].audio_tokens[0],
    )


def _latency_prompt(adapter) -> str:
    from samp.eval.datasets import get_dataset
    from samp.eval.manifest import ManifestItem
    from samp.eval.runner import prompt_for

    spec = get_dataset("LibriSpeech")
    item = ManifestItem(index=0, audio_paths=("synthetic.wav",), question=spec.question, answer="",
                        subset="test_clean", meta={})
    return prompt_for(adapter, spec, item)


def run_latency_budget(model_id: str, method: str, keep_ratio: float, *, paths, cache: ModelCache, benchmark,
                       book: LatencyBook, budgets: BudgetTable, **measure):
    """Measure one setting (``measure``: :func:`measure_latency`'s ``seconds``/``new_tokens``/``rounds``) and gate
    its prefill against the uncompressed run of the same session."""
    import samp.models

    checkpoint = paths.checkpoint(model_id)
    try:
        spec = samp.models.adapter_class(checkpoint).check_method(method)
    except ValueError as error:
        pytest.skip(str(error))
    adapter = cache.adapter_for(model_id, checkpoint)
    flavors = {b.flavor for b in budgets.select(model=model_id)}
    flavor = flavors.pop() if len(flavors) == 1 and None not in flavors and spec.kind != "in-llm" else "samp"
    result = measure_latency(adapter, method=method, keep_ratio=keep_ratio, flavor=flavor, benchmark=benchmark,
                             **measure)
    book.results[(model_id, method, keep_ratio)] = result
    benchmark.extra_info.update({f"{name}": value for name, value in vars(result).items()})
    benchmark.extra_info.update({"model": model_id, "method": method, "keep_ratio": keep_ratio, "flavor": flavor})
    if method == "base":
        return
    base = book.results.get((model_id, "base", 1.0))
    if base is None:
        pytest.skip("the uncompressed run of this session is missing (base-r1 failed or was deselected); "
                    "latency ratios need it")
    ratio = result.prefill_s / base.prefill_s
    benchmark.extra_info["prefill_ratio_to_base"] = ratio
    # the layers before an in-LLM method's pruning layer see every token: keep_ratio bounds no prefill time
    if budgets.latency is not None and spec.kind != "in-llm":
        budgets.latency.check_prefill(f"{model_id} {method} r{keep_ratio:g}", keep_ratio, result.prefill_s,
                                      base.prefill_s)
