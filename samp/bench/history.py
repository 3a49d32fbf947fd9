"""History: every run's records in one JSONL file (runs append), read back as one series per
model × method × keep ratio × dataset × subset (and model and data fingerprint: another checkpoint or manifest under
the same names starts its own series), ordered by time, with regressions flagged.

A point is flagged when it is worse than the previous point of its series by more than the tolerance and the
previous value lies outside the point's confidence interval (the same rule as the gate, see :func:`judge`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from samp.bench.budgets import ResultKey
from samp.bench.gate import judge
from samp.bench.observations import Observation


@dataclass(frozen=True)
class HistoryPoint:
    observation: Observation
    regressed: bool


@dataclass(frozen=True)
class Series:
    key: ResultKey
    metric: str
    points: tuple[HistoryPoint, ...]

    @property
    def latest(self) -> Observation:
        return self.points[-1].observation

    @property
    def regressions(self) -> list[HistoryPoint]:
        return [point for point in self.points if point.regressed]


def build_history(observations: Iterable[Observation], tolerance: float) -> list[Series]:
    """Group into series (first-seen order) and flag regressions. Points keep file order when timestamps tie or
    are missing; ISO-8601 timestamps sort correctly as text."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    grouped: dict[tuple, list[tuple[int, Observation]]] = {}
    for position, observation in enumerate(observations):
        grouped.setdefault((observation.key, *observation.fingerprints), []).append((position, observation))
    series = []
    for (key, *_), items in grouped.items():
        metrics = {observation.metric for _, observation in items}
        if len(metrics) > 1:
            raise ValueError(f"{key.label()}: records mix metrics {sorted(metrics)}")
        items.sort(key=lambda item: (item[1].timestamp or "", item[0]))
        points, previous = [], None
        for _, observation in items:
            regressed = previous is not None and judge(
                observation.metric, previous.value, observation.value, tolerance, observation.ci) == "regressed"
            points.append(HistoryPoint(observation, regressed))
            previous = observation
        series.append(Series(key, metrics.pop(), tuple(points)))
    return series
