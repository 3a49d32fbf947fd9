"""The benchmark suite's view of an evaluation record: one score about one :class:`ResultKey`, with its confidence
interval, coverage, token counts, stage times and where it came from (git sha, time, device).

Records are defined by :mod:`samp.eval.records` (architecture.md, "Records"); this module only projects them, so
the gate, the history and the dashboard read the same fields whatever else a record carries.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from samp.bench.budgets import ResultKey
from samp.eval.records import Record, read_records

STAGES = ("encode", "compress", "prefill", "decode")


@dataclass(frozen=True)
class Observation:
    key: ResultKey
    metric: str
    value: float                      # a fraction, like the record's wer/accuracy (WER may exceed 1)
    ci_low: float | None = None
    ci_high: float | None = None
    coverage: float | None = None
    n_items: int | None = None
    tokens_in: float | None = None
    tokens_out: float | None = None
    stage_seconds: tuple[tuple[str, float], ...] = ()
    git_sha: str | None = None
    timestamp: str | None = None
    device: str | None = None
    model_fingerprint: str | None = None    # samp.eval.identity; None in records that predate it
    dataset_fingerprint: str | None = None

    @property
    def fingerprints(self) -> tuple[str | None, str | None]:
        return (self.model_fingerprint, self.dataset_fingerprint)

    def same_content_as(self, other: "Observation") -> bool:
        """False only when both know a fingerprint and they differ: another model or other data under one name."""
        return all(a is None or b is None or a == b for a, b in zip(self.fingerprints, other.fingerprints))

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
        """Seconds in ``stage`` summed over the record's items (as records store them)."""
        return dict(self.stage_seconds).get(stage)

    def seconds_per_item(self, stage: str) -> float | None:
        total = self.seconds(stage)
        if total is None or not self.n_items:
            return None
        return total / self.n_items


def _finite(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def observation_from_record(record: Record | Mapping[str, Any]) -> Observation:
    """Project one evaluation record (a :class:`samp.eval.records.Record` or its JSON object, validated)."""
    if isinstance(record, Mapping):
        record = Record.from_dict(dict(record))
    if not isinstance(record, Record):
        raise TypeError(f"expected a samp.eval Record or its dict, got {type(record).__name__}")
    value = _finite(record.value)
    if value is None:
        raise ValueError(f"{record.model} {record.method} {record.dataset}: {record.metric} is not finite "
                         f"({record.value!r})")
    stages = tuple((stage, seconds) for stage in STAGES
                   if (seconds := _finite(getattr(record, f"{stage}_s"))) is not None)
    return Observation(
        key=ResultKey(record.model, record.method, float(record.keep_ratio), record.dataset, record.subset or None),
        metric=record.metric,
        value=value,
        ci_low=_finite(record.ci_low),
        ci_high=_finite(record.ci_high),
        coverage=_finite(record.coverage),
        n_items=record.n_items,
        tokens_in=_finite(record.tokens_in),
        tokens_out=_finite(record.tokens_out),
        stage_seconds=stages,
        git_sha=record.git_sha,
        timestamp=record.time,
        device=record.device,
        model_fingerprint=record.model_fingerprint,
        dataset_fingerprint=record.dataset_fingerprint,
    )


def observations_from_records(records: Iterable[Record | Mapping[str, Any]]) -> list[Observation]:
    return [observation_from_record(record) for record in records]


def read_observations(path: str | Path) -> list[Observation]:
    """Observations from a records JSONL file (the evaluation runner's ``records.jsonl`` or a history)."""
    return observations_from_records(read_records(path))


def latest_by_key(observations: Iterable[Observation]) -> dict[ResultKey, Observation]:
    """The last observation of each key, in the order given (files are appended in time order)."""
    latest: dict[ResultKey, Observation] = {}
    for observation in observations:
        latest[observation.key] = observation
    return latest
