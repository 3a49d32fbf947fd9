"""The benchmark suite's view of an evaluation record: one score about one :class:`ResultKey`, with its confidence
interval, coverage, token counts, stage times and where it came from (git sha, time, device).

Records are defined by ``samp.eval.records`` (architecture.md, "Records"); this module only projects them, so the
gate, the history and the dashboard read the same fields whatever else a record carries.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from samp.bench.budgets import METRICS, ResultKey

STAGES = ("encode", "compress", "prefill", "decode")


@dataclass(frozen=True)
class Observation:
    key: ResultKey
    metric: str
    value: float                      # a fraction: WER/CER or accuracy in [0, 1] (WER may exceed 1)
    ci_low: float | None = None
    ci_high: float | None = None
    coverage: float | None = None
    tokens_in: float | None = None
    tokens_out: float | None = None
    stage_seconds: tuple[tuple[str, float], ...] = ()
    git_sha: str | None = None
    timestamp: str | None = None
    device: str | None = None

    @property
    def ci(self) -> tuple[float, float] | None:
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_low, self.ci_high)

    @property
    def kept_fraction(self) -> float | None:
        """Tokens actually kept over tokens in (falls back to nothing when the record has no counts)."""
        if not self.tokens_in or self.tokens_out is None:
            return None
        return self.tokens_out / self.tokens_in

    def seconds(self, stage: str) -> float | None:
        return dict(self.stage_seconds).get(stage)


def _as_mapping(record: Any) -> Mapping[str, Any]:
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.asdict(record)
    if isinstance(record, Mapping):
        return record
    raise TypeError(f"a record must be a dataclass or a mapping, got {type(record).__name__}")


def _optional_float(record: Mapping[str, Any], name: str) -> float | None:
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"record field {name!r} must be a number, got {value!r}")
    value = float(value)
    return value if math.isfinite(value) else None


def _stage_value(record: Mapping[str, Any], stage: str) -> float | None:
    for name in (f"{stage}_s", f"{stage}_seconds"):
        if name in record:
            return _optional_float(record, name)
    timings = record.get("timings")
    if isinstance(timings, Mapping) and stage in timings:
        return _optional_float(timings, stage)
    return None


def observation_from_record(record: Any) -> Observation:
    """Project one evaluation record (a ``samp.eval`` record dataclass or its JSON object)."""
    row = _as_mapping(record)
    missing = [name for name in ("model", "method", "keep_ratio", "dataset", "metric", "value") if row.get(name) is None]
    if missing:
        raise ValueError(f"record lacks {', '.join(missing)}: {dict(row)!r:.200}")
    metric = str(row["metric"])
    if metric not in METRICS:
        raise ValueError(f"record has unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    value = _optional_float(row, "value")
    if value is None:
        raise ValueError(f"record value is not finite: {row.get('value')!r}")
    subset = row.get("subset") or None
    device = row.get("device") or row.get("gpu")
    stages = tuple((stage, seconds) for stage in STAGES if (seconds := _stage_value(row, stage)) is not None)
    return Observation(
        key=ResultKey(str(row["model"]), str(row["method"]), float(row["keep_ratio"]), str(row["dataset"]),
                      None if subset is None else str(subset)),
        metric=metric,
        value=value,
        ci_low=_optional_float(row, "ci_low"),
        ci_high=_optional_float(row, "ci_high"),
        coverage=_optional_float(row, "coverage"),
        tokens_in=_optional_float(row, "tokens_in"),
        tokens_out=_optional_float(row, "tokens_out"),
        stage_seconds=stages,
        git_sha=row.get("git_sha"),
        timestamp=None if row.get("timestamp") is None else str(row.get("timestamp")),
        device=None if device is None else str(device),
    )


def observations_from_records(records: Iterable[Any]) -> list[Observation]:
    return [observation_from_record(record) for record in records]


def read_observations(path: str | Path) -> list[Observation]:
    """Observations from a records JSONL file (the evaluation runner's ``records.jsonl`` or a history)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"records file not found: {path}")
    observations = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a JSON record ({error.msg})") from error
            try:
                observations.append(observation_from_record(row))
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path}:{number}: {error}") from error
    return observations


def latest_by_key(observations: Iterable[Observation]) -> dict[ResultKey, Observation]:
    """The last observation of each key, in the order given (files are appended in time order)."""
    latest: dict[ResultKey, Observation] = {}
    for observation in observations:
        latest[observation.key] = observation
    return latest
