"""Planning an expanding layer (fc1: d → 4d) from its output range gives the plan of the full decomposition."""
from __future__ import annotations

import copy

import pytest
import torch

import samp.lowrank as lowrank
from samp.lowrank.calibration import LayerStats
from samp.lowrank.layers import EncoderLinear
from samp.lowrank.planning import principal_components, rank_for_theta, retained_fraction

from test_lowrank_encoders import feature_batches, tiny_qwen2_audio_encoder, tiny_whisper_encoder

THETAS = ["0.9", "0.95:0.99", "0.99:0.999", "0.999"]


@pytest.fixture(scope="module")
def calibrated():
    encoder = tiny_whisper_encoder()  # d=64, fc1 64 → 256: the range path is taken for fc1
    return encoder, lowrank.calibrate(encoder, feature_batches(), progress=False)


def test_range_components_match_the_full_decomposition(calibrated):
    _, stats = calibrated
    expanding = [s for s in stats.layers if s.layer.out_features >= 2 * (s.layer.in_features + 16)]
    assert expanding, "the tiny encoder must have an expanding layer"
    for layer_stats in expanding:
        fast = principal_components(layer_stats)
        full = principal_components(layer_stats, full=True)
        assert fast.eigenvectors.shape[1] == layer_stats.layer.in_features + 16 < full.eigenvectors.shape[1]
        total = float(full.eigenvalues.sum())
        torch.testing.assert_close(fast.eigenvalues, full.eigenvalues, rtol=0, atol=1e-10 * total)
        # the spanned subspaces agree wherever the spectrum has a gap (eigenvectors are defined up to sign there)
        for rank in (8, 16, 32):
            if full.eigenvalues[rank - 1] - full.eigenvalues[rank] < 1e-6 * total:
                continue
            projector_fast = fast.eigenvectors[:, :rank] @ fast.eigenvectors[:, :rank].T
            projector_full = full.eigenvectors[:, :rank] @ full.eigenvectors[:, :rank].T
            torch.testing.assert_close(projector_fast, projector_full, rtol=0, atol=1e-7)


@pytest.mark.parametrize("theta", THETAS)
def test_plans_equal_those_of_the_full_decomposition(calibrated, theta):
    encoder, stats = calibrated
    compression = lowrank.plan(stats, theta, rank_multiple=1)
    for layer in compression.layers:
        full = principal_components(stats.layer(layer.name), full=True).eigenvalues
        rank = rank_for_theta(full, layer.theta, 1)
        expected = rank if lowrank.planning.low_rank_is_cheaper(layer.in_features, layer.out_features,
                                                                layer.has_bias, rank) else None
        assert layer.rank == expected, layer.name
        if layer.rank is not None:
            assert layer.retained_variance == pytest.approx(retained_fraction(full, rank), abs=1e-9)
    # the compressed encoder computes the same as one built from full-decomposition bases
    fast_encoder, full_encoder = copy.deepcopy(encoder), copy.deepcopy(encoder)
    lowrank.apply(fast_encoder, compression)
    full_components = {name: principal_components(stats.layer(name), full=True) for name in compression.components}
    lowrank.apply(full_encoder, lowrank.Plan(compression.rank_threshold, 1, compression.layers, stats=stats,
                                             components=full_components))
    batch = feature_batches(count=1)[0]
    with torch.no_grad():
        torch.testing.assert_close(fast_encoder(batch).last_hidden_state, full_encoder(batch).last_hidden_state,
                                   rtol=1e-4, atol=1e-4)


def test_statistics_that_are_not_low_rank_fall_back_to_the_full_decomposition():
    # statistics claiming 4 inputs for 64 outputs, but with a full-rank covariance (not from that layer): the sketch
    # misses variance, so the full decomposition is used and nothing is lost
    generator = torch.Generator().manual_seed(1)
    rows = torch.randn(500, 64, dtype=torch.float64, generator=generator)
    layer = EncoderLinear("layers.0.fc1", "mlp", 0, 1, in_features=4, out_features=64, has_bias=True)
    stats = LayerStats(layer, rows.shape[0], rows.sum(0), rows.T @ rows)
    components = principal_components(stats)
    assert components.eigenvectors.shape == (64, 64)
    torch.testing.assert_close(components.eigenvalues, principal_components(stats, full=True).eigenvalues)


