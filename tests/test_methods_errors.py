"""Bad input to samp.compress: a ValueError that says what is wrong."""
import pytest
import torch

import samp
from methods_inputs import build_inputs


@pytest.fixture
def data():
    return build_inputs(seed=0, batch=2, n=10, channels=4, lengths=[10, 6])


def call(data, **overrides):
    kwargs = dict(method="samp", keep_ratio=0.6, **data.kwargs())
    kwargs.update(overrides)
    features = kwargs.pop("features", data.features)
    lengths = kwargs.pop("lengths", data.lengths)
    return samp.compress(features, lengths, **kwargs)


def test_nan_in_valid_token(data):
    data.features[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf in a valid token \(utterance 1, token 3\)"):
        call(data)


def test_inf_in_valid_token(data):
    data.features[0, 9, 2] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        call(data)


@pytest.mark.parametrize(
    "features, message",
    [
        (torch.zeros(10, 4), r"features must be \[B, N, C\]"),
        (torch.zeros(2, 10, 4, dtype=torch.long), "floating point"),
        (torch.zeros(2, 0, 4), "non-empty"),
        ([[0.0]], "torch.Tensor"),
    ],
)
def test_bad_features(data, features, message):
    with pytest.raises(ValueError, match=message):
        call(data, features=features)


@pytest.mark.parametrize(
    "lengths, message",
    [
        ([10], r"lengths must be \[B\]"),
        ([10, 0], "lengths must be in 1..N=10"),
        ([11, 5], "lengths must be in 1..N=10"),
        ([10, -1], "lengths must be in 1..N=10"),
        (torch.tensor([10.0, 5.0]), "integers"),
    ],
)
def test_bad_lengths(data, lengths, message):
    with pytest.raises(ValueError, match=message):
        call(data, lengths=lengths)


@pytest.mark.parametrize("keep_ratio", [0.0, 1.5, -0.2, float("nan")])
def test_keep_ratio_outside_unit_interval(data, keep_ratio):
    with pytest.raises(ValueError, match=r"keep_ratio must be in \(0, 1\]"):
        call(data, keep_ratio=keep_ratio)


def test_unknown_method_lists_what_exists(data):
    with pytest.raises(ValueError, match="unknown method 'tome'; available: samp, base, uniform"):
        call(data, method="tome")


@pytest.mark.parametrize("method", [s.name for s in samp.methods.available() if s.needs_attention])
def test_method_needing_attention_without_it(data, method):
    with pytest.raises(ValueError, match=f"method '{method}' needs the encoder's attention"):
        call(data, method=method, attention=None)


def test_visionzip_without_keys(data):
    with pytest.raises(ValueError, match="needs the last encoder layer's key states"):
        call(data, method="visionzip", keys=None)


def test_attention_shape_mismatch(data):
    with pytest.raises(ValueError, match=r"attention must be \[B, H, P·N, P·N\] = \[2, H, 20, 20\]"):
        call(data, attention=data.attention[:, :, :18, :18])


def test_attention_frames_per_token_mismatch(data):
    with pytest.raises(ValueError, match="frames_per_token=4"):
        call(data, frames_per_token=4)


def test_attention_with_nan(data):
    data.attention[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="attention contains NaN"):
        call(data)


def test_stats_shape_mismatch(data):
    stats = samp.attention_stats(data.attention, data.lengths, 2)
    bad = samp.AttentionStats(stats.received_attention[:, :5], stats.self_attention)
    with pytest.raises(ValueError, match=r"received_attention must be \[B, N\] = \[2, 10\]"):
        call(data, attention=bad)


def test_keys_shape_mismatch(data):
    with pytest.raises(ValueError, match=r"keys must be \[B, H, P·N, d\]"):
        call(data, method="visionzip", keys=data.keys[:, :, :7])


def test_base_refuses_a_smaller_keep_ratio(data):
    with pytest.raises(ValueError, match="method 'base' keeps every token; pass keep_ratio=1.0"):
        call(data, method="base", keep_ratio=0.6)


@pytest.mark.parametrize("threshold", [float("nan"), "0.8", None])
def test_bad_threshold(data, threshold):
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        call(data, threshold=threshold)


def test_unknown_flavor(data):
    with pytest.raises(ValueError, match="unknown flavor 'qwen'"):
        call(data, flavor="qwen")


def test_reference_flavor_needs_the_full_map(data):
    stats = samp.attention_stats(data.attention, data.lengths, 2)
    with pytest.raises(ValueError, match="full attention map"):
        call(data, attention=stats, flavor="qwen2_audio")
