"""Tiny real-architecture speech LLMs for tests and benchmarks, built offline in milliseconds.

Every builder instantiates the stock transformers classes from an explicit config (every field that changed default
across versions is spelled out) and fills the weights with :func:`seeded_init_`: each parameter is drawn from a
generator seeded with ``crc32`` of its canonical name, so the same model comes out on every transformers version in
the tox matrix (4.x keeps the language model under ``language_model.model``, 5.10+ under ``model.language_model``;
canonical names remove that difference). Weights are large (about 0.3 of unit scale per layer input) on purpose:
with the default 0.02 init tiny models decode one repeated token and "identical output" tests prove nothing.

    model, processor = tiny_qwen2_audio()          # Qwen2AudioForConditionalGeneration + Qwen2AudioProcessor
    model, processor = tiny_glm_asr()              # GlmAsrForConditionalGeneration (transformers >= 5.0)

The weight rule and the default Qwen2-Audio config are those of ``shared/golden/models`` (the SA-MAP parity goldens),
so ``tiny_qwen2_audio()`` rebuilds the golden model to within float32 round-off (bit for bit on AVX2/AVX-512 CPUs;
torch's non-vectorised normal sampler rounds differently). Parity tests load the stored golden weights with
:func:`load_weights_` instead.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import torch
from torch import nn

WEIGHT_SCALE = 2.4  # ≈ 8·0.3: an input of unit-variance rows gives outputs of std ≈ 2.4/√3 after one layer

QWEN2_AUDIO_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>")
GLM_ASR_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|pad|>", "<|user|>", "<|assistant|>", "<|system|>", "<|observation|>",
    "<|begin_of_audio|>", "<|end_of_audio|>",
)
GLM_ASR_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' %}<|begin_of_audio|><|pad|><|end_of_audio|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def canonical_name(name: str) -> str:
    """Parameter name with the layout differences between transformers versions removed."""
    if name.startswith("model."):
        name = name[len("model."):]
    if name.startswith("language_model.model."):
        name = "language_model." + name[len("language_model.model."):]
    if name.startswith("language_model.lm_head."):
        name = name[len("language_model."):]
    return name


def seeded_init_(model: nn.Module, *, canonical=canonical_name) -> nn.Module:
    """Fill every parameter deterministically from its canonical name (in place; returns ``model``).

    ≥2-D: ``2.4·x/√fan_in``; 1-D norm weights: ``1 + 0.1·x``; other 1-D (biases): ``0.1·x``; ``x`` ~ N(0, 1) from a
    generator seeded with ``crc32(canonical(name))``.
    """
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            generator = torch.Generator().manual_seed(zlib.crc32(canonical(name).encode()))
            x = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
            module_name = name.rsplit(".", 1)[0]
            if parameter.dim() >= 2:
                value = WEIGHT_SCALE * x / math.sqrt(parameter.shape[-1])
            elif name.endswith("weight") and ("norm" in name or "ln" in module_name.rsplit(".", 1)[-1]):
                value = 1.0 + 0.1 * x
            else:
                value = 0.1 * x
            parameter.copy_(value.to(parameter.dtype))
    return model


def load_weights_(model: nn.Module, state: dict[str, torch.Tensor], *, canonical=canonical_name) -> nn.Module:
    """Copy ``state`` into ``model`` by canonical names (in place; returns ``model``).

    The goldens' weights are stored, not regenerated: :func:`seeded_init_` draws its normals with torch's
    vectorised kernels, whose rounding depends on the CPU (``ATEN_CPU_CAPABILITY=default`` gives other ulps), so a
    parity test on *exact* golden weights must read them. Every parameter of ``model`` must be in ``state`` with the
    same shape; extra entries in ``state`` (parts of a checkpoint the model does not use) are ignored.
    """
    stored = {canonical(name): tensor for name, tensor in state.items()}
    missing = [name for name, _ in model.named_parameters() if canonical(name) not in stored]
    if missing:
        raise KeyError(f"{len(missing)} parameters are not in the stored weights, e.g. {missing[:3]}")
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            value = stored[canonical(name)]
            if value.shape != parameter.shape:
                raise ValueError(f"{name}: stored shape {tuple(value.shape)} != parameter shape {tuple(parameter.shape)}")
            parameter.copy_(value.to(parameter.dtype))
    return model


def _byte_level_backend(vocab: dict[str, int], special_tokens: tuple[str, ...], first_special_id: int):
    """A merge-free byte-level BPE over ``vocab`` with ``special_tokens`` numbered from ``first_special_id``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    for offset, token in enumerate(special_tokens):
        # holes in the id range are how the real GLM ids (59261…) are reproduced; plain add_special_tokens
        # would number the tokens consecutively, so pad the vocabulary with unused symbols first
        while backend.get_vocab_size() < first_special_id + offset:
            backend.add_tokens([f"<|unused_{backend.get_vocab_size()}|>"])
        backend.add_special_tokens([token])
    return backend


