"""What every model adapter shares: input checks, compression at prefill, the prompt with K placeholders, and
generation through a prefill-embedding override that works on every transformers version.

An adapter subclass only knows its model family: how to turn waveforms into projected audio tokens (``encode``),
which token is the audio placeholder, and how many encoder frames make one token. Everything else is here.
"""
from __future__ import annotations

import contextlib

import inspect
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from samp.attention import RecordedAttention
from samp.methods.counts import keep_count
from samp.models.llm_pruning import LLMPruning, llm_pruning_hooks

@dataclass(frozen=True)
class AudioTokens:
    """Projected audio tokens of a batch, and what compression methods may need from the encoder.

    features:  ``[B, N, C]`` tokens in the LM's embedding space; rows at or past ``lengths[b]`` are padding.
    lengths:   ``[B]`` valid token count per utterance.
    attention: the last encoder layer's recorded query/key states (frame resolution), or None when not captured;
        statistics or the full probability map are computed from it on demand.
    frames_per_token: encoder frames pooled or stacked into one token.
    """

    features: torch.Tensor
    lengths: torch.Tensor
    attention: RecordedAttention | None
    frames_per_token: int


@dataclass(frozen=True)
class KeptAudio:
    """What reaches the LM after compression, per utterance: ``rows[b]`` ``[K_b, C]`` in prompt order and
    ``positions[b]`` ``[K_b]`` the input token each row stands at (the first token merged into it)."""

    rows: tuple[torch.Tensor, ...]
    positions: tuple[torch.Tensor, ...]

    @property
    def counts(self) -> list[int]:
        return [int(r.shape[0]) for r in self.rows]


def first_members(assignment: torch.Tensor, slots: int) -> torch.Tensor:
    """For a ``[B, N]`` assignment (slot per input token, -1 if dropped): ``[B, slots]``, the first input token of
    each slot (``N`` where a slot has none). Whole-batch operations only: nothing is read back."""
    batch, n = assignment.shape
    index = torch.arange(n, device=assignment.device).expand(batch, n)
    first = torch.full((batch, slots + 1), n, dtype=torch.long, device=assignment.device)
    # dropped tokens go to the extra last column, which is cut off
    target = torch.where(assignment >= 0, assignment, slots)
    return first.scatter_reduce(1, target, index, reduce="amin")[:, :slots]


@dataclass(frozen=True)
class Timings:
    """Seconds spent in each stage of :meth:`Adapter.generate` (prefill = the first LM forward)."""

    encode: float
    compress: float
    prefill: float
    decode: float


@dataclass(frozen=True)
class GenerationResult:
    """sequences: ``[B, T]`` new token ids (finished rows padded with the pad id, as ``generate`` returns them);
    texts: decoded new tokens without special tokens; audio_tokens: ``(before, after)`` compression per utterance
    (with in-LLM pruning, ``after`` counts the audio tokens the layers from ``K`` on see)."""

    sequences: torch.Tensor
    texts: list[str]
    audio_tokens: list[tuple[int, int]]
    timings: Timings


@dataclass(frozen=True)
class SpeechProcessor:
    """A feature extractor and a tokenizer, for models whose stock processor needs extra packages or does not exist
    (Kimi-Audio, tiny Voxtral); anything with these two attributes works as an adapter's processor."""

    feature_extractor: Any
    tokenizer: Any


