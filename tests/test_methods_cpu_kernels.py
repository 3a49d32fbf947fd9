"""The CPU path's compiled loops against plain references, edge cases included (empty inputs, ties, spanned
candidates, segments without members)."""
import numpy as np
import pytest

from samp.methods.cpu_kernels import greedy_dpp_picks, group_and_merge, weighted_rows
from samp.methods.primitives import NORM_EPS


def greedy_by_determinants(kernel: np.ndarray, count: int) -> list[int]:
    """Greedy MAP by definition, in float64: each step adds the candidate that maximises det(K[S, S])."""
    picks: list[int] = []
    for _ in range(count):
        gains = [np.linalg.det(kernel[np.ix_(picks + [j], picks + [j])]) if j not in picks else -np.inf
                 for j in range(kernel.shape[0])]
        picks.append(int(np.argmax(gains)))
    return picks


@pytest.mark.parametrize("seed", range(5))
def test_greedy_picks_maximise_the_determinant_step_by_step(seed):
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((12, 30))
    relevance = rng.uniform(0.2, 1.0, 12)
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    kernel = relevance[:, None] * (unit @ unit.T) * relevance[None, :]
    np.fill_diagonal(kernel, relevance**2)
    picks = greedy_dpp_picks(kernel.astype(np.float32), np.diag(kernel).astype(np.float32), 9)
    assert picks.tolist() == greedy_by_determinants(kernel, 9)


def test_greedy_ties_go_to_the_lowest_index_and_spanned_candidates_come_last_in_index_order():
    kernel = np.eye(5, dtype=np.float32)
    kernel[[1, 3]] = kernel[[3, 3]]  # candidate 1 is a copy of candidate 3
    kernel[:, 1] = kernel[:, 3]
    picks = greedy_dpp_picks(kernel, np.ones(5, dtype=np.float32), 5)
    assert picks.tolist() == [0, 1, 2, 4, 3]  # 3 is spanned once 1 is picked: residual 0, taken last


def test_greedy_empty_and_single():
    assert greedy_dpp_picks(np.zeros((0, 0), np.float32), np.zeros(0, np.float32), 0).tolist() == []
    assert greedy_dpp_picks(np.ones((1, 1), np.float32), np.ones(1, np.float32), 1).tolist() == [0]
    assert greedy_dpp_picks(np.ones((3, 3), np.float32), np.ones(3, np.float32), 0).tolist() == []


def test_group_and_merge_weighted_means_and_mean_self_attention():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((4, 16)).astype(np.float32)
    rows = base[[0, 0, 1, 2, 2, 2, 3]] + np.float32(0.01) * rng.standard_normal((7, 16)).astype(np.float32)
    weights = np.array([1, 3, 2, 0, 0, 0, -1], np.float32)  # group 2 all zero: even; negative clamps to 0
    attention = np.arange(7, dtype=np.float32)
    starts, scores, merged, relevance = group_and_merge(rows, 0.9, NORM_EPS, weights, attention)
    assert starts.tolist() == [True, False, True, True, False, False, True]
    assert np.isnan(scores[starts]).all() and (scores[~starts] >= 0.9).all()
    expected = np.stack([(rows[0] + 3 * rows[1]) / 4, rows[2], rows[3:6].mean(0), rows[6]])
    np.testing.assert_allclose(merged, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(relevance, [0.5, 2.0, 4.0, 6.0], rtol=1e-6)


def test_group_and_merge_empty_and_zero_rows():
    starts, scores, merged, relevance = group_and_merge(np.zeros((0, 4), np.float32), 0.5, NORM_EPS,
                                                        np.zeros(0, np.float32), np.zeros(0, np.float32))
    assert starts.shape == scores.shape == relevance.shape == (0,) and merged.shape == (0, 4)
    # a zero row has cosine 0 with everything: it never joins at a positive threshold
    starts, _, merged, _ = group_and_merge(np.zeros((3, 4), np.float32), 0.5, NORM_EPS,
                                           np.ones(3, np.float32), np.ones(3, np.float32))
    assert starts.all() and not merged.any()


def test_weighted_rows_drops_ids_below_zero_and_zeroes_empty_segments():
    features = np.arange(12, dtype=np.float32).reshape(4, 3)
    out = np.full((3, 3), np.nan, np.float32)
    weighted_rows(features, np.array([2, -1, 0, 2]), np.array([0.5, 9.0, 1.0, 0.5], np.float32), out)
    np.testing.assert_allclose(out, [features[2], [0, 0, 0], 0.5 * features[0] + 0.5 * features[3]])
