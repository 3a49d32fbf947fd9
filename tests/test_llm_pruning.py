"""In-LLM pruning hooks (FastV, DART inside the LLM) against an explicit reference loop on a tiny real Qwen2.

The reference runs the stock decoder layers one by one without a cache: every token through layers < K, then the
kept prompt positions plus every decoded token (original positions) through layers >= K. Its kept set comes from
what the stock model exposes — eager attention probabilities (``output_attentions``) and the cache's post-RoPE
keys — not from the hooks' recomputation.
"""
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

import samp
from models_checks import embedded, reference_logits
from samp.methods.in_llm import dart_llm_keep, fastv_keep, fastv_scores
from samp.models.llm_pruning import LLMPruning, prune_in_llm
from samp.models.tiny import seeded_init_

LAYERS, SPAN, LENGTH, STEPS = 4, (3, 19), 24, 6


def tiny_qwen2(attn_implementation):
    config = Qwen2Config(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=LAYERS,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rope_theta=10000.0, tie_word_embeddings=False, eos_token_id=None, pad_token_id=0)
    model = Qwen2ForCausalLM._from_config(config, attn_implementation=attn_implementation)
    seeded_init_(model, canonical=lambda name: name)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()


@pytest.fixture(scope="module")
def prompt():
    return torch.randint(1, 96, (1, LENGTH), generator=torch.Generator().manual_seed(0))


def reference_kept(eager, ids, pruning):
    """Kept prompt positions from the stock model's own eager attention probabilities / cached keys."""
    start, stop = SPAN
    count = samp.keep_count(stop - start, pruning.keep_ratio)
    with torch.no_grad():
        out = eager(ids, output_attentions=True, output_hidden_states=True, use_cache=True)
    if pruning.method == "fastv":
        probabilities = out.attentions[pruning.layer - 1][0]  # [H, L, L]
        rows = probabilities[:, -1:] if pruning.rows == "last" else probabilities
        scores = rows[:, :, start:stop].mean(dim=(0, 1))
        chosen = torch.sort(torch.sort(scores, descending=True, stable=True).indices[:count]).values
    else:
        cache = getattr(out, "cache", None) or out.past_key_values
        layer_cache = cache.layers[pruning.layer - 1] if hasattr(cache, "layers") else None
        keys = layer_cache.keys if layer_cache is not None else cache.key_cache[pruning.layer - 1]
        keys = keys.repeat_interleave(2, dim=1)[0].transpose(0, 1).reshape(LENGTH, -1)
        normed = eager.model.norm(out.hidden_states[pruning.layer])[0]
        chosen = dart_llm_keep(keys, normed, start, stop, count, pruning.audio_pivots, pruning.text_pivots)
    return torch.cat([torch.arange(start), start + chosen, torch.arange(stop, LENGTH)])


def twin(model, attn_implementation):
    other = tiny_qwen2(attn_implementation)
    other.load_state_dict(model.state_dict())
    return other


PRUNINGS = [
    LLMPruning("fastv", keep_ratio=0.5, layer=2),
    LLMPruning("fastv", keep_ratio=0.3, layer=1, rows="mean"),
    LLMPruning("fastv", keep_ratio=0.5, layer=3),
    LLMPruning("dart-llm", keep_ratio=0.5, layer=2),
    LLMPruning("dart-llm", keep_ratio=0.4, layer=1, audio_pivots=2, text_pivots=0),
]


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("pruning", PRUNINGS, ids=lambda p: f"{p.method}-{p.rows}-K{p.layer}-{p.keep_ratio}")
def test_prefill_logits_equal_the_reference_loop(attn_implementation, pruning, prompt):
    model = tiny_qwen2(attn_implementation)
    kept = reference_kept(twin(model, "eager"), prompt, pruning)
    with torch.no_grad():
        with prune_in_llm(model, pruning, span=SPAN) as hooks:
            logits = model(prompt).logits
        expected = reference_logits(model, embedded(model, prompt), pruning.layer, kept, LENGTH)
        unpruned = model(prompt).logits
    assert hooks.kept.tolist() == kept.tolist()
    assert logits.shape == (1, kept.numel(), 96)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert float((logits[0, -1] - unpruned[0, -1]).abs().max()) > 1e-3, "pruning must change the logits"


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("pruning", [PRUNINGS[0], PRUNINGS[3]], ids=lambda p: p.method)
def test_cached_generate_equals_a_no_cache_run_with_the_same_kept_tokens(attn_implementation, pruning, prompt):
    model = tiny_qwen2(attn_implementation)
    with torch.no_grad():
        with prune_in_llm(model, pruning, span=SPAN) as hooks:
            out = model.generate(prompt, max_new_tokens=STEPS, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True)
        tokens = prompt
        for step in range(STEPS):
            logits = reference_logits(model, embedded(model, tokens), pruning.layer, hooks.kept, LENGTH)[:, -1]
            torch.testing.assert_close(out.logits[step], logits, atol=1e-4, rtol=1e-4)
            tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    assert out.sequences.tolist() == tokens.tolist()