@dataclass(frozen=True)
class PromptInputs:
    """A left-padded prompt batch: ``input_ids``/``attention_mask`` ``[B, L]`` and ``audio_rows`` ``[B, L]`` (True where
    an audio embedding replaces the token embedding at prefill)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    audio_rows: torch.Tensor


def capturing(hook, attention: bool):
    """The attention hook as a context manager when the method needs attention, else a no-op context."""
    return hook if attention else contextlib.nullcontext()


def submodule(model: nn.Module, name: str) -> nn.Module:
    """``model.model.<name>`` (transformers 5.10+ layout) or ``model.<name>`` (older)."""
    inner = getattr(model, "model", None)
    if inner is not None and isinstance(getattr(inner, name, None), nn.Module):
        return getattr(inner, name)
    found = getattr(model, name, None)
    if not isinstance(found, nn.Module):
        raise ValueError(f"{type(model).__name__} has no sub-module {name!r}")
    return found


def check_waveforms(audios: Sequence[Any], sampling_rate: int, expected_rate: int, max_seconds: float | None) -> list[np.ndarray]:
    """Validate a batch of 1-D waveforms and return them as float32 numpy arrays."""
    if isinstance(audios, (np.ndarray, torch.Tensor)) or not isinstance(audios, Sequence) or len(audios) == 0:
        raise ValueError("audios must be a non-empty list of 1-D waveforms (one per utterance)")
    if sampling_rate != expected_rate:
        raise ValueError(f"sampling_rate={sampling_rate}, but this model takes {expected_rate} Hz audio; resample first")
    out = []
    for index, audio in enumerate(audios):
        array = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
        if array.ndim != 1:
            raise ValueError(f"audios[{index}] must be a 1-D waveform; got shape {array.shape}")
        if array.size == 0:
            raise ValueError(f"audios[{index}] is empty")
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"audios[{index}] must hold floats in [-1, 1]; got dtype {array.dtype}")
        if not np.isfinite(array).all():
            raise ValueError(f"audios[{index}] contains NaN or infinite samples")
        if max_seconds is not None and array.size > max_seconds * expected_rate:
            raise ValueError(
                f"audios[{index}] lasts {array.size / expected_rate:.2f} s; this model accepts at most {max_seconds:g} s"
            )
        out.append(array.astype(np.float32, copy=False))
    return out


class prefill_embedding_override:
    """Within the block, the input-embedding module returns ``embeddings`` at ``rows`` when (and only when) it is called
    with exactly ``input_ids`` (each row possibly repeated, as beam search does) — the prefill step of ``generate``;
    decode steps are untouched. The hook is removed on
    exit, and leaving the block without it having fired is an error (the audio would have been silently dropped)."""

    def __init__(self, embedding: nn.Module, input_ids: torch.Tensor, rows: torch.Tensor, embeddings: torch.Tensor):
        self.embedding, self.input_ids, self.rows, self.embeddings = embedding, input_ids, rows, embeddings
        self.fired = 0
        self._handle = None

    def _hook(self, module, args, output):
        ids = args[0] if args else None
        if ids is None or ids.dim() != 2 or ids.shape[1] != self.input_ids.shape[1]:
            return None
        # beam search and num_return_sequences repeat every prompt row ``copies`` times
        copies, leftover = divmod(ids.shape[0], self.input_ids.shape[0])
        if leftover or copies == 0:
            return None
        expected = self.input_ids.to(ids.device).repeat_interleave(copies, dim=0)
        if not torch.equal(ids, expected):
            return None
        self.fired += 1
        rows = self.rows.to(output.device).repeat_interleave(copies, dim=0).unsqueeze(-1)
        embeddings = self.embeddings.to(device=output.device, dtype=output.dtype).repeat_interleave(copies, dim=0)
        return torch.where(rows, embeddings, output)

    def __enter__(self):
        self._handle = self.embedding.register_forward_hook(self._hook)
        return self

    def __exit__(self, exc_type, exc, tb):
        self._handle.remove()
        if exc_type is None and not self.fired:
            raise RuntimeError("the prefill embedding override never fired: generate did not embed the prompt ids")


class _PrefillClock:
    """Marks when the model's first forward (the prefill) returns."""

    def __init__(self, module: nn.Module):
        self.module, self.prefill_done = module, None

    def _hook(self, module, args, kwargs, output):
        if self.prefill_done is None:
            self.prefill_done = time.perf_counter()

    def __enter__(self):
        self._handle = self.module.register_forward_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self._handle.remove()


