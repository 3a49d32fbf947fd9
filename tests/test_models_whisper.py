"""Whisper adapter on tiny real-class Whispers (random weights): the call contract, what reaches the decoder, base
equals the stock generate bit for bit, batches, and the checks that come before any audio is encoded."""
import pytest
import torch

import samp
from samp.models import adapter_for
from samp.models.tiny import speechlike_waveform, tiny_whisper
from samp.models.whisper import WhisperAdapter

GREEDY = dict(max_new_tokens=12, do_sample=False)


@pytest.fixture(scope="module")
def multilingual():
    model, processor = tiny_whisper(multilingual=True, chunk_seconds=10)
    return model, processor, adapter_for(model, processor)


@pytest.fixture(scope="module")
def english():
    model, processor = tiny_whisper(multilingual=False, chunk_seconds=10)
    return model, processor, adapter_for(model, processor)


@pytest.fixture(scope="module")
def waves():
    return [speechlike_waveform(2.01, 1), speechlike_waveform(4.5, 2), speechlike_waveform(10.0, 3)]


def _stock(model, processor, waves, **kwargs):
    features = processor.feature_extractor(waves, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        return model.generate(features, **kwargs)


def test_adapter_for_picks_the_whisper_adapter(multilingual):
    assert isinstance(multilingual[2], WhisperAdapter)


@pytest.mark.parametrize("fixture, kwargs", [("multilingual", dict(language="en")),
                                             ("multilingual", dict(language="de", task="translate")),
                                             ("english", {})])
def test_base_batch_is_bit_identical_to_stock_generate(request, waves, fixture, kwargs):
    model, processor, adapter = request.getfixturevalue(fixture)
    result = adapter.generate(waves, method="base", keep_ratio=1.0, **kwargs, **GREEDY)
    assert torch.equal(result.sequences, _stock(model, processor, waves, **kwargs, **GREEDY))
    assert result.texts == processor.tokenizer.batch_decode(result.sequences, skip_special_tokens=True)
    # speech frames: ceil(mel frames / 2), the 10 s clip fills the window
    assert result.audio_tokens == [(101, 101), (225, 225), (500, 500)]
    assert all(t >= 0 for t in (result.timings.encode, result.timings.prefill, result.timings.decode))


def test_previous_text_prompt_is_the_stock_prompt_ids(multilingual, waves):
    model, processor, adapter = multilingual
    result = adapter.generate(waves[:2], "ten of clubs", language="en", method="base", keep_ratio=1.0, **GREEDY)
    prompt_ids = processor.tokenizer.get_prompt_ids("ten of clubs", return_tensors="pt")
    assert torch.equal(result.sequences, _stock(model, processor, waves[:2], language="en", prompt_ids=prompt_ids,
                                                **GREEDY))
    plain = adapter.generate(waves[:2], language="en", method="base", keep_ratio=1.0, **GREEDY)
    assert not torch.equal(plain.sequences, result.sequences)  # the prompt reached the decoder


def _decoder_inputs(adapter, run):
    """Run ``run()`` and return the encoder states and mask the first decoder layer cross-attends to."""
    seen = []

    def record(module, args, kwargs, output):  # after every pre-hook, so with the adapter's mask
        if not seen:
            seen.append((kwargs["key_value_states"].clone(), kwargs.get("attention_mask")))

    handle = adapter.decoder_layers[0].encoder_attn.register_forward_hook(record, with_kwargs=True)
    try:
        result = run()
    finally:
        handle.remove()
    return result, seen[0]


@pytest.mark.parametrize("method", ["uniform", "samp", "random"])
def test_speech_frames_are_compressed_and_the_padding_follows_unchanged(multilingual, waves, method):
    _, _, adapter = multilingual
    hidden = adapter.encode(waves[:2]).features
    result, (states, mask) = _decoder_inputs(adapter, lambda: adapter.generate(
        waves[:2], language="en", method=method, keep_ratio=0.4, **GREEDY))
    kept = [samp.keep_count(n, 0.4) for n in (101, 225)]
    assert result.audio_tokens == [(101, kept[0]), (225, kept[1])]
    lengths = [k + 500 - n for k, n in zip(kept, (101, 225))]
    assert states.shape[1] == max(lengths)
    for b, (k, n) in enumerate(zip(kept, (101, 225))):
        torch.testing.assert_close(states[b, k:lengths[b]], hidden[b, n:], rtol=0, atol=0)
        assert bool((states[b, lengths[b]:] == 0).all())
        assert bool((mask[b, 0, 0, :lengths[b]] == 0).all()) and bool((mask[b, 0, 0, lengths[b]:] < -1e30).all())


def test_uniform_keeps_segment_means_of_the_speech_frames(multilingual, waves):
    _, _, adapter = multilingual
    hidden = adapter.encode(waves[:1]).features
    _, (states, mask) = _decoder_inputs(adapter, lambda: adapter.generate(
        waves[:1], language="en", method="uniform", keep_ratio=0.5, **GREEDY))
    kept = samp.keep_count(101, 0.5)
    segments = torch.arange(101) * kept // 101
    means = torch.stack([hidden[0, :101][segments == s].mean(0) for s in range(kept)])
    torch.testing.assert_close(states[0, :kept], means, rtol=1e-5, atol=1e-6)
    assert mask is None  # one utterance: nothing padded, nothing masked


def test_whole_window_compresses_the_padding_too(multilingual, waves):
    _, _, adapter = multilingual
    result, (states, mask) = _decoder_inputs(adapter, lambda: adapter.generate(
        waves[:2], language="en", method="uniform", keep_ratio=0.25, window="whole", **GREEDY))
    assert result.audio_tokens == [(500, 125), (500, 125)]
    assert states.shape[1] == 125 and mask is None


@pytest.mark.parametrize("window", ["speech", "whole"])
def test_a_batch_decodes_as_its_utterances_alone(multilingual, waves, window):
    _, _, adapter = multilingual
    batch = adapter.generate(waves, language="en", method="samp", keep_ratio=0.25, window=window, **GREEDY)
    for b, wave in enumerate(waves):
        alone = adapter.generate([wave], language="en", method="samp", keep_ratio=0.25, window=window, **GREEDY)
        width = alone.sequences.shape[1]
        assert torch.equal(batch.sequences[b, :width], alone.sequences[0])
        assert batch.audio_tokens[b] == alone.audio_tokens[0]


def test_compression_changes_what_the_decoder_writes(multilingual, waves):
    """The tiny decoder must depend on the encoder states, or the equality tests above prove nothing."""
    _, _, adapter = multilingual
    base = adapter.generate(waves, language="en", method="base", keep_ratio=1.0, **GREEDY)
    kept = adapter.generate(waves, language="en", method="uniform", keep_ratio=0.15, **GREEDY)
    assert not torch.equal(base.sequences, kept.sequences)


def test_beam_search_runs_with_a_masked_batch(multilingual, waves):
    _, _, adapter = multilingual
    result = adapter.generate(waves[:2], language="en", method="uniform", keep_ratio=0.4, num_beams=2,
                              max_new_tokens=6)
    assert result.sequences.shape[0] == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(language="de"), "English-only; it cannot transcribe language='de'"),
    (dict(task="translate"), "English-only; task must be 'transcribe'"),
])
def test_english_only_checkpoint_refuses_other_languages(english, waves, kwargs, message):
    with pytest.raises(ValueError, match=message):
        english[2].generate(waves[:1], method="uniform", keep_ratio=0.5, **kwargs)


