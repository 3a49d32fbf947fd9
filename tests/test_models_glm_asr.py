"""Native GLM-ASR adapter (transformers >= 5.0) on a tiny seeded model."""
import numpy as np
import pytest
import torch
import transformers

import samp
from samp.models import adapter_for
from samp.models.tiny import speechlike_waveform, tiny_glm_asr
from models_checks import audio_logit_shift, stock_new_tokens

pytestmark = pytest.mark.skipif(
    not hasattr(transformers, "GlmAsrForConditionalGeneration"),
    reason=f"transformers {transformers.__version__} has no native GlmAsrForConditionalGeneration (added in 5.0)",
)

PROMPT = "<|user|>\n<|begin_of_audio|><|pad|><|end_of_audio|>Please transcribe this audio into text<|assistant|>\n"
GREEDY = dict(max_new_tokens=12, do_sample=False)


@pytest.fixture(scope="module")
def tiny():
    model, processor = tiny_glm_asr(chunk_seconds=4)
    return model, processor, adapter_for(model, processor)


@pytest.fixture(scope="module")
def waves():
    return [speechlike_waveform(2.52, 11), speechlike_waveform(3.3, 22)]


@pytest.mark.parametrize("index, tokens", [(0, 31), (1, 41)])
def test_base_is_bit_identical_to_stock_generate(tiny, waves, index, tokens):
    model, processor, adapter = tiny
    result = adapter.generate([waves[index]], PROMPT, method="base", keep_ratio=1.0, **GREEDY)
    assert torch.equal(result.sequences, stock_new_tokens(model, processor, PROMPT, waves[index], **GREEDY))
    assert result.audio_tokens == [(tokens, tokens)]


def test_hook_probabilities_equal_eager_with_rope(waves):
    model, processor = tiny_glm_asr(chunk_seconds=4, attn_implementation="eager")
    adapter = adapter_for(model, processor)
    features, _ = adapter.features(waves, 16000)
    with torch.no_grad():
        reference = adapter.tower(features, output_attentions=True).attentions[-1]
    assert torch.equal(adapter.encode(waves, attention=True).attention.full().probabilities, reference)


def test_compressed_batch_equals_single_runs(tiny, waves):
    adapter = tiny[2]
    batch = adapter.generate(waves, PROMPT, method="samp", keep_ratio=0.5, **GREEDY)
    assert [n for n, _ in batch.audio_tokens] == [31, 41]
    assert all(1 <= k <= samp.keep_count(n, 0.5) for n, k in batch.audio_tokens)
    assert batch.audio_tokens[0][1] != batch.audio_tokens[1][1]  # the batch really is left-padded
    for b, wave in enumerate(waves):
        single = adapter.generate([wave], PROMPT, method="samp", keep_ratio=0.5, **GREEDY)
        assert single.audio_tokens[0] == batch.audio_tokens[b]
        assert single.sequences[0].tolist() == batch.sequences[b][: single.sequences.shape[1]].tolist()


def test_audio_rows_change_the_logits(tiny, waves):
    model, _, adapter = tiny
    assert audio_logit_shift(model, adapter, PROMPT, waves[0]) > 0.5


def test_bad_input(tiny, waves):
    adapter = tiny[2]
    with pytest.raises(ValueError, match="at most 4 s"):
        adapter.generate([np.zeros(16000 * 6, np.float32)], PROMPT, method="base", keep_ratio=1.0)
    with pytest.raises(ValueError, match="exactly one '<\\|pad\\|>'"):
        adapter.generate([waves[0]], "<|user|>\nhello<|assistant|>\n", method="base", keep_ratio=1.0)


def test_window_that_does_not_divide_into_tokens_is_rejected():
    with pytest.raises(ValueError, match="divide by 4"):
        tiny_glm_asr(chunk_seconds=5)