def tiny_tokenizer(special_tokens: tuple[str, ...], *, first_special_id: int = 256):
    """Byte-level BPE without merges (256 byte symbols), special tokens from ``first_special_id`` on."""
    from tokenizers import pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(alphabet)}
    if first_special_id < len(vocab):
        raise ValueError(f"first_special_id={first_special_id} collides with the {len(vocab)} byte symbols")
    return PreTrainedTokenizerFast(
        tokenizer_object=_byte_level_backend(vocab, special_tokens, first_special_id),
        model_input_names=["input_ids", "attention_mask"],
        eos_token=special_tokens[0],
        pad_token=special_tokens[0],
        clean_up_tokenization_spaces=False,
    )


def whisper_feature_extractor(chunk_seconds: int = 30):
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(
        feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400, chunk_length=chunk_seconds,
        padding_value=0.0, return_attention_mask=True,
    )


def tiny_qwen2_audio(*, chunk_seconds: int = 30, attn_implementation: str = "sdpa"):
    """``(Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor)``: encoder d=96 (2 layers, 4 heads), LM hidden 128
    (2 layers, 4/2 heads), vocab 320. ``chunk_seconds`` < 30 shortens the encoder window (faster tests)."""
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor

    tokenizer = tiny_tokenizer(QWEN2_AUDIO_SPECIAL_TOKENS)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2AudioConfig(
        audio_config=dict(
            model_type="qwen2_audio_encoder", d_model=96, encoder_layers=2, encoder_attention_heads=4,
            encoder_ffn_dim=128, num_mel_bins=128, max_source_positions=chunk_seconds * 50, dropout=0.0,
            attention_dropout=0.0, activation_dropout=0.0, activation_function="gelu", scale_embedding=False,
            encoder_layerdrop=0.0,
        ),
        text_config=dict(
            model_type="qwen2", vocab_size=320, hidden_size=128, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6,
            rope_theta=10000.0, use_sliding_window=False, sliding_window=4096, max_window_layers=28,
            hidden_act="silu", eos_token_id=eos, pad_token_id=eos, bos_token_id=eos, tie_word_embeddings=False,
            attention_dropout=0.0,
        ),
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
    )
    model = Qwen2AudioForConditionalGeneration._from_config(config, attn_implementation=attn_implementation)
    seeded_init_(model).eval()
    _pin_generation_config(model, eos)
    processor = Qwen2AudioProcessor(feature_extractor=whisper_feature_extractor(chunk_seconds), tokenizer=tokenizer)
    return model, processor


