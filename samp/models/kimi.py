"""Kimi-Audio's text path on stock transformers classes ("kimi-lite"), with samp's own input fusion.

Kimi-Audio is not in transformers. Its LM is a Qwen2 trunk (``model.*`` and ``lm_head`` of the official checkpoint
load into a stock ``Qwen2ForCausalLM``; the audio-output ``mimo_*`` branch is ignored: samp only produces text).
A prompt is two parallel streams of equal length — an audio stream (control tokens and discrete semantic tokens
from the user's speech tokenizer) and a text stream (text, ``blank`` elsewhere) — plus continuous Whisper features
at the semantic-token positions:

    x = E[audio_id];  x = (x + adaptor(whisper)) · √2 at continuous positions;  x = x + E[text_id]

Compression drops whole positions from every stream: a merged group is written at the position of its first member
(whose semantic token survives). Decode steps embed ``E[t]·[t ≠ 0] + E[blank]`` (the audio stream is fed ``blank``;
a generated text id 0 adds nothing — the reference's quirk, kept so outputs match it).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from samp.attention import LastLayerAttentionHook
from samp.models.base import (
    Adapter, AudioTokens, GenerationResult, KeptAudio, SpeechProcessor, Timings, _PrefillClock, capturing,
    check_waveforms,
)

SAMPLES_PER_TOKEN = 1280   # 12.5 tokens per second at 16 kHz
FRAMES_PER_TOKEN = 4       # Whisper frames (50 Hz) stacked into one continuous feature
CONTROL_TOKENS = {         # KimiTokens field → special token name in the Kimi-Audio tokenizer
    "media_begin": "<|im_media_begin|>",
    "media_end": "<|im_media_end|>",
    "text_blank": "<|im_kimia_text_blank|>",
    "text_eos": "<|im_kimia_text_eos|>",
    "user_msg_start": "<|im_kimia_user_msg_start|>",
    "assistant_msg_start": "<|im_kimia_assistant_msg_start|>",
    "speech_ct": "<|im_kimia_speech_ct_id|>",
    "msg_end": "<|im_msg_end|>",
}


@dataclass(frozen=True)
class KimiTokens:
    """Control-token ids of the Kimi-Audio prompt layout."""

    media_begin: int
    media_end: int
    text_blank: int
    text_eos: int
    user_msg_start: int
    assistant_msg_start: int
    speech_ct: int
    msg_end: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> KimiTokens:
        ids = {}
        for field, name in CONTROL_TOKENS.items():
            token_id = tokenizer.convert_tokens_to_ids(name)
            if token_id is None or token_id == getattr(tokenizer, "unk_token_id", None):
                raise ValueError(f"the tokenizer has no Kimi-Audio control token {name!r}")
            ids[field] = int(token_id)
        return cls(**ids)


@dataclass(frozen=True)
class KimiAudioProcessor(SpeechProcessor):
    """Kimi-Audio's processor: Whisper features, the text tokenizer and, optionally, the discrete speech tokenizer
    (``speech_tokenizer(waveform) -> list[int]``: LM-vocabulary ids at 12.5 Hz, e.g. GLM-4-Voice's, offset by
    ``kimia_token_offset``). Without one, ``generate`` needs ``semantic_ids``."""

    speech_tokenizer: Any = None


def vq_adaptor(input_dim: int, hidden_size: int, eps: float) -> nn.Sequential:
    """Kimi's continuous-feature adaptor: Linear → SiLU → Dropout → Linear → LayerNorm (checkpoint layout)."""
    return nn.Sequential(nn.Linear(input_dim, hidden_size), nn.SiLU(), nn.Dropout(0.0),
                         nn.Linear(hidden_size, hidden_size), nn.LayerNorm(hidden_size, eps=eps))


class KimiAudioLite(nn.Module):
    """Kimi-Audio for text output: stock ``Qwen2ForCausalLM`` trunk, stock ``WhisperEncoder``, the VQ adaptor."""

    def __init__(self, trunk: nn.Module, whisper: nn.Module, adaptor: nn.Sequential, tokens: KimiTokens):
        super().__init__()
        self.trunk, self.whisper, self.adaptor, self.tokens = trunk, whisper, adaptor, tokens

    @property
    def generation_config(self):
        return self.trunk.generation_config

    def get_input_embeddings(self) -> nn.Module:
        return self.trunk.get_input_embeddings()


