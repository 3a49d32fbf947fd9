"""Input builders shared by the method tests: padded batches with runs, ties, zero rows and attention."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st

import samp

METHODS = [spec.name for spec in samp.methods.available("post-projector")]
COMPRESSING = [name for name in METHODS if name != "base"]


@dataclass
class Inputs:
    features: torch.Tensor
    lengths: torch.Tensor
    attention: torch.Tensor
    keys: torch.Tensor
    frames_per_token: int

    def kwargs(self) -> dict:
        return {"attention": self.attention, "keys": self.keys, "frames_per_token": self.frames_per_token}


def build_inputs(seed: int, batch: int, n: int, channels: int, heads: int = 2, frames_per_token: int = 2,
                 lengths: list[int] | None = None, structure: str = "runs") -> Inputs:
    """Seeded features: ``runs`` (repeated tokens plus noise, so merges happen), ``ties`` (integer-valued, many
    equal similarities), ``zeros`` (some all-zero rows, as silence after a projector can give) or ``noise``."""
    g = torch.Generator().manual_seed(seed)
    if structure == "ties":
        x = torch.randint(-1, 2, (batch, n, channels), generator=g).float()
    else:
        x = torch.randn(batch, n, channels, generator=g)
    if structure in ("runs", "zeros"):
        repeat = torch.randint(1, 4, (n,), generator=g)
        index = torch.repeat_interleave(torch.arange(n), repeat)[:n]
        x = x[:, index] + 0.2 * torch.randn(batch, n, channels, generator=g)
    if structure == "zeros":
        x[torch.rand(batch, n, generator=g) < 0.3] = 0.0
    if lengths is None:
        lengths = torch.randint(1, n + 1, (batch,), generator=g).tolist()
        lengths[0] = n
    frames = frames_per_token * n
    logits = torch.randn(batch, heads, frames, frames, generator=g) * 2
    attention = torch.softmax(logits, dim=-1)
    keys = torch.randn(batch, heads, frames, 4, generator=g)
    return Inputs(x, torch.tensor(lengths), attention, keys, frames_per_token)


@st.composite
def inputs(draw, max_n: int = 20) -> Inputs:
    batch = draw(st.integers(1, 3))
    n = draw(st.integers(1, max_n))
    lengths = [draw(st.integers(1, n)) for _ in range(batch)]
    return build_inputs(
        seed=draw(st.integers(0, 2**31 - 1)),
        batch=batch,
        n=n,
        channels=draw(st.integers(1, 6)),
        frames_per_token=draw(st.sampled_from([1, 2, 4])),
        lengths=lengths,
        structure=draw(st.sampled_from(["runs", "ties", "zeros", "noise"])),
    )


keep_ratios = st.floats(min_value=0.01, max_value=1.0, allow_nan=False).filter(lambda r: r > 0)
thresholds = st.sampled_from([-1.0, 0.0, 0.5, 0.85, 0.95, 1.0])
