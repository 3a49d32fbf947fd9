"""Synthetic linear layers fed inputs of a planted rank, and their calibration statistics (shared by the low-rank
tests). Real activations of random encoders are nearly full-rank, so exact rank properties are checked here."""
from __future__ import annotations

import torch
from torch import nn

from samp.lowrank import CalibrationStats, EncoderLinear, StatsAccumulator


def planted_inputs(rows: int, in_features: int, rank: int, generator: torch.Generator, *, decay: float = 1.0,
                   dtype=torch.float64) -> torch.Tensor:
    """``rows`` inputs spanning a random ``rank``-dimensional subspace (plus an offset); component ``i`` has scale
    ``decay**i``."""
    basis, _ = torch.linalg.qr(torch.randn(in_features, rank, generator=generator, dtype=torch.float64))
    scales = decay ** torch.arange(rank, dtype=torch.float64)
    coefficients = torch.randn(rows, rank, generator=generator, dtype=torch.float64) * scales
    offset = torch.randn(in_features, generator=generator, dtype=torch.float64)
    return (coefficients @ basis.T + offset).to(dtype)


def synthetic_linear(in_features: int, out_features: int, generator: torch.Generator, *, bias: bool = True,
                     dtype=torch.float64) -> nn.Linear:
    linear = nn.Linear(in_features, out_features, bias=bias, dtype=dtype)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(out_features, in_features, generator=generator, dtype=dtype) / in_features**0.5)
        if bias:
            linear.bias.copy_(torch.randn(out_features, generator=generator, dtype=dtype))
    return linear


def describe(name: str, linear: nn.Linear, *, role: str = "mlp", block_index: int = 0, num_blocks: int = 1) -> EncoderLinear:
    return EncoderLinear(
        name=name, role=role, block_index=block_index, num_blocks=num_blocks,
        in_features=linear.in_features, out_features=linear.out_features, has_bias=linear.bias is not None,
    )


def stats_of(layers: list[tuple[EncoderLinear, torch.Tensor]], chunks: int = 3) -> CalibrationStats:
    """Calibration statistics of (layer, outputs) pairs, streamed in ``chunks`` pieces like real batches."""
    result = []
    for layer, outputs in layers:
        accumulator = StatsAccumulator(layer)
        for piece in outputs.chunk(chunks):
            accumulator.update(piece)
        result.append(accumulator.result())
    return CalibrationStats(encoder_class="synthetic", layers=tuple(result))
