"""The last-layer attention hook: exact probabilities, untouched encoder outputs, removed on exit."""
import pytest
import torch

import samp
from samp.attention import LastLayerAttentionHook
from samp.models import adapter_for
from samp.models.base import bidirectional_encoder_mask
from samp.models.tiny import speechlike_waveform, tiny_qwen2_audio


@pytest.fixture(scope="module")
def eager():
    model, processor = tiny_qwen2_audio(chunk_seconds=4, attn_implementation="eager")
    return adapter_for(model, processor)


@pytest.fixture(scope="module")
def sdpa():
    model, processor = tiny_qwen2_audio(chunk_seconds=4)
    return adapter_for(model, processor)


@pytest.fixture(params=["one band", "a band per token"])
def band(request, monkeypatch):
    """Statistics from one band per utterance (small encoders) and from many (long windows), here a token a band."""
    if request.param == "a band per token":
        monkeypatch.setattr(samp.attention, "STATS_BAND_ELEMENTS", 1)


@pytest.fixture(scope="module")
def batch():
    return [speechlike_waveform(2.52, 11), speechlike_waveform(1.3, 5)]


def encoder_inputs(adapter, waves):
    features, mel_mask = adapter.features(waves, 16000)
    valid_frames, lengths = adapter.tower._get_feat_extract_output_lengths(mel_mask.sum(-1))
    frames = features.shape[-1] // 2
    mask = bidirectional_encoder_mask(adapter.model, adapter.tower, valid_frames, frames, torch.float32)
    return features, mask, valid_frames, lengths


def test_probabilities_equal_eager_output_attentions(eager, batch):
    features, mask, _, _ = encoder_inputs(eager, batch)
    with torch.no_grad():
        reference = eager.tower(features, attention_mask=mask, output_attentions=True).attentions[-1]
    captured = eager.encode(batch, attention=True).attention.full()
    assert torch.equal(captured.probabilities, reference)


def test_sdpa_probabilities_match_eager_and_mask_padded_keys(sdpa, eager, batch):
    captured = sdpa.encode(batch, attention=True).attention.full()
    reference = eager.encode(batch, attention=True).attention.full()
    torch.testing.assert_close(captured.probabilities, reference.probabilities, atol=1e-5, rtol=0)
    _, _, valid_frames, _ = encoder_inputs(sdpa, batch)
    short = int(valid_frames[1])
    assert captured.probabilities[1, :, :, short:].abs().max() == 0
    torch.testing.assert_close(captured.probabilities.sum(-1), torch.ones(captured.probabilities.shape[:3]))


def test_hook_leaves_encoder_outputs_bit_identical(sdpa, batch):
    features, mask, _, _ = encoder_inputs(sdpa, batch)
    with torch.no_grad():
        plain = sdpa.tower(features, attention_mask=mask).last_hidden_state
        with LastLayerAttentionHook(sdpa.tower.layers[-1].self_attn) as hook:
            hooked = sdpa.tower(features, attention_mask=mask).last_hidden_state
    assert hook.calls == 1
    assert torch.equal(plain, hooked)
    assert torch.equal(sdpa.encode(batch).features, sdpa.encode(batch, attention=True).features)


def hook_count(layer):
    return len(layer._forward_pre_hooks) + len(layer.q_proj._forward_hooks) + len(layer.k_proj._forward_hooks)


def test_hook_is_removed_on_exit_and_on_error(sdpa, batch):
    layer = sdpa.tower.layers[-1].self_attn
    before = hook_count(layer)
    with LastLayerAttentionHook(layer):
        assert hook_count(layer) == before + 3
    assert hook_count(layer) == before
    with pytest.raises(KeyError):
        with LastLayerAttentionHook(layer):
            raise KeyError("boom")
    assert hook_count(layer) == before


def test_hook_that_never_fired_is_an_error(sdpa):
    with LastLayerAttentionHook(sdpa.tower.layers[-1].self_attn) as hook:
        pass
    with pytest.raises(RuntimeError, match="never fired"):
        hook.record()


def test_not_an_attention_layer_is_rejected():
    with pytest.raises(ValueError, match="q_proj"):
        LastLayerAttentionHook(torch.nn.Linear(4, 4))


def test_stats_equal_reduction_of_the_eager_map(eager, batch, band):
    features, mask, _, lengths = encoder_inputs(eager, batch)
    with torch.no_grad():
        reference = eager.tower(features, attention_mask=mask, output_attentions=True).attentions[-1]
    tokens = eager.encode(batch, attention=True)
    stats = tokens.attention.stats(tokens.lengths, frames_per_token=2, with_keys=True)
    full = tokens.attention.full()
    expected = samp.attention_stats(reference, lengths, 2, full.keys)
    valid = torch.arange(stats.received_attention.shape[1])[None] < lengths[:, None]
    # only the valid block is computed: equal where tokens are valid, zero elsewhere
    torch.testing.assert_close(stats.received_attention[valid], expected.received_attention[valid], atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(stats.self_attention[valid], expected.self_attention[valid], atol=1e-7, rtol=1e-6)
    assert stats.received_attention[~valid].abs().max() == 0 and stats.self_attention[~valid].abs().max() == 0
    assert torch.equal(stats.token_keys, expected.token_keys)
    assert stats.token_keys.shape == (2, features.shape[-1] // 4, 96 // 4)


def test_stats_of_an_unmasked_encoder_equal_the_full_reduction(batch, band):
    """Encoders that attend padded frames (GLM-ASR, Voxtral, Kimi): the softmax runs over the whole window."""
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "GlmAsrForConditionalGeneration"):
        pytest.skip(f"transformers {transformers.__version__} has no GlmAsrForConditionalGeneration")
    from samp.models.tiny import tiny_glm_asr

    adapter = adapter_for(*tiny_glm_asr(chunk_seconds=4))
    tokens = adapter.encode(batch, attention=True)
    stats = tokens.attention.stats(tokens.lengths, frames_per_token=4)
    expected = samp.attention_stats(tokens.attention.full().probabilities, tokens.lengths, 4)
    valid = torch.arange(stats.received_attention.shape[1])[None] < tokens.lengths[:, None]
    torch.testing.assert_close(stats.received_attention[valid], expected.received_attention[valid], atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(stats.self_attention[valid], expected.self_attention[valid], atol=1e-7, rtol=1e-6)


def test_stats_of_a_windowed_encoder_equal_the_full_reduction(batch, band):
    """Query-key pair masks (Qwen3-ASR attends within windows): the softmax runs over each query's window."""
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "Qwen3ASRForConditionalGeneration"):
        pytest.skip(f"transformers {transformers.__version__} has no Qwen3ASRForConditionalGeneration")
    from samp.models.tiny import tiny_qwen3_asr

    adapter = adapter_for(*tiny_qwen3_asr())
    tokens = adapter.encode(batch, attention=True)
    assert tokens.attention.key_padding_mask.dim() == 3
    p = tokens.frames_per_token
    stats = tokens.attention.stats(tokens.lengths, frames_per_token=p, tokens=tokens.features.shape[1])
    probabilities = tokens.attention.full(frames=p * tokens.features.shape[1]).probabilities
    expected = samp.attention_stats(probabilities, tokens.lengths, p)
    valid = torch.arange(stats.received_attention.shape[1])[None] < tokens.lengths[:, None]
    torch.testing.assert_close(stats.received_attention[valid], expected.received_attention[valid], atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(stats.self_attention[valid], expected.self_attention[valid], atol=1e-7, rtol=1e-6)
