"""Quirks of the SA-MAP reference that the reference flavours reproduce (reference-algorithms.md §3–§6).

The golden data covers the data-dependent ones; these tests assert that coverage explicitly (so a regenerated
golden set cannot silently lose it) and build the raising and tie paths by hand.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import samp
from samp.methods.reference import llm_input_rows, reference_keep_count, reference_rows
from samp.methods.reference.dpp import cosine_matrix, greedy_dpp_map
from samp.methods.reference.methods import METHODS as REFERENCE_METHODS
from samp.methods.reference.methods import samp_groups

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "golden" / "methods"
GROUPS = {g["group"]: g for g in json.loads((GOLDEN / "index.json").read_text())["groups"]}


def golden(group_name: str) -> dict:
    group = GROUPS[group_name]
    with np.load(GOLDEN / group["file"]) as arrays:
        tensors = {name: torch.from_numpy(arrays[name]) for name in ("features", "lengths", "attention", "keys")}
    return {**tensors, "flavor": group["flavor"], "frames_per_token": group["frames_per_token"]}


def run(data: dict, method: str, keep_ratio: float, threshold: float = 0.85):
    return reference_rows(
        data["features"],
        data["lengths"],
        method=method,
        keep_ratio=keep_ratio,
        threshold=threshold,
        attention=data["attention"],
        keys=data["keys"],
        frames_per_token=data["frames_per_token"],
        flavor=data["flavor"],
    )


def group_count(data: dict, b: int, threshold: float = 0.85) -> int:
    length = int(data["lengths"][b])
    similarity = cosine_matrix(data["features"][b, :length], as_float32=data["flavor"] == "kimi_audio")
    return len(samp_groups(similarity, threshold)[0])


def random_attention(batch: int, heads: int, frames: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(batch, heads, frames, frames, generator=generator), dim=-1)


# ---------------------------------------------------------------------------------------------------------------
# Covered by golden data


def test_qwen_samp_with_fewer_groups_than_tokens_duplicates_the_first_groups():
    """Quirk 1: M < T, the DPP keeps going and repeats groups 0 and 1 (sorted, so the copies sit at the start)."""
    data = golden("qwen2_audio-redundant-s0-n50")
    results = run(data, "samp", 0.6)
    for b, result in enumerate(results):
        groups = group_count(data, b)
        keep = reference_keep_count(int(data["lengths"][b]), 0.6, "qwen2_audio")
        assert groups < keep == result.rows.shape[0]
        assert len(set(result.members)) == groups  # every group once, the rest are copies
        first_two = sorted(set(result.members))[:2]
        copies = [m for i, m in enumerate(result.members) if m in result.members[:i]]
        assert len(copies) == keep - groups and set(copies) == set(first_two)
        assert set(result.members[: keep - groups + 2]) == set(first_two)  # sorted picks: copies at the start
        assert result.rows.shape[0] - len(np.unique(result.rows.numpy(), axis=0)) == keep - groups


def test_glm_samp_drops_the_first_and_last_group():
    """Quirk 2: content at the utterance edges is never kept by GLM-ASR's SA-MAP."""
    data = golden("glm_asr-typical-s0-n50")
    for result, length in zip(run(data, "samp", 0.5), data["lengths"].tolist()):
        kept_tokens = {i for members in result.members for i in members}
        assert 0 not in kept_tokens and length - 1 not in kept_tokens


def test_glm_samp_duplicates_once_inner_groups_run_out():
    data = golden("glm_asr-typical-s0-n50")
    result = run(data, "samp", 0.6)[1]
    assert group_count(data, 1) - 2 < reference_keep_count(37, 0.6, "glm_asr") == result.rows.shape[0]
    assert len(set(result.members)) < result.rows.shape[0]


def test_kimi_samp_covers_release_equal_and_dpp_paths():
    """§5.3: M < T releases the weakest joiners (distinct rows, exactly T), M = T keeps all groups, M > T runs DPP."""
    redundant = golden("kimi_audio-redundant-s0-n50")
    for b, result in enumerate(run(redundant, "samp", 0.6)):
        keep = reference_keep_count(int(redundant["lengths"][b]), 0.6, "kimi_audio")
        assert group_count(redundant, b) < keep == result.rows.shape[0]
        assert len(set(result.members)) == keep

    typical = golden("kimi_audio-typical-s0-n50")
    assert group_count(typical, 1) == reference_keep_count(37, 0.6, "kimi_audio") == 22
    assert group_count(typical, 0) > reference_keep_count(50, 0.6, "kimi_audio")


def test_atome_returns_more_rows_than_placeholders_and_qwen_shifts_the_surplus():
    """Quirk 6 / §4.9: A-ToMe keeps max(T, ⌈L/2⌉) rows; Qwen2-Audio's batched masked_scatter shifts the surplus
    into the next utterance's placeholders."""
    data = golden("qwen2_audio-typical-s7-n12")
    results = run(data, "atome-merge", 0.5)
    assert [r.rows.shape[0] for r in results] == [6, 3, 2]  # L = 12, 5, 3 → T = 6, 2, 2; ⌈5/2⌉ = 3
    rows = llm_input_rows(results, data["features"], data["lengths"], keep_ratio=0.5, flavor="qwen2_audio",
                          method="atome-merge")
    assert [r.shape[0] for r in rows] == [6, 2, 2]
    assert torch.equal(rows[2][0], results[1].rows[2])
    assert torch.equal(rows[2][1], results[2].rows[0])


