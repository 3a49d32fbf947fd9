"""In-LLM pruning on every decoder-only adapter's LLM (Qwen2, Llama, Qwen3 decoders), from the adapter's own prefill
embeddings: the hooks' kept set against the stock eager attention, prefill logits and cached greedy decoding against
an explicit no-cache reference loop over the stock decoder layers, and batch = each utterance alone."""
import inspect

import pytest
import torch
import transformers

import samp
from models_checks import audio_prefill, reference_logits
from samp.models import LLMPruning, adapter_for
from samp.models import tiny
from samp.models.llm_pruning import find_decoder, prune_in_llm
from samp.models.tiny import speechlike_waveform

FAMILIES = {
    "qwen2_audio": (tiny.tiny_qwen2_audio, "Qwen2AudioForConditionalGeneration",
                    "<|audio_bos|><|AUDIO|><|audio_eos|>Transcribe:"),
    "glm_asr": (tiny.tiny_glm_asr, "GlmAsrForConditionalGeneration",
                "<|user|>\n<|begin_of_audio|><|pad|><|end_of_audio|>Please transcribe this audio into text"
                "<|assistant|>\n"),
    "voxtral": (tiny.tiny_voxtral, "VoxtralForConditionalGeneration", "<|im_start|>[AUDIO]Transcribe:<|im_end|>"),
    "audioflamingo3": (tiny.tiny_audioflamingo3, "AudioFlamingo3ForConditionalGeneration",
                       "<|im_start|><sound>Transcribe:<|im_end|>"),
    "qwen3_asr": (tiny.tiny_qwen3_asr, "Qwen3ASRForConditionalGeneration",
                  "<|im_start|><|audio_start|><|audio_pad|><|audio_end|>Transcribe:<|im_end|>"),
}
STEPS = 4


def family_params():
    for name, (_, cls, _) in FAMILIES.items():
        mark = pytest.mark.skipif(not hasattr(transformers, cls),
                                  reason=f"transformers {transformers.__version__} has no {cls}")
        yield pytest.param(name, marks=mark, id=name)


@pytest.fixture(scope="module", params=list(family_params()))
def family(request):
    build, _, prompt = FAMILIES[request.param]
    model, processor = build() if request.param == "qwen3_asr" else build(chunk_seconds=4)
    return model, adapter_for(model, processor), prompt


@pytest.fixture(scope="module")
def waves():
    return [speechlike_waveform(2.52, 11), speechlike_waveform(3.3, 22)]


def prefill_embeddings(model, adapter, prompt, wave):
    inputs, rows, embeds = audio_prefill(model, adapter, prompt, wave)
    audio = torch.nonzero(inputs.audio_rows[0]).squeeze(1)
    return torch.where(inputs.audio_rows[..., None], rows, embeds), (int(audio[0]), int(audio[-1]) + 1)


def stock_fastv_kept(model, embeds, span, keep_ratio, layer=1):
    """FastV's kept prompt positions from the stock eager attention probabilities of layer ``layer − 1``."""
    decoder = find_decoder(model)
    start, stop = span

    def switch(implementation):  # 4.x reads the decoder config's choice at every forward
        if hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(implementation)
        else:
            decoder.config._attn_implementation = implementation

    switch("eager")
    try:
        with torch.no_grad():
            probabilities = decoder(inputs_embeds=embeds, output_attentions=True).attentions[layer - 1][0]
    finally:
        switch("sdpa")
    scores = probabilities[:, -1, start:stop].mean(0)
    count = samp.keep_count(stop - start, keep_ratio)
    chosen = torch.sort(torch.sort(scores, descending=True, stable=True).indices[:count]).values
    return torch.cat([torch.arange(start), start + chosen, torch.arange(stop, embeds.shape[1])])


def test_prefill_and_cached_decoding_equal_the_reference_loop(family, waves):
    model, adapter, prompt = family
    embeds, span = prefill_embeddings(model, adapter, prompt, waves[1])
    length = embeds.shape[1]
    pruning = LLMPruning("fastv", keep_ratio=0.5, layer=1)
    kept = stock_fastv_kept(model, embeds, span, pruning.keep_ratio)
    decoder, head = find_decoder(model), model.get_output_embeddings()
    with torch.no_grad():
        with prune_in_llm(model, pruning, span=span) as hooks:
            logits = head(decoder(inputs_embeds=embeds).last_hidden_state)
        assert hooks.kept.tolist() == kept.tolist()
        torch.testing.assert_close(logits, reference_logits(model, embeds, 1, kept, length), atol=1e-4, rtol=1e-4)
        # cached greedy decoding through the decoder's own cache, against the reference without one
        cache_name = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
        steps, tokens = [], []
        with prune_in_llm(model, pruning, span=span):
            out = decoder(inputs_embeds=embeds, use_cache=True)
            for step in range(STEPS):
                steps.append(head(out.last_hidden_state[:, -1:]))
                tokens.append(steps[-1].argmax(-1))
                cache = getattr(out, "cache", None) or out.past_key_values
                out = decoder(inputs_embeds=model.get_input_embeddings()(tokens[-1]),
                              position_ids=torch.tensor([[length + step]]),
                              attention_mask=torch.ones(1, length + step + 1, dtype=torch.long), use_cache=True,
                              **{cache_name: cache})
        sequence = embeds
        for step in range(STEPS):
            expected = reference_logits(model, sequence, 1, kept, length)[:, -1:]
            torch.testing.assert_close(steps[step], expected, atol=1e-4, rtol=1e-4)
            sequence = torch.cat([sequence, model.get_input_embeddings()(tokens[step])], dim=1)


@pytest.mark.parametrize("method", ["fastv", "dart-llm"])
def test_generate_batch_equals_each_utterance_alone(family, waves, method):
    _, adapter, prompt = family
    pruning = LLMPruning(method, keep_ratio=0.5, layer=1)
    together = adapter.generate(waves, prompt, method="base", keep_ratio=1.0, llm_pruning=pruning,
                                max_new_tokens=STEPS, do_sample=False)
    for b, wave in enumerate(waves):
        alone = adapter.generate([wave], prompt, method="base", keep_ratio=1.0, llm_pruning=pruning,
                                 max_new_tokens=STEPS, do_sample=False)
        assert together.audio_tokens[b] == alone.audio_tokens[0]
        if adapter.family != "qwen3_asr":  # Qwen3-ASR pads the mel to the batch's longest clip: its tokens differ
            assert together.sequences[b, :alone.sequences.shape[1]].tolist() == alone.sequences[0].tolist()


def test_kimi_audio_refuses_in_llm_methods_before_encoding():
    model, processor = tiny.tiny_kimi_audio()
    with pytest.raises(ValueError, match="'fastv' prunes inside the LLM, which the kimi_audio adapter does not support"):
        adapter_for(model, processor).generate(["not audio"], "q<audio>", method="fastv", keep_ratio=0.5)
