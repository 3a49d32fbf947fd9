"""History series: grouped per model × method × keep ratio × dataset × subset, time-ordered, regressions flagged
with the gate's rule."""
import pytest

from samp.bench.history import build_history
from samp.bench.observations import observation_from_record


def record(value, metric="wer", ci=None, **changes):
    """A complete samp.eval record as its JSON object."""
    row = dict(time="2026-11-25T10:00:00Z", git_sha="0123456789abcdef", samp_version="0.1.0", torch_version="2.13.0",
               transformers_version="5.24.0", device="cpu", model="Qwen/Qwen2-Audio-7B", method="samp",
               keep_ratio=0.6, threshold=0.85, flavor="samp", lowrank_plan=None, scorer="samp", scorer_version="1",
               dataset="librispeech", subset="test_clean", metric=metric, wer=value if metric == "wer" else None,
               accuracy=value if metric == "accuracy" else None, errors=None, ref_tokens=None, substitutions=None,
               deletions=None, insertions=None, correct=None, total=None, n_items=100, n_failed=0, coverage=1.0,
               ci_low=None if ci is None else ci[0], ci_high=None if ci is None else ci[1], tokens_in=1000,
               tokens_out=600, encode_s=None, compress_s=None, prefill_s=0.02, decode_s=None, peak_memory_bytes=None,
               schema=1)
    row.update(changes)
    return row


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
