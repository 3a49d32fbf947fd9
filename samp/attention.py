"""Capture what token-compression methods need from an audio encoder's **last** attention layer.

The stock encoders run SDPA, which never materialises attention probabilities, and asking the whole encoder for
``output_attentions`` either switches every layer to eager (slow, and changes nothing but the cost) or silently
returns nothing on recent transformers. Instead, a forward pre-hook on the last layer's ``self_attn`` records the
layer's input (and rotary position embeddings where the encoder uses them), leaves the forward untouched, and the
probabilities ``softmax(q·kᵀ·scale + key_mask)`` are recomputed from it afterwards, once, in float32.

    with LastLayerAttentionHook(tower.layers[-1].self_attn, query_scaled_first=True) as hook:
        hidden = tower(features, attention_mask=mask).last_hidden_state
    captured = hook.attention(key_padding_mask=valid_frames)   # probabilities [B,H,F,F], keys [B,H,F,d]
    stats = captured.stats(token_lengths, frames_per_token=2)  # samp.AttentionStats

The recomputation follows the eager attention's order of operations (scaled query first for Whisper-style layers,
product then scale for Llama-style rotary layers), so with a float32 model it equals what eager attention returns.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from samp.methods.stats import AttentionStats, attention_stats

RotaryFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class LastLayerAttention:
    """Last encoder layer, frame resolution.

    probabilities: ``[B, H, F, F]`` float32 softmax probabilities (query frame × key frame); masked keys are 0.
    keys:          ``[B, H, F, d]`` float32 key states (after rotary embeddings where the encoder has them).
    """

    probabilities: torch.Tensor
    keys: torch.Tensor

    def stats(self, lengths: torch.Tensor, frames_per_token: int, *, with_keys: bool = False) -> AttentionStats:
        """Token-level reductions for :func:`samp.compress` (``lengths`` counts valid tokens)."""
        frames = self.probabilities.shape[-1]
        usable = frames - frames % frames_per_token  # a trailing frame that makes no whole token is never pooled
        probabilities = self.probabilities[..., :usable, :usable]
        keys = self.keys[..., :usable, :] if with_keys else None
        return attention_stats(probabilities, lengths, frames_per_token, keys)


class LastLayerAttentionHook:
    """Context manager recording the input of one attention module; removed on exit, even on error.

    attention_module: the encoder's last ``self_attn`` (needs ``q_proj``, ``k_proj`` and a head count).
    query_scaled_first: ``True`` for Whisper-style layers that compute ``(q_proj(h)·scale)·kᵀ``; ``False`` for
        layers that compute ``(q·kᵀ)·scale`` (rotary encoders such as GLM-ASR).
    rotary: ``apply_rotary_pos_emb(q, k, cos, sin)`` of the encoder's modeling module, when the layer receives
        ``position_embeddings``.
    """

    def __init__(self, attention_module: nn.Module, *, query_scaled_first: bool = True, rotary: RotaryFn | None = None):
        for name in ("q_proj", "k_proj"):
            if not isinstance(getattr(attention_module, name, None), nn.Module):
                raise ValueError(f"{type(attention_module).__name__} has no {name}: not a supported attention layer")
        self.module = attention_module
        self.query_scaled_first = query_scaled_first
        self.rotary = rotary
        self._handle = None
        self._hidden_states: torch.Tensor | None = None
        self._position_embeddings = None
        self.calls = 0

    def __enter__(self) -> LastLayerAttentionHook:
        self._handle = self.module.register_forward_pre_hook(self._record, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _record(self, module, args, kwargs):
        hidden_states = args[0] if args else kwargs.get("hidden_states")
        self._hidden_states = hidden_states
        self._position_embeddings = kwargs.get("position_embeddings")
        if self._position_embeddings is None and len(args) > 1 and isinstance(args[1], tuple):
            self._position_embeddings = args[1]
        self.calls += 1
        return None  # a pre-hook that returns something would replace the layer's inputs

    def attention(self, key_padding_mask: torch.Tensor | None = None) -> LastLayerAttention:
        """Recompute the recorded call's probabilities; ``key_padding_mask`` ``[B, F]`` is True on valid keys."""
        if self._hidden_states is None:
            raise RuntimeError("the last-layer attention hook never fired: the encoder did not run inside the hook")
        module, hidden = self.module, self._hidden_states
        batch, frames, _ = hidden.shape
        heads = _head_count(module)
        head_dim = module.q_proj.out_features // heads
        key_heads = module.k_proj.out_features // head_dim
        scaling = getattr(module, "scaling", head_dim**-0.5)
        with torch.no_grad():
            query = module.q_proj(hidden)
            if self.query_scaled_first:
                query = query * scaling
            query = query.view(batch, frames, heads, head_dim).transpose(1, 2)
            keys = module.k_proj(hidden).view(batch, frames, key_heads, head_dim).transpose(1, 2)
            if self.rotary is not None:
                if self._position_embeddings is None:
                    raise RuntimeError("a rotary attention layer was called without position_embeddings")
                cos, sin = self._position_embeddings
                query, keys = self.rotary(query, keys, cos, sin)
            if key_heads != heads:
                keys = keys.repeat_interleave(heads // key_heads, dim=1)
            query, keys = query.float(), keys.float()
            scores = torch.matmul(query, keys.transpose(2, 3))
            if not self.query_scaled_first:
                scores = scores * scaling
            if key_padding_mask is not None:
                if key_padding_mask.shape != (batch, frames):
                    raise ValueError(
                        f"key_padding_mask must be [B, F] = {(batch, frames)}; got {tuple(key_padding_mask.shape)}"
                    )
                additive = torch.zeros(batch, 1, 1, frames, dtype=scores.dtype, device=scores.device)
                additive.masked_fill_(~key_padding_mask.to(scores.device).view(batch, 1, 1, frames), float("-inf"))
                scores = scores + additive
            probabilities = torch.softmax(scores, dim=-1)
        return LastLayerAttention(probabilities=probabilities, keys=keys)


def _head_count(module: nn.Module) -> int:
    for owner, name in ((module, "num_heads"), (module, "num_attention_heads"), (getattr(module, "config", None), "num_attention_heads")):
        value = getattr(owner, name, None) if owner is not None else None
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"cannot tell the head count of {type(module).__name__}")
