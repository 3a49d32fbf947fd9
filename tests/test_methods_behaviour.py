"""What each clean method does, on small hand-built inputs."""
import math

import pytest
import torch

import samp
from methods_inputs import build_inputs
from samp.methods.primitives import greedy_dpp, unit_rows
from samp.methods.samp_method import similarity_groups


def direction(*angles_deg):
    """Unit vectors in the plane at the given angles (cosine between two = cos of the angle between them)."""
    return torch.tensor([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in angles_deg])


def flat_stats(n, batch=1):
    ones = torch.ones(batch, n)
    return samp.AttentionStats(received_attention=ones, self_attention=ones)


def test_grouping_uses_the_mean_similarity_to_all_members():
    # 0°, 30°, 60°: token 2 is 30° from its neighbour (cos 0.866 ≥ 0.85) but the mean cosine to the group
    # {0°, 30°} is (0.5 + 0.866)/2 = 0.683 < 0.85, so it opens a new group.
    starts, scores = similarity_groups(direction(0, 30, 60).numpy(), 0.85)
    assert starts.tolist() == [True, False, True]
    assert scores[1] == pytest.approx(math.cos(math.radians(30)), abs=1e-6)


def test_samp_merges_runs_with_attention_weights():
    x = torch.cat([direction(0, 5, 10) * 2, direction(90, 95)], 0)[None]
    received = torch.tensor([[1.0, 3.0, 0.0, 1.0, 1.0]])
    stats = samp.AttentionStats(received_attention=received, self_attention=torch.ones(1, 5))
    out = samp.compress(x, [5], method="samp", keep_ratio=0.4, threshold=0.9, attention=stats)
    assert out.assignment.tolist() == [[0, 0, 0, 1, 1]]
    torch.testing.assert_close(out.weights, torch.tensor([[0.25, 0.75, 0.0, 0.5, 0.5]]))
    torch.testing.assert_close(out.features[0, 0], 0.25 * x[0, 0] + 0.75 * x[0, 1])


def test_samp_undoes_the_weakest_joins_when_merging_leaves_too_few_groups():
    # One group of 6 nearly identical tokens; keeping 3 splits it where the joins were weakest.
    x = direction(0, 1, 8, 9, 2, 3)[None]
    out = samp.compress(x, [6], method="samp", keep_ratio=0.5, threshold=0.5, attention=flat_stats(6))
    assert out.lengths.tolist() == [3]
    slots = out.assignment[0].tolist()
    assert slots == sorted(slots), "groups stay contiguous"
    assert len(set(slots)) == 3
    # join scores (mean cosine to the members before): token 2 → 0.9914 (8° vs 0°, 1°), token 3 → 0.9926,
    # token 4 → 0.9966, token 5 → 0.9977, token 1 → 0.9998: tokens 2 and 3 open new groups
    assert slots == [0, 0, 1, 2, 2, 2]


def test_samp_prunes_with_relevance_when_there_are_too_many_groups():
    x = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0.7, 0.7, 0], [0, 0, 1]])[None]
    self_attention = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    stats = samp.AttentionStats(received_attention=torch.ones(1, 4), self_attention=self_attention)
    out = samp.compress(x, [4], method="samp", keep_ratio=0.75, threshold=0.99, attention=stats)
    assert out.assignment.tolist() == [[0, 1, -1, 2]], "the zero-relevance token is dropped"


def test_dpp_prefers_diverse_tokens_and_breaks_ties_by_index():
    unit = unit_rows(torch.cat([direction(0, 0, 0, 90)], 0))[None]
    picked = greedy_dpp(unit, torch.ones(1, 4, dtype=torch.bool), torch.tensor([2]))
    assert picked.tolist() == [[True, False, False, True]]
    picked = greedy_dpp(unit, torch.ones(1, 4, dtype=torch.bool), torch.tensor([4]))
    assert picked.all()


def test_cdpruner_avoids_duplicates():
    x = torch.tensor([[1.0, 0, 0]] * 4 + [[0.5, 0.8, 0], [0, 0.2, 0.9]])[None]
    out = samp.compress(x, [6], method="cdpruner", keep_ratio=0.5)
    assert out.assignment.tolist() == [[0, -1, -1, -1, 1, 2]]


