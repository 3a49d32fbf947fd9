"""Every golden case of the SA-MAP reference (fixtures/golden/methods, 250 cases) is reproduced by the reference
flavours: the rows each method returns, the rows written into the LLM input (Qwen2-Audio, GLM-ASR) and the surviving
sequence positions (Kimi-Audio). One test id per case."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

import samp
from golden_checks import assert_dpp_set_after_a_first_pick, row_indices
from samp.methods.reference import llm_input_rows, reference_rows
from samp.methods.reference.dpp import cosine_matrix

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "golden" / "methods"
INDEX = json.loads((GOLDEN / "index.json").read_text())
CASES = [(group, case) for group in INDEX["groups"] for case in group["cases"]]
IDS = [f"{group['group']}/{case['id']}" for group, case in CASES]

# The reference sums VisionZip's contextual tokens in another order (README: within 1e-6); everything else: 1e-5.
TOLERANCE = {"visionzip": 1e-6}
# Plain cdpruner's first DPP pick is decided by round-off (spec §3.2): its rows are checked by
# assert_cdpruner_golden, not element by element.
ROUND_OFF_DECIDED = {"cdpruner"}


@lru_cache(maxsize=None)
def load_group(file_name: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / file_name) as arrays:
        return {name: arrays[name] for name in arrays.files}


def inputs(group: dict) -> dict:
    arrays = load_group(group["file"])
    return {
        "features": torch.from_numpy(arrays["features"]),
        "lengths": torch.from_numpy(arrays["lengths"]),
        "attention": torch.from_numpy(arrays["attention"]),
        "keys": torch.from_numpy(arrays["keys"]),
    }


def assert_rows_match(actual: torch.Tensor, expected: np.ndarray, atol: float, what: str) -> None:
    assert tuple(actual.shape) == expected.shape, f"{what}: shape {tuple(actual.shape)} != {expected.shape}"
    if expected.size:
        difference = float(np.abs(actual.double().numpy() - expected.astype(np.float64)).max())
        assert difference <= atol, f"{what}: max |difference| {difference:.3g} > {atol}"


def test_golden_index_has_all_250_cases():
    assert len(CASES) == 250
    assert {group["flavor"] for group, _ in CASES} == {"qwen2_audio", "glm_asr", "kimi_audio"}
    assert not any("error" in case or "llm_input_error" in case for _, case in CASES)


def case_arguments(group, case, data) -> dict:
    """The keyword arguments one golden case was produced with."""
    return dict(method=case["method"], keep_ratio=case["keep_ratio"], threshold=case["threshold"],
                attention=data["attention"], keys=data["keys"], frames_per_token=group["frames_per_token"],
                flavor=group["flavor"])


def assert_cdpruner_golden(group, case, data, kept_rows) -> None:
    """Plain cdpruner: per utterance, our kept rows and the golden's are unmerged input tokens in temporal order, and
    each set is what the greedy DPP picks after one of its members was picked first; which member comes first is
    decided by the CPU's rounding of ``diag(S) = 1 ± ulp`` (spec §3.2), everything after it is not."""
    arrays = load_group(group["file"])
    for b, rows in enumerate(kept_rows):
        features = data["features"][b, : int(data["lengths"][b])]
        kernel = cosine_matrix(features, as_float32=group["flavor"] == "kimi_audio")
        golden = torch.from_numpy(arrays[f"{case['id']}/output/{b}"])
        for what, kept in (("ours", rows), ("golden", golden)):
            indices = row_indices(kept, features)
            assert_rows_match(features[indices], kept.numpy(), 0.0, f"{what}/{b} rows are input tokens")
            assert_dpp_set_after_a_first_pick(kernel, indices)


@pytest.mark.parametrize("group, case", CASES, ids=IDS)
def test_reference_reproduces_golden_case(group, case):
    data = inputs(group)
    arrays = load_group(group["file"])
    results = reference_rows(data["features"], data["lengths"], **case_arguments(group, case, data))
    atol = TOLERANCE.get(case["method"], 1e-5)
    assert [r.rows.shape[0] for r in results] == case["output_rows"]
    round_off_decided = case["method"] in ROUND_OFF_DECIDED
    if round_off_decided:
        assert_cdpruner_golden(group, case, data, [r.rows for r in results])
    else:
        for b, result in enumerate(results):
            assert_rows_match(result.rows, arrays[f"{case['id']}/output/{b}"], atol, f"output/{b}")

    if group["flavor"] == "kimi_audio":
        for b, result in enumerate(results):
            expected = arrays[f"{case['id']}/positions/{b}"]
            assert result.positions.tolist() == expected.tolist(), f"positions/{b}"
    else:
        llm_rows = llm_input_rows(
            results,
            data["features"],
            data["lengths"],
            keep_ratio=case["keep_ratio"],
            flavor=group["flavor"],
            method=case["method"],
        )
        assert [rows.shape[0] for rows in llm_rows] == case["llm_input_rows"]
        for b, rows in enumerate(llm_rows):
            if not round_off_decided:
                assert_rows_match(rows, arrays[f"{case['id']}/llm_input/{b}"], atol, f"llm_input/{b}")


@pytest.mark.parametrize("group, case", CASES, ids=IDS)
def test_public_compress_packs_golden_rows_with_consistent_assignment(group, case):
    """Through ``samp.compress(..., flavor=...)``: padded rows equal the golden rows, and ``assignment``/``weights``
    explain every slot (each slot is the weighted mean of the inputs assigned to it, or repeats an earlier slot)."""
    data = inputs(group)
    arrays = load_group(group["file"])
    out = samp.compress(data["features"], data["lengths"], **case_arguments(group, case, data))
    assert out.lengths.tolist() == case["output_rows"]
    assert (out.weights is None) == (case["method"] == "visionzip")
    atol = TOLERANCE.get(case["method"], 1e-5)
    features = data["features"].double()
    if case["method"] in ROUND_OFF_DECIDED:
        assert_cdpruner_golden(group, case, data, [out.features[b, :k] for b, k in enumerate(case["output_rows"])])
    for b, kept in enumerate(case["output_rows"]):
        if case["method"] not in ROUND_OFF_DECIDED:
            assert_rows_match(out.features[b, :kept], arrays[f"{case['id']}/output/{b}"], atol, f"features/{b}")
        assert not out.features[b, kept:].any(), "padding rows must be zero"
        assignment = out.assignment[b]
        assert bool((assignment[int(data["lengths"][b]) :] == -1).all()), "padded inputs are never assigned"
        for slot in range(kept):
            inputs_of_slot = torch.nonzero(assignment == slot).flatten()
            row = out.features[b, slot].double()
            if inputs_of_slot.numel() == 0:
                # A duplicated slot (SA-MAP with M < T): it repeats an earlier slot that owns the inputs.
                assert any(torch.equal(out.features[b, s], out.features[b, slot]) for s in range(slot))
            elif out.weights is not None:
                weights = out.weights[b, inputs_of_slot].double()
                assert abs(float(weights.sum()) - 1.0) < 1e-5
                mean = (weights[:, None] * features[b, inputs_of_slot]).sum(dim=0)
                assert float((mean - row).abs().max()) < 1e-4, f"slot {slot} is not the mean of its inputs"
