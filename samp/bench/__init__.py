"""samp's benchmark suite: budgets from the published tables, the accuracy gate, machine info, CUDA-synced timers,
the results history and the static dashboard. The pytest plugin (:mod:`samp.bench.plugin`) is registered as the
``pytest11`` entry point ``samp``.

    # GPU budgets (skip with a reason without CUDA, checkpoint or dataset; nothing is downloaded)
    pytest -m gpu --benchmark-only benchmarks/bench_gpu_published.py \
        --samp-model-dir /models --samp-data-root /data \
        --samp-records history.jsonl --benchmark-json run.json
    # accuracy gate: against the published bands, a records JSONL or a saved pytest-benchmark JSON
    pytest -m gpu --benchmark-only benchmarks --samp-compare benchmarks/budgets ...
    samp bench compare records.jsonl benchmarks/budgets          # the same gate on records already written
    samp dashboard history.jsonl --out site/ [--assignment tokens.json]

Budgets live in ``benchmarks/budgets/*.toml`` (one row per model × method × keep ratio × dataset × subset, the
seed's number in percent with a tolerance band; ``latency.toml`` holds the prefill ratio budget).
"""
from samp.bench.budgets import AccuracyBudget, BudgetTable, ResultKey, load_budgets
from samp.bench.gate import Movement, compare, compare_to_budgets, compare_to_run, format_movements, load_reference
from samp.bench.history import Series, build_history
from samp.bench.machine import machine_info
from samp.bench.observations import Observation, observation_from_record, read_observations
from samp.bench.timers import StageTimer, peak_memory, synchronize, synced

__all__ = [
    "AccuracyBudget", "BudgetTable", "Movement", "Observation", "ResultKey", "Series", "StageTimer",
    "build_history", "compare", "compare_to_budgets", "compare_to_run", "format_movements", "load_budgets",
    "load_reference", "machine_info", "observation_from_record", "peak_memory", "read_observations",
    "synchronize", "synced",
]
