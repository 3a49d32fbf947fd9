"""Keep counts of the reference flavours against reference-algorithms.md §2 (its example table and rounding notes),
and the row count every method returns (§4 output-count summary)."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import samp
from samp.methods.reference import llm_input_rows, reference_keep_count, reference_rows, visionzip_counts

# (L, r, Qwen T, Qwen VisionZip, GLM T, Kimi T): the model-side example table of §2.
SECTION_2_TABLE = [
    (750, 0.6, 450, 449, 450, 450),
    (750, 0.5, 375, 374, 375, 375),
    (750, 0.7, 525, 524, 525, 525),
    (375, 0.6, 225, 224, 225, 225),
    (375, 0.5, 188, 186, 187, 187),
    (373, 0.5, 186, 185, 186, 186),
    (90, 0.7, 63, 62, 62, 63),
    (37, 0.5, 18, 17, 18, 18),
    (20, 0.6, 12, 11, 12, 12),
]


@pytest.mark.parametrize("length, ratio, qwen, qwen_visionzip, glm, kimi", SECTION_2_TABLE)
def test_section_2_example_table(length, ratio, qwen, qwen_visionzip, glm, kimi):
    assert reference_keep_count(length, ratio, "qwen2_audio", "samp") == qwen
    assert reference_keep_count(length, ratio, "qwen2_audio", "visionzip") == qwen_visionzip
    assert reference_keep_count(length, ratio, "glm_asr", "samp") == glm
    assert reference_keep_count(length, ratio, "kimi_audio", "samp") == kimi


def test_qwen_rounds_half_to_even():
    # 375·0.5 = 187.5 → 188, 225·0.5 = 112.5 → 112, 37·0.5 = 18.5 → 18 (Python round).
    assert reference_keep_count(375, 0.5, "qwen2_audio") == 188
    assert reference_keep_count(225, 0.5, "qwen2_audio") == 112
    assert reference_keep_count(37, 0.5, "qwen2_audio") == 18


def test_minimum_of_two_exists_only_for_qwen_and_most_kimi_methods():
    assert reference_keep_count(1, 0.5, "qwen2_audio") == 2  # more than the one token there is
    assert reference_keep_count(1, 0.5, "glm_asr") == 0
    assert reference_keep_count(3, 0.6, "glm_asr") == 1
    assert reference_keep_count(2, 0.5, "kimi_audio", "vispruner") == 2
    assert reference_keep_count(2, 0.5, "kimi_audio", "cdpruner") == 1
    assert reference_keep_count(2, 0.5, "kimi_audio", "cdpruner-attention") == 1


def test_truncation_precision_differs_between_glm_and_kimi():
    # 0.7·90 is 62.999… in float64 (GLM) but exactly 63 in float32 (Kimi).
    assert reference_keep_count(90, 0.7, "glm_asr", "fastadasp") == 62
    assert reference_keep_count(90, 0.7, "kimi_audio", "fastadasp") == 63


def test_visionzip_shares_and_the_0_55_float64_slip():
    # 0.6 − 0.05 = 0.5499999999999999, so at L = 20 the dominant share is 10, not 11.
    assert visionzip_counts(20, 0.6, "qwen2_audio") == (10, 1)
    assert visionzip_counts(20, 0.6, "glm_asr") == (10, 1)
    # Kimi multiplies in float32 and rounds the product back to 11.0.
    assert visionzip_counts(20, 0.6, "kimi_audio") == (11, 1)
    assert reference_keep_count(20, 0.6, "kimi_audio", "visionzip") == 12
    assert visionzip_counts(750, 0.6, "qwen2_audio") == (412, 37)
    # Kimi has no minimum on the dominant share; Qwen/GLM keep at least one.
    assert visionzip_counts(10, 0.1, "kimi_audio")[0] == 0
    assert visionzip_counts(10, 0.1, "qwen2_audio")[0] == 1


def test_base_keeps_everything_in_every_flavour():
    for flavor in ("qwen2_audio", "glm_asr", "kimi_audio"):
        assert reference_keep_count(37, 1.0, flavor, "base") == 37


def test_atome_count_differs_from_keep_count_on_187_lengths():
    # §4.9: A-ToMe returns max(T, ⌈L/2⌉) rows; with Qwen rounding at r = 0.5 that exceeds T for 187 of 2..750.
    exceeded = [
        length
        for length in range(2, 751)
        if max(reference_keep_count(length, 0.5, "qwen2_audio"), math.ceil(length / 2))
        != reference_keep_count(length, 0.5, "qwen2_audio")
    ]
    assert len(exceeded) == 187
    assert all(length % 4 == 1 for length in exceeded)


def test_public_keep_count_dispatches_to_reference_rules():
    assert samp.keep_count(375, 0.5, flavor="qwen2_audio") == 188
    assert samp.keep_count(90, 0.7, flavor="glm_asr") == 62


def test_unknown_flavor_and_negative_length_are_rejected():
    with pytest.raises(ValueError, match="unknown reference flavor"):
        reference_keep_count(10, 0.5, "whisper")
    with pytest.raises(ValueError, match="non-negative"):
        reference_keep_count(-1, 0.5, "glm_asr")


# ---------------------------------------------------------------------------------------------------------------
# Output counts of every method on random inputs (reference-algorithms.md §4 output-count summary)

FRAMES_PER_TOKEN = {"qwen2_audio": 2, "glm_asr": 4, "kimi_audio": 4}
METHODS = ("base", "visionzip", "vispruner", "cdpruner", "cdpruner-attention", "fastadasp", "fastadasp-attention",
           "fastadasp-attention-dpp", "atome-merge", "atome-merge-attention", "atome-merge-attention-dpp", "samp")


def expected_rows(method: str, length: int, keep_ratio: float, flavor: str) -> int:
    keep = reference_keep_count(length, keep_ratio, flavor, method)
    if method == "base":
        return length
    if method.startswith("atome-merge") and not method.endswith("dpp") and flavor != "kimi_audio":
        return max(keep, math.ceil(length / 2))  # quirk 6; Kimi cuts or merges again down to T
    return keep


@settings(max_examples=15, deadline=None)
@given(
    flavor=st.sampled_from(sorted(FRAMES_PER_TOKEN)),
    length=st.integers(min_value=6, max_value=24),
    padding=st.integers(min_value=0, max_value=3),
    keep_ratio=st.sampled_from([0.5, 0.6, 0.7, 0.9]),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_every_method_returns_the_documented_row_count(flavor, length, padding, keep_ratio, seed):
    generator = torch.Generator().manual_seed(seed)
    p = FRAMES_PER_TOKEN[flavor]
    n = length + padding
    # more channels than tokens: the reference's DPP never runs out of rank, whose NaN cascade (quirk 10) makes
    # cdpruner keep fewer rows; that case is covered in test_reference_quirks
    features = torch.randn(1, n, 32, generator=generator)
    attention = torch.softmax(torch.randn(1, 2, p * n, p * n, generator=generator), dim=-1)
    keys = torch.randn(1, 2, p * n, 8, generator=generator)
    lengths = torch.tensor([length])
    for method in METHODS:
        ratio = 1.0 if method == "base" else keep_ratio
        results = reference_rows(features, lengths, method=method, keep_ratio=ratio, threshold=0.85,
                                 attention=attention, keys=keys, frames_per_token=p, flavor=flavor)
        assert results[0].rows.shape[0] == expected_rows(method, length, ratio, flavor), method
        if flavor != "kimi_audio":
            rows = llm_input_rows(results, features, lengths, keep_ratio=ratio, flavor=flavor, method=method)
            assert rows[0].shape[0] == reference_keep_count(length, ratio, flavor, method), method
