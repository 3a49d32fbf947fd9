"""DivPrune and DART (after the projector): the hand-checked examples of spec/new-methods.md §1.3(c) and §2.3(c).

The shared properties (exact counts, order, weights, batch = items alone, padding, dtypes) are in
test_methods_properties.py, which runs every registered method.
"""
import math

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import samp
from samp.methods.dart import dart_keep
from samp.methods.divprune import divprune_order
from samp.methods.primitives import unit_rows


def rows(*vectors):
    return torch.tensor(vectors, dtype=torch.float32)


def direction(*angles_deg):
    return rows(*[(math.cos(math.radians(a)), math.sin(math.radians(a))) for a in angles_deg])


def kept(x, keep_count, method, **kwargs):
    """Kept indices (sorted) of one utterance whose keep_ratio gives exactly ``keep_count`` tokens."""
    n = x.shape[0]
    keep_ratio = keep_count / n
    assert samp.keep_count(n, keep_ratio) == keep_count
    out = samp.compress(x[None], [n], method=method, keep_ratio=keep_ratio, **kwargs)
    assert bool(torch.isfinite(out.features).all())
    return torch.nonzero(out.assignment[0] >= 0).squeeze(1).tolist()


# --- DivPrune ---------------------------------------------------------------------------------------------------

V1 = rows((1, 0), (0.8, 0.6), (0, 1), (-1, 0))


def test_v1_selection_order_and_kept_sets():
    # nearest-neighbour distances .2, .2, .4, 1: token 3 is the most isolated; then 0 (d=2), then 2 (d=1 to both)
    assert divprune_order(unit_rows(V1), 3).tolist() == [3, 0, 2]
    assert kept(V1, 2, "divprune") == [0, 3]
    assert kept(V1, 3, "divprune") == [0, 2, 3]


def test_v2_four_way_tie_goes_to_the_lowest_index():
    x = rows((1, 0), (0, 1), (-1, 0), (0, -1))
    assert divprune_order(unit_rows(x), 3).tolist() == [0, 2, 1]
    assert kept(x, 3, "divprune") == [0, 1, 2]


def test_v3_duplicates_are_never_kept_twice():
    # the original feeds token 0 twice ([0, 0, 2]); a kept token is never a candidate again
    x = rows((1, 0), (1, 0), (0, 1), (1, 0))
    assert divprune_order(unit_rows(x), 3).tolist() == [2, 0, 1]
    assert kept(x, 3, "divprune") == [0, 1, 2]


def test_v4_zero_row_has_distance_one_not_nan():
    # the original's NaN row wins every argmax ([0, 0]); here a zero row has cosine 0 with everything
    x = rows((0, 0), (1, 0), (0, 1))
    assert kept(x, 2, "divprune") == [0, 1]


def test_v5_keep_count_is_samps_rule():
    # the original keeps int(round(.5 · 5)) = 2 (half to even); samp rounds half up
    x = torch.randn(1, 5, 3, generator=torch.Generator().manual_seed(0))
    assert samp.compress(x, [5], method="divprune", keep_ratio=0.5).lengths.tolist() == [3]


@pytest.mark.parametrize("values", ["signs", "gaussian"])
def test_row_by_row_path_equals_the_full_matrix(values):
    g = torch.Generator().manual_seed(1)
    if values == "signs":  # unit rows of ±1/4: every cosine is exact in any summation order, and ties abound
        x = torch.randint(0, 2, (700, 16), generator=g).float() * 2 - 1
    else:
        x = torch.randn(700, 16, generator=g)
    unit = unit_rows(x)
    full = divprune_order(unit, 420)
    assert torch.equal(divprune_order(unit, 420, full_matrix_up_to=100), full)
    assert len(set(full.tolist())) == 420


def test_long_inputs_never_build_the_n_by_n_matrix():
    n = 5000  # above FULL_MATRIX_UP_TO: five minutes of Qwen2-Audio audio is 7,500 tokens
    x = torch.randn(1, n, 8, generator=torch.Generator().manual_seed(2))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = samp.compress(x, [n], method="divprune", keep_ratio=0.02)
    assert out.lengths.tolist() == [100]
    largest = max(event.cpu_memory_usage for event in prof.events())
    assert largest < n * n * 4 / 4, f"an operation allocated {largest} bytes (the n×n matrix is {n * n * 4})"


# --- DART -------------------------------------------------------------------------------------------------------

def test_d1_one_pivot_keeps_the_least_similar_tokens():
    # pivot x2 (largest L1 norm); cosines to it: x3 −1, x0 0, x1 .6, x4 .8, x5 .8 → the three smallest
    x = rows((0, 1), (0.6, 0.8), (3, 0), (-1, 0), (0.8, 0.6), (0.8, -0.6))
    assert kept(x, 4, "dart", pivots=1) == [0, 1, 2, 3]


D3 = direction(210, 60, 120, 300, 0, 30)
D3[4] *= 3  # pivot scores: token 4 first, then token 1
D3[1] *= 2


def test_d3_pivots_are_visited_by_score_not_set_order():
    # 4 takes 0 (cos −.87); 1 then takes 3 (cos −.5) — the original's set order (1 first) gives [0, 1, 2, 4]
    assert kept(D3, 4, "dart", pivots=2) == [0, 1, 3, 4]


def test_d4_quotas_go_to_the_higher_ranked_pivot_first():
    # R = 3 over 2 pivots: quotas [2, 1]; 4 takes 0 and 2, then 1 takes 3
    assert kept(D3, 5, "dart", pivots=2) == [0, 1, 2, 3, 4]


def test_d5_count_is_exact_where_the_original_misses_or_raises():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 576, 8, generator=g)
    # the original keeps 124 of 576 at r = .778 with 4+4 pivots; samp keeps keep_count(576, .222) = 128
    assert samp.compress(x, [576], method="dart", keep_ratio=0.222).lengths.tolist() == [128]
    # n = 10 with more pivots than the budget: the original raises; here the pivots shrink to T
    small = torch.randn(1, 10, 4, generator=g)
    out = samp.compress(small, [10], method="dart", keep_ratio=0.2, pivots=8)
    assert out.lengths.tolist() == [2]


def test_score_and_cosine_ties_go_to_the_lowest_index():
    # equal L1 norms: pivot 0 (pivot 1 or 2 would keep [1, 2]); tokens 1 and 2 tie at cosine 0 with it: 1
    x = rows((1, 0), (0, 1), (0, -1))
    assert dart_keep(unit_rows(x), x.abs().sum(-1), 2, pivots=1).tolist() == [0, 1]


def test_dart_attention_takes_pivots_by_received_attention():
    x = rows((1, 0), (0.9, 0.1), (0, 1), (-1, 0.1))
    received = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    stats = samp.AttentionStats(received_attention=received, self_attention=torch.ones(1, 4))
    # pivot 2 (most attended); cosines to it: token 0 0, token 3 .0995, token 1 .110
    assert kept(x, 2, "dart-attention", attention=stats) == [0, 2]
    # by L1 norm the pivot is token 3 (1.1); the least similar to it is token 0 (cos −.995)
    assert kept(x, 2, "dart") == [0, 3]


@pytest.mark.parametrize("pivots", [0, -1, 2.0, True])
def test_bad_pivots(pivots):
    with pytest.raises(ValueError, match="pivots must be a positive int"):
        samp.compress(torch.ones(1, 4, 2), [4], method="dart", keep_ratio=0.5, pivots=pivots)
