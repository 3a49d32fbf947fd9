"""Qwen2-Audio adapter on a tiny seeded model: stock equivalence, compression at prefill, bad input."""
import re

import numpy as np
import pytest
import torch

import samp
from samp.models import adapter_for
from samp.models.base import submodule
from samp.models.qwen2_audio import Qwen2AudioAdapter
from samp.models.tiny import speechlike_waveform, tiny_qwen2_audio
from models_checks import audio_logit_shift, stock_new_tokens

PROMPT = "<|audio_bos|><|AUDIO|><|audio_eos|>Detect the language and recognize the speech: <|en|>"
GREEDY = dict(max_new_tokens=12, do_sample=False)


@pytest.fixture(scope="module")
def tiny():
    model, processor = tiny_qwen2_audio(chunk_seconds=4)
    return model, processor, adapter_for(model, processor)


@pytest.fixture(scope="module")
def waves():
    return [speechlike_waveform(2.52, 11), speechlike_waveform(3.3, 22)]


def test_adapter_for_picks_the_qwen2_audio_adapter(tiny):
    assert isinstance(tiny[2], Qwen2AudioAdapter)


@pytest.mark.parametrize("index", [0, 1])
def test_base_is_bit_identical_to_stock_generate(tiny, waves, index):
    model, processor, adapter = tiny
    result = adapter.generate([waves[index]], PROMPT, method="base", keep_ratio=1.0, **GREEDY)
    expected = stock_new_tokens(model, processor, PROMPT, waves[index], **GREEDY)
    assert torch.equal(result.sequences, expected)
    n = result.audio_tokens[0][0]
    assert result.audio_tokens == [(n, n)]
    assert n == {0: 63, 1: 82}[index]  # ((L_mel-1)//2+1-2)//2+1 for 2.52 s and 3.3 s


def test_base_first_step_logits_equal_stock(tiny, waves):
    model, processor, adapter = tiny
    captured = []
    kwargs = dict(max_new_tokens=1, do_sample=False, output_logits=True, return_dict_in_generate=True)
    inputs = processor(text=PROMPT, audio=waves[0], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        stock = model.generate(**inputs, **kwargs).logits[0]
    handle = model.register_forward_hook(lambda m, a, o: captured.append(o.logits[:, -1].clone()))
    try:
        adapter.generate([waves[0]], PROMPT, method="base", keep_ratio=1.0, max_new_tokens=1, do_sample=False)
    finally:
        handle.remove()
    assert torch.equal(captured[0], stock)


def test_left_padded_batch_with_different_kept_counts_equals_single_runs(tiny, waves):
    _, _, adapter = tiny
    batch = adapter.generate(waves, PROMPT, method="uniform", keep_ratio=0.5, **GREEDY)
    (n0, k0), (n1, k1) = batch.audio_tokens
    assert (k0, k1) == (samp.keep_count(n0, 0.5), samp.keep_count(n1, 0.5)) and k0 != k1
    for b, wave in enumerate(waves):
        single = adapter.generate([wave], PROMPT, method="uniform", keep_ratio=0.5, **GREEDY)
        assert single.sequences[0].tolist() == batch.sequences[b].tolist()
    assert len(batch.texts) == 2 and all(isinstance(t, str) for t in batch.texts)


def test_prompt_holds_exactly_as_many_placeholders_as_kept_tokens(tiny, waves):
    model, processor, adapter = tiny
    seen = []
    handle = model.get_input_embeddings().register_forward_hook(lambda m, a, o: seen.append(a[0].clone()))
    try:
        result = adapter.generate([waves[1]], PROMPT, method="samp", keep_ratio=0.4, **GREEDY)
    finally:
        handle.remove()
    placeholder = processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    kept = result.audio_tokens[0][1]
    assert kept == samp.keep_count(82, 0.4) or kept < 82  # samp may keep fewer groups than asked
    assert int((seen[0] == placeholder).sum()) == kept
    assert all(int((ids == placeholder).sum()) == 0 for ids in seen[1:])  # decode steps carry no audio


def test_compressed_rows_reach_the_language_model(tiny, waves):
    model, _, adapter = tiny
    tokens = adapter.encode([waves[0]], attention=True)
    kept = adapter.compress(tokens, method="samp", keep_ratio=0.5, threshold=0.85, flavor="samp", seed=0)
    inputs = adapter.build_inputs(PROMPT, kept.counts)
    rows = adapter._scatter_rows(inputs, kept.rows)
    seen = []
    language_model = submodule(model, "language_model")
    handle = language_model.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["inputs_embeds"].clone()), with_kwargs=True
    )
    try:
        adapter._generate_with_rows(inputs, rows, dict(max_new_tokens=1, do_sample=False))
    finally:
        handle.remove()
    assert kept.counts[0] < int(tokens.lengths[0])
    assert torch.equal(seen[0][0][inputs.audio_rows[0]], kept.rows[0])


def test_audio_rows_change_the_logits(tiny, waves):
    """Guards against a tiny model that ignores its audio (then every equivalence test would be vacuous)."""
    model, _, adapter = tiny
    assert audio_logit_shift(model, adapter, PROMPT, waves[0]) > 0.5


def test_timings_and_texts_are_reported(tiny, waves):
    result = tiny[2].generate([waves[0]], PROMPT, method="base", keep_ratio=1.0, **GREEDY)
    t = result.timings
    assert min(t.encode, t.compress, t.prefill, t.decode) >= 0 and t.prefill > 0
    assert result.texts == tiny[1].tokenizer.batch_decode(result.sequences, skip_special_tokens=True)