class DecodeStepEmbedding(nn.Module):
    """``E[t]·[t ≠ 0] + E[blank]``: a decode step's text token plus the blank audio-stream token."""

    def __init__(self, embedding: nn.Embedding, blank: int):
        super().__init__()
        self.embedding, self.blank = embedding, blank

    @property
    def weight(self):
        return self.embedding.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids) * (ids != 0).unsqueeze(-1) + self.embedding.weight[self.blank]


class decode_step_embeddings:
    """Within the block the trunk embeds decode steps with :class:`DecodeStepEmbedding`; restored on exit."""

    def __init__(self, trunk: nn.Module, blank: int):
        self.trunk, self.blank = trunk, blank

    def __enter__(self):
        self.original = self.trunk.get_input_embeddings()
        self.trunk.set_input_embeddings(DecodeStepEmbedding(self.original, self.blank))
        return self

    def __exit__(self, *exc):
        self.trunk.set_input_embeddings(self.original)


@dataclass(frozen=True)
class KimiStreams:
    """One utterance's prompt: ``audio_ids``, ``text_ids`` ``[L]`` and the continuous positions ``[L]`` (bool)."""

    audio_ids: torch.Tensor
    text_ids: torch.Tensor
    continuous: torch.Tensor


def kimi_token_count(n_samples: int) -> int:
    """Continuous/semantic tokens for a 16 kHz clip of ``n_samples`` (12.5 Hz, at least one)."""
    return (n_samples - 1) // SAMPLES_PER_TOKEN + 1


