"""Accuracy budgets: the seed's published WER/CER/accuracy per model × method × keep ratio × dataset (× subset),
each with a tolerance band, loaded from TOML files (``benchmarks/budgets/*.toml``).

A budget file holds ``rows = [{model, method, keep_ratio, dataset, subset?, metric, published, tolerance}, ...]``
with ``published`` and ``tolerance`` in percent (as the seed's tables print them), an optional ``threshold`` used for
every row, and an optional ``[flavors]`` table mapping a model to the keep-count flavour that reproduces its numbers.
Records store scores as fractions; :meth:`AccuracyBudget.band` converts once, here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

# Lower is better for error rates, higher for accuracy.
ERROR_RATE_METRICS = ("wer", "cer")
METRICS = ERROR_RATE_METRICS + ("accuracy",)
_ROW_FIELDS = {"model", "method", "keep_ratio", "dataset", "subset", "metric", "published", "tolerance", "threshold"}


def lower_is_better(metric: str) -> bool:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    return metric in ERROR_RATE_METRICS


@dataclass(frozen=True)
class ResultKey:
    """What one score is about. ``subset`` is ``None`` for a dataset reported as a whole."""

    model: str
    method: str
    keep_ratio: float
    dataset: str
    subset: str | None = None

    def label(self) -> str:
        data = self.dataset if self.subset is None else f"{self.dataset}/{self.subset}"
        return f"{self.model} {self.method} r{self.keep_ratio:g} {data}"


@dataclass(frozen=True)
class AccuracyBudget:
    """One published number and the band a reproduction must land in (percent, as published)."""

    key: ResultKey
    metric: str
    published: float
    tolerance: float
    threshold: float | None = None
    flavor: str | None = None
    source: str = ""

    @property
    def band(self) -> tuple[float, float]:
        """(low, high) as fractions, the unit records use."""
        return ((self.published - self.tolerance) / 100.0, (self.published + self.tolerance) / 100.0)

    def contains(self, value: float) -> bool:
        low, high = self.band
        return low <= value <= high


@dataclass(frozen=True)
class LatencyBudget:
    """Latency gates as ratios to the uncompressed run of the same session, so they hold on any GPU:
    ``prefill(keep r) / prefill(keep 1) <= r + prefill_slack``."""

    prefill_slack: float

    def check_prefill(self, label: str, keep_ratio: float, prefill_s: float, base_prefill_s: float) -> None:
        """AssertionError (a benchmark failure) when ``prefill_s`` exceeds its share of the uncompressed run's."""
        ratio, limit = prefill_s / base_prefill_s, keep_ratio + self.prefill_slack
        assert ratio <= limit, (f"{label}: prefill {1000 * prefill_s:.1f} ms is {ratio:.2f}x the uncompressed "
                                f"{1000 * base_prefill_s:.1f} ms (budget {limit:.2f}x)")


@dataclass(frozen=True)
class BudgetTable:
    budgets: tuple[AccuracyBudget, ...]
    latency: LatencyBudget | None = None
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", {b.key: b for b in self.budgets})

    def __iter__(self) -> Iterator[AccuracyBudget]:
        return iter(self.budgets)

    def __len__(self) -> int:
        return len(self.budgets)

    def get(self, key: ResultKey) -> AccuracyBudget | None:
        return self._index.get(key)

    def select(self, *, model: str | None = None, method: str | None = None, dataset: str | None = None,
               metric_family: str | None = None) -> list[AccuracyBudget]:
        """Rows matching every given field; ``metric_family`` is ``"error_rate"`` or ``"accuracy"``."""
        out = []
        for budget in self.budgets:
            if model is not None and budget.key.model != model:
                continue
            if method is not None and budget.key.method != method:
                continue
            if dataset is not None and budget.key.dataset != dataset:
                continue
            if metric_family is not None and metric_family_of(budget.metric) != metric_family:
                continue
            out.append(budget)
        return out

    def models(self) -> list[str]:
        return sorted({b.key.model for b in self.budgets})



def metric_family_of(metric: str) -> str:
    return "error_rate" if lower_is_better(metric) else "accuracy"


def _number(row: dict, name: str, where: str) -> float:
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {name!r} must be a finite number, got {value!r}")
    return float(value)


