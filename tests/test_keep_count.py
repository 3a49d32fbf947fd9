"""The one keep-count rule of the clean flavour."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

import samp


@pytest.mark.parametrize(
    "n, keep_ratio, expected",
    [
        (750, 0.6, 450),
        (375, 0.5, 188),  # half rounds up (Python's round would give 188 here too, but 112.5 → 113 below)
        (225, 0.5, 113),
        (45, 0.7, 32),  # 31.5 exactly in decimal; float64 says 31.499999999999996
        (90, 0.7, 63),  # float64 says 62.99999999999999
        (1, 0.01, 1),  # never below one token
        (3, 1.0, 3),
        (0, 0.5, 0),
    ],
)
def test_examples(n, keep_ratio, expected):
    assert samp.keep_count(n, keep_ratio) == expected


@given(n=st.integers(1, 5000), keep_ratio=st.floats(0.001, 1.0))
def test_bounds(n, keep_ratio):
    kept = samp.keep_count(n, keep_ratio)
    assert 1 <= kept <= n
    assert abs(kept - n * keep_ratio) <= 0.5 + 1e-9 or kept == 1


@pytest.mark.parametrize("keep_ratio", [0.0, -0.1, 1.01, float("nan"), float("inf"), True, "0.5", None])
def test_bad_keep_ratio(keep_ratio):
    with pytest.raises(ValueError, match="keep_ratio"):
        samp.keep_count(10, keep_ratio)


@pytest.mark.parametrize("n", [-1, 2.5, True])
def test_bad_n(n):
    with pytest.raises(ValueError, match="n must be"):
        samp.keep_count(n, 0.5)


def test_unknown_flavor_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown flavor 'whisper'.*samp, qwen2_audio, glm_asr, kimi_audio"):
        samp.keep_count(10, 0.5, flavor="whisper")