class KimiAudioAdapter(Adapter):
    family = "kimi_audio"
    placeholder = "<audio>"           # where the user's speech sits among the prompt text
    frames_per_token = FRAMES_PER_TOKEN
    reference_flavor = "kimi_audio"
    in_llm_unsupported = "its trunk generates from summed audio and text embeddings, not yet hooked"

    def __init__(self, model: KimiAudioLite, processor: SpeechProcessor):
        super().__init__(model, processor)
        self.tokens = model.tokens
        self.max_seconds = self.feature_extractor.chunk_length
        self.embedding = model.trunk.get_input_embeddings()

    @property
    def placeholder_id(self) -> int:
        raise ValueError("Kimi-Audio prompts have no placeholder token: the audio span is built from semantic ids")

    def encode(self, audios: Sequence[Any], *, sampling_rate: int = 16000, attention: bool = False) -> AudioTokens:
        waves = check_waveforms(audios, sampling_rate, self.sampling_rate, self.max_seconds)
        input_features, _ = self.features(waves, sampling_rate)
        whisper = self.model.whisper
        device, dtype = whisper.conv1.weight.device, whisper.conv1.weight.dtype
        lengths = torch.tensor([kimi_token_count(w.size) for w in waves], dtype=torch.long)
        width = int(lengths.max())
        hook = LastLayerAttentionHook(whisper.layers[-1].self_attn, query_scaled_first=True)
        with torch.no_grad():
            with capturing(hook, attention):
                hidden = whisper(input_features.to(device=device, dtype=dtype)).last_hidden_state
            stacked = hidden[:, : FRAMES_PER_TOKEN * width].reshape(hidden.shape[0], width, -1)
            features = self.model.adaptor(stacked)
            # Kimi's encoder has no padding mask: softmax over the whole window, statistics over the first 4·T frames
            captured = hook.record() if attention else None
        return AudioTokens(features=features, lengths=lengths, attention=captured, frames_per_token=FRAMES_PER_TOKEN)

    def streams(self, prompt: str, semantic_ids: Sequence[int]) -> KimiStreams:
        """The two prompt streams for one utterance: user turn (text, audio, text) then the assistant start."""
        self.check_prompt(prompt)
        before, after = prompt.split(self.placeholder)
        t = self.tokens
        encode = lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []  # noqa: E731
        text_before, text_after = encode(before), encode(after)
        semantic = [int(i) for i in semantic_ids]
        audio_span = [t.media_begin, *semantic, t.media_end, t.speech_ct]
        audio = [t.user_msg_start] + [t.text_blank] * len(text_before) + audio_span
        audio += [t.text_blank] * len(text_after) + [t.msg_end, t.assistant_msg_start]
        text = [t.text_blank] + text_before + [t.text_blank] * len(audio_span) + text_after + [t.text_blank] * 2
        continuous = torch.zeros(len(audio), dtype=torch.bool)
        start = 1 + len(text_before) + 1
        continuous[start:start + len(semantic)] = True
        return KimiStreams(torch.tensor(audio), torch.tensor(text), continuous)

    def fuse(self, streams: KimiStreams, kept_rows: torch.Tensor, kept_positions: torch.Tensor) -> torch.Tensor:
        """``[L', H]`` prefill embeddings: dropped continuous positions removed from every stream, the kept rows
        fused at the kept positions (``kept_positions`` index the utterance's continuous tokens)."""
        span = streams.continuous.nonzero().squeeze(-1)
        keep = ~streams.continuous
        keep[span[kept_positions]] = True
        audio_ids, text_ids = streams.audio_ids[keep], streams.text_ids[keep]
        continuous = streams.continuous[keep]
        device = self.embedding.weight.device
        with torch.no_grad():
            x = self.embedding(audio_ids.to(device))
            at = continuous.nonzero().squeeze(-1).to(device)
            x[at] = (x[at] + kept_rows.to(device=device, dtype=x.dtype)) * math.sqrt(2.0)
            return x + self.embedding(text_ids.to(device))

    def generate(self, audios: Sequence[Any], prompt: str, *, semantic_ids: Sequence[Sequence[int]] | None = None,
                 method: str = "samp", keep_ratio: float = 0.6, threshold: float = 0.85, flavor: str = "samp",
                 sampling_rate: int = 16000, seed: int = 0, **generate_kwargs) -> GenerationResult:
        """As :meth:`Adapter.generate`; ``semantic_ids[b]`` are utterance ``b``'s discrete speech tokens (ids in the
        LM vocabulary, one per 80 ms: ``(n_samples - 1)//1280 + 1`` of them) from the user's speech tokenizer."""
        import time

        self.check_prompt(prompt)
        self.check_flavor(flavor)
        spec = self.check_method(method)
        speech_tokenizer = getattr(self.processor, "speech_tokenizer", None)
        if semantic_ids is None and speech_tokenizer is not None:
            semantic_ids = [list(speech_tokenizer(audio)) for audio in audios]
        if semantic_ids is None or len(semantic_ids) != len(audios):
            raise ValueError(
                "Kimi-Audio needs semantic_ids (one list of discrete speech-token ids per waveform), or a processor "
                "with a speech_tokenizer"
            )
        started = time.perf_counter()
        tokens = self.encode(audios, sampling_rate=sampling_rate, attention=spec.needs_attention)
        for b, (ids, n) in enumerate(zip(semantic_ids, tokens.lengths.tolist())):
            if len(ids) != n:
                raise ValueError(f"semantic_ids[{b}] has {len(ids)} ids; a {n}-token clip needs {n} (one per 80 ms)")
        encoded = time.perf_counter()
        kept = self.compress(tokens, method=method, keep_ratio=keep_ratio, threshold=threshold, flavor=flavor,
                             seed=seed)
        embeds, attention_mask = self.prefill_batch(prompt, semantic_ids, kept)
        compressed_at = time.perf_counter()
        kwargs = dict(eos_token_id=self.tokens.text_eos, pad_token_id=self.tokens.text_eos) | generate_kwargs
        trunk = self.model.trunk
        with torch.no_grad(), decode_step_embeddings(trunk, self.tokens.text_blank), _PrefillClock(trunk) as clock:
            output = trunk.generate(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)
        finished = time.perf_counter()
        sequences = (output.sequences if hasattr(output, "sequences") else output).cpu()
        prefill_done = clock.prefill_done or finished
        return GenerationResult(
            sequences=sequences,
            texts=self.tokenizer.batch_decode(sequences, skip_special_tokens=True),
            audio_tokens=list(zip(tokens.lengths.tolist(), kept.counts)),
            timings=Timings(encode=encoded - started, compress=compressed_at - encoded,
                            prefill=prefill_done - compressed_at, decode=finished - prefill_done),
        )

    def prefill_batch(self, prompt: str, semantic_ids: Sequence[Sequence[int]], kept: KeptAudio):
        """Left-padded ``[B, L', H]`` fused prefill embeddings and their attention mask."""
        fused = [self.fuse(self.streams(prompt, ids), rows, positions)
                 for ids, rows, positions in zip(semantic_ids, kept.rows, kept.positions)]
        width = max(f.shape[0] for f in fused)
        embeds = fused[0].new_zeros(len(fused), width, fused[0].shape[-1])
        attention_mask = torch.zeros(len(fused), width, dtype=torch.long, device=fused[0].device)
        for b, f in enumerate(fused):
            embeds[b, width - f.shape[0]:] = f
            attention_mask[b, width - f.shape[0]:] = 1
        return embeds, attention_mask


