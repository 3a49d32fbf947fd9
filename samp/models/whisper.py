"""Whisper (``WhisperForConditionalGeneration``): compress the encoder states the decoder cross-attends to.

Whisper is an encoder–decoder, not a speech LLM: the audio never becomes prompt tokens. The adapter encodes the 30 s
log-mel window once (the last-layer statistics hook on the encoder's last ``self_attn``; Whisper's encoder attends
every frame, padding included, so no key mask), compresses the encoder states with :func:`samp.compress` (one frame
per token, 50 per second), and runs the stock ``generate`` on ``encoder_outputs`` that hold what was kept.

What is compressed (``window=``):

- ``"speech"`` (default): ``keep_ratio`` applies to the clip's speech frames (its valid length,
  ``ceil(mel frames / 2)``), as in a speech LLM where only those reach the LM; the padding frames of the window
  follow the kept ones unchanged. Whisper's decoder was trained on padded 30 s windows: cutting the padding away
  breaks it (WER 2.5 % → 189 % in ``shared/spec/real-speech.md`` §4), keeping it works.
- ``"whole"``: ``keep_ratio`` applies to all frames of the window, padding included.

In a batch the kept lengths differ, so the states are right-padded and every decoder cross-attention gets a key mask
(the stock decoder passes none; a pre-hook adds it). ``method="base"`` hands the encoder output to ``generate``
untouched, so it equals the stock ``generate(input_features)`` bit for bit.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Sequence

import torch

from samp.attention import LastLayerAttentionHook
from samp.models.base import Adapter, AudioTokens, GenerationResult, Timings, _PrefillClock, capturing

WINDOWS = ("speech", "whole")


class cross_attention_key_mask:
    """Within the block, each decoder layer's cross-attention ignores encoder states at or past ``lengths[b]`` (an
    additive mask, which both the eager and the SDPA attention accept); batches repeated for beam search or
    ``num_return_sequences`` repeat the mask alongside."""

    def __init__(self, decoder_layers, lengths: torch.Tensor, width: int, dtype: torch.dtype, device):
        padded = torch.arange(width, device=device)[None, :] >= lengths.to(device)[:, None]
        self.mask = torch.zeros(padded.shape, dtype=dtype, device=device).masked_fill_(
            padded, torch.finfo(dtype).min)[:, None, None, :]
        self.modules = [layer.encoder_attn for layer in decoder_layers]
        self._handles = []

    def _hook(self, module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        copies, leftover = divmod(hidden.shape[0], self.mask.shape[0])
        if leftover or copies == 0:
            raise RuntimeError(f"cross-attention batch {hidden.shape[0]} is not a multiple of {self.mask.shape[0]}")
        kwargs["attention_mask"] = self.mask.repeat_interleave(copies, dim=0)
        return args, kwargs

    def __enter__(self):
        self._handles = [m.register_forward_pre_hook(self._hook, with_kwargs=True) for m in self.modules]
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []


class WhisperAdapter(Adapter):
    family = "whisper"
    frames_per_token = 1
    reference_flavor = ""  # the SA-MAP reference never ran Whisper
    in_llm_unsupported = "Whisper has no LLM; its decoder cross-attends to the encoder states, which is what to compress"

    def __init__(self, model, processor):
        super().__init__(model, processor)
        self.encoder = model.get_encoder()
        self.decoder_layers = model.get_decoder().layers
        self.feature_extractor = processor.feature_extractor
        self.max_seconds = self.feature_extractor.chunk_length
        self.window_frames = self.encoder.config.max_source_positions
        if self.feature_extractor.nb_max_frames != 2 * self.window_frames:
            raise ValueError(
                f"the feature extractor pads to {self.feature_extractor.nb_max_frames} mel frames but the encoder "
                f"expects {2 * self.window_frames}; processor and model do not belong together"
            )
        self.multilingual = bool(getattr(model.generation_config, "is_multilingual", False))

    def check_prompt(self, prompt) -> None:
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError(f"prompt must be None or Whisper's previous-text prompt (a string); got {type(prompt).__name__}")

    def check_language(self, language: str | None, task: str) -> None:
        """Refuse what the checkpoint cannot do before any audio is encoded."""
        from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

        if not self.multilingual:
            english = language is None or language.lower() in ("en", "english", "<|en|>")
            if not english:
                raise ValueError(f"this Whisper checkpoint is English-only; it cannot transcribe language={language!r}")
            if task != "transcribe":
                raise ValueError(f"this Whisper checkpoint is English-only; task must be 'transcribe', not {task!r}")
            return
        task_to_id = getattr(self.model.generation_config, "task_to_id", None) or {}
        if task not in task_to_id:
            raise ValueError(f"task must be one of {sorted(task_to_id)}; got {task!r}")
        if language is None:
            return  # stock behaviour: the decoder detects the language first
        lang_to_id = self.model.generation_config.lang_to_id
        key = language.lower()
        code = key[2:-2] if key.startswith("<|") else TO_LANGUAGE_CODE.get(key, key)
        if f"<|{code}|>" not in lang_to_id:
            known = sorted(LANGUAGES[t[2:-2]] if t[2:-2] in LANGUAGES else t for t in lang_to_id)
            raise ValueError(f"language {language!r} is not one this checkpoint knows; known: {', '.join(known)}")

    def speech_frames(self, mel_mask: torch.Tensor) -> torch.Tensor:
        """Encoder frames covering the clip: conv2 has stride 2, so ``ceil(mel frames / 2)``."""
        return ((mel_mask.sum(-1) + 1) // 2).clamp(1, self.window_frames).long()

    def encode(self, audios: Sequence[Any], *, sampling_rate: int = 16000, attention: bool = False) -> AudioTokens:
        """Encoder states ``[B, 1500, d]`` of the full windows; ``lengths`` are the speech frames."""
        input_features, mel_mask = self.features(audios, sampling_rate)
        weight = self.encoder.conv1.weight
        hook = LastLayerAttentionHook(self.encoder.layers[-1].self_attn, query_scaled_first=True)
        with torch.no_grad(), capturing(hook, attention):
            hidden = self.encoder(input_features.to(device=weight.device, dtype=weight.dtype)).last_hidden_state
        captured = hook.record(key_padding_mask=None) if attention else None
        return AudioTokens(features=hidden, lengths=self.speech_frames(mel_mask).cpu(), attention=captured,
                           frames_per_token=1)

    def generate(
        self,
        audios: Sequence[Any],
        prompt: str | None = None,
        *,
        language: str | None = None,
        task: str = "transcribe",
        method: str = "samp",
        keep_ratio: float = 0.6,
        threshold: float = 0.85,
        flavor: str = "samp",
        window: str = "speech",
        sampling_rate: int = 16000,
        seed: int = 0,
        **generate_kwargs,
    ) -> GenerationResult:
        """Encode once, compress the encoder states (``window``: which frames ``keep_ratio`` applies to, see the
        module doc), decode with the stock ``generate`` (greedy unless told). ``audio_tokens`` per utterance:
        (frames that ``keep_ratio`` applied to, frames kept of them); the passed-through padding is not counted."""
        import samp
        from transformers.modeling_outputs import BaseModelOutput

        self.check_prompt(prompt)
        self.check_language(language, task)
        self.check_flavor(flavor)
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}; got {window!r}")
        samp.methods.check_options(method, keep_ratio, threshold, flavor)
        spec = self.check_method(method)
        for name in ("encoder_outputs", "input_features", "decoder_input_ids", "llm_pruning"):
            if name in generate_kwargs:
                raise ValueError(f"{name} is not an option of the Whisper adapter (the encoder states are what it "
                                 f"compresses; it sets the decoder's inputs itself)")
        prompt_ids = None if prompt is None else self.tokenizer.get_prompt_ids(prompt, return_tensors="pt")

        started = time.perf_counter()
        tokens = self.encode(audios, sampling_rate=sampling_rate, attention=spec.needs_attention)
        encoded = time.perf_counter()
        hidden = tokens.features
        batch = hidden.shape[0]
        speech = tokens.lengths
        if window == "whole":
            tokens = AudioTokens(features=hidden, lengths=torch.full((batch,), self.window_frames, dtype=torch.long),
                                 attention=tokens.attention, frames_per_token=1)
        before = [int(n) for n in tokens.lengths.tolist()]
        if method == "base":  # every frame kept: the encoder output itself, so decoding is the stock one
            states, lengths, after = hidden, None, before
        else:
            kept = self.compress(tokens, method=method, keep_ratio=keep_ratio, threshold=threshold, flavor=flavor,
                                 seed=seed)
            after = kept.counts
            rows = []
            for b in range(batch):
                tail = hidden[b, int(speech[b]):] if window == "speech" else hidden[b, :0]
                rows.append(torch.cat([kept.rows[b].to(hidden.dtype), tail]))
            lengths = torch.tensor([r.shape[0] for r in rows])
            states = hidden.new_zeros(batch, int(lengths.max()), hidden.shape[-1])
            for b, r in enumerate(rows):
                states[b, :r.shape[0]] = r
            if bool((lengths == lengths.max()).all()):
                lengths = None  # no padding, no mask
        compressed_at = time.perf_counter()

        language_kwargs = {"language": language, "task": task} if self.multilingual else {}
        mask = (cross_attention_key_mask(self.decoder_layers, lengths, states.shape[1], states.dtype, states.device)
                if lengths is not None else contextlib.nullcontext())
        with torch.no_grad(), mask, _PrefillClock(self.model) as clock:
            sequences = self.model.generate(
                encoder_outputs=BaseModelOutput(last_hidden_state=states),
                prompt_ids=None if prompt_ids is None else prompt_ids.to(states.device),
                **language_kwargs, **generate_kwargs,
            )
        finished = time.perf_counter()
        sequences = sequences.sequences if hasattr(sequences, "sequences") else sequences
        sequences = sequences.cpu()
        texts = self.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        prefill_done = clock.prefill_done or finished
        return GenerationResult(
            sequences=sequences, texts=texts, audio_tokens=list(zip(before, after)),
            timings=Timings(encode=encoded - started, compress=compressed_at - encoded,
                            prefill=prefill_done - compressed_at, decode=finished - prefill_done),
        )
