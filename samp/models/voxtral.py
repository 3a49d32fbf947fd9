"""Voxtral (``VoxtralForConditionalGeneration``, transformers >= 4.54).

Whisper encoder over a 30 s window without a padding mask, 4 consecutive frames reshaped into one token, projector.
Voxtral does not trim: every window contributes all its tokens (375 for 30 s), silence included, so the valid
length is the whole window. The placeholder is the tokenizer's spelling of ``config.audio_token_id``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from samp.attention import LastLayerAttentionHook
from samp.models.base import Adapter, AudioTokens, capturing, submodule

FRAMES_PER_TOKEN = 4


class VoxtralAdapter(Adapter):
    family = "voxtral"
    frames_per_token = FRAMES_PER_TOKEN
    reference_flavor = ""  # the SA-MAP reference never ran Voxtral

    def __init__(self, model, processor):
        super().__init__(model, processor)
        self.tower = submodule(model, "audio_tower")
        self.projector = submodule(model, "multi_modal_projector")
        self.max_seconds = self.feature_extractor.chunk_length
        self.placeholder = self.tokenizer.convert_ids_to_tokens(int(model.config.audio_token_id))
        self.merged_width = model.config.audio_config.intermediate_size

    def encode(self, audios: Sequence[Any], *, sampling_rate: int = 16000, attention: bool = False) -> AudioTokens:
        input_features, _ = self.features(audios, sampling_rate)
        device, dtype = self.tower.conv1.weight.device, self.tower.conv1.weight.dtype
        hook = LastLayerAttentionHook(self.tower.layers[-1].self_attn, query_scaled_first=True)
        with torch.no_grad():
            with capturing(hook, attention):
                hidden = self.tower(input_features.to(device=device, dtype=dtype)).last_hidden_state
            features = self.projector(hidden.reshape(hidden.shape[0], -1, self.merged_width))
            captured = hook.record() if attention else None
        lengths = torch.full((features.shape[0],), features.shape[1], dtype=torch.long)
        return AudioTokens(features=features, lengths=lengths, attention=captured, frames_per_token=FRAMES_PER_TOKEN)