def tiny_glm_asr(*, chunk_seconds: int = 30, attn_implementation: str = "sdpa"):
    """``(GlmAsrForConditionalGeneration, GlmAsrProcessor)`` (transformers ≥ 5.0): RoPE encoder d=32 (2 layers, 4 heads,
    4× reshape merge), Llama LM hidden 128 (2 layers, 4/2 heads), vocab 320."""
    import transformers

    if not hasattr(transformers, "GlmAsrForConditionalGeneration"):
        raise RuntimeError(
            f"transformers {transformers.__version__} has no GlmAsrForConditionalGeneration (native GLM-ASR needs >= 5.0)"
        )
    from transformers import GlmAsrConfig, GlmAsrForConditionalGeneration, GlmAsrProcessor

    if (chunk_seconds * 50) % 4:
        raise ValueError(f"GLM-ASR merges 4 frames per token: chunk_seconds*50 must divide by 4, got {chunk_seconds}")
    tokenizer = tiny_tokenizer(GLM_ASR_SPECIAL_TOKENS)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text = dict(
        model_type="llama", vocab_size=320, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-5,
        hidden_act="silu", eos_token_id=eos, pad_token_id=eos, bos_token_id=eos, tie_word_embeddings=False,
        attention_bias=False, mlp_bias=False, rope_theta=10000.0,
    )
    audio = dict(
        model_type="glmasr_encoder", hidden_size=32, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=chunk_seconds * 50, num_mel_bins=128,
        hidden_act="gelu", attention_dropout=0.0, partial_rotary_factor=0.5, rope_theta=10000.0,
    )
    config = GlmAsrConfig(
        audio_config=audio, text_config=text, audio_token_id=tokenizer.convert_tokens_to_ids("<|pad|>"),
        tie_word_embeddings=False, projector_hidden_act="gelu",
    )
    model = GlmAsrForConditionalGeneration._from_config(config, attn_implementation=attn_implementation)
    seeded_init_(model).eval()
    _pin_generation_config(model, eos)
    processor = GlmAsrProcessor(
        feature_extractor=whisper_feature_extractor(chunk_seconds), tokenizer=tokenizer,
        chat_template=GLM_ASR_CHAT_TEMPLATE,
    )
    return model, processor


def speechlike_waveform(seconds: float, seed: int, sampling_rate: int = 16000) -> np.ndarray:
    """A deterministic voiced/unvoiced test signal (harmonic stacks with gliding pitch, noise bursts, pauses)."""
    rng = np.random.default_rng(seed)
    total = int(round(seconds * sampling_rate))
    out = np.zeros(total, dtype=np.float64)
    position = 0
    while position < total:
        kind = rng.choice(["voiced", "fricative", "pause"], p=[0.6, 0.25, 0.15])
        length = min(int(rng.uniform(0.06, 0.25) * sampling_rate), total - position)
        t = np.arange(length) / sampling_rate
        if kind == "voiced":
            f0 = np.linspace(rng.uniform(90, 240), rng.uniform(90, 240), length)
            phase = 2 * np.pi * np.cumsum(f0) / sampling_rate
            segment = sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.3
        elif kind == "fricative":
            segment = rng.normal(0, 0.1, length) * np.sin(np.pi * t / max(t[-1], 1e-9)) if length else np.zeros(0)
        else:
            segment = np.zeros(length)
        out[position:position + length] = segment
        position += length
    out += rng.normal(0, 0.003, total)
    return out.astype(np.float32)


def _pin_generation_config(model, eos_token_id: int) -> None:
    model.generation_config.eos_token_id = eos_token_id
    model.generation_config.pad_token_id = eos_token_id
    model.generation_config.bos_token_id = eos_token_id


KIMI_SPECIAL_TOKENS = (  # ids 300… as in shared/golden/models/kimi
    "<|im_media_begin|>", "<|im_media_end|>", "<|im_kimia_text_blank|>", "<|im_kimia_text_eos|>",
    "<|im_kimia_user_msg_start|>", "<|im_kimia_assistant_msg_start|>", "<|im_kimia_speech_ct_id|>",
    "<|im_msg_end|>", "<|im_kimia_speech_ctd_id|>", "<|im_user_msg_start|>",
)
KIMI_SEMANTIC_OFFSET = 310  # discrete speech tokens are ids 310…399 of the tiny vocabulary


