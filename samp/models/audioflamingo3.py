"""AudioFlamingo3 (``AudioFlamingo3ForConditionalGeneration``, transformers >= 5.0).

Whisper encoder with a padding mask over a 30 s window, AvgPool ×2 (2 frames per token), LayerNorm, projector. Valid
tokens come from the encoder's own length formula (the stock ``get_audio_features`` over-counts them in 5.0–5.4, so
samp never uses it). The placeholder is the tokenizer's spelling of ``config.audio_token_id`` (``<sound>``).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from samp.attention import LastLayerAttentionHook
from samp.models.base import Adapter, AudioTokens, capturing, submodule


class AudioFlamingo3Adapter(Adapter):
    family = "audioflamingo3"
    frames_per_token = 2
    reference_flavor = ""  # the SA-MAP reference never ran AudioFlamingo3

    def __init__(self, model, processor):
        super().__init__(model, processor)
        self.tower = submodule(model, "audio_tower")
        self.projector = submodule(model, "multi_modal_projector")
        self.max_seconds = self.feature_extractor.chunk_length
        self.placeholder = self.tokenizer.convert_ids_to_tokens(int(model.config.audio_token_id))

    def encode(self, audios: Sequence[Any], *, sampling_rate: int = 16000, attention: bool = False) -> AudioTokens:
        input_features, mel_mask = self.features(audios, sampling_rate)
        device, dtype = self.tower.conv1.weight.device, self.tower.conv1.weight.dtype
        mel_mask = mel_mask.to(device)
        valid_frames, lengths = self.tower._get_feat_extract_output_lengths(mel_mask.sum(-1))
        hook = LastLayerAttentionHook(self.tower.layers[-1].self_attn, query_scaled_first=True)
        with torch.no_grad():
            with capturing(hook, attention):
                hidden = self.tower(input_features.to(device=device, dtype=dtype),
                                    input_features_mask=mel_mask).last_hidden_state
            features = self.projector(hidden)
            captured = None
            if attention:
                frames = (input_features.shape[-1] - 1) // 2 + 1
                captured = hook.record(key_padding_mask=torch.arange(frames, device=device)[None] < valid_frames[:, None])
        return AudioTokens(features=features, lengths=lengths.cpu(), attention=captured, frames_per_token=2)