@pytest.mark.parametrize(
    "audios, match",
    [
        ([np.zeros((2, 1600), np.float32)], "1-D"),
        ([np.zeros(0, np.float32)], "empty"),
        ([np.full(1600, np.nan, np.float32)], "NaN"),
        ([np.zeros(1600, np.int16)], "floats"),
        ([np.zeros(16000 * 5, np.float32)], "at most 4 s"),
        (np.zeros(1600, np.float32), "list"),
        ([], "non-empty"),
    ],
)
def test_bad_waveforms_are_rejected(tiny, audios, match):
    with pytest.raises(ValueError, match=match):
        tiny[2].generate(audios, PROMPT, method="base", keep_ratio=1.0)


def test_wrong_sampling_rate_is_rejected(tiny, waves):
    with pytest.raises(ValueError, match="8000"):
        tiny[2].generate([waves[0]], PROMPT, method="base", keep_ratio=1.0, sampling_rate=8000)


@pytest.mark.parametrize("prompt", ["Transcribe:", "<|AUDIO|> and <|AUDIO|>"])
def test_prompt_needs_exactly_one_placeholder(tiny, waves, prompt):
    with pytest.raises(ValueError, match="exactly one"):
        tiny[2].generate([waves[0]], prompt, method="base", keep_ratio=1.0)


def test_prompt_without_the_audio_tags_is_rejected(tiny, waves):
    # the committed speech_tiny model answers garbage to '<|AUDIO|>Transcribe the speech.': refused, not silent
    expected = re.escape("Qwen2-Audio takes its audio as '<|audio_bos|><|AUDIO|><|audio_eos|>'")
    with pytest.raises(ValueError, match=expected):
        tiny[2].generate([waves[0]], "<|AUDIO|>Transcribe the speech.", method="base", keep_ratio=1.0)


def test_unknown_method_and_foreign_flavor_are_rejected(tiny, waves):
    with pytest.raises(ValueError, match="unknown method"):
        tiny[2].generate([waves[0]], PROMPT, method="nope")
    with pytest.raises(ValueError, match="glm_asr"):
        tiny[2].generate([waves[0]], PROMPT, method="samp", flavor="glm_asr")


def test_unsupported_model_class_is_rejected(tiny):
    with pytest.raises(ValueError, match="no samp adapter for Linear"):
        adapter_for(torch.nn.Linear(2, 2), tiny[1])


def test_processor_with_another_window_is_rejected():
    model, _ = tiny_qwen2_audio(chunk_seconds=4)
    _, processor30 = tiny_qwen2_audio(chunk_seconds=30)
    with pytest.raises(ValueError, match="do not belong together"):
        adapter_for(model, processor30)


@pytest.mark.parametrize("method", [spec.name for spec in samp.methods.available("post-projector")
                                    if spec.name != "base"])
def test_every_method_runs_end_to_end_on_a_batch(tiny, waves, method):
    result = tiny[2].generate(waves, PROMPT, method=method, keep_ratio=0.5, max_new_tokens=2, do_sample=False)
    assert [n for n, _ in result.audio_tokens] == [63, 82]
    assert all(1 <= k <= samp.keep_count(n, 0.5) for n, k in result.audio_tokens)
    assert result.sequences.shape[0] == 2


def test_bfloat16_base_is_bit_identical_to_stock_generate(waves):
    model, processor = tiny_qwen2_audio(chunk_seconds=4)
    model = model.to(torch.bfloat16)
    adapter = adapter_for(model, processor)
    result = adapter.generate([waves[0]], PROMPT, method="base", keep_ratio=1.0, **GREEDY)
    inputs = processor(text=PROMPT, audio=waves[0], sampling_rate=16000, return_tensors="pt")
    inputs["input_features"] = inputs["input_features"].to(torch.bfloat16)
    with torch.no_grad():
        stock = model.generate(**inputs, **GREEDY)[:, inputs["input_ids"].shape[1]:]
    assert torch.equal(result.sequences, stock)


def test_beam_search_base_is_bit_identical_to_stock(tiny, waves):
    model, processor, adapter = tiny
    kwargs = dict(max_new_tokens=6, num_beams=2, do_sample=False)
    result = adapter.generate([waves[0]], PROMPT, method="base", keep_ratio=1.0, **kwargs)
    assert torch.equal(result.sequences, stock_new_tokens(model, processor, PROMPT, waves[0], **kwargs))


def test_tokenizer_special_tokens_are_added_as_the_stock_processor_adds_them(waves):
    """A tokenizer that prepends a BOS (Llama-style): the adapter's prompt ids must carry it exactly like the stock
    processor's, or base would not be bit-identical on such checkpoints."""
    from tokenizers.processors import TemplateProcessing

    model, processor = tiny_qwen2_audio(chunk_seconds=4)
    bos = processor.tokenizer.convert_tokens_to_ids("<|im_start|>")
    processor.tokenizer._tokenizer.post_processor = TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos)])
    adapter = adapter_for(model, processor)
    assert adapter.build_inputs(PROMPT, [3]).input_ids[0, 0] == bos
    result = adapter.generate([waves[0]], PROMPT, method="base", keep_ratio=1.0, **GREEDY)
    assert torch.equal(result.sequences, stock_new_tokens(model, processor, PROMPT, waves[0], **GREEDY))
