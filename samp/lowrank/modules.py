"""``LowRankLinear``: a dense linear layer replaced by a projection onto its principal output subspace."""
from __future__ import annotations

import torch
from torch import nn


class LowRankLinear(nn.Module):
    """``y = second(first(x))`` with ``first: in → rank`` (no bias) and ``second: rank → out`` (with bias).

    Built from a dense ``y = x Wᵀ + b`` and an orthonormal basis ``V`` (``[out, rank]``) of its centred outputs,
    whose mean is ``μ``: ``first.weight = Vᵀ W``, ``second.weight = V``, ``second.bias = μ + V Vᵀ (b − μ)``. On
    the calibration data that is the projection ``μ + V Vᵀ (y − μ)``. Layers that share a basis share the
    ``second.weight`` parameter.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, *, device=None, dtype=None):
        super().__init__()
        if not 1 <= rank <= out_features:
            raise ValueError(f"rank {rank} outside 1..{out_features}")
        self.in_features = in_features
        self.out_features = out_features
        self.rank = rank
        self.first = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.second = nn.Linear(rank, out_features, bias=True, device=device, dtype=dtype)

    @classmethod
    def from_dense(cls, dense: nn.Linear, basis: torch.Tensor, mean: torch.Tensor) -> "LowRankLinear":
        """The low-rank pair for ``dense``, in its dtype and device; the algebra runs in float64."""
        out_features, rank = basis.shape
        if out_features != dense.out_features or tuple(mean.shape) != (out_features,):
            raise ValueError(
                f"basis {tuple(basis.shape)} / mean {tuple(mean.shape)} do not fit a layer with "
                f"out_features={dense.out_features}"
            )
        weight = dense.weight.detach().to(torch.float64).cpu()
        bias = dense.bias.detach().to(torch.float64).cpu() if dense.bias is not None else torch.zeros(out_features, dtype=torch.float64)
        basis = basis.detach().to(torch.float64).cpu()
        mean = mean.detach().to(torch.float64).cpu()
        module = cls(dense.in_features, out_features, rank, device=dense.weight.device, dtype=dense.weight.dtype)
        with torch.no_grad():
            module.first.weight.copy_(basis.T @ weight)
            module.second.weight.copy_(basis)
            module.second.bias.copy_(mean + basis @ (basis.T @ (bias - mean)))
        return module

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(hidden_states))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"