def test_fastadasp_merges_the_most_similar_adjacent_pairs():
    x = direction(0, 80, 81, 170, 171, 172)[None]
    out = samp.compress(x, [6], method="fastadasp", keep_ratio=0.5)
    assert out.assignment.tolist() == [[0, 1, 1, 2, 2, 2]]


def test_atome_runs_more_rounds_to_reach_the_count():
    x = direction(0, 1, 2, 3, 90, 91, 92, 93)[None]
    out = samp.compress(x, [8], method="atome-merge", keep_ratio=0.25)
    assert out.assignment.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1]]
    torch.testing.assert_close(out.weights, torch.full((1, 8), 0.25))


def test_uniform_segments_are_contiguous_and_even():
    x = torch.randn(1, 10, 3)
    out = samp.compress(x, [10], method="uniform", keep_ratio=0.3)
    assert out.assignment.tolist() == [[0, 0, 0, 0, 1, 1, 1, 2, 2, 2]]


def test_random_is_seeded():
    x = torch.randn(1, 40, 3)
    first = samp.compress(x, [40], method="random", keep_ratio=0.5, seed=1).assignment
    again = samp.compress(x, [40], method="random", keep_ratio=0.5, seed=1).assignment
    other = samp.compress(x, [40], method="random", keep_ratio=0.5, seed=2).assignment
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_visionzip_joins_contextual_tokens_by_key_similarity():
    data = build_inputs(seed=0, batch=1, n=40, channels=4, frames_per_token=1, lengths=[40])
    received = torch.arange(40.0).flip(0)[None]  # tokens 0.. are dominant
    keys = torch.randn(1, 40, 8)
    stats = samp.AttentionStats(received_attention=received, self_attention=torch.ones(1, 40), token_keys=keys)
    out = samp.compress(data.features, [40], method="visionzip", keep_ratio=0.5, attention=stats)
    slots = out.assignment[0]
    assert slots[:18].tolist() == list(range(18)), "the 18 most attended tokens are kept alone"
    # n_ctx = round_half_up(5 % of 40) = 2 targets, evenly spaced over the 22 other tokens: 18 and 29
    targets = torch.tensor([18, 29])
    unit_keys = unit_rows(keys[0])
    for token in range(18, 40):
        nearest = int((unit_keys[token] @ unit_keys[targets].T).argmax())
        assert int(slots[token]) == 18 + nearest, f"token {token} joins the target with the closest key"


def test_attention_map_and_precomputed_stats_agree():
    data = build_inputs(seed=5, batch=2, n=16, channels=8, frames_per_token=2, lengths=[16, 9])
    stats = samp.attention_stats(data.attention, data.lengths, 2, data.keys)
    for method in ("samp", "visionzip", "fastadasp-attention-dpp"):
        from_map = samp.compress(data.features, data.lengths, method=method, **data.kwargs())
        from_stats = samp.compress(data.features, data.lengths, method=method, attention=stats)
        assert torch.equal(from_map.assignment, from_stats.assignment)


def test_attention_stats_match_a_direct_computation():
    data = build_inputs(seed=2, batch=2, n=6, channels=3, heads=3, frames_per_token=2, lengths=[6, 4])
    stats = samp.attention_stats(data.attention, data.lengths, 2)
    p = 2
    for b, length in enumerate(data.lengths.tolist()):
        head_max = data.attention[b].amax(0)
        head_mean = data.attention[b].mean(0)
        for k in range(length):
            received = sum(
                head_max[p * q + a, p * k + c] for q in range(length) for a in range(p) for c in range(p)
            ) / p / length
            self_attention = sum(head_mean[p * k + a, p * k + c] for a in range(p) for c in range(p)) / p
            assert float(stats.received_attention[b, k]) == pytest.approx(float(received), rel=1e-5)
            assert float(stats.self_attention[b, k]) == pytest.approx(float(self_attention), rel=1e-5)