def test_keeping_every_token_changes_nothing(prompt):
    model = tiny_qwen2("sdpa")
    with torch.no_grad():
        with prune_in_llm(model, LLMPruning("fastv", keep_ratio=1.0), span=SPAN) as hooks:
            logits = model(prompt).logits
        torch.testing.assert_close(logits, model(prompt).logits, atol=1e-5, rtol=1e-5)
    assert hooks.kept.tolist() == list(range(LENGTH))


def test_placeholder_id_marks_the_span(prompt):
    model = tiny_qwen2("sdpa")
    ids = prompt.clone()
    ids[0, SPAN[0]:SPAN[1]] = 95
    ids[0, :SPAN[0]] = 1
    ids[0, SPAN[1]:] = 2
    pruning = LLMPruning("fastv", keep_ratio=0.5)
    with torch.no_grad():
        with prune_in_llm(model, pruning, placeholder_id=95) as by_id:
            model(ids)
        with prune_in_llm(model, pruning, span=SPAN) as by_span:
            model(ids)
    assert by_id.kept.tolist() == by_span.kept.tolist()
    assert by_id.kept.numel() == LENGTH - 8


# --- the selection rules on the spec's examples (spec/new-methods.md §3.4(c), §2.3(c)) ---

def test_f1_last_row_head_mean():
    row = torch.tensor([[[0.4, 0.1, 0.2, 0.05, 0.05, 0.2]], [[0.3, 0.05, 0.05, 0.3, 0.1, 0.2]]])  # [H=2, Q=1, L=6]
    scores = fastv_scores(row, 1, 5)
    torch.testing.assert_close(scores, torch.tensor([0.075, 0.125, 0.175, 0.075]))
    assert (1 + fastv_keep(scores, 2)).tolist() == [2, 3]  # new sequence [0, 2, 3, 5]


def test_f3_last_row_against_every_row():
    rows = torch.tensor([[1, 0, 0, 0, 0], [0.5, 0.5, 0, 0, 0], [0.2, 0.7, 0.1, 0, 0], [0.1, 0.6, 0.1, 0.2, 0],
                         [0.4, 0.1, 0.2, 0.25, 0.05]])[None]
    assert (1 + fastv_keep(fastv_scores(rows[:, -1:], 1, 4), 1)).tolist() == [3]  # the code's rule
    torch.testing.assert_close(fastv_scores(rows, 1, 4), torch.tensor([0.38, 0.08, 0.09]))
    assert (1 + fastv_keep(fastv_scores(rows, 1, 4), 1)).tolist() == [1]  # the paper's rule


def test_f2_keep_counts_are_samps_rule():
    assert [samp.keep_count(n, 1 - r) for n, r in [(5, 0.5), (7, 0.5), (6, 0.75)]] == [3, 4, 2]


def test_d2_text_pivots_share_the_quota():
    # span 0..3, text 4..5; pivot scores (key L1): audio pivot 0, text pivot 5; similarity features as in D2
    hidden = torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0.6, 0.8], [0.3, 0.3], [0, -1]])
    keys = torch.tensor([[5.0], [1], [1], [1], [0], [2]])
    # T = 3: R = 2 over pivots 0 then 5; 0 takes 1 (cos −1), 5 takes 2 (cos −1 beats −.8)
    assert dart_llm_keep(keys, hidden, 0, 4, 3, audio_pivots=1, text_pivots=1).tolist() == [0, 1, 2]


# --- what cannot be hooked or is not supported ---

def test_bad_settings():
    with pytest.raises(ValueError, match="layer must be an int >= 1"):
        LLMPruning("fastv", keep_ratio=0.5, layer=0)
    with pytest.raises(ValueError, match="unknown in-LLM method 'tome'"):
        LLMPruning("tome", keep_ratio=0.5)
    with pytest.raises(ValueError, match="rows must be one of last, mean"):
        LLMPruning("fastv", keep_ratio=0.5, rows="first")
    with pytest.raises(ValueError, match=r"keep_ratio must be in \(0, 1\]"):
        LLMPruning("fastv", keep_ratio=0.0)
    with pytest.raises(ValueError, match="below the LLM's 4 decoder layers"):
        prune_in_llm(tiny_qwen2("sdpa"), LLMPruning("fastv", keep_ratio=0.5, layer=4), span=SPAN)


def test_batch_of_two_is_refused(prompt):
    model = tiny_qwen2("sdpa")
    with pytest.raises(ValueError, match="one prompt at a time"):
        with torch.no_grad(), prune_in_llm(model, LLMPruning("fastv", keep_ratio=0.5), span=SPAN):
            model(prompt.repeat(2, 1))