def test_a_rank_beyond_the_output_range_is_completed_from_the_statistics(calibrated):
    encoder, stats = calibrated
    compression = lowrank.plan(stats, "0.9")
    fc1 = next(layer for layer in compression.layers if layer.name.endswith("fc1"))
    wide = compression.with_ranks({fc1.name: 200})  # past the 80 vectors of the range path
    assert wide.basis(fc1.name).shape == (fc1.out_features, 200)
    lowrank.apply(copy.deepcopy(encoder), wide)


def _whole_and_speech():
    encoder = tiny_whisper_encoder()
    batches = feature_batches(count=2)
    frames = encoder.config.max_source_positions
    speech = [{"input_features": b, "frame_mask": torch.arange(frames)[None, :] < torch.tensor([[30], [55]])}
              for b in batches]
    return (lowrank.calibrate(encoder, batches, progress=False), lowrank.calibrate(encoder, speech, progress=False))


def test_balance_frames_weighs_speech_and_padding_as_asked():
    whole, speech = _whole_and_speech()
    for name in ("layers.0.fc1", "layers.1.self_attn.q_proj"):
        total, part = whole.layer(name), speech.layer(name)
        # the speech share equal to the speech frames' fraction gives the whole-window statistics back
        same = lowrank.balance_frames(whole, speech, part.count / total.count).layer(name)
        torch.testing.assert_close(same.output_outer_sum, total.output_outer_sum, rtol=1e-12, atol=1e-9)
        # share 1: the speech statistics scaled to the whole count (same mean and covariance)
        only_speech = lowrank.balance_frames(whole, speech, 1.0).layer(name)
        torch.testing.assert_close(only_speech.covariance(), part.covariance(), rtol=1e-9, atol=1e-9)
        # half and half: the mean is the average of the speech mean and the padding mean
        half = lowrank.balance_frames(whole, speech).layer(name)
        padding_mean = (total.output_sum - part.output_sum) / (total.count - part.count)
        torch.testing.assert_close(half.mean(), (part.mean() + padding_mean) / 2, rtol=1e-12, atol=1e-12)
        assert half.count == total.count


def test_balance_frames_refuses_mismatched_statistics():
    whole, speech = _whole_and_speech()
    with pytest.raises(ValueError, match="part_share"):
        lowrank.balance_frames(whole, speech, 1.5)
    with pytest.raises(ValueError, match="nothing is left"):
        lowrank.balance_frames(whole, whole)
    other = lowrank.calibrate(tiny_qwen2_audio_encoder(), feature_batches(count=1), progress=False)
    with pytest.raises(ValueError, match="same layers"):
        lowrank.balance_frames(whole, other)


@pytest.mark.parametrize("saving", [0.2, 0.5])
def test_min_flop_saving_keeps_only_pairs_that_save_that_much(calibrated, saving):
    _, stats = calibrated
    every = lowrank.plan(stats, "0.99")  # ranks 16-48 of 64: pairs saving 50, 38 and 6 % of the FLOPs
    strict = lowrank.plan(stats, "0.99", min_flop_saving=saving)
    for loose, kept in zip(every.layers, strict.layers):
        saves = loose.rank is not None and loose.flops_after <= (1 - saving) * loose.flops_before
        assert kept.rank == (loose.rank if saves else None), kept.name
    assert sum(layer.rank is not None for layer in strict.layers) < sum(layer.rank is not None for layer in every.layers)
    with pytest.raises(ValueError, match="min_flop_saving"):
        lowrank.plan(stats, "0.95", min_flop_saving=1.0)
