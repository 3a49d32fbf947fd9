"""Properties of rank planning and LowRankLinear on synthetic layers with planted low-rank inputs."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowrank_synthetic import describe, planted_inputs, stats_of, synthetic_linear
from samp.lowrank import LowRankLinear, Plan, ThetaSchedule, plan
from samp.lowrank.planning import principal_components, shared_components


def _single_layer(in_features, out_features, rank, seed, *, rows=400, decay=1.0, bias=True):
    generator = torch.Generator().manual_seed(seed)
    linear = synthetic_linear(in_features, out_features, generator, bias=bias)
    inputs = planted_inputs(rows, in_features, rank, generator, decay=decay)
    with torch.no_grad():
        outputs = linear(inputs)
    return linear, inputs, outputs, stats_of([(describe("layer", linear), outputs)])


@settings(max_examples=25, deadline=None)
@given(rank=st.integers(1, 40), seed=st.integers(0, 10_000))
def test_plan_finds_the_planted_rank_rounded_up_to_16(rank, seed):
    _, _, _, stats = _single_layer(128, 128, rank, seed)
    # θ just below 1 needs every planted direction and nothing beyond (the rest is rounding noise)
    layer = plan(stats, 1 - 1e-9).layers[0]
    assert layer.rank == 16 * math.ceil(rank / 16)
    assert layer.retained_variance == pytest.approx(1.0, abs=1e-9)


def test_rank_is_not_rounded_past_the_width():
    _, _, _, stats = _single_layer(200, 24, 20, seed=3)
    # 20 rounds up to 32 > 24 columns: capped at the width, which is not cheaper than dense
    assert plan(stats, 1 - 1e-9, rank_multiple=16).layers[0].rank is None
    assert plan(stats, 1 - 1e-9, rank_multiple=4).layers[0].rank == 20


@pytest.mark.parametrize("theta", [0.3, 0.6, 0.9, 0.99, 0.999])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_output_error_is_at_most_sqrt_one_minus_theta_of_centred_energy(theta, dtype):
    linear, inputs, outputs, stats = _single_layer(96, 160, 48, seed=11, rows=600, decay=0.93)
    layer = plan(stats, theta, rank_multiple=1).layers[0]
    assert layer.rank is not None and layer.retained_variance >= theta
    components = principal_components(stats.layers[0])
    module = LowRankLinear.from_dense(linear.to(dtype), components.eigenvectors[:, : layer.rank], components.mean)
    assert module.first.weight.dtype == dtype
    with torch.no_grad():
        approximated = module(inputs.to(dtype)).to(torch.float64)
    centred_energy = ((outputs - outputs.mean(0)) ** 2).sum()
    relative_error = float((((approximated - outputs) ** 2).sum() / centred_energy).sqrt())
    tolerance = 1e-9 if dtype == torch.float64 else 1e-4
    assert relative_error <= math.sqrt(1 - theta) + tolerance
    # the planner's own error figure is the measured one
    assert relative_error == pytest.approx(layer.relative_error, abs=tolerance)


def test_output_error_bound_holds_for_a_layer_without_bias():
    linear, inputs, outputs, stats = _single_layer(64, 64, 30, seed=5, decay=0.9, bias=False)
    layer = plan(stats, 0.8, rank_multiple=1).layers[0]
    components = principal_components(stats.layers[0])
    module = LowRankLinear.from_dense(linear, components.eigenvectors[:, : layer.rank], components.mean)
    with torch.no_grad():
        error = ((module(inputs) - outputs) ** 2).sum() / ((outputs - outputs.mean(0)) ** 2).sum()
    assert float(error.sqrt()) <= math.sqrt(1 - 0.8) + 1e-9


def test_theta_one_keeps_every_layer_dense():
    _, _, _, stats = _single_layer(64, 64, 8, seed=1)
    layer = plan(stats, 1.0).layers[0]
    assert layer.rank is None and layer.retained_variance == 1.0
    assert layer.params_after == layer.params_before and layer.flops_after == layer.flops_before


def test_layer_is_kept_dense_when_the_pair_would_not_be_cheaper():
    # a planted rank of 40 in a 64x64 layer: 48*(64+64) > 64*64, so low rank would cost more
    _, _, _, stats = _single_layer(64, 64, 40, seed=2)
    assert plan(stats, 1 - 1e-9).layers[0].rank is None
    # rank 32 costs exactly as much as dense (32*128 == 64*64): still not cheaper
    _, _, _, stats = _single_layer(64, 64, 20, seed=2)
    assert plan(stats, 1 - 1e-9).layers[0].rank is None
    _, _, _, stats = _single_layer(64, 64, 12, seed=2)
    assert plan(stats, 1 - 1e-9).layers[0].rank == 16


def test_theta_schedule_rises_linearly_with_depth():
    schedule = ThetaSchedule.parse("0.99:0.995")
    assert schedule.theta("attention", 0, 5) == pytest.approx(0.99)
    assert schedule.theta("attention", 4, 5) == pytest.approx(0.999)
    assert schedule.theta("attention", 2, 5) == pytest.approx(0.9945)
    assert schedule.theta("mlp", 0, 5) == pytest.approx(0.995)
    assert schedule.theta("mlp", 4, 5) == pytest.approx(0.999)  # capped at 0.999
    assert ThetaSchedule.parse("0.999").theta("mlp", 3, 4) == pytest.approx(0.999)
    assert ThetaSchedule.parse(1.0).theta("attention", 7, 8) == 1.0
    assert ThetaSchedule.parse(0.9).theta("mlp", 0, 1) == 0.9


def test_planned_theta_follows_role_and_depth():
    generator = torch.Generator().manual_seed(0)
    pairs = []
    for block in range(3):
        for role in ("attention", "mlp"):
            linear = synthetic_linear(32, 32, generator)
            with torch.no_grad():
                outputs = linear(planted_inputs(100, 32, 4, generator))
            pairs.append((describe(f"blocks.{block}.{role}", linear, role=role, block_index=block, num_blocks=3), outputs))
    result = plan(stats_of(pairs), "0.9:0.95")
    thetas = {layer.name: layer.theta for layer in result.layers}
    assert thetas["blocks.0.attention"] == pytest.approx(0.9)
    assert thetas["blocks.2.attention"] == pytest.approx(0.909)
    assert thetas["blocks.1.mlp"] == pytest.approx(0.9545)


def _shared_family(seed=0, members=3, width=128, subspace=16, leak=0.0):
    """``members`` layers whose outputs live in one common subspace (mixed differently), plus one layer whose
    outputs live elsewhere; ``leak`` adds a small full-rank part to the first member's weight."""
    generator = torch.Generator().manual_seed(seed)
    common, _ = torch.linalg.qr(torch.randn(width, subspace, generator=generator, dtype=torch.float64))
    pairs, linears = [], {}
    for index in range(members + 1):
        inside = index < members
        basis = common if inside else torch.linalg.qr(torch.randn(width, subspace, generator=generator, dtype=torch.float64))[0]
        linear = synthetic_linear(width, width, generator)
        with torch.no_grad():
            # project the layer's weight onto the chosen output subspace so its outputs stay inside it
            linear.weight.copy_(basis @ (basis.T @ linear.weight))
            linear.bias.copy_(basis @ torch.randn(subspace, generator=generator, dtype=torch.float64))
            if index == 0:
                linear.weight.add_(leak * torch.randn(width, width, generator=generator, dtype=torch.float64) / width**0.5)
        inputs = planted_inputs(300, width, 40, generator)
        with torch.no_grad():
            outputs = linear(inputs)
        name = f"layers.{index}.proj"
        linears[name] = (linear, inputs, outputs)
        pairs.append((describe(name, linear, role="attention", block_index=index, num_blocks=members + 1), outputs))
    return stats_of(pairs), linears


