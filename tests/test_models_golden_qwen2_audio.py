"""Parity with the SA-MAP reference on a tiny Qwen2-Audio (goldens from ``shared/golden/models/qwen2_audio``, copied
to ``fixtures/models``): the ``qwen2_audio`` flavour reproduces the reference's compressed rows bit for bit and its
greedy tokens, on whatever transformers version is installed."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from samp.models import adapter_for
from samp.models.tiny import canonical_name, tiny_qwen2_audio

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"
GOLDEN = json.loads((FIXTURES / "qwen2_audio_golden.json").read_text())
CASES = [(config, wave) for config, entry in GOLDEN["configs"].items() for wave in entry["waves"]]


def sha1_16(tensor: torch.Tensor) -> str:
    return hashlib.sha1(tensor.detach().contiguous().numpy().tobytes()).hexdigest()[:16]


@pytest.fixture(scope="module")
def eager():
    # the reference ran the whole model with eager attention; eager features are what its rows were made from
    model, processor = tiny_qwen2_audio(attn_implementation="eager")
    return adapter_for(model, processor)


@pytest.fixture(scope="module")
def encoded(eager):
    return {wave: eager.encode([np.load(FIXTURES / f"{wave}.npy")], attention=True) for wave in GOLDEN["waves"]}


def test_tiny_builder_rebuilds_the_golden_weights():
    model, _ = tiny_qwen2_audio()
    digest = hashlib.sha1()
    params = {canonical_name(name): p for name, p in model.named_parameters()}
    for name in sorted(params):
        digest.update(name.encode())
        digest.update(params[name].detach().numpy().tobytes())
    assert digest.hexdigest()[:16] == GOLDEN["weights_sha1_16"]


@pytest.mark.parametrize("wave", GOLDEN["waves"])
def test_prompt_ids_equal_the_reference_prompt(eager, wave):
    base = GOLDEN["configs"]["base"]["waves"][wave]
    inputs = eager.build_inputs(GOLDEN["prompt"], [base["K"]])
    assert inputs.input_ids[0].tolist() == base["input_ids"]


@pytest.mark.parametrize("config, wave", CASES, ids=[f"{c}-{w[:4]}" for c, w in CASES])
def test_reference_flavour_reproduces_rows_and_tokens(eager, encoded, config, wave):
    entry = GOLDEN["configs"][config]
    expected = entry["waves"][wave]
    tokens = encoded[wave]
    assert int(tokens.lengths[0]) == expected["L"]
    kept = eager.compress(tokens, method=entry["method"], keep_ratio=entry["keep_ratio"],
                          threshold=entry["threshold"], flavor="qwen2_audio")
    assert kept.counts == [expected["K"]]
    assert sha1_16(kept.rows[0]) == expected["rows_sha1_16"]
    inputs = eager.build_inputs(GOLDEN["prompt"], kept.counts)
    rows = eager._scatter_rows(inputs, kept.rows)
    new_tokens, _ = eager._generate_with_rows(inputs, rows, GOLDEN["generate_kwargs"])
    assert new_tokens[0].tolist() == expected["new_tokens"]


def test_sdpa_model_gives_the_reference_tokens_end_to_end():
    model, processor = tiny_qwen2_audio()
    adapter = adapter_for(model, processor)
    for wave in GOLDEN["waves"]:
        result = adapter.generate([np.load(FIXTURES / f"{wave}.npy")], GOLDEN["prompt"], method="base",
                                  keep_ratio=1.0, **GOLDEN["generate_kwargs"])
        assert result.sequences[0].tolist() == GOLDEN["configs"]["base"]["waves"][wave]["new_tokens"]
