"""The depth-aware retained-variance threshold θ (LITEALLM's ``--rank_threshold "a:m"``).

Attention and MLP layers get separate minimums; θ rises linearly with depth from the minimum at the first block to
``min(minimum + 0.009, 0.999)`` at the last one, so deeper layers, whose errors reach the output with fewer chances
to be corrected, keep more variance. A minimum above that ceiling (e.g. θ = 1) stays constant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from samp.lowrank.layers import ATTENTION, MLP

DEPTH_RISE = 0.009
RISE_CEILING = 0.999


def _check_theta(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise ValueError(f"{what} must lie in (0, 1], got {value!r}")
    return value


@dataclass(frozen=True)
class ThetaSchedule:
    """Minimum retained variance for attention and MLP layers at the first block."""

    attention_min: float
    mlp_min: float

    def __post_init__(self):
        _check_theta(self.attention_min, "attention threshold")
        _check_theta(self.mlp_min, "MLP threshold")

    @classmethod
    def parse(cls, spec: "str | float | ThetaSchedule") -> "ThetaSchedule":
        """``"0.99:0.999"`` (attention:MLP), ``"0.99"`` or ``0.99`` (both), or a schedule (returned as is)."""
        if isinstance(spec, ThetaSchedule):
            return spec
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            return cls(_check_theta(spec, "rank threshold"), _check_theta(spec, "rank threshold"))
        if not isinstance(spec, str):
            raise ValueError(f"rank threshold must be 'attention:mlp', one number or a ThetaSchedule, got {spec!r}")
        parts = spec.split(":")
        if len(parts) not in (1, 2):
            raise ValueError(f"rank threshold {spec!r}: expected 'attention:mlp' such as '0.99:0.999'")
        try:
            values = [float(part) for part in parts]
        except ValueError:
            raise ValueError(f"rank threshold {spec!r}: not a number") from None
        attention_min, mlp_min = (values[0], values[0]) if len(values) == 1 else values
        return cls(
            _check_theta(attention_min, f"attention threshold in {spec!r}"),
            _check_theta(mlp_min, f"MLP threshold in {spec!r}"),
        )

    def theta(self, role: str, block_index: int, num_blocks: int) -> float:
        """θ for a layer of ``role`` in block ``block_index`` of ``num_blocks``."""
        if role not in (ATTENTION, MLP):
            raise ValueError(f"unknown layer role {role!r}; expected {ATTENTION!r} or {MLP!r}")
        if not 0 <= block_index < num_blocks:
            raise ValueError(f"block_index {block_index} outside 0..{num_blocks - 1}")
        minimum = self.attention_min if role == ATTENTION else self.mlp_min
        top = max(minimum, min(minimum + DEPTH_RISE, RISE_CEILING))
        if num_blocks == 1:
            return minimum
        return minimum + (top - minimum) * block_index / (num_blocks - 1)

    def __str__(self) -> str:
        return f"{self.attention_min:g}:{self.mlp_min:g}"
