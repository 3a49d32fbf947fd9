"""History series: grouped per model × method × keep ratio × dataset × subset, time-ordered, regressions flagged
with the gate's rule."""
import pytest

from samp.bench.history import build_history
from samp.bench.observations import observation_from_record
from bench_records import record


def point(value, timestamp, sha, ci=None, **changes):
    return observation_from_record(record(value, ci=ci, time=timestamp, git_sha=sha, model="m", **changes))


def test_series_are_time_ordered_and_regressions_flagged():
    observations = [
        point(0.030, "2026-11-03T00:00:00Z", "c"),  # appended out of order on purpose
        point(0.027, "2026-11-01T00:00:00Z", "a"),
        point(0.028, "2026-11-02T00:00:00Z", "b"),
        point(0.029, "2026-11-04T00:00:00Z", "d", ci=(0.020, 0.040)),
        point(0.60, "2026-11-01T00:00:00Z", "a", dataset="meld", subset="", metric="accuracy"),
        point(0.55, "2026-11-02T00:00:00Z", "b", dataset="meld", subset="", metric="accuracy"),
    ]
    wer, accuracy = build_history(observations, tolerance=0.0015)
    assert [p.observation.git_sha for p in wer.points] == ["a", "b", "c", "d"]
    # b: +0.1 pt is inside the 0.15 pt tolerance; c: +0.2 pt regressed; d: better anyway.
    assert [p.regressed for p in wer.points] == [False, False, True, False]
    assert wer.latest.git_sha == "d"
    assert [p.regressed for p in accuracy.points] == [False, True]
    assert len(accuracy.regressions) == 1


def test_a_wide_confidence_interval_is_not_a_regression():
    observations = [point(0.027, "1", "a"), point(0.040, "2", "b", ci=(0.020, 0.060))]
    (series,) = build_history(observations, tolerance=0.005)
    assert not series.regressions


def test_mixed_metrics_in_one_series_and_bad_tolerance_are_refused():
    with pytest.raises(ValueError, match="records mix metrics"):
        build_history([point(0.03, "1", "a"), point(0.6, "2", "b", metric="accuracy")], tolerance=0.005)
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        build_history([], tolerance=-1)