def test_static_cache_is_refused(prompt):
    model = tiny_qwen2("sdpa")
    with pytest.raises(ValueError, match="needs a DynamicCache"):
        with torch.no_grad(), prune_in_llm(model, LLMPruning("fastv", keep_ratio=0.5), span=SPAN):
            model.generate(prompt, max_new_tokens=2, do_sample=False, cache_implementation="static")


def test_a_model_without_stock_decoder_layers_is_refused():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=64))
    with pytest.raises(ValueError, match="no decoder with embed_tokens"):
        prune_in_llm(gpt2, LLMPruning("fastv", keep_ratio=0.5), span=(0, 4))


# --- through adapter.generate -----------------------------------------------------------------------------------

PROMPT = "<|audio_bos|><|AUDIO|><|audio_eos|>Transcribe:"


@pytest.fixture(scope="module")
def audio_llm():
    from samp.models import adapter_for
    from samp.models.tiny import speechlike_waveform, tiny_qwen2_audio

    model, processor = tiny_qwen2_audio(chunk_seconds=4)  # its Qwen2 LM has 2 layers: K = 1
    return model, adapter_for(model, processor), [speechlike_waveform(2.5, 0), speechlike_waveform(3.3, 1)]


@pytest.mark.parametrize("method", ["fastv", "dart-llm"])
def test_generate_prunes_each_utterance_as_if_alone(audio_llm, method):
    model, adapter, waves = audio_llm
    pruning = LLMPruning(method, keep_ratio=0.5, layer=1)
    together = adapter.generate(waves, PROMPT, method="base", keep_ratio=1.0, llm_pruning=pruning,
                                max_new_tokens=4, do_sample=False)
    plain = adapter.generate(waves, PROMPT, method="base", keep_ratio=1.0, max_new_tokens=4, do_sample=False)
    for b, wave in enumerate(waves):
        alone = adapter.generate([wave], PROMPT, method="base", keep_ratio=1.0, llm_pruning=pruning,
                                 max_new_tokens=4, do_sample=False)
        assert together.sequences[b].tolist() == alone.sequences[0].tolist()
    assert together.sequences.tolist() != plain.sequences.tolist(), "pruning inside the LLM must change the output"


def test_generate_composes_a_post_projector_method_with_in_llm_pruning(audio_llm):
    model, adapter, waves = audio_llm
    seen = []
    with prune_in_llm(model, LLMPruning("fastv", keep_ratio=0.5, layer=1), span=(0, 1)) as probe:
        pass  # the decoder this finds is the one the adapter's generate hooks
    handle = probe.decoder.layers[1].register_forward_hook(
        lambda module, args, out: seen.append((out[0] if isinstance(out, tuple) else out).shape[1]))
    try:
        result = adapter.generate([waves[1]], PROMPT, method="divprune", keep_ratio=0.5,
                                  llm_pruning=LLMPruning("fastv", keep_ratio=0.5, layer=1), max_new_tokens=2,
                                  do_sample=False)
    finally:
        handle.remove()
    before, after = result.audio_tokens[0]
    projected = samp.keep_count(before, 0.5)
    assert after == samp.keep_count(projected, 0.5)  # what the layers from K on see
    prompt_length = len(adapter.build_inputs(PROMPT, [projected]).input_ids[0])
    # layer 1 runs on the prompt less the audio tokens FastV dropped from divprune's, then on one decoded token
    assert seen == [prompt_length - (projected - after), 1]


def test_in_llm_methods_are_listed_by_kind_and_refused_by_compress():
    assert [spec.name for spec in samp.methods.available("in-llm")] == ["fastv", "dart-llm"]
    assert "fastv" not in [spec.name for spec in samp.methods.available("post-projector")]
    with pytest.raises(ValueError, match="method 'fastv' prunes inside the LLM"):
        samp.compress(torch.ones(1, 4, 2), [4], method="fastv", keep_ratio=0.5)
    with pytest.raises(ValueError, match="unknown kind 'inside'"):
        samp.methods.available("inside")


def test_generate_refuses_bad_in_llm_settings_before_encoding(audio_llm):
    model, adapter, waves = audio_llm
    with pytest.raises(ValueError, match="below the LLM's 2 decoder layers; got 2"):
        adapter.generate(["not audio"], PROMPT, method="fastv", keep_ratio=0.5)  # default K = 2
    with pytest.raises(ValueError, match="already prunes inside the LLM"):
        adapter.generate(["not audio"], PROMPT, method="fastv", keep_ratio=0.5,
                         llm_pruning=LLMPruning("fastv", keep_ratio=0.5, layer=1))


def test_an_attention_implementation_that_cannot_be_hooked_is_refused():
    model = tiny_qwen2("flex_attention")  # its masks are BlockMask objects, which cannot be gathered
    with pytest.raises(ValueError, match="attention implementation 'flex_attention' cannot be hooked"):
        prune_in_llm(model, LLMPruning("fastv", keep_ratio=0.5), span=SPAN)
