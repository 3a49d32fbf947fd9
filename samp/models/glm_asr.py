"""GLM-ASR-Nano, native ``GlmAsrForConditionalGeneration`` (transformers >= 5.0).

RoPE encoder without a padding mask over one 30 s log-mel window (3000 → 1500 frames, padded frames attended), final
LayerNorm, then 4 consecutive frames reshaped into one token (so 4 frames per token) and an MLP projector. Valid
tokens: conv lengths of the mel mask, then ``(frames - 4)//4 + 1``. The placeholder is ``<|pad|>``.

The SA-MAP reference ran the original remote-code ``GlmasrModel`` (transformers <= 4.52), whose checkpoints differ in
layout, RoPE pairing and boa/eoa handling; that code is not part of transformers, so samp serves the native class.
Audio longer than one window (the processor splits it into several) is refused rather than silently cut.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from samp.attention import LastLayerAttentionHook
from samp.models.base import Adapter, AudioTokens, capturing, modeling_module, submodule

MERGE_FACTOR = 4  # hard-coded in the native model: 4 encoder frames are concatenated into one token


def glm_asr_token_lengths(mel_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(valid encoder frames, valid tokens)`` for mel-frame counts, as the native model computes them."""
    frames = mel_lengths
    for padding, kernel_size, stride in ((1, 3, 1), (1, 3, 2)):
        frames = (frames + 2 * padding - (kernel_size - 1) - 1) // stride + 1
    return frames, (frames - MERGE_FACTOR) // MERGE_FACTOR + 1


class GlmAsrAdapter(Adapter):
    family = "glm_asr"
    placeholder = "<|pad|>"
    frames_per_token = MERGE_FACTOR
    reference_flavor = "glm_asr"

    def __init__(self, model, processor):
        super().__init__(model, processor)
        self.tower = submodule(model, "audio_tower")
        self.projector = submodule(model, "multi_modal_projector")
        self.max_seconds = self.feature_extractor.chunk_length
        frames = self.feature_extractor.nb_max_frames // 2
        if frames % MERGE_FACTOR:
            raise ValueError(f"a {self.max_seconds} s window gives {frames} encoder frames, not a multiple of 4")
        self.rotary = modeling_module(self.tower).apply_rotary_pos_emb

    def encode(self, audios: Sequence[Any], *, sampling_rate: int = 16000, attention: bool = False) -> AudioTokens:
        input_features, mel_mask = self.features(audios, sampling_rate)
        device, dtype = self.tower.conv1.weight.device, self.tower.conv1.weight.dtype
        input_features = input_features.to(device=device, dtype=dtype)
        _, lengths = glm_asr_token_lengths(mel_mask.sum(-1))
        hook = LastLayerAttentionHook(self.tower.layers[-1].self_attn, query_scaled_first=False, rotary=self.rotary)
        with torch.no_grad():
            with capturing(hook, attention):
                hidden = self.tower(input_features).last_hidden_state
            merged = hidden.reshape(hidden.shape[0], -1, self.model.config.audio_config.intermediate_size)
            features = self.projector(merged)
            captured = hook.record() if attention else None  # the encoder attends padded frames: no key mask
        return AudioTokens(features=features, lengths=lengths, attention=captured,
                           frames_per_token=self.frames_per_token)