def test_shared_basis_groups_layers_with_a_common_subspace():
    stats, linears = _shared_family()
    result = plan(stats, 0.999, share_bases=True, share_similarity=0.9)
    assert len(result.shared_bases) == 1
    shared = result.shared_bases[0]
    assert shared.members == ("layers.0.proj", "layers.1.proj", "layers.2.proj")
    assert shared.rank == 16
    assert result.layer("layers.3.proj").basis is None
    # one 16x128 basis instead of three: saves two bases' worth of parameters
    assert shared.params_saved == 2 * 16 * 128
    assert shared.extra_error == pytest.approx(0.0, abs=1e-6)
    per_layer = plan(stats, 0.999)
    assert per_layer.params_after - result.params_after == shared.params_saved
    assert result.flops_after == per_layer.flops_after


def test_shared_basis_errors_match_the_modules_built_from_it():
    # the first member leaks slightly out of the common subspace, so sharing costs it a measurable error
    stats, linears = _shared_family(seed=4, subspace=24, leak=0.05)
    result = plan(stats, 0.95, share_bases=True, share_similarity=0.8, rank_multiple=8)
    shared = result.shared_bases[0]
    assert len(shared.members) == 3 and shared.extra_error > 0
    eigenvectors, _ = shared_components([stats.layer(name) for name in shared.members])
    for name, reported in zip(shared.members, shared.shared_relative_errors):
        linear, inputs, outputs = linears[name]
        module = LowRankLinear.from_dense(linear, eigenvectors[:, : shared.rank], stats.layer(name).mean())
        with torch.no_grad():
            measured = ((module(inputs) - outputs) ** 2).sum() / ((outputs - outputs.mean(0)) ** 2).sum()
        assert float(measured.sqrt()) == pytest.approx(reported, abs=1e-7)
        assert reported <= math.sqrt(1 - result.layer(name).theta) + 1e-9


