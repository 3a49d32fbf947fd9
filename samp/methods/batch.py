"""What a clean method receives and what it returns."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from samp.methods.primitives import unit_rows, valid_mask
from samp.methods.stats import AttentionStats


@dataclass(frozen=True)
class Batch:
    """A validated padded batch, float32, padding rows zeroed (so padding content can never leak into a result)."""

    features: torch.Tensor  # [B, N, C]
    lengths: torch.Tensor  # [B] long
    counts: torch.Tensor  # [B] long, tokens to keep
    threshold: float
    seed: int
    stats: AttentionStats | None

    @cached_property
    def valid(self) -> torch.Tensor:
        return valid_mask(self.lengths, self.features.shape[1])

    @cached_property
    def unit(self) -> torch.Tensor:
        return unit_rows(self.features)

    @property
    def received(self) -> torch.Tensor:
        return self.stats.received_attention

    @property
    def self_attention(self) -> torch.Tensor:
        return self.stats.self_attention


@dataclass(frozen=True)
class Plan:
    """Per input token: output slot (-1 pruned or padding) and raw non-negative weight inside that slot."""

    slots: torch.Tensor  # [B, N] long
    weights: torch.Tensor  # [B, N] float, raw (normalised per slot later)