def byte_tokenizer(special_tokens: tuple[str, ...], *, first_special_id: int):
    """Byte-level tokenizer whose id of a byte is the byte's value (Kimi's tiny goldens tokenise text that way)."""
    from tokenizers import pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    # ByteLevel maps byte b to a printable symbol; rebuild that table to number symbols by byte value
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[chr(byte)] = byte
        else:
            symbols[chr(256 + extra)] = byte
            extra += 1
    if set(symbols) != set(alphabet):
        raise RuntimeError("tokenizers' ByteLevel alphabet is not the GPT-2 byte table this builder assumes")
    return PreTrainedTokenizerFast(tokenizer_object=_byte_level_backend(symbols, special_tokens, first_special_id),
                                   model_input_names=["input_ids", "attention_mask"], clean_up_tokenization_spaces=False)


def tiny_kimi_audio(*, attn_implementation: str = "sdpa", whisper_attn_implementation: str = "sdpa"):
    """``(KimiAudioLite, KimiAudioProcessor)``: Qwen2 trunk hidden 64 (4 layers, 4/2 heads, vocab 400), Whisper
    encoder d=32 (2 layers, 4 heads, 30 s window), VQ adaptor 128→64; the weights of ``shared/golden/models/kimi``
    (whose reference ran the Whisper encoder with eager attention and the trunk with SDPA)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from samp.models.kimi import KimiAudioLite, KimiAudioProcessor, KimiTokens, vq_adaptor

    tokenizer = byte_tokenizer(KIMI_SPECIAL_TOKENS, first_special_id=300)
    tokens = KimiTokens.from_tokenizer(tokenizer)
    trunk_config = Qwen2Config(
        vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=10000.0,
        hidden_act="silu", tie_word_embeddings=False, use_sliding_window=False, sliding_window=4096,
        max_window_layers=28, attention_dropout=0.0, eos_token_id=tokens.text_eos, pad_token_id=tokens.text_eos,
        bos_token_id=tokens.text_eos,
    )
    trunk = Qwen2ForCausalLM._from_config(trunk_config, attn_implementation=attn_implementation)
    whisper_config = WhisperConfig(
        d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64, decoder_layers=1,
        decoder_attention_heads=4, decoder_ffn_dim=64, num_mel_bins=128, max_source_positions=1500,
        max_target_positions=64, vocab_size=100, activation_function="gelu", dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, scale_embedding=False, pad_token_id=0, bos_token_id=0, eos_token_id=0,
        decoder_start_token_id=1,
    )
    whisper = WhisperEncoder._from_config(whisper_config, attn_implementation=whisper_attn_implementation)
    adaptor = vq_adaptor(128, 64, eps=1e-6)
    seeded_init_(trunk, canonical=lambda name: name)
    seeded_init_(whisper, canonical=lambda name: name)
    seeded_init_(adaptor, canonical=lambda name: "model.vq_adaptor.layers." + name)
    _pin_generation_config(trunk, tokens.text_eos)
    model = KimiAudioLite(trunk.eval(), whisper.eval(), adaptor.eval(), tokens)
    return model, KimiAudioProcessor(whisper_feature_extractor(30), tokenizer)


WHISPER_FAMILY_SPECIAL_TOKENS = ("<|endoftext|>", "<sound>", "[AUDIO]", "<|im_start|>", "<|im_end|>")


def _tiny_text_config(model_type: str, eos: int) -> dict:
    return dict(
        model_type=model_type, vocab_size=320, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6,
        hidden_act="silu", eos_token_id=eos, pad_token_id=eos, bos_token_id=eos, tie_word_embeddings=False,
        rope_theta=10000.0, attention_dropout=0.0,
    )


def _tiny_whisper_encoder_config(model_type: str, chunk_seconds: int) -> dict:
    return dict(
        model_type=model_type, hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_mel_bins=128, max_source_positions=chunk_seconds * 50, activation_function="gelu", dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0, scale_embedding=False,
    )


def tiny_voxtral(*, chunk_seconds: int = 30, attn_implementation: str = "sdpa"):
    """``(VoxtralForConditionalGeneration, SpeechProcessor)`` (transformers >= 4.54): Whisper encoder d=32 with the
    4× reshape merge, Llama LM hidden 128; placeholder ``[AUDIO]``. (The stock Voxtral processor needs
    mistral-common, so the tiny model pairs a Whisper feature extractor with a byte tokenizer.)"""
    import transformers

    from samp.models.base import SpeechProcessor

    if not hasattr(transformers, "VoxtralForConditionalGeneration"):
        raise RuntimeError(f"transformers {transformers.__version__} has no VoxtralForConditionalGeneration (>= 4.54)")
    tokenizer = tiny_tokenizer(WHISPER_FAMILY_SPECIAL_TOKENS)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = transformers.VoxtralConfig(
        audio_config=_tiny_whisper_encoder_config("voxtral_encoder", chunk_seconds),
        text_config=_tiny_text_config("llama", eos), audio_token_id=tokenizer.convert_tokens_to_ids("[AUDIO]"),
        projector_hidden_act="gelu",
    )
    model = transformers.VoxtralForConditionalGeneration._from_config(config, attn_implementation=attn_implementation)
    seeded_init_(model).eval()
    _pin_generation_config(model, eos)
    return model, SpeechProcessor(whisper_feature_extractor(chunk_seconds), tokenizer)


def tiny_audioflamingo3(*, chunk_seconds: int = 30, attn_implementation: str = "sdpa"):
    """``(AudioFlamingo3ForConditionalGeneration, SpeechProcessor)`` (transformers >= 5.0): Whisper encoder d=32 with
    a padding mask and AvgPool ×2, Qwen2 LM hidden 128; placeholder ``<sound>``."""
    import transformers

    from samp.models.base import SpeechProcessor

    if not hasattr(transformers, "AudioFlamingo3ForConditionalGeneration"):
        raise RuntimeError(f"transformers {transformers.__version__} has no AudioFlamingo3ForConditionalGeneration (>= 5.0)")
    tokenizer = tiny_tokenizer(WHISPER_FAMILY_SPECIAL_TOKENS)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    audio = _tiny_whisper_encoder_config("audioflamingo3_encoder", chunk_seconds) | {"intermediate_size": 64}
    config = transformers.AudioFlamingo3Config(
        audio_config=audio, text_config=_tiny_text_config("qwen2", eos),
        audio_token_id=tokenizer.convert_tokens_to_ids("<sound>"), projector_hidden_act="gelu", projector_bias=True,
    )
    model = transformers.AudioFlamingo3ForConditionalGeneration._from_config(
        config, attn_implementation=attn_implementation)
    seeded_init_(model).eval()
    _pin_generation_config(model, eos)
    return model, SpeechProcessor(whisper_feature_extractor(chunk_seconds), tokenizer)


QWEN3_ASR_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_start|>", "<|audio_pad|>",
                            "<|audio_end|>")


def tiny_qwen3_asr(*, attn_implementation: str = "sdpa"):
    """``(Qwen3ASRForConditionalGeneration, Qwen3ASRProcessor)`` (transformers >= 5.13): Conv2d front end + windowed
    encoder d=32 (2 layers, 4 heads), Qwen3 LM hidden 128; placeholder ``<|audio_pad|>``."""
    import transformers

    if not hasattr(transformers, "Qwen3ASRForConditionalGeneration"):
        raise RuntimeError(f"transformers {transformers.__version__} has no Qwen3ASRForConditionalGeneration (>= 5.13)")
    from transformers.models.qwen3_asr.feature_extraction_qwen3_asr import Qwen3ASRFeatureExtractor

    tokenizer = tiny_tokenizer(QWEN3_ASR_SPECIAL_TOKENS)
    # Qwen3ASRProcessor reads the audio tokens as tokenizer attributes (the real Qwen2 tokenizer defines them)
    for name, token in (("audio_token", "<|audio_pad|>"), ("audio_bos_token", "<|audio_start|>"),
                        ("audio_eos_token", "<|audio_end|>")):
        object.__setattr__(tokenizer, name, token)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text = _tiny_text_config("qwen3", eos) | {"head_dim": 32}
    audio = dict(model_type="qwen3_asr_encoder", d_model=32, encoder_layers=2, encoder_attention_heads=4,
                 encoder_ffn_dim=64, num_mel_bins=128, n_window=50, n_window_infer=200, downsample_hidden_size=8,
                 output_dim=128, max_position_embeddings=13, activation_function="gelu", dropout=0.0,
                 attention_dropout=0.0, activation_dropout=0.0, scale_embedding=False)
    config = transformers.Qwen3ASRConfig(
        audio_config=audio, text_config=text, audio_token_id=tokenizer.convert_tokens_to_ids("<|audio_pad|>"),
        pad_token_id=eos, eos_token_id=eos, tie_word_embeddings=False,
    )
    model = transformers.Qwen3ASRForConditionalGeneration._from_config(config, attn_implementation=attn_implementation)
    seeded_init_(model).eval()
    _pin_generation_config(model, eos)
    feature_extractor = Qwen3ASRFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400,
                                                 chunk_length=30, padding_value=0.0, n_window=50)
    processor = transformers.Qwen3ASRProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    return model, processor


WHISPER_SPECIAL_TOKENS = (  # the order of the real Whisper vocabulary (its ids start at 50257 there)
    "<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>",
    "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>",
)


def tiny_whisper(*, multilingual: bool = True, chunk_seconds: int = 30, attn_implementation: str = "sdpa"):
    """``(WhisperForConditionalGeneration, WhisperProcessor)``: d=32 (2+2 layers, 4 heads, FFN 64, 80 mels), byte-level
    vocabulary + the Whisper special tokens (266 ids). ``multilingual`` gives languages ``en``/``de`` and both tasks;
    otherwise the checkpoint is English-only, as ``tiny.en``. ``chunk_seconds`` < 30 shortens the window."""
    from tokenizers import pre_tokenizers
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperProcessor, WhisperTokenizerFast)

    vocab = {symbol: index for index, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    eos_token = WHISPER_SPECIAL_TOKENS[0]
    tokenizer = WhisperTokenizerFast(tokenizer_object=_byte_level_backend(vocab, WHISPER_SPECIAL_TOKENS, len(vocab)),
                                     unk_token=eos_token, bos_token=eos_token, eos_token=eos_token)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in WHISPER_SPECIAL_TOKENS}
    eos, start = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    space = vocab["Ġ"]  # the byte-level symbol of " "
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=chunk_seconds * 50, max_target_positions=64, activation_function="gelu",
        scale_embedding=False, tie_word_embeddings=True, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        encoder_layerdrop=0.0, decoder_layerdrop=0.0, pad_token_id=eos, bos_token_id=eos, eos_token_id=eos,
        decoder_start_token_id=start, suppress_tokens=[], begin_suppress_tokens=[space, eos],
    )
    model = WhisperForConditionalGeneration._from_config(config, attn_implementation=attn_implementation)
    seeded_init_(model, canonical=lambda name: name)
    model.tie_weights()
    fields = dict(
        decoder_start_token_id=start, eos_token_id=eos, pad_token_id=eos, bos_token_id=eos,
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"], suppress_tokens=[],
        begin_suppress_tokens=[space, eos], max_length=64, is_multilingual=multilingual, return_timestamps=False,
    )
    if multilingual:
        fields |= dict(lang_to_id={"<|en|>": ids["<|en|>"], "<|de|>": ids["<|de|>"]},
                       task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]})
    model.generation_config = GenerationConfig(**fields)
    feature_extractor = WhisperFeatureExtractor(feature_size=80, chunk_length=chunk_seconds, return_attention_mask=True)
    return model.eval(), WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
