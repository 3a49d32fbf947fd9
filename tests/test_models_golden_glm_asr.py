"""GLM-ASR reference replay: the SA-MAP reference ran the remote-code ``GlmasrModel`` (transformers <= 4.52), whose
language model is a plain Llama. Writing the reference's prefill rows (boa, the compressed audio rows, eoa) at the
reference's prompt positions with samp's prefill override, a stock ``LlamaForCausalLM`` built by samp's seeded
initialiser reproduces the reference's greedy tokens on whatever transformers is installed. (The remote Whisper-RoPE
encoder is not in transformers; the compressed rows themselves are checked by the methods' golden tests.)"""
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from golden_checks import assert_close_to_scale
from samp.models.base import prefill_embedding_override
from samp.models.tiny import load_weights_, seeded_init_

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"
GOLDEN = json.loads((FIXTURES / "glm_asr_replay.json").read_text())
ROWS = load_file(FIXTURES / "glm_asr_replay_rows.safetensors")
WEIGHTS = load_file(FIXTURES / "weights" / "glm_asr_lm.safetensors")  # the golden's model.* and lm_head.* tensors
CASES = [(c, w) for c, waves in GOLDEN["configs"].items() for w in waves]


def llama(weights=None):
    config = LlamaConfig(**GOLDEN["lm_config"], tie_word_embeddings=False)
    model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa")
    seeded_init_(model, canonical=lambda name: name)  # the remote checkpoint's names, unchanged
    if weights is not None:
        load_weights_(model, weights, canonical=lambda name: name)
    return model.eval()


@pytest.fixture(scope="module")
def language_model():
    return llama(WEIGHTS)


def test_stored_weights_are_the_golden_language_model():
    digest = hashlib.sha1()
    for name in sorted(WEIGHTS):
        digest.update(name.encode())
        digest.update(WEIGHTS[name].contiguous().numpy().tobytes())
    assert digest.hexdigest()[:16] == GOLDEN["lm_weights_sha1_16"]


def test_seeded_builder_rebuilds_the_golden_language_model_to_round_off():
    """torch's vectorised normal sampler rounds per CPU (measured with ``ATEN_CPU_CAPABILITY=default``: under 5e-7 of
    a tensor's scale); allowed 2e-6 of the scale."""
    for name, tensor in llama().state_dict().items():
        assert_close_to_scale(tensor, WEIGHTS[name], 2e-6, msg=name)


@pytest.mark.parametrize("config, wave", CASES, ids=[f"{c}-{w[:4]}" for c, w in CASES])
def test_reference_rows_replayed_give_the_reference_tokens(language_model, config, wave):
    case = GOLDEN["configs"][config][wave]
    ids = torch.tensor([case["input_ids"]])
    vocab = language_model.config.vocab_size
    # the remote prompt holds boa/eoa ids (59261/59262) beyond the tiny vocabulary; their rows are overwritten
    # position by position, so any in-vocabulary id may stand in for them
    prompt = ids.masked_fill(ids >= vocab, 0)
    start, k = case["audio_offset"] - 1, case["K"]
    rows = torch.zeros(1, ids.shape[1], language_model.config.hidden_size)
    rows[0, start:start + k + 2] = ROWS[f"{config}/{wave}"]
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[0, start:start + k + 2] = True
    eos = language_model.config.eos_token_id
    with torch.no_grad(), prefill_embedding_override(language_model.get_input_embeddings(), prompt, mask, rows):
        out = language_model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=16,
                                      do_sample=False, eos_token_id=eos, pad_token_id=eos[0] if isinstance(eos, list) else eos)
    assert out[0, ids.shape[1]:].tolist() == case["new_tokens"]
