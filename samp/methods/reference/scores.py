"""Per-token attention scores as the reference derives them from the last encoder layer (reference-algorithms.md §1).

Each score is computed from ONE utterance's frame-level map ``[H, P·N, P·N]`` (queries × keys). Two layouts exist:

* ``padded`` (Qwen2-Audio, GLM-ASR): the whole ``N × N`` token map is pooled; column means run over all ``N`` query
  rows (``colmean_all``) or zero the padded rows but still divide by ``N`` (``colmean_valid``, quirk 8).
* ``trimmed`` (Kimi-Audio): query rows and key columns are cut to the ``P·L`` valid frames first (the mass sent to
  padded keys is dropped without renormalising), so column means divide by ``L``.

Not covered: Kimi-Audio audio longer than 30 s, where two Whisper windows are stacked along the query axis with a
separate 1500-frame key set each (§1, quirk 17); that map is not square and does not fit ``[B, H, P·N, P·N]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch


def block_pool(frame_map: torch.Tensor, frames_per_token: int) -> torch.Tensor:
    """``[P·n, P·n]`` → ``[n, n]``: mean over a token's ``P`` query frames, sum over its ``P`` key frames (§1)."""
    frames = frame_map.shape[0]
    p = frames_per_token
    n = frames // p
    return frame_map.reshape(n, p, n, p).mean(dim=1).sum(dim=-1)


@dataclass
class UtteranceScores:
    """Lazily computed §1 reductions of one utterance's attention ``[H, P·N, P·N]`` with ``length`` valid tokens.

    Every score is returned for the ``length`` valid tokens only (the reference slices ``[:L]``).
    """

    attention: torch.Tensor
    length: int
    frames_per_token: int
    trimmed: bool

    def __post_init__(self) -> None:
        if self.trimmed:
            # Kimi-Audio: rows cut to the valid query frames at extraction, columns cut in each reduction (§1).
            valid_frames = self.frames_per_token * self.length
            self.attention = self.attention[:, :valid_frames, :valid_frames]

    @cached_property
    def _pooled_max(self) -> torch.Tensor:
        return block_pool(self.attention.max(dim=0).values, self.frames_per_token)

    @cached_property
    def _pooled_mean(self) -> torch.Tensor:
        return block_pool(self.attention.mean(dim=0), self.frames_per_token)

    @cached_property
    def colmean_all_max(self) -> torch.Tensor:
        """Attention received from every query token, padded rows included (Kimi: the valid ones, §1)."""
        return self._pooled_max.mean(dim=0)[: self.length]

    @cached_property
    def colmean_valid_max(self) -> torch.Tensor:
        """Attention received from the valid query tokens; Qwen2-Audio/GLM zero the padded rows but divide by N."""
        pooled = self._pooled_max
        if self.trimmed:
            return pooled.mean(dim=0)[: self.length]
        valid_rows = (torch.arange(pooled.shape[0], device=pooled.device) < self.length).to(pooled.dtype)
        return (pooled * valid_rows[:, None]).mean(dim=0)[: self.length]

    @cached_property
    def diag_max(self) -> torch.Tensor:
        """Self-attention mass of each token's own frame block, max over heads."""
        return self._pooled_max.diagonal()[: self.length]

    @cached_property
    def diag_mean(self) -> torch.Tensor:
        """Self-attention mass of each token's own frame block, mean over heads."""
        return self._pooled_mean.diagonal()[: self.length]

    @cached_property
    def visionzip_frame_colsum(self) -> torch.Tensor:
        """Qwen2-Audio VisionZip score: column sums of the head-mean map over the valid frame rows, then the mean
        of each token's key frames (no block pooling, §1).

        The reference sums rows ``f < audio_feat_lengths`` (``2L`` or ``2L + 1``); only the token count reaches us,
        so the ``P·L`` valid frames are summed (the golden data has ``audio_feat_lengths = 2L``).
        """
        p = self.frames_per_token
        mean_map = self.attention.mean(dim=0)
        column_sums = mean_map[: p * self.length].sum(dim=0)
        return column_sums.reshape(-1, p).mean(dim=-1)[: self.length]

    def get(self, name: str) -> torch.Tensor:
        return getattr(self, name)
