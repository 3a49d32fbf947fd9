"""Voxtral and AudioFlamingo3 adapters (where the installed transformers has them) on tiny seeded models."""
import pytest
import torch
import transformers

from samp.models import adapter_for
from samp.models.tiny import speechlike_waveform, tiny_audioflamingo3, tiny_voxtral

FAMILIES = {
    "voxtral": (tiny_voxtral, "VoxtralForConditionalGeneration", "<|im_start|>[AUDIO]Transcribe:<|im_end|>", {}),
    "audioflamingo3": (tiny_audioflamingo3, "AudioFlamingo3ForConditionalGeneration",
                       "<|im_start|><sound>Transcribe:<|im_end|>", {"needs_mask": True}),
}
GREEDY = dict(max_new_tokens=10, do_sample=False)


def family_params():
    for name, (build, cls, prompt, extra) in FAMILIES.items():
        mark = pytest.mark.skipif(not hasattr(transformers, cls),
                                  reason=f"transformers {transformers.__version__} has no {cls}")
        yield pytest.param(name, marks=mark, id=name)


@pytest.fixture(scope="module")
def waves():
    return [speechlike_waveform(2.52, 11), speechlike_waveform(3.3, 22)]


@pytest.fixture(scope="module", params=list(family_params()))
def family(request):
    build, _, prompt, extra = FAMILIES[request.param]
    model, processor = build(chunk_seconds=4)
    return model, adapter_for(model, processor), prompt, extra


def stock_new_tokens(model, adapter, prompt, wave, count, extra):
    inputs = adapter.build_inputs(prompt, [count])  # the expanded prompt a processor would produce
    features, mel_mask = adapter.features([wave], 16000)
    kwargs = {"input_features": features} | ({"input_features_mask": mel_mask} if extra.get("needs_mask") else {})
    with torch.no_grad():
        out = model.generate(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, **kwargs, **GREEDY)
    return out[:, inputs.input_ids.shape[1]:]


def test_base_is_bit_identical_to_stock_generate(family, waves):
    model, adapter, prompt, extra = family
    for wave in waves:
        result = adapter.generate([wave], prompt, method="base", keep_ratio=1.0, **GREEDY)
        n = result.audio_tokens[0][0]
        assert torch.equal(result.sequences, stock_new_tokens(model, adapter, prompt, wave, n, extra))


def test_compressed_batch_equals_single_runs(family, waves):
    _, adapter, prompt, _ = family
    batch = adapter.generate(waves, prompt, method="samp", keep_ratio=0.5, **GREEDY)
    for b, wave in enumerate(waves):
        single = adapter.generate([wave], prompt, method="samp", keep_ratio=0.5, **GREEDY)
        assert single.audio_tokens[0] == batch.audio_tokens[b]
        assert single.sequences[0].tolist() == batch.sequences[b][: single.sequences.shape[1]].tolist()


def test_hook_probabilities_match_eager(family, waves):
    model, adapter, _, extra = family
    build = FAMILIES[adapter.family][0]
    eager_model, processor = build(chunk_seconds=4, attn_implementation="eager")
    eager = adapter_for(eager_model, processor)
    features, mel_mask = eager.features(waves, 16000)
    kwargs = {"input_features_mask": mel_mask} if extra.get("needs_mask") else {}
    with torch.no_grad():
        reference = eager.tower(features, output_attentions=True, **kwargs).attentions[-1]
    torch.testing.assert_close(eager.encode(waves, attention=True).attention.full().probabilities, reference,
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(adapter.encode(waves, attention=True).attention.full().probabilities, reference,
                               atol=1e-5, rtol=0)


def test_reference_flavours_do_not_apply(family, waves):
    _, adapter, prompt, _ = family
    with pytest.raises(ValueError, match="does not apply"):
        adapter.generate([waves[0]], prompt, method="samp", flavor="qwen2_audio")