def test_english_only_accepts_english_by_any_name(english, waves):
    adapter = english[2]
    results = [adapter.generate(waves[:1], language=name, method="base", keep_ratio=1.0, **GREEDY).sequences
               for name in (None, "en", "English", "<|en|>")]
    assert all(torch.equal(r, results[0]) for r in results)


@pytest.mark.parametrize("kwargs, message", [
    (dict(language="xx"), "language 'xx' is not one this checkpoint knows; known: english, german"),
    (dict(language="en", task="summarise"), r"task must be one of \['transcribe', 'translate'\]"),
    (dict(language="en", window="padding"), r"window must be one of \('speech', 'whole'\)"),
    (dict(language="en", flavor="qwen2_audio"), "the SA-MAP reference never ran this model"),
    (dict(language="en", method="nope"), "nope"),
    (dict(language="en", method="base", keep_ratio=0.5), "keep_ratio=1.0"),
    (dict(language="en", encoder_outputs=None), "encoder_outputs is not an option of the Whisper adapter"),
    (dict(language="en", llm_pruning=None), "llm_pruning is not an option of the Whisper adapter"),
    (dict(language="en", method="fastv"), "'fastv' prunes inside the LLM, which the whisper adapter does not support: Whisper has no LLM"),
])
def test_bad_options_are_refused_before_encoding(multilingual, kwargs, message, monkeypatch):
    adapter = multilingual[2]
    monkeypatch.setattr(adapter, "encode", lambda *a, **k: pytest.fail("encoded before checking the options"))
    options = dict(method="uniform", keep_ratio=0.5) | kwargs
    with pytest.raises(ValueError, match=message):
        adapter.generate([speechlike_waveform(1.0, 0)], **options)


def test_prompt_must_be_text(multilingual):
    with pytest.raises(ValueError, match="prompt must be None or Whisper's previous-text prompt"):
        multilingual[2].generate([speechlike_waveform(1.0, 0)], ["a"], language="en", method="base", keep_ratio=1.0)


def test_audio_longer_than_the_window_is_refused(multilingual):
    with pytest.raises(ValueError, match="accepts at most 10 s"):
        multilingual[2].generate([speechlike_waveform(10.5, 0)], language="en", method="base", keep_ratio=1.0)


@pytest.mark.parametrize("method", [m.name for m in samp.methods.available("post-projector") if m.name != "base"])
def test_every_encoder_state_method_keeps_its_count(multilingual, waves, method):
    result = multilingual[2].generate(waves[:2], language="en", method=method, keep_ratio=0.3, max_new_tokens=3)
    assert result.audio_tokens == [(n, samp.keep_count(n, 0.3)) for n in (101, 225)]
