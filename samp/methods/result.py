"""The one result type every method returns."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Compressed:
    """Kept audio tokens of a padded batch.

    features:   ``[B, T_max, C]`` kept tokens in temporal order; rows at or past ``lengths[b]`` are zero padding.
    lengths:    ``[B]`` kept count per utterance.
    assignment: ``[B, N]`` output slot each input token went to, ``-1`` where it was pruned (or is padding).
    weights:    ``[B, N]`` weight of each input token inside its output slot (the weights of one slot sum to one,
                pruned and padded tokens weigh zero), or ``None`` where an output is not a weighted mean
                (some reference flavours reproduce such quirks).
    """

    features: torch.Tensor
    lengths: torch.Tensor
    assignment: torch.Tensor
    weights: torch.Tensor | None = None
