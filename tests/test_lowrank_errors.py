"""Bad input to samp.lowrank gets a clear error naming the problem."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import samp.lowrank as lowrank
from lowrank_synthetic import describe, planted_inputs, stats_of, synthetic_linear
from samp.lowrank import CalibrationStats, Plan, StatsAccumulator, ThetaSchedule
from test_lowrank_encoders import feature_batches, tiny_qwen2_audio_encoder, tiny_whisper_encoder


@pytest.fixture(scope="module")
def whisper_stats():
    torch.manual_seed(0)
    return lowrank.calibrate(tiny_whisper_encoder(), feature_batches(count=2), progress=False)


@pytest.mark.parametrize(
    "encoder",
    [
        nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8)),
        nn.Conv1d(4, 4, 3),
        nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)]),  # a list of bare linears has no attention blocks
    ],
    ids=["mlp", "conv", "list-of-linears"],
)
def test_encoder_without_recognisable_layers(encoder):
    with pytest.raises(ValueError, match="no recognisable encoder blocks"):
        lowrank.find_encoder_linears(encoder)
    with pytest.raises(ValueError, match="no recognisable encoder blocks"):
        lowrank.calibrate(encoder, [torch.randn(2, 8)], progress=False)


def test_empty_calibration_set():
    with pytest.raises(ValueError, match="empty calibration set"):
        lowrank.calibrate(tiny_whisper_encoder(), [], progress=False)


def test_empty_calibration_batch():
    with pytest.raises(ValueError, match="batch 0: empty tensor"):
        lowrank.calibrate(tiny_whisper_encoder(), [torch.zeros(0, 128, 200)], progress=False)


def test_calibration_batch_of_the_wrong_type():
    with pytest.raises(ValueError, match="batch 0: must be a tensor of input features or a mapping"):
        lowrank.calibrate(tiny_whisper_encoder(), [[1.0, 2.0]], progress=False)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_activations_name_the_layer(bad):
    features = feature_batches(count=1)[0]
    features[0, 3, 10] = bad
    encoder = tiny_qwen2_audio_encoder()
    with pytest.raises(ValueError, match=r"non-finite activations .* layer layers\.0\.self_attn\.\w+_proj"):
        lowrank.calibrate(encoder, [features], progress=False)
    # hooks are removed even when calibration fails
    assert all(not module._forward_hooks for module in encoder.modules())


def test_non_finite_outputs_to_the_accumulator():
    layer = describe("layer", nn.Linear(4, 3))
    accumulator = StatsAccumulator(layer)
    with pytest.raises(ValueError, match="non-finite"):
        accumulator.update(torch.tensor([[1.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="width 5, expected 3"):
        accumulator.update(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="saw no rows"):
        accumulator.result()


@pytest.mark.parametrize(
    "threshold",
    [0.0, -0.1, 1.5, float("nan"), float("inf"), "1.01", "0:0.99", "0.99:1.2", "abc", "0.9:0.9:0.9", None, True],
)
def test_theta_outside_zero_one(threshold, whisper_stats):
    with pytest.raises(ValueError, match=r"\(0, 1\]|rank threshold"):
        lowrank.plan(whisper_stats, threshold)


def test_theta_schedule_unknown_role_and_depth():
    schedule = ThetaSchedule.parse("0.9:0.95")
    with pytest.raises(ValueError, match="unknown layer role"):
        schedule.theta("conv", 0, 2)
    with pytest.raises(ValueError, match="block_index 2 outside"):
        schedule.theta("mlp", 2, 2)


def test_plan_arguments(whisper_stats):
    with pytest.raises(ValueError, match="needs CalibrationStats"):
        lowrank.plan({"layers": []})
    with pytest.raises(ValueError, match="rank_multiple"):
        lowrank.plan(whisper_stats, rank_multiple=0)
    with pytest.raises(ValueError, match="share_similarity"):
        lowrank.plan(whisper_stats, share_bases=True, share_similarity=1.5)


def test_apply_needs_statistics_and_a_matching_encoder(whisper_stats):
    compression = lowrank.plan(whisper_stats, "0.9:0.95")
    without_stats = Plan.from_json(compression.to_json())
    with pytest.raises(ValueError, match="carries no calibration statistics"):
        lowrank.apply(tiny_whisper_encoder(), without_stats)
    with pytest.raises(ValueError, match="needs a Plan"):
        lowrank.apply(tiny_whisper_encoder(), compression.to_dict())
    other = tiny_qwen2_audio_encoder()  # same layer names and widths, but only one block
    other.layers = other.layers[:1]
    with pytest.raises(ValueError, match=r"layers\.1\.\S+ is not a linear layer"):
        lowrank.apply(other, compression)
    encoder = tiny_whisper_encoder()
    lowrank.apply(encoder, compression)
    with pytest.raises(ValueError, match="already low-rank"):
        lowrank.apply(encoder, compression)


def test_apply_rejects_a_plan_for_other_widths():
    generator = torch.Generator().manual_seed(0)
    linear = synthetic_linear(64, 64, generator)
    with torch.no_grad():
        outputs = linear(planted_inputs(50, 64, 4, generator))
    stats = stats_of([(describe("layers.0.self_attn.q_proj", linear), outputs)])
    narrow = lowrank.plan(stats, 0.9)
    encoder = tiny_whisper_encoder()
    encoder.layers[0].self_attn.q_proj = nn.Linear(64, 32)
    encoder.layers[0].self_attn.k_proj = nn.Linear(64, 32)
    encoder.layers[0].self_attn.v_proj = nn.Linear(64, 32)
    with pytest.raises(ValueError, match="plan expects 64->64"):
        lowrank.apply(encoder, narrow)


def test_edited_plans_are_checked(whisper_stats):
    compression = lowrank.plan(whisper_stats, "0.9:0.95")
    name = compression.layers[0].name
    with pytest.raises(ValueError, match=r"rank 65 outside 1\.\.64"):
        compression.with_ranks({name: 65})
    with pytest.raises(KeyError, match="no layer 'nope'"):
        compression.with_ranks({"nope": 16})
    data = compression.to_dict()
    data["layers"][0]["rank"] = 0
    with pytest.raises(ValueError, match="rank 0 outside"):
        Plan.from_dict(data)
    data = compression.to_dict()
    data["layers"][0]["basis"] = "shared7"
    data["layers"][0]["rank"] = 16
    with pytest.raises(ValueError, match="unknown shared basis 'shared7'"):
        Plan.from_dict(data)
    with pytest.raises(ValueError, match="not valid JSON"):
        Plan.from_json("{not json")
    with pytest.raises(ValueError, match="not a samp low-rank plan"):
        Plan.from_json(json.dumps({"layers": []}))
    del data["layers"][0]["theta"]
    with pytest.raises(ValueError, match="malformed low-rank plan"):
        Plan.from_dict(data)


def test_statistics_files(tmp_path, whisper_stats):
    path = tmp_path / "stats.safetensors"
    whisper_stats.save(path)
    loaded = CalibrationStats.load(path)
    assert [s.layer for s in loaded.layers] == [s.layer for s in whisper_stats.layers]
    assert all(torch.equal(a.output_outer_sum, b.output_outer_sum) for a, b in zip(loaded.layers, whisper_stats.layers))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CalibrationStats.load(tmp_path / "missing.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt calibration statistics"):
        CalibrationStats.load(corrupt)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not a samp calibration statistics file"):
        CalibrationStats.load(foreign)


def test_layer_stats_are_validated():
    layer = describe("layer", nn.Linear(4, 3))
    with pytest.raises(ValueError, match="at least one"):
        lowrank.LayerStats(layer, 0, torch.zeros(3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="do not match out_features=3"):
        lowrank.LayerStats(layer, 1, torch.zeros(4, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="float64"):
        lowrank.LayerStats(layer, 1, torch.zeros(3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        lowrank.LayerStats(layer, 1, torch.full((3,), math.nan, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64))


def test_save_and_load_errors(tmp_path):
    with pytest.raises(ValueError, match="not compressed by samp.lowrank.apply"):
        lowrank.save(tiny_whisper_encoder(), tmp_path / "dense")
    with pytest.raises(ValueError, match="no transformers config"):
        lowrank.save(nn.Linear(2, 2), tmp_path / "linear")
    with pytest.raises(FileNotFoundError, match="written by samp.lowrank.save"):
        lowrank.load(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    (broken / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not a samp low-rank encoder config"):
        lowrank.load(broken)


def test_output_error_needs_batches():
    encoder = tiny_whisper_encoder()
    with pytest.raises(ValueError, match="no batches"):
        lowrank.output_error(encoder, encoder, [], progress=False)
