"""CPU accuracy benchmark on the committed tiny speech LLM: every method × keep ratio, WER with bootstrap CIs.

The model (fixtures/speech_tiny/model) is a 2 M-parameter Qwen2AudioForConditionalGeneration trained on espeak-ng
speech; its uncompressed greedy WER on the committed test set is a few percent, so what a compression method costs
is measurable on a CPU. Every case runs the project's own path: ``samp.eval`` (RunConfig → adapter_inference →
evaluate → score_asr with its bootstrap CI → Record) over ``samp.models`` ``adapter.generate``. Each score goes to
the records history (``--samp-records PATH``) and must stay under its WER bound in bench_speech_tiny_budgets.toml.

    pytest benchmarks/bench_speech_tiny.py --benchmark-only --samp-records runs/records.jsonl

CI time: the audio encoder's output does not depend on the method, so the adapter encodes each batch once (with the
last-layer attention) and reuses it for every case; compression, prefill and decoding run for every case.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import samp
import samp.models
from samp.bench.budgets import load_budgets
from samp.bench.flops import prefill_flops
from samp.eval.identity import manifest_dataset, model_identity
from samp.eval.manifest import load_manifest
from samp.eval.runner import RunConfig, adapter_inference, collect_predictions, dataset_dir, evaluate, prompt_for
from samp.models import LLMPruning

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "fixtures" / "speech_tiny" / "model"
MANIFEST = ROOT / "fixtures" / "speech_tiny" / "test" / "manifest.jsonl"
BUDGET_FILE = Path(__file__).with_name("bench_speech_tiny_budgets.toml")
# The names and fingerprints `samp eval` gives the same model and test set, so the records match scripts/run.sh's.
MODEL = model_identity(MODEL_DIR)
DATASET = manifest_dataset(MANIFEST)
KEEP_RATIOS = (0.8, 0.6, 0.4)
# In-LLM methods generate one utterance at a time (~12 s a case here): one keep ratio keeps CI short.
IN_LLM_KEEP_RATIOS = (0.6,)
# Answers are at most 6 words (one token each) plus the end token.
MAX_NEW_TOKENS = 8


def load_wer_bounds(path: Path = BUDGET_FILE) -> tuple[int, dict[tuple[str, float], float]]:
    """(items, {(method, keep_ratio): max_wer}) from the budget TOML, read by samp.bench's one budget loader (the
    bound is the top of each row's band); a malformed file is a ValueError."""
    items = tomllib.loads(path.read_text()).get("items")
    if not isinstance(items, int) or items < 1:
        raise ValueError(f"{path}: 'items' must be a positive integer (utterances evaluated), got {items!r}")
    bounds = {}
    for budget in load_budgets(path):
        if (budget.key.model, budget.key.dataset, budget.key.subset) != (MODEL.name, DATASET.name, "speech_tiny"):
            raise ValueError(f"{path}: {budget.key.label()} is not about {MODEL.name} on {DATASET.name}/speech_tiny")
        bounds[(budget.key.method, budget.key.keep_ratio)] = budget.band[1]
    return items, bounds


def cases() -> list[tuple[str, float]]:
    out = [("base", 1.0)]
    out += [(spec.name, ratio) for spec in samp.methods.available("post-projector") if spec.name != "base"
            for ratio in KEEP_RATIOS]
    out += [(spec.name, ratio) for spec in samp.methods.available("in-llm") for ratio in IN_LLM_KEEP_RATIOS]
    return out


def prefill_flops_share(adapter, spec, items, method, rows) -> float:
    """The LLM's prefill FLOPs (FastV's formula, samp.bench.flops) over all utterances, as a share of base's: what
    makes an in-LLM method comparable with a post-projector one."""
    config = adapter.model.config.text_config
    dims = (config.num_hidden_layers, config.hidden_size, config.intermediate_size)
    text = len(adapter.build_inputs(prompt_for(adapter, spec, items[0]), [1]).input_ids[0]) - 1
    in_llm = samp.methods.get(method).kind == "in-llm"
    layer = LLMPruning(method, 1.0).layer if in_llm else 0
    spent = sum(prefill_flops(*dims, text + row["tokens_in"], text + row["tokens_out"], layer) for row in rows)
    return spent / sum(prefill_flops(*dims, text + row["tokens_in"]) for row in rows)


class EncodeOnce:
    """Wraps an adapter's ``encode``: a batch of waveforms seen before gets the cached tokens (attention included)."""

    def __init__(self, adapter):
        self.encode = adapter.encode
        self.cache: dict[str, object] = {}

    def __call__(self, audios, *, sampling_rate: int = 16000, attention: bool = False):
        digest = hashlib.sha1()
        for audio in audios:
            digest.update(np.ascontiguousarray(audio, dtype=np.float32).tobytes())
            digest.update(b"|")
        key = f"{digest.hexdigest()}@{sampling_rate}"
        if key not in self.cache:
            self.cache[key] = self.encode(audios, sampling_rate=sampling_rate, attention=True)
        return self.cache[key]


@pytest.fixture(scope="module")
def speech_tiny():
    items_count, bounds = load_wer_bounds()
    model, processor = samp.models.load(MODEL_DIR, device="cpu")
    adapter = samp.models.adapter_for(model, processor)
    adapter.encode = EncodeOnce(adapter)
    spec = DATASET
    items = load_manifest(MANIFEST)[:items_count]
    return adapter, spec, items, bounds


def test_budgets_cover_every_case():
    _, bounds = load_wer_bounds()
    assert sorted(bounds) == sorted(cases())


@pytest.mark.parametrize("method, keep_ratio", cases())
def test_speech_tiny_wer(method, keep_ratio, speech_tiny, benchmark, samp_recorder, tmp_path):
    adapter, spec, items, bounds = speech_tiny
    benchmark.group = "speech_tiny WER"
    config = RunConfig(model=MODEL.name, model_fingerprint=MODEL.fingerprint, method=method, keep_ratio=keep_ratio,
                       batch_size=len(items), seed=0)
    infer = adapter_inference(adapter, config, max_new_tokens=MAX_NEW_TOKENS)
    records = benchmark.pedantic(evaluate, args=(config, [(spec, items)], tmp_path, infer),
                                 kwargs={"device": "cpu", "progress": False}, rounds=1, iterations=1)
    (record,) = records
    samp_recorder.add(record, benchmark)
    assert record.coverage == 1.0, f"{record.n_failed} items failed"
    # a method that silently stopped compressing would still pass the WER bound: every utterance keeps exactly
    # keep_count of its audio tokens
    rows = collect_predictions(dataset_dir(tmp_path, config, spec), items)
    assert [row["tokens_out"] for row in rows] == [samp.keep_count(row["tokens_in"], keep_ratio) for row in rows]
    assert record.tokens_out == sum(row["tokens_out"] for row in rows)
    benchmark.extra_info["prefill_flops_share"] = prefill_flops_share(adapter, spec, items, method, rows)
    bound = bounds[(method, keep_ratio)]
    assert record.value <= bound, (
        f"speech_tiny {method} keep {keep_ratio}: WER {100 * record.value:.2f}% "
        f"(95% CI {100 * record.ci_low:.2f}–{100 * record.ci_high:.2f}) is above its bound {100 * bound:.2f}%")