class Adapter:
    """Base class; subclasses set the class attributes and implement :meth:`encode`."""

    family: str = ""
    placeholder: str = ""          # the prompt's single audio placeholder token
    frames_per_token: int = 1
    reference_flavor: str = ""     # the samp.compress flavour that reproduces the SA-MAP reference for this family
    sampling_rate: int = 16000
    max_seconds: float | None = 30.0
    # Why in-LLM methods (fastv, dart-llm) do not apply to this family; empty where they do.
    in_llm_unsupported: str = ""

    def __init__(self, model: nn.Module, processor: Any):
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.feature_extractor = getattr(processor, "feature_extractor", None)

    # -- family-specific -------------------------------------------------------------------------------------------
    def encode(self, audios: Sequence[Any], *, sampling_rate: int = 16000, attention: bool = False) -> AudioTokens:
        raise NotImplementedError

    @property
    def placeholder_id(self) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(self.placeholder)
        if token_id is None or token_id == getattr(self.tokenizer, "unk_token_id", None):
            raise ValueError(f"the tokenizer has no {self.placeholder!r} token")
        return token_id

    def check_prompt(self, prompt: str) -> None:
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string; got {type(prompt).__name__}")
        count = prompt.count(self.placeholder)
        if count != 1:
            raise ValueError(
                f"prompt must contain exactly one {self.placeholder!r} audio placeholder; found {count}"
            )

    # -- shared ----------------------------------------------------------------------------------------------------
    def features(self, audios: Sequence[Any], sampling_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked waveforms → Whisper log-mel ``[B, mel, frames]`` padded to the window, and its frame mask."""
        waves = check_waveforms(audios, sampling_rate, self.sampling_rate, self.max_seconds)
        extracted = self.feature_extractor(
            waves, sampling_rate=sampling_rate, return_attention_mask=True, padding="max_length", return_tensors="pt"
        )
        return extracted["input_features"], extracted["attention_mask"]

    def build_inputs(self, prompt: str, counts: Sequence[int]) -> PromptInputs:
        """Tokenise ``prompt`` once, expand its placeholder to ``counts[b]`` copies and left-pad the batch.

        The tokenizer adds its special tokens (a BOS, where it has one) exactly as the stock processor's call does."""
        self.check_prompt(prompt)
        ids = self.tokenizer(prompt)["input_ids"]
        placeholder = self.placeholder_id
        if ids.count(placeholder) != 1:
            raise ValueError(f"the prompt tokenises to {ids.count(placeholder)} placeholder ids, expected 1")
        at = ids.index(placeholder)
        rows = [ids[:at] + [placeholder] * int(k) + ids[at + 1:] for k in counts]
        width = max(len(r) for r in rows)
        pad = self.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        audio_rows = torch.zeros((len(rows), width), dtype=torch.bool)
        for b, (row, k) in enumerate(zip(rows, counts)):
            start = width - len(row)
            input_ids[b, start:] = torch.tensor(row)
            attention_mask[b, start:] = 1
            audio_rows[b, start + at:start + at + int(k)] = True
        return PromptInputs(input_ids=input_ids, attention_mask=attention_mask, audio_rows=audio_rows)

    @property
    def pad_token_id(self) -> int:
        for source in (self.model.generation_config, self.tokenizer):
            pad = getattr(source, "pad_token_id", None)
            if pad is not None:
                return int(pad)
        eos = self.model.generation_config.eos_token_id
        return int(eos[0] if isinstance(eos, (list, tuple)) else eos)

    def compress(self, tokens: AudioTokens, *, method: str, keep_ratio: float, threshold: float, flavor: str,
                 seed: int = 0) -> KeptAudio:
        """Compress ``tokens``: the clean ``samp`` flavour through :func:`samp.compress` (attention reduced to
        :class:`samp.AttentionStats` here), a reference flavour exactly as the SA-MAP reference feeds its LM
        (the full last-layer map, and the reference's own rows-to-placeholder plumbing, quirks included)."""
        import samp
        from samp.methods import reference

        spec = samp.methods.get(method)
        captured = tokens.attention
        if spec.needs_attention and captured is None:
            raise ValueError(f"method {method!r} needs the encoder attention: encode(..., attention=True)")
        if flavor == "samp":
            stats = None
            if spec.needs_attention:
                stats = captured.stats(tokens.lengths, tokens.frames_per_token, with_keys=spec.needs_keys,
                                       tokens=tokens.features.shape[1])
            out = samp.compress(tokens.features, tokens.lengths, method=method, keep_ratio=keep_ratio,
                                threshold=threshold, attention=stats, frames_per_token=tokens.frames_per_token,
                                seed=seed)
            counts = out.lengths.tolist()  # the output sizes: the one read of the kept counts
            positions = first_members(out.assignment, max(counts)).cpu()
            return KeptAudio(rows=tuple(out.features[b, :k] for b, k in enumerate(counts)),
                             positions=tuple(positions[b, :k] for b, k in enumerate(counts)))
        full = captured.full(frames=tokens.frames_per_token * tokens.features.shape[1]) if captured is not None else None
        results = reference.reference_rows(
            tokens.features, tokens.lengths, method=method, keep_ratio=keep_ratio, threshold=threshold,
            attention=full.probabilities if full is not None else None,
            keys=full.keys if (full is not None and spec.needs_keys) else None,
            frames_per_token=tokens.frames_per_token, flavor=flavor,
        )
        positions = tuple(r.positions for r in results)
        if flavor == "kimi_audio":
            return KeptAudio(rows=tuple(r.rows for r in results), positions=positions)
        rows = reference.llm_input_rows(results, tokens.features, tokens.lengths, keep_ratio=keep_ratio,
                                        flavor=flavor, method=method)
        return KeptAudio(rows=tuple(rows), positions=tuple(p[: r.shape[0]] for p, r in zip(positions, rows)))

    @classmethod
    def check_flavor(cls, flavor: str) -> None:
        """Refuses a flavour this family cannot run (a class method: checked before a checkpoint loads)."""
        if flavor == "samp" or (cls.reference_flavor and flavor == cls.reference_flavor):
            return
        allowed = "'samp'" + (f" or {cls.reference_flavor!r}" if cls.reference_flavor else
                              " (the SA-MAP reference never ran this model)")
        raise ValueError(f"flavor {flavor!r} does not apply to {cls.family}; use {allowed}")

    @classmethod
    def check_method(cls, method: str):
        """The method's registry entry if this family can run it (a class method: checked before a checkpoint
        loads); refuses an in-LLM method where the family has no hookable LLM."""
        import samp

        spec = samp.methods.get(method)
        if spec.kind == "in-llm" and cls.in_llm_unsupported:
            post = ", ".join(m.name for m in samp.methods.available("post-projector"))
            raise ValueError(f"method {method!r} prunes inside the LLM, which the {cls.family} adapter does not "
                             f"support: {cls.in_llm_unsupported}; use a post-projector method ({post})")
        return spec

    def generate(
        self,
        audios: Sequence[Any],
        prompt: str,
        *,
        method: str = "samp",
        keep_ratio: float = 0.6,
        threshold: float = 0.85,
        flavor: str = "samp",
        sampling_rate: int = 16000,
        seed: int = 0,
        llm_pruning: LLMPruning | None = None,
        **generate_kwargs,
    ) -> GenerationResult:
        """Encode once, compress, prompt with one placeholder per kept token, and generate (greedy unless told).

        An in-LLM ``method`` (``fastv``, ``dart-llm``: ``samp.methods.available("in-llm")``) keeps every projected
        token and prunes inside the LLM with its defaults; ``llm_pruning`` sets its options, and combined with a
        post-projector ``method`` prunes inside the LLM what that method kept. In-LLM pruning generates one
        utterance at a time (as FastV and DART do) and needs a DynamicCache."""
        import samp

        self.check_prompt(prompt)
        self.check_flavor(flavor)
        spec = samp.methods.get(method)
        if spec.kind == "in-llm":
            if llm_pruning is not None:
                raise ValueError(f"method {method!r} already prunes inside the LLM; pass llm_pruning= with a "
                                 "post-projector method (or method='base', keep_ratio=1.0)")
            llm_pruning = LLMPruning(method, keep_ratio)
            method, keep_ratio, spec = "base", 1.0, samp.methods.get("base")
        elif llm_pruning is not None and not isinstance(llm_pruning, LLMPruning):
            raise ValueError(f"llm_pruning must be a samp.models.LLMPruning; got {type(llm_pruning).__name__}")
        pruning_hooks = None if llm_pruning is None else llm_pruning_hooks(self.model, llm_pruning)
        started = time.perf_counter()
        tokens = self.encode(audios, sampling_rate=sampling_rate, attention=spec.needs_attention)
        encoded = time.perf_counter()
        kept = self.compress(tokens, method=method, keep_ratio=keep_ratio, threshold=threshold,
                             flavor=flavor, seed=seed)
        counts = kept.counts
        inputs = self.build_inputs(prompt, counts)
        rows = self._scatter_rows(inputs, kept.rows)
        compressed_at = time.perf_counter()
        if pruning_hooks is None:
            sequences, prefill_done = self._generate_with_rows(inputs, rows, generate_kwargs)
        else:
            sequences, prefill_done = self._generate_pruned(inputs, rows, generate_kwargs, pruning_hooks)
        finished = time.perf_counter()
        texts = self.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        before = [int(n) for n in tokens.lengths.tolist()]
        if llm_pruning is not None:
            counts = [keep_count(int(k), llm_pruning.keep_ratio) for k in counts]
        return GenerationResult(
            sequences=sequences,
            texts=texts,
            audio_tokens=list(zip(before, counts)),
            timings=Timings(
                encode=encoded - started,
                compress=compressed_at - encoded,
                prefill=(prefill_done or finished) - compressed_at,
                decode=finished - (prefill_done or finished),
            ),
        )

    def _scatter_rows(self, inputs: PromptInputs, kept_rows: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[B, L, C]`` prompt-aligned rows: the kept audio tokens at the placeholder positions, zeros elsewhere."""
        embedding = self.model.get_input_embeddings()
        batch, width = inputs.input_ids.shape
        first = kept_rows[0]
        rows = torch.zeros(batch, width, first.shape[-1], dtype=first.dtype, device=first.device)
        # positions from the host-built mask, one scatter for the batch: no per-utterance read-back on a GPU
        utterance, position = inputs.audio_rows.cpu().nonzero(as_tuple=True)
        rows[utterance.to(first.device), position.to(first.device)] = torch.cat(list(kept_rows))
        return rows.to(embedding.weight.dtype)

    def _generate_pruned(self, inputs: PromptInputs, rows: torch.Tensor, generate_kwargs: dict, hooks):
        """One utterance at a time (padding dropped), pruned inside the LLM over its audio span. The prefill end
        returned is where the prefills would have ended had they run back to back."""
        started = time.perf_counter()
        prefill, outputs = 0.0, []
        for b in range(inputs.input_ids.shape[0]):
            valid = inputs.attention_mask[b].bool()
            item = PromptInputs(input_ids=inputs.input_ids[b:b + 1, valid],
                                attention_mask=inputs.attention_mask[b:b + 1, valid],
                                audio_rows=inputs.audio_rows[b:b + 1, valid])
            audio = torch.nonzero(item.audio_rows[0]).squeeze(1)
            began = time.perf_counter()
            with hooks(span=(int(audio[0]), int(audio[-1]) + 1)):
                sequence, prefill_done = self._generate_with_rows(item, rows[b:b + 1, valid], generate_kwargs)
            prefill += (prefill_done or time.perf_counter()) - began
            outputs.append(sequence)
        width = max(sequence.shape[1] for sequence in outputs)
        sequences = torch.full((len(outputs), width), self.pad_token_id, dtype=outputs[0].dtype)
        for b, sequence in enumerate(outputs):
            sequences[b, :sequence.shape[1]] = sequence[0]
        return sequences, started + prefill

    def _generate_with_rows(self, inputs: PromptInputs, rows: torch.Tensor, generate_kwargs: dict):
        device = self.model.get_input_embeddings().weight.device
        input_ids = inputs.input_ids.to(device)
        attention_mask = inputs.attention_mask.to(device)
        with torch.no_grad(), prefill_embedding_override(
            self.model.get_input_embeddings(), input_ids, inputs.audio_rows.to(device), rows.to(device)
        ), _PrefillClock(self.model) as clock:
            output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)
        sequences = output.sequences if hasattr(output, "sequences") else output
        return sequences[:, input_ids.shape[1]:].cpu(), clock.prefill_done


def modeling_module(model: nn.Module):
    """The ``modeling_*`` module that defines ``model``'s class."""
    return sys.modules[type(model).__module__]


def bidirectional_encoder_mask(model: nn.Module, tower: nn.Module, valid_frames: torch.Tensor, frames: int,
                               dtype: torch.dtype) -> torch.Tensor:
    """The key-padding mask a stock forward builds for a Whisper-style encoder (``valid_frames`` ``[B]``), on every
    transformers version: 5.x ``create_bidirectional_mask`` (bool for SDPA, additive float for eager), 4.x a float
    ``[B, 1, F, F]`` mask with ``-inf`` on padded keys."""
    batch = valid_frames.shape[0]
    padded = torch.arange(frames, device=valid_frames.device)[None, :].expand(batch, frames) >= valid_frames[:, None]
    module = modeling_module(model)
    create = getattr(module, "create_bidirectional_mask", None)
    if create is not None:
        keyword = "inputs_embeds" if "inputs_embeds" in inspect.signature(create).parameters else "input_embeds"
        dummy = torch.zeros(batch, frames, 1, dtype=dtype, device=valid_frames.device)
        return create(config=tower.config, attention_mask=(~padded).long(), **{keyword: dummy})
    mask = padded.view(batch, 1, 1, frames).expand(batch, 1, frames, frames)
    additive = mask.to(dtype).clone()
    additive[mask] = float("-inf")
    return additive
