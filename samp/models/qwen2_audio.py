"""Qwen2-Audio (``Qwen2AudioForConditionalGeneration``, every transformers version).

Whisper-style encoder over a 30 s log-mel window (3000 → 1500 frames), attention with padded keys masked, AvgPool ×2
(2 frames per token), LayerNorm, linear projector. Valid tokens: ``n = ((L_mel - 1)//2 + 1 - 2)//2 + 1``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from samp.attention import LastLayerAttentionHook
from samp.models.base import Adapter, AudioTokens, bidirectional_encoder_mask, capturing, submodule


class Qwen2AudioAdapter(Adapter):
    family = "qwen2_audio"
    placeholder = "<|AUDIO|>"
    frames_per_token = 2
    reference_flavor = "qwen2_audio"

    def __init__(self, model, processor):
        super().__init__(model, processor)
        self.tower = submodule(model, "audio_tower")
        self.projector = submodule(model, "multi_modal_projector")
        self.feature_extractor = processor.feature_extractor
        self.max_seconds = self.feature_extractor.chunk_length
        mel_frames = self.tower.config.max_source_positions * 2
        if self.feature_extractor.nb_max_frames != mel_frames:
            raise ValueError(
                f"the feature extractor pads to {self.feature_extractor.nb_max_frames} mel frames but the encoder "
                f"expects {mel_frames}; processor and model do not belong together"
            )

    def check_prompt(self, prompt: str) -> None:
        # Qwen2-Audio only ever saw its audio between these tags: without them it answers garbage, silently.
        super().check_prompt(prompt)
        wrapped = f"<|audio_bos|>{self.placeholder}<|audio_eos|>"
        if wrapped not in prompt:
            raise ValueError(f"Qwen2-Audio takes its audio as {wrapped!r} (e.g. '{wrapped}Transcribe the speech.'); "
                             f"the prompt has {self.placeholder!r} without the tags around it")

    def encode(self, audios: Sequence[Any], *, sampling_rate: int = 16000, attention: bool = False) -> AudioTokens:
        input_features, mel_mask = self.features(audios, sampling_rate)
        device, dtype = self.tower.conv1.weight.device, self.tower.conv1.weight.dtype
        input_features = input_features.to(device=device, dtype=dtype)
        valid_frames, lengths = self.tower._get_feat_extract_output_lengths(mel_mask.sum(-1).to(device))
        frames = (input_features.shape[-1] - 2) // 2 + 1
        mask = bidirectional_encoder_mask(self.model, self.tower, valid_frames, frames, dtype)
        hook = LastLayerAttentionHook(self.tower.layers[-1].self_attn, query_scaled_first=True)
        with torch.no_grad():
            with capturing(hook, attention):
                hidden = self.tower(input_features, attention_mask=mask).last_hidden_state
            features = self.projector(hidden)
            captured = None
            if attention:
                key_valid = torch.arange(frames, device=device)[None, :] < valid_frames[:, None]
                captured = hook.record(key_padding_mask=key_valid)
        return AudioTokens(features=features, lengths=lengths.cpu(), attention=captured,
                           frames_per_token=self.frames_per_token)
