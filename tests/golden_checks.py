"""Golden comparisons that hold on every CPU: tolerances relative to a tensor's scale, and what a greedy DPP decides
apart from a first pick that round-off decides."""
from __future__ import annotations

import torch

from samp.methods.reference.dpp import greedy_dpp_map


def assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, fraction: float, msg: str | None = None) -> None:
    """``|actual − expected| ≤ fraction · max|expected|`` elementwise.

    Float32 results of the tiny models reach |x| ≈ 10–30, so their round-off is relative to the tensor's scale, not
    to each element (a near-zero element carries the absolute error of its large neighbours' sums).
    """
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, atol=fraction * scale, rtol=0, msg=msg)


def row_indices(rows: torch.Tensor, pool: torch.Tensor) -> list[int]:
    """For each of ``rows`` the index of the nearest row of ``pool`` (rows that are copies of pool rows)."""
    if rows.shape[0] == 0:
        return []
    return torch.cdist(rows.double(), pool.double()).argmin(dim=1).tolist()


def greedy_dpp_from(kernel: torch.Tensor, first: int, count: int) -> list[int]:
    """The reference's greedy DPP with the first pick fixed: the diagonal set to exactly 1 and ``first`` moved to the
    front, so it wins the first argmax by the first-index rule. Returns the picks in temporal (sorted) order."""
    kernel = kernel.clone()
    kernel.fill_diagonal_(1.0)
    order = torch.tensor([first] + [i for i in range(kernel.shape[0]) if i != first])
    picks, _ = greedy_dpp_map(kernel[order][:, order], count)
    return sorted(order[picks].tolist())


def assert_dpp_set_after_a_first_pick(kernel: torch.Tensor, golden_set: list[int]) -> None:
    """``golden_set`` is what the greedy DPP picks after one of its members was picked first.

    With ``K = S`` (plain cdpruner) the diagonal is 1 ± a few ulp, so the first pick is decided by the CPU's rounding
    (spec §3.2) and every later pick follows from it; this is the part of a golden that round-off does not decide.
    """
    assert golden_set == sorted(set(golden_set)), "the golden keeps distinct tokens in temporal order"
    starts = [first for first in golden_set if greedy_dpp_from(kernel, first, len(golden_set)) == golden_set]
    assert starts, "no member of the golden set, picked first, leads the greedy DPP to the golden set"
