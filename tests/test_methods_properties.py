"""Properties every clean (flavor="samp") method must keep, for any input hypothesis can build."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import samp
from methods_inputs import COMPRESSING, METHODS, build_inputs, inputs, keep_ratios, thresholds

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(method, data, keep_ratio, threshold=0.85, **overrides):
    kwargs = dict(method=method, keep_ratio=keep_ratio, threshold=threshold, **data.kwargs())
    kwargs.update(overrides)
    return samp.compress(data.features, data.lengths, **kwargs)


def check_weighted_means(data, out):
    """Each output row is Σ w·x over exactly the inputs assigned to it; a slot's weights sum to one."""
    batch, n, _ = data.features.shape
    for b in range(batch):
        length = int(data.lengths[b])
        slots = out.assignment[b]
        weights = out.weights[b]
        assert bool((slots[length:] == -1).all()), "padding must never be assigned"
        assert bool((weights[slots < 0] == 0).all())
        assert bool((weights >= 0).all())
        for slot in range(int(out.lengths[b])):
            members = slots == slot
            assert bool(members.any()), f"slot {slot} has no inputs"
            assert float(weights[members].sum()) == pytest.approx(1.0, abs=1e-5)
            expected = (weights[members, None] * data.features[b, members].float()).sum(0)
            torch.testing.assert_close(out.features[b, slot].float(), expected, atol=1e-4, rtol=1e-4)
        assert bool((out.features[b, int(out.lengths[b]):] == 0).all()), "rows past the kept count are padding"


def check_temporal_order(out):
    """Slots are numbered in the order of their first input token."""
    for b in range(out.assignment.shape[0]):
        slots = out.assignment[b]
        seen = slots[slots >= 0]
        first_of_slot = [int(torch.nonzero(slots == s)[0]) for s in range(int(out.lengths[b]))]
        assert first_of_slot == sorted(first_of_slot)
        assert seen.numel() == 0 or int(seen[0]) == 0


@pytest.mark.parametrize("method", COMPRESSING)
@SETTINGS
@given(data=inputs(), keep_ratio=keep_ratios, threshold=thresholds)
def test_count_order_and_weighted_means(method, data, keep_ratio, threshold):
    out = run(method, data, keep_ratio, threshold)
    expected = [samp.keep_count(int(n), keep_ratio) for n in data.lengths]
    assert out.lengths.tolist() == expected
    assert out.features.shape[1] == max(expected)
    assert not bool(torch.isnan(out.features).any())
    check_temporal_order(out)
    check_weighted_means(data, out)


@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(data=inputs(), threshold=thresholds)
def test_keep_ratio_one_is_identity(method, data, threshold):
    out = run(method, data, 1.0, threshold)
    assert out.lengths.tolist() == data.lengths.tolist()
    for b, length in enumerate(data.lengths.tolist()):
        assert out.assignment[b, :length].tolist() == list(range(length))
        torch.testing.assert_close(out.features[b, :length], data.features[b, :length])


@pytest.mark.parametrize("method", COMPRESSING)
@settings(max_examples=15, deadline=None)
@given(data=inputs(), keep_ratio=keep_ratios)
def test_batch_equals_each_item_alone(method, data, keep_ratio):
    together = run(method, data, keep_ratio)
    for b, length in enumerate(data.lengths.tolist()):
        p = data.frames_per_token
        alone = samp.compress(
            data.features[b : b + 1, :length], data.lengths[b : b + 1], method=method, keep_ratio=keep_ratio,
            attention=data.attention[b : b + 1, :, : p * length, : p * length].contiguous(),
            keys=data.keys[b : b + 1, :, : p * length], frames_per_token=p,
        )
        kept = int(together.lengths[b])
        assert alone.assignment[0].tolist() == together.assignment[b, :length].tolist()
        torch.testing.assert_close(alone.features[0, :kept], together.features[b, :kept], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", COMPRESSING)
@settings(max_examples=15, deadline=None)
@given(data=inputs(), keep_ratio=keep_ratios, garbage_seed=st.integers(0, 1000))
def test_padding_content_never_changes_the_result(method, data, keep_ratio, garbage_seed):
    clean = run(method, data, keep_ratio)
    g = torch.Generator().manual_seed(garbage_seed)
    features = data.features.clone()
    padded = torch.arange(features.shape[1])[None, :] >= data.lengths[:, None]
    features[padded] = torch.randn(int(padded.sum()), features.shape[2], generator=g) * 100
    features[padded & (torch.rand(padded.shape, generator=g) < 0.5)] = float("nan")
    dirty = samp.compress(features, data.lengths, method=method, keep_ratio=keep_ratio, **data.kwargs())
    assert torch.equal(clean.assignment, dirty.assignment)
    torch.testing.assert_close(clean.features, dirty.features)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("method", METHODS)
def test_low_precision_inputs(method, dtype):
    data = build_inputs(seed=3, batch=2, n=30, channels=16, lengths=[30, 17])
    keep_ratio = 1.0 if method == "base" else 0.6
    out = samp.compress(data.features.to(dtype), data.lengths, method=method, keep_ratio=keep_ratio, **data.kwargs())
    assert out.features.dtype == dtype
    assert out.lengths.tolist() == [samp.keep_count(30, keep_ratio), samp.keep_count(17, keep_ratio)]
    assert bool(torch.isfinite(out.features).all())


@pytest.mark.parametrize("method", COMPRESSING)
def test_silence_gives_no_nan(method):
    """All-zero and identical rows (silence) must neither produce NaN nor duplicate tokens."""
    data = build_inputs(seed=1, batch=2, n=24, channels=8, lengths=[24, 10])
    data.features[0, 5:20] = 0.0
    data.features[1, :] = data.features[1, 0]
    out = run(method, data, 0.5)
    assert bool(torch.isfinite(out.features).all())
    assert out.lengths.tolist() == [12, 5]
    check_weighted_means(data, out)
