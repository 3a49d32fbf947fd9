"""Qwen3-ASR adapter (transformers >= 5.13): packed sequence, windowed token-resolution attention."""
import pytest
import torch
import transformers

from samp.models import adapter_for
from samp.models.tiny import speechlike_waveform, tiny_qwen3_asr
from models_checks import audio_logit_shift, stock_new_tokens

pytestmark = pytest.mark.skipif(
    not hasattr(transformers, "Qwen3ASRForConditionalGeneration"),
    reason=f"transformers {transformers.__version__} has no Qwen3ASRForConditionalGeneration (added in 5.13)",
)
PROMPT = "<|im_start|><|audio_start|><|audio_pad|><|audio_end|>Transcribe:<|im_end|>"
GREEDY = dict(max_new_tokens=10, do_sample=False)


@pytest.fixture(scope="module")
def tiny():
    model, processor = tiny_qwen3_asr()
    return model, processor, adapter_for(model, processor)


@pytest.fixture(scope="module")
def waves():  # the 9 s clip spans several attention windows of the tiny encoder (26 tokens each)
    return [speechlike_waveform(2.52, 11), speechlike_waveform(9.0, 3)]


@pytest.mark.parametrize("index, tokens", [(0, 33), (1, 117)])
def test_base_is_bit_identical_to_stock_generate(tiny, waves, index, tokens):
    model, processor, adapter = tiny
    result = adapter.generate([waves[index]], PROMPT, method="base", keep_ratio=1.0, **GREEDY)
    assert torch.equal(result.sequences, stock_new_tokens(model, processor, PROMPT, waves[index], **GREEDY))
    assert result.audio_tokens == [(tokens, tokens)]


def test_base_batch_is_bit_identical_to_stock_batch(tiny, waves):
    """Qwen3-ASR pads the mel to the longest clip, so a clip's last frames depend on its batch: compare batches."""
    model, processor, adapter = tiny
    result = adapter.generate(waves, PROMPT, method="base", keep_ratio=1.0, **GREEDY)
    inputs = processor(text=[PROMPT] * 2, audio=waves, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        stock = model.generate(**inputs, **GREEDY)[:, inputs["input_ids"].shape[1]:]
    assert torch.equal(result.sequences, stock)


def test_compressed_batch_keeps_what_single_runs_keep(tiny, waves):
    adapter = tiny[2]
    batch = adapter.generate(waves, PROMPT, method="samp", keep_ratio=0.5, **GREEDY)
    singles = [adapter.generate([wave], PROMPT, method="samp", keep_ratio=0.5, **GREEDY) for wave in waves]
    assert batch.audio_tokens == [single.audio_tokens[0] for single in singles]


def test_windowed_probabilities_reproduce_the_layer_output(tiny, waves):
    """Eager ``output_attentions`` returns the layer output, not probabilities; so check the recomputed windowed
    probabilities by rebuilding that output from them: out_proj(P·V) must equal what the layer returned."""
    _, _, adapter = tiny
    layer = adapter.tower.layers[-1].self_attn
    seen = {}
    handles = [layer.v_proj.register_forward_hook(lambda m, a, o: seen.__setitem__("v", o)),
               layer.register_forward_hook(lambda m, a, o: seen.__setitem__("out", o))]
    try:
        tokens = adapter.encode(waves, attention=True)
    finally:
        for handle in handles:
            handle.remove()
    full = tokens.attention.full()
    heads, head_dim = layer.num_heads, layer.head_dim
    rebuilt = []
    for b, n in enumerate(tokens.lengths.tolist()):
        offset = int(tokens.lengths[:b].sum())
        values = seen["v"][offset:offset + n].view(n, heads, head_dim).transpose(0, 1)   # [H, n, d]
        mixed = full.probabilities[b, :, :n, :n] @ values                                 # [H, n, d]
        rebuilt.append(layer.out_proj(mixed.transpose(0, 1).reshape(n, -1)))
    torch.testing.assert_close(torch.cat(rebuilt), seen["out"], atol=1e-5, rtol=1e-5)
    # block diagonal: the first token of the long clip sees nothing past its 26-token window
    assert full.probabilities[1, :, 0, 26:].abs().max() == 0
    assert full.probabilities[1, :, 0, :26].sum(-1).allclose(torch.ones(heads))


def test_audio_rows_change_the_logits(tiny, waves):
    model, _, adapter = tiny
    assert audio_logit_shift(model, adapter, PROMPT, waves[0]) > 0.5