def _text(row: dict, name: str, where: str, required: bool = True) -> str | None:
    value = row.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: {name!r} must be a non-empty string, got {value!r}")
    return value


def parse_latency(document: dict, source: str) -> LatencyBudget | None:
    section = document.get("latency")
    if section is None:
        return None
    if not isinstance(section, dict) or set(section) != {"prefill_slack"}:
        raise ValueError(f"{source}: [latency] must hold exactly 'prefill_slack'")
    slack = _number(section, "prefill_slack", f"{source} [latency]")
    if not 0 <= slack < 1:
        raise ValueError(f"{source} [latency]: prefill_slack must be in [0, 1), got {slack}")
    return LatencyBudget(prefill_slack=slack)


def parse_budgets(document: dict, source: str) -> BudgetTable:
    """Validate one parsed budget document; every problem names the file and row."""
    latency = parse_latency(document, source)
    rows = document.get("rows")
    if latency is not None and rows is None:
        return BudgetTable((), latency)
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{source}: expected a non-empty 'rows' array of tables (or a [latency] table)")
    flavors = document.get("flavors", {})
    if not isinstance(flavors, dict):
        raise ValueError(f"{source}: 'flavors' must be a table mapping model to flavour")
    default_threshold = document.get("threshold")
    budgets, seen = [], set()
    for number, row in enumerate(rows, start=1):
        where = f"{source} row {number}"
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a table, got {row!r}")
        unknown = set(row) - _ROW_FIELDS
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        keep_ratio = _number(row, "keep_ratio", where)
        if not 0.0 < keep_ratio <= 1.0:
            raise ValueError(f"{where}: keep_ratio must be in (0, 1], got {keep_ratio}")
        metric = _text(row, "metric", where)
        if metric not in METRICS:
            raise ValueError(f"{where}: unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
        published = _number(row, "published", where)
        # an error rate counts insertions, so a decoder that loops scores above 100 %; an accuracy cannot
        if published < 0.0 or (metric == "accuracy" and published > 100.0):
            raise ValueError(f"{where}: published is a percentage (an accuracy at most 100), got {published}")
        tolerance = _number(row, "tolerance", where)
        if tolerance < 0:
            raise ValueError(f"{where}: tolerance must be >= 0, got {tolerance}")
        key = ResultKey(
            model=_text(row, "model", where),
            method=_text(row, "method", where),
            keep_ratio=keep_ratio,
            dataset=_text(row, "dataset", where),
            subset=_text(row, "subset", where, required=False),
        )
        if key in seen:
            raise ValueError(f"{where}: duplicate row for {key.label()}")
        seen.add(key)
        threshold = row.get("threshold", default_threshold)
        budgets.append(AccuracyBudget(
            key=key, metric=metric, published=published, tolerance=tolerance,
            threshold=None if threshold is None else float(threshold),
            flavor=flavors.get(key.model), source=source,
        ))
    return BudgetTable(tuple(budgets), latency)


def load_budgets(paths: str | Path | Iterable[str | Path]) -> BudgetTable:
    """Load budget TOML files; a directory means every ``*.toml`` in it. Keys must be unique across files."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.glob("*.toml"))
            if not found:
                raise ValueError(f"no budget files (*.toml) in {path}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"budget file not found: {path}")
    budgets: list[AccuracyBudget] = []
    seen: dict[ResultKey, str] = {}
    latency: LatencyBudget | None = None
    for file in files:
        try:
            document = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{file}: not valid TOML ({error})") from error
        table = parse_budgets(document, str(file))
        if table.latency is not None:
            if latency is not None:
                raise ValueError(f"{file}: a second [latency] table (there must be one)")
            latency = table.latency
        for budget in table:
            if budget.key in seen:
                raise ValueError(f"{file}: {budget.key.label()} is also budgeted in {seen[budget.key]}")
            seen[budget.key] = str(file)
            budgets.append(budget)
    return BudgetTable(tuple(budgets), latency)


def default_budget_dir() -> Path:
    """``benchmarks/budgets`` of a source checkout."""
    return Path(__file__).resolve().parents[2] / "benchmarks" / "budgets"