def test_no_sharing_between_dissimilar_layers():
    stats, _ = _shared_family(members=1)
    result = plan(stats, 0.999, share_bases=True, share_similarity=0.5)
    assert result.shared_bases == ()


def test_plan_json_round_trip_and_table():
    stats, _ = _shared_family()
    result = plan(stats, "0.99:0.999", share_bases=True)
    again = Plan.from_json(result.to_json(), stats=stats)
    assert again == result
    assert again.stats is stats
    table = str(result)
    assert "layers.0.proj" in table and "shared0" in table and "total:" in table
    assert result.to_dict()["layers"][0]["params_after"] == result.layers[0].params_after


def test_edited_plan_recomputes_retained_variance():
    linear, _, _, stats = _single_layer(128, 128, 40, seed=8, decay=0.9)
    result = plan(stats, 0.99)
    edited = result.with_ranks({"layer": 16})
    components = principal_components(stats.layers[0])
    expected = float(components.eigenvalues[:16].sum() / components.eigenvalues.sum())
    assert edited.layers[0].rank == 16
    assert edited.layers[0].retained_variance == pytest.approx(expected)
    assert edited.layers[0].params_after == 16 * 256 + 128
    assert result.with_ranks({"layer": None}).layers[0].params_after == result.layers[0].params_before


def test_constant_layers_plan_without_errors():
    generator = torch.Generator().manual_seed(0)
    pairs = []
    for index in range(2):
        linear = synthetic_linear(64, 64, generator)
        with torch.no_grad():
            linear.weight.zero_()  # output = bias for every row: zero variance
        pairs.append((describe(f"layers.{index}.proj", linear, role="attention", block_index=index, num_blocks=2),
                      linear(planted_inputs(50, 64, 4, generator))))
    result = plan(stats_of(pairs), 0.99, share_bases=True)
    assert [layer.rank for layer in result.layers] == [16, 16]
    assert all(layer.retained_variance == 1.0 for layer in result.layers)
    assert result.shared_bases == ()