def test_kimi_atome_cuts_the_tail_or_merges_a_second_round():
    data = golden("kimi_audio-typical-s0-n50")  # utterance 1: L = 37, T = 18, first round leaves 19 rows
    cut = run(data, "atome-merge", 0.5)[1]
    assert cut.positions.tolist() == list(range(0, 36, 2))  # the last token (36) is dropped
    second = run(data, "atome-merge-attention", 0.5)[1]
    assert second.rows.shape[0] == 18 and second.positions[-1] == 36
    assert max(len(members) for members in second.members) == 4  # two first-round pairs merged again


def test_qwen_merge_method_at_full_count_feeds_uncompressed_features():
    """Quirk 5: when T = L the merged rows are ignored and the raw valid features reach the LLM."""
    data = golden("qwen2_audio-typical-s7-n12")
    results = run(data, "fastadasp-attention", 1.0)
    rows = llm_input_rows(results, data["features"], data["lengths"], keep_ratio=1.0, flavor="qwen2_audio",
                          method="fastadasp-attention")
    for b, length in enumerate(data["lengths"].tolist()):
        assert torch.equal(rows[b], data["features"][b, :length])


# ---------------------------------------------------------------------------------------------------------------
# Built by hand


def test_dpp_asked_for_more_items_than_exist_alternates_0_1():
    """§3.2: M = 4, T = 9 → four distinct picks, then 0, 1, 0, 1, 0 from the NaN cascade."""
    features = torch.randn(4, 6, generator=torch.Generator().manual_seed(3))
    picks, had_nan = greedy_dpp_map(cosine_matrix(features), 9)
    assert sorted(picks[:4].tolist()) == [0, 1, 2, 3]
    assert picks[4:].tolist() == [0, 1, 0, 1, 0]
    assert had_nan


def test_glm_samp_with_two_groups_or_fewer_raises():
    features = torch.ones(1, 6, 8)
    with pytest.raises(ValueError, match="quirk 2"):
        samp.compress(features, torch.tensor([6]), method="samp", keep_ratio=0.6, threshold=0.85,
                      attention=random_attention(1, 2, 24), frames_per_token=4, flavor="glm_asr")


def test_single_token_utterances_fail_where_the_reference_fails():
    """Quirk 12: L = 1 → topk with a negative k (FastAdaSP, A-ToMe), an empty argmax (VisionZip)."""
    features = torch.randn(1, 4, 8)
    lengths = torch.tensor([1])
    attention = random_attention(1, 2, 8)
    keys = torch.randn(1, 2, 8, 4)
    for method in ("fastadasp", "fastadasp-attention-dpp", "atome-merge", "atome-merge-attention-dpp"):
        with pytest.raises(ValueError, match="topk with k=-1"):
            samp.compress(features, lengths, method=method, keep_ratio=0.5, attention=attention, keys=keys,
                          frames_per_token=2, flavor="qwen2_audio")
    with pytest.raises(ValueError, match="empty argmax"):
        samp.compress(features, lengths, method="visionzip", keep_ratio=0.5, attention=attention, keys=keys,
                      frames_per_token=2, flavor="qwen2_audio")


def test_single_token_vispruner_returns_one_row_and_qwen_plumbing_fails():
    """Quirk 12: T = 2 for L = 1, VisPruner keeps the one token; the keep mask then misses the placeholders."""
    features = torch.randn(1, 4, 8)
    lengths = torch.tensor([1])
    results = reference_rows(features, lengths, method="vispruner", keep_ratio=0.5, threshold=0.85,
                             attention=random_attention(1, 2, 8), keys=None, frames_per_token=2,
                             flavor="qwen2_audio")
    assert results[0].rows.shape[0] == 1
    with pytest.raises(ValueError, match="undefined variable"):
        llm_input_rows(results, features, lengths, keep_ratio=0.5, flavor="qwen2_audio", method="vispruner")


def test_zero_feature_row_poisons_the_dpp():
    """Quirk 10: no epsilon → a zero row is NaN after normalisation; cdpruner's mask then keeps fewer than T
    tokens, Qwen SA-MAP emits duplicates, Kimi SA-MAP's assertion fails."""
    features = torch.randn(1, 10, 8, generator=torch.Generator().manual_seed(1))
    features[0, 3] = 0
    lengths = torch.tensor([10])
    common = dict(keep_ratio=0.6, threshold=0.99, keys=None)
    pruned = reference_rows(features, lengths, method="cdpruner", attention=None, frames_per_token=2,
                            flavor="qwen2_audio", **common)[0]
    assert pruned.rows.shape[0] < reference_keep_count(10, 0.6, "qwen2_audio")
    merged = reference_rows(features, lengths, method="samp", attention=random_attention(1, 2, 20),
                            frames_per_token=2, flavor="qwen2_audio", **common)[0]
    assert merged.rows.shape[0] == 6 and len(set(merged.members)) < 6
    with pytest.raises(ValueError, match="NaN"):
        reference_rows(features, lengths, method="samp", attention=random_attention(1, 2, 40),
                       frames_per_token=4, flavor="kimi_audio", **common)


