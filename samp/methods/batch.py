"""What a clean method receives and what it returns."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from samp.methods.primitives import on_device, unit_rows, valid_mask
from samp.methods.stats import AttentionStats


@dataclass(frozen=True)
class Batch:
    """A validated padded batch in float32.

    Padding rows of ``features`` are left as they came (possibly NaN) rather than copied out, so every consumer must
    mask them: ``unit`` is zero there, and padding tokens always get slot -1, which segment sums drop.
    """

    features: torch.Tensor  # [B, N, C]
    lengths: torch.Tensor  # [B] long
    counts: torch.Tensor  # [B] long, tokens to keep
    threshold: float
    seed: int
    stats: AttentionStats | None
    pivots: int  # DART's pivot tokens per utterance
    # lengths and counts as host ints: loops and output sizes use these, so the device path never reads a tensor back
    host_lengths: tuple[int, ...]
    host_counts: tuple[int, ...]

    @property
    def device_path(self) -> bool:
        """Whether the method must keep its work on the device (see :func:`samp.methods.primitives.on_device`)."""
        return on_device(self.features)

    @cached_property
    def valid(self) -> torch.Tensor:
        return valid_mask(self.lengths, self.features.shape[1])

    @cached_property
    def unit(self) -> torch.Tensor:
        """Unit rows; zero on padding."""
        return torch.where(self.valid[..., None], unit_rows(self.features), 0.0)

    @property
    def received(self) -> torch.Tensor:
        return self.stats.received_attention

    @property
    def self_attention(self) -> torch.Tensor:
        return self.stats.self_attention


@dataclass(frozen=True)
class Plan:
    """Per input token: output slot (-1 pruned or padding) and raw non-negative weight inside that slot; the
    output features are the weighted means the plan describes, summed once for every method by ``compress``."""

    slots: torch.Tensor  # [B, N] long
    weights: torch.Tensor  # [B, N] float, raw (normalised per slot later)
