"""The accuracy gate pytest-benchmark lacks: compare this run's scores with a saved run or the budget file and say
what moved.

A result *regressed* when it is worse than the reference by more than the tolerance **and** the reference lies
outside this run's confidence interval (so a small test set's noise alone never fails a run); *improved* is the
mirror image. Results present on one side only are listed as *missing* or *new*; they never fail the gate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from samp.bench.budgets import BudgetTable, ResultKey, lower_is_better
from samp.bench.observations import Observation, latest_by_key

VERDICTS = ("regressed", "improved", "unchanged", "missing", "new")


@dataclass(frozen=True)
class Movement:
    key: ResultKey
    metric: str
    reference: float | None      # fractions
    current: float | None
    tolerance: float
    ci: tuple[float, float] | None
    verdict: str

    @property
    def delta(self) -> float | None:
        if self.reference is None or self.current is None:
            return None
        return self.current - self.reference


def judge(metric: str, reference: float, current: float, tolerance: float,
          ci: tuple[float, float] | None) -> str:
    """``regressed``, ``improved`` or ``unchanged`` for one pair of scores (fractions)."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    worse_by = current - reference if lower_is_better(metric) else reference - current
    reference_inside_ci = ci is not None and ci[0] <= reference <= ci[1]
    if reference_inside_ci:
        return "unchanged"
    if worse_by > tolerance:
        return "regressed"
    if -worse_by > tolerance:
        return "improved"
    return "unchanged"


def _pair(current: dict[ResultKey, Observation], reference: dict[ResultKey, tuple[str, float, float]]) -> list[Movement]:
    movements = []
    for key, (metric, value, tolerance) in reference.items():
        observation = current.get(key)
        if observation is None:
            movements.append(Movement(key, metric, value, None, tolerance, None, "missing"))
            continue
        verdict = judge(observation.metric, value, observation.value, tolerance, observation.ci)
        movements.append(Movement(key, observation.metric, value, observation.value, tolerance, observation.ci, verdict))
    for key, observation in current.items():
        if key not in reference:
            movements.append(Movement(key, observation.metric, None, observation.value, 0.0, observation.ci, "new"))
    return movements


def compare_to_run(current: Iterable[Observation], reference: Iterable[Observation], tolerance: float) -> list[Movement]:
    """Against a saved run; ``tolerance`` is absolute, as a fraction (0.005 = half a WER point). A result whose
    model or data fingerprint differs from the reference's is about something else: ``missing`` and ``new``."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    reference_latest = latest_by_key(reference)
    current_latest = latest_by_key(current)
    movements = _pair({key: obs for key, obs in current_latest.items()
                       if key not in reference_latest or obs.same_content_as(reference_latest[key])},
                      {key: (obs.metric, obs.value, tolerance) for key, obs in reference_latest.items()})
    movements += [Movement(key, obs.metric, None, obs.value, 0.0, obs.ci, "new") for key, obs in current_latest.items()
                  if key in reference_latest and not obs.same_content_as(reference_latest[key])]
    return movements


def compare_to_budgets(current: Iterable[Observation], budgets: BudgetTable, *,
                       only_measured: bool = True) -> list[Movement]:
    """Against the published numbers, each with its own band. With ``only_measured`` a budget this run did not
    measure is not listed (a run normally covers a few models and datasets out of the whole table)."""
    measured = latest_by_key(current)
    reference = {
        budget.key: (budget.metric, budget.published / 100.0, budget.tolerance / 100.0)
        for budget in budgets
        if not only_measured or budget.key in measured
    }
    return _pair(measured, reference)


def regressions(movements: Sequence[Movement]) -> list[Movement]:
    return [movement for movement in movements if movement.verdict == "regressed"]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.2f}"


def format_movements(movements: Sequence[Movement], *, show_unchanged: bool = False) -> str:
    """A plain-text table of what moved (scores in percent, Δ in percentage points), worst first."""
    order = {verdict: rank for rank, verdict in enumerate(VERDICTS)}

    def badness(movement: Movement) -> tuple:
        delta = movement.delta or 0.0
        signed = delta if lower_is_better(movement.metric) else -delta
        return (order[movement.verdict], -signed, movement.key.label())

    shown = [m for m in movements if show_unchanged or m.verdict != "unchanged"]
    unchanged = sum(m.verdict == "unchanged" for m in movements)
    header = ("result", "metric", "ref %", "now %", "Δ pts", "±tol", "95% CI", "verdict")
    rows = [header]
    for movement in sorted(shown, key=badness):
        ci = "-" if movement.ci is None else f"{_percent(movement.ci[0])}–{_percent(movement.ci[1])}"
        delta = "-" if movement.delta is None else f"{100.0 * movement.delta:+.2f}"
        rows.append((movement.key.label(), movement.metric, _percent(movement.reference), _percent(movement.current),
                     delta, _percent(movement.tolerance), ci, movement.verdict.upper() if movement.verdict == "regressed"
                     else movement.verdict))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    if len(rows) == 1:
        lines = ["nothing moved"]
    summary = {verdict: sum(m.verdict == verdict for m in movements) for verdict in VERDICTS}
    lines.append(", ".join(f"{count} {verdict}" for verdict, count in summary.items() if count)
                 + ("" if show_unchanged or not unchanged else " (unchanged rows not shown)"))
    return "\n".join(lines)


def load_reference(path) -> BudgetTable | list[Observation]:
    """What ``--samp-compare`` accepts: a budget TOML file or a directory of them, a records/history JSONL, or a
    pytest-benchmark JSON (``--benchmark-json`` / ``--benchmark-save``) whose benchmarks carry samp records in
    ``extra_info["samp_record"]``."""
    import json
    from pathlib import Path

    from samp.bench.budgets import load_budgets
    from samp.bench.observations import observation_from_record, read_observations

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--samp-compare reference not found: {path}")
    if path.is_dir() or path.suffix == ".toml":
        return load_budgets(path)
    if path.suffix == ".jsonl":
        return read_observations(path)
    if path.suffix == ".json":
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a pytest-benchmark JSON file ({error.msg})") from error
        if not isinstance(document, dict) or not isinstance(document.get("benchmarks"), list):
            raise ValueError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
        records = [bench.get("extra_info", {}).get("samp_record") for bench in document["benchmarks"]]
        return [observation_from_record(record) for record in records if record is not None]
    raise ValueError(f"--samp-compare {path}: expected a .toml budget file or directory, a .jsonl records file or a "
                     f"pytest-benchmark .json file")


def compare(current: Iterable[Observation], reference: BudgetTable | list[Observation],
            tolerance: float) -> list[Movement]:
    """Dispatch on what :func:`load_reference` returned; ``tolerance`` applies to saved runs only (budgets carry
    their own bands)."""
    if isinstance(reference, BudgetTable):
        return compare_to_budgets(current, reference)
    return compare_to_run(current, reference, tolerance)