def test_kimi_release_ties_release_extra_members():
    """§5.3: released scores are matched by value, so two exactly tied joiners both go free (T + 1 rows)."""
    v = torch.randn(8, generator=torch.Generator().manual_seed(2))
    features = torch.stack([v, v, -v, -v])[None]
    keep = reference_keep_count(4, 0.75, "kimi_audio")
    assert keep == 3
    result = reference_rows(features, torch.tensor([4]), method="samp", keep_ratio=0.75, threshold=0.85,
                            attention=random_attention(1, 2, 16), keys=None, frames_per_token=4,
                            flavor="kimi_audio")[0]
    assert result.members == ((0,), (1,), (2,), (3,))


def test_threshold_is_compared_in_the_similarity_dtype():
    """§3.1: bf16 turns 0.85 into 0.8515625, so a bf16 similarity of 0.8499 (→ 0.8515625) joins the group."""
    similarity = torch.tensor([[1.0, 0.8499], [0.8499, 1.0]])
    assert len(samp_groups(similarity, 0.85)[0]) == 2
    assert len(samp_groups(similarity.bfloat16(), 0.85)[0]) == 1


def test_attention_statistics_are_refused_and_keys_required():
    features = torch.randn(1, 4, 8)
    stats = samp.attention_stats(random_attention(1, 2, 8), torch.tensor([4]), 2)
    with pytest.raises(ValueError, match="full attention map"):
        samp.compress(features, torch.tensor([4]), method="samp", attention=stats, flavor="qwen2_audio")
    with pytest.raises(ValueError, match="key states"):
        reference_rows(features, torch.tensor([4]), method="visionzip", keep_ratio=0.6, threshold=0.85,
                       attention=random_attention(1, 2, 8), keys=None, frames_per_token=2, flavor="qwen2_audio")
    with pytest.raises(ValueError, match="full attention map"):
        reference_rows(features, torch.tensor([4]), method="samp", keep_ratio=0.6, threshold=0.85,
                       attention=None, keys=None, frames_per_token=2, flavor="qwen2_audio")


def test_kimi_has_no_placeholders():
    features = torch.randn(1, 4, 8)
    results = reference_rows(features, torch.tensor([4]), method="cdpruner", keep_ratio=0.5, threshold=0.85,
                             attention=None, keys=None, frames_per_token=4, flavor="kimi_audio")
    with pytest.raises(ValueError, match="no audio placeholders"):
        llm_input_rows(results, features, torch.tensor([4]), keep_ratio=0.5, flavor="kimi_audio",
                       method="cdpruner")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("flavor, frames_per_token", [("qwen2_audio", 2), ("glm_asr", 4), ("kimi_audio", 4)])
def test_half_precision_inputs_run_every_method(dtype, flavor, frames_per_token):
    data = golden({"qwen2_audio": "qwen2_audio-typical-s0-n50", "glm_asr": "glm_asr-typical-s0-n50",
                   "kimi_audio": "kimi_audio-typical-s0-n50"}[flavor])
    for spec in samp.methods.available():
        if spec.name not in REFERENCE_METHODS:  # uniform, random and the methods the reference never had
            continue
        keep_ratio = 1.0 if spec.name == "base" else 0.6
        out = samp.compress(data["features"].to(dtype), data["lengths"], method=spec.name, keep_ratio=keep_ratio,
                            attention=data["attention"].to(dtype), keys=data["keys"].to(dtype),
                            frames_per_token=frames_per_token, flavor=flavor)
        assert out.features.dtype == dtype
        assert out.lengths.shape == (2,) and int(out.lengths.min()) > 0


@pytest.mark.gpu
@pytest.mark.parametrize("flavor, frames_per_token", [("qwen2_audio", 2), ("glm_asr", 4), ("kimi_audio", 4)])
def test_reference_flavours_run_on_cuda(flavor, frames_per_token):
    """Every method runs with CUDA tensors and keeps the CPU counts (values may differ by device round-off)."""
    data = golden(f"{flavor}-typical-s0-n50")
    for spec in samp.methods.available():
        if spec.name not in REFERENCE_METHODS:  # uniform, random and the methods the reference never had
            continue
        kwargs = dict(method=spec.name, keep_ratio=1.0 if spec.name == "base" else 0.6, frames_per_token=frames_per_token,
                      flavor=flavor)
        on_cpu = samp.compress(data["features"], data["lengths"], attention=data["attention"], keys=data["keys"],
                               **kwargs)
        on_gpu = samp.compress(data["features"].cuda(), data["lengths"].cuda(), attention=data["attention"].cuda(),
                               keys=data["keys"].cuda(), **kwargs)
        assert on_gpu.features.is_cuda and on_gpu.assignment.is_cuda
        assert on_gpu.lengths.tolist() == on_cpu.lengths.tolist()
