"""samp's benchmark suite: budgets from the published tables, the accuracy gate, machine info, CUDA-synced timers,
the results history and the static dashboard. The pytest plugin lives in :mod:`samp.bench.plugin`."""
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
