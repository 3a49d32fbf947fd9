"""Per-token attention statistics: the only way encoder attention enters the methods.

A method never needs the full ``[B, H, P·N, P·N]`` map, only a few reductions of it. Adapters compute them in a
hook on the encoder's last layer (see ``samp.attention``) and pass an :class:`AttentionStats`; callers holding a
full map can pass it to :func:`samp.compress` and it is reduced here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AttentionStats:
    """Token-level reductions of the last encoder layer's attention (``P`` frames per token pooled).

    received_attention: ``[B, N]`` attention each token receives from the valid query tokens, max over heads,
        pooled (mean over the token's query frames, sum over its key frames), averaged over the valid queries.
        Used as merge weights and as importance.
    self_attention: ``[B, N]`` attention mass a token's frames give to its own frames, mean over heads
        (the diagonal of the pooled map). Used as DPP relevance.
    token_keys: ``[B, N, d]`` or None: key states averaged over heads and over the token's frames (VisionZip).
    """

    received_attention: torch.Tensor
    self_attention: torch.Tensor
    token_keys: torch.Tensor | None = None


def pool_keys(keys: torch.Tensor, frames_per_token: int) -> torch.Tensor:
    """``[B, H, P·N, d]`` key states → ``[B, N, d]``: mean over heads, then over each token's ``P`` frames."""
    batch, _, frames, dim = keys.shape
    if frames % frames_per_token:
        raise ValueError(
            f"keys have {frames} frames, not a multiple of frames_per_token={frames_per_token}"
        )
    return keys.float().mean(dim=1).view(batch, frames // frames_per_token, frames_per_token, dim).mean(dim=2)


def attention_stats(
    attention: torch.Tensor,
    lengths: torch.Tensor,
    frames_per_token: int,
    keys: torch.Tensor | None = None,
) -> AttentionStats:
    """Reduce softmax probabilities ``[B, H, P·N, P·N]`` (queries × keys) to :class:`AttentionStats`.

    ``lengths[b]`` counts valid tokens; query frames at or past ``P·lengths[b]`` are padding and do not vote.
    """
    if attention.dim() != 4 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"attention must be [B, H, P·N, P·N]; got shape {tuple(attention.shape)}")
    batch, heads, frames, _ = attention.shape
    p = frames_per_token
    if frames % p:
        raise ValueError(f"attention has {frames} frames, not a multiple of frames_per_token={p}")
    n = frames // p
    attention = attention.float()
    lengths = lengths.to(attention.device)

    valid_query = torch.arange(frames, device=attention.device)[None, :] < (p * lengths)[:, None]  # [B, PN]
    head_max = attention.amax(dim=1)  # [B, PN, PN]
    column_sums = (head_max * valid_query[:, :, None]).sum(dim=1)  # [B, PN] over valid query frames
    received = column_sums.view(batch, n, p).sum(-1) / p / lengths.clamp(min=1)[:, None].float()

    blocks = attention.view(batch, heads, n, p, n, p).diagonal(dim1=2, dim2=4)  # [B, H, P, P, N]
    self_attention = blocks.sum(dim=(2, 3)).mean(dim=1) / p

    token_keys = pool_keys(keys, p) if keys is not None else None
    return AttentionStats(received_attention=received, self_attention=self_attention, token_keys=token_keys)