def load_kimi_audio(model_dir: str | Path, *, whisper_dir: str | Path | None = None, tokenizer=None,
                    speech_tokenizer=None, dtype: torch.dtype = torch.float32) -> tuple[KimiAudioLite, KimiAudioProcessor]:
    """Kimi-Audio's text path from an official-layout checkpoint (``config.json`` with the Qwen2 trunk fields and
    ``kimia_*``; ``*.safetensors`` with ``model.*``, ``lm_head``, ``model.vq_adaptor.*``; a Whisper encoder folder)."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from samp.models.tiny import whisper_feature_extractor

    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{model_dir} has no config.json: not a Kimi-Audio checkpoint")
    raw = json.loads(config_path.read_text())
    if "kimia_adaptor_input_dim" not in raw:
        raise ValueError(f"{config_path} has no kimia_adaptor_input_dim: not a Kimi-Audio config")
    whisper_dir = Path(whisper_dir) if whisper_dir else next(
        (d for d in (model_dir / "whisper-large-v3", model_dir / "whisper") if d.is_dir()), None)
    if whisper_dir is None:
        raise ValueError(f"no Whisper encoder folder under {model_dir}; pass whisper_dir=")
    state = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        state.update(load_file(path))
    if not state:
        raise ValueError(f"{model_dir} holds no *.safetensors weights")
    trunk_config = Qwen2Config.from_pretrained(model_dir)
    trunk = Qwen2ForCausalLM._from_config(trunk_config, attn_implementation="sdpa").to(dtype)
    missing, _ = trunk.load_state_dict({k: v for k, v in state.items() if not k.startswith("model.vq_adaptor.")},
                                       strict=False)
    if missing:
        raise ValueError(f"the Kimi-Audio checkpoint lacks trunk weights: {missing[:5]}")
    adaptor = vq_adaptor(raw["kimia_adaptor_input_dim"], trunk_config.hidden_size, trunk_config.rms_norm_eps)
    prefix = "model.vq_adaptor.layers."
    adaptor.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    whisper_config = WhisperConfig.from_pretrained(whisper_dir)
    whisper = WhisperEncoder._from_config(whisper_config, attn_implementation="sdpa").to(dtype)
    whisper_state = {}
    for path in sorted(whisper_dir.glob("*.safetensors")):
        whisper_state.update(load_file(path))
    whisper.load_state_dict({k.removeprefix("model.encoder.").removeprefix("encoder."): v
                             for k, v in whisper_state.items() if "decoder" not in k}, strict=True)
    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(model_dir)
    model = KimiAudioLite(trunk.eval(), whisper.eval(), adaptor.to(dtype).eval(), KimiTokens.from_tokenizer(tokenizer))
    return model, KimiAudioProcessor(whisper_feature_extractor(30), tokenizer, speech_tokenizer)
