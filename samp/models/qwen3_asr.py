"""Qwen3-ASR (``Qwen3ASRForConditionalGeneration``, transformers >= 5.13).

The encoder is unlike the Whisper family: the log-mel is padded to a multiple of 100 frames, each 100-frame chunk
goes through three stride-2 Conv2d layers (13 tokens per full chunk, ≈ 12.5 Hz), the valid positions of every
utterance are packed into ONE flat sequence, and attention is windowed (block-diagonal over ``cu_seqlens``,
``n_window_infer`` mel frames per window). So the attention is at token resolution (1 frame per token) and a token
only sees the tokens of its own window; the statistics hook unpacks the last layer's q/k per utterance and masks
the pairs across windows. The SA-MAP reference never ran this model: only the ``samp`` flavour applies.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from samp.attention import LastLayerAttentionHook
from samp.models.base import Adapter, AudioTokens, capturing, check_waveforms, modeling_module, submodule


class Qwen3AsrAdapter(Adapter):
    family = "qwen3_asr"
    frames_per_token = 1
    reference_flavor = ""
    max_seconds = None  # the encoder windows long audio itself; the LM's context is the limit

    def __init__(self, model, processor):
        super().__init__(model, processor)
        self.tower = submodule(model, "audio_tower")
        self.projector = submodule(model, "multi_modal_projector")
        self.placeholder = self.tokenizer.convert_ids_to_tokens(int(model.config.audio_token_id))
        self.modeling = modeling_module(self.tower)
        self.n_window = self.tower.config.n_window

    def features(self, audios: Sequence[Any], sampling_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
        waves = check_waveforms(audios, sampling_rate, self.sampling_rate, self.max_seconds)
        # as Qwen3ASRProcessor calls it: pad to the longest clip, mel axis to a multiple of 2·n_window
        extracted = self.feature_extractor(waves, sampling_rate=sampling_rate, padding=True, truncation=False,
                                           return_attention_mask=True, n_window=self.n_window, return_tensors="pt")
        return extracted["input_features"], extracted["attention_mask"]

    def window_pairs(self, mel_mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, N, N]`` True where token ``q`` attends token ``k`` (same utterance, same window)."""
        batch, mel_frames = mel_mask.shape
        chunk = 2 * self.n_window
        chunk_lengths = mel_mask.view(batch, mel_frames // chunk, chunk).sum(-1).reshape(-1).long()
        cu_seqlens = self.modeling.get_audio_cu_seqlens(chunk_lengths, mel_mask.sum(-1).long(),
                                                        self.tower.config.n_window_infer, self.n_window)
        window_sizes = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
        width = int(lengths.max())
        pairs = torch.zeros(batch, width, width, dtype=torch.bool)
        windows = iter(window_sizes)
        for b, n in enumerate(lengths.tolist()):
            start = 0
            while start < n:
                size = next(windows)
                pairs[b, start:start + size, start:start + size] = True
                start += size
        return pairs

    def encode(self, audios: Sequence[Any], *, sampling_rate: int = 16000, attention: bool = False) -> AudioTokens:
        input_features, mel_mask = self.features(audios, sampling_rate)
        device, dtype = self.tower.conv2d1.weight.device, self.tower.conv2d1.weight.dtype
        mel_mask = mel_mask.to(device)
        lengths = self.modeling._get_feat_extract_output_lengths(mel_mask.sum(-1), self.n_window).cpu()
        hook = LastLayerAttentionHook(self.tower.layers[-1].self_attn, query_scaled_first=False)
        with torch.no_grad():
            with capturing(hook, attention):
                packed = self.tower(input_features=input_features.to(device=device, dtype=dtype),
                                    input_features_mask=mel_mask).last_hidden_state
            projected = self.projector(packed)  # [ΣN_b, C], exactly what the stock get_audio_features returns
        features = projected.new_zeros(len(lengths), int(lengths.max()), projected.shape[-1])
        for b, part in enumerate(torch.split(projected, lengths.tolist())):
            features[b, : part.shape[0]] = part
        captured = None
        if attention:
            captured = hook.record(self.window_pairs(mel_mask.cpu(), lengths).to(device), packed_lengths=lengths)
        return AudioTokens(features=features, lengths=lengths, attention=captured, frames_per_token=1)
