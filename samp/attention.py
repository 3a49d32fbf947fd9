"""Capture what token-compression methods need from an audio encoder's **last** attention layer.

The stock encoders run SDPA, which never materialises attention probabilities, and asking the whole encoder for
``output_attentions`` either switches every layer to eager (slow, and changes nothing but the cost) or silently
returns nothing on recent transformers. Instead, forward hooks on the last layer's ``q_proj`` and ``k_proj`` keep
the projections the layer computes anyway (and a pre-hook on ``self_attn`` its rotary position embeddings, where the
encoder has them); the forward itself is untouched, and the probabilities ``softmax(q·kᵀ·scale + key_mask)`` are
computed from them afterwards, once, in float32: one extra ``q·kᵀ`` and softmax for the last layer only.

    with LastLayerAttentionHook(tower.layers[-1].self_attn, query_scaled_first=True) as hook:
        hidden = tower(features, attention_mask=mask).last_hidden_state
    recorded = hook.record(key_padding_mask=valid_frames)      # q/k states; nothing computed yet
    stats = recorded.stats(token_lengths, frames_per_token=2)  # samp.AttentionStats, valid block only
    full = recorded.full()                                     # probabilities [B,H,F,F], keys [B,H,F,d]

The recomputation follows the eager attention's order of operations (scaled query first for Whisper-style layers,
product then scale for Llama-style rotary layers), so with a float32 model it equals what eager attention returns.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from samp.methods.stats import AttentionStats, pool_keys

# Score entries (heads × query frames × key frames) per band in RecordedAttention.stats: 512 KB of float32, so a
# band's scores and probabilities stay in a core's L2 cache.
STATS_BAND_ELEMENTS = 1 << 17

RotaryFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class LastLayerAttention:
    """Last encoder layer, frame resolution.

    probabilities: ``[B, H, F, F]`` float32 softmax probabilities (query frame × key frame); masked keys are 0.
    keys:          ``[B, H, F, d]`` float32 key states (after rotary embeddings where the encoder has them).
    """

    probabilities: torch.Tensor
    keys: torch.Tensor


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
        self._handles: list = []
        self._query: torch.Tensor | None = None
        self._key: torch.Tensor | None = None
        self._position_embeddings = None
        self.calls = 0

    def __enter__(self) -> LastLayerAttentionHook:
        self._handles = [
            self.module.register_forward_pre_hook(self._record_call, with_kwargs=True),
            self.module.q_proj.register_forward_hook(self._record_query),
            self.module.k_proj.register_forward_hook(self._record_key),
        ]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # hooks return None: a returned value would replace the layer's inputs or outputs
    def _record_call(self, module, args, kwargs):
        self._position_embeddings = kwargs.get("position_embeddings")
        if self._position_embeddings is None and len(args) > 1 and isinstance(args[1], tuple):
            self._position_embeddings = args[1]
        self.calls += 1

    def _record_query(self, module, args, output):
        self._query = output

    def _record_key(self, module, args, output):
        self._key = output

    def record(self, key_padding_mask: torch.Tensor | None = None, *,
               packed_lengths: torch.Tensor | None = None) -> RecordedAttention:
        """The recorded call's float32 query/key states (scaled, rotated, heads expanded) and which keys each query
        may attend: ``key_padding_mask`` ``[B, F]`` (True on valid keys), ``[B, F, F]`` (True on attended
        query-key pairs, windowed encoders), or None when the encoder attends every frame. ``packed_lengths``
        ``[B]``: the layer ran on one packed ``[ΣF_b, C]`` sequence (Qwen3-ASR); it is unpacked to a padded batch."""
        if self._query is None or self._key is None or not self.calls:
            raise RuntimeError("the last-layer attention hook never fired: the encoder did not run inside the hook")
        module = self.module
        query_out, key_out = self._query, self._key
        if packed_lengths is not None:
            query_out, key_out = _unpack(query_out, packed_lengths), _unpack(key_out, packed_lengths)
        batch, frames, _ = query_out.shape
        heads = _head_count(module)
        head_dim = module.q_proj.out_features // heads
        key_heads = module.k_proj.out_features // head_dim
        scaling = getattr(module, "scaling", head_dim**-0.5)
        if key_padding_mask is not None and key_padding_mask.shape not in ((batch, frames), (batch, frames, frames)):
            raise ValueError(
                f"key_padding_mask must be [B, F] or [B, F, F] with B, F = {batch}, {frames}; "
                f"got {tuple(key_padding_mask.shape)}"
            )
        with torch.no_grad():
            query = query_out * scaling if self.query_scaled_first else query_out
            query = query.reshape(batch, frames, heads, head_dim).transpose(1, 2)
            keys = key_out.reshape(batch, frames, key_heads, head_dim).transpose(1, 2)
            if self.rotary is not None:
                if self._position_embeddings is None:
                    raise RuntimeError("a rotary attention layer was called without position_embeddings")
                cos, sin = self._position_embeddings
                query, keys = self.rotary(query, keys, cos, sin)
            if key_heads != heads:
                keys = keys.repeat_interleave(heads // key_heads, dim=1)
        return RecordedAttention(query=query.float(), keys=keys.float(),
                                 product_scale=1.0 if self.query_scaled_first else scaling,
                                 key_padding_mask=None if key_padding_mask is None else key_padding_mask.bool())

    def attention(self, key_padding_mask: torch.Tensor | None = None) -> LastLayerAttention:
        """The full probability map of the recorded call (see :meth:`RecordedAttention.full`)."""
        return self.record(key_padding_mask).full()


@dataclass(frozen=True)
class RecordedAttention:
    """One encoder call's last-layer query/key states, from which the probabilities are computed on demand.

    query, keys: ``[B, H, F, d]`` float32 (query already scaled for Whisper-style layers, rotary applied).
    product_scale: factor applied to ``q·kᵀ`` (1 when the query was scaled first).
    key_padding_mask: ``[B, F]`` True on keys the encoder attends, ``[B, F, F]`` True on attended query-key pairs
        (windowed encoders), or None when it attends every frame.
    """

    query: torch.Tensor
    keys: torch.Tensor
    product_scale: float
    key_padding_mask: torch.Tensor | None

    def _probabilities(self, query: torch.Tensor, keys: torch.Tensor, key_valid: torch.Tensor | None):
        scores = torch.matmul(query, keys.transpose(-2, -1))
        if self.product_scale != 1.0:
            scores = scores * self.product_scale
        if key_valid is not None:
            if key_valid.dim() == 3:  # pairs: a query row attending nothing (padding) attends everything instead
                key_valid = key_valid | ~key_valid.any(-1, keepdim=True)
            additive = torch.zeros(key_valid.shape, dtype=scores.dtype, device=scores.device)
            additive.masked_fill_(~key_valid.to(scores.device), float("-inf"))
            shape = (key_valid.shape[0], 1, 1, key_valid.shape[-1]) if key_valid.dim() == 2 else (
                key_valid.shape[0], 1, *key_valid.shape[1:])
            scores = scores + additive.view(shape)
        return torch.softmax(scores, dim=-1)

    def full(self, frames: int | None = None) -> LastLayerAttention:
        """``[B, H, F, F]`` probabilities (eager's order of operations, so a float32 model gets eager's values);
        ``frames`` keeps the first rows and columns after the softmax (encoders without a mask whose tokens cover
        fewer frames than the window)."""
        with torch.no_grad():
            probabilities = self._probabilities(self.query, self.keys, self.key_padding_mask)
        if frames is not None:
            return LastLayerAttention(probabilities[..., :frames, :frames], self.keys[..., :frames, :])
        return LastLayerAttention(probabilities, self.keys)

    def _streamed_stats(self, b: int, rows: int, columns: int, mask: torch.Tensor | None, p: int):
        """:func:`samp.attention_stats` of utterance ``b``'s ``rows × columns`` block, a band of query rows at a
        time with all heads: the ``[H, F, F]`` map is never materialised, only a band of at most
        ``STATS_BAND_ELEMENTS`` scores, so the work stays in cache (what keeps the hook within budget on full 30 s
        windows), and a small encoder's utterance is one band (a few calls, not a few per head). ``mask``: None
        when every key in the block is attended, else ``[columns]`` or ``[rows, columns]``, True where attended."""
        heads = self.query.shape[1]
        tokens = rows // p
        additive = None
        if mask is not None:
            if mask.dim() == 2:  # pairs: a query row attending nothing (padding) attends everything instead
                mask = mask | ~mask.any(-1, keepdim=True)
            additive = torch.zeros(mask.shape, dtype=self.query.dtype, device=self.query.device)
            additive.masked_fill_(~mask.to(additive.device), float("-inf"))
        received = torch.zeros(rows, dtype=self.query.dtype, device=self.query.device)
        diagonal = torch.zeros(tokens, dtype=self.query.dtype, device=self.query.device)
        # whole tokens per band, so each token's diagonal block lies in one band
        band = p * max(1, STATS_BAND_ELEMENTS // (heads * columns * p))
        keys = self.keys[b, :, :columns].transpose(-2, -1)
        for start in range(0, rows, band):
            stop = min(rows, start + band)
            scores = torch.matmul(self.query[b, :, start:stop], keys)  # [H, band, columns]
            if self.product_scale != 1.0:
                scores.mul_(self.product_scale)
            if additive is not None:
                scores.add_(additive if additive.dim() == 1 else additive[start:stop])
            probabilities = torch.softmax(scores, dim=-1)[..., :rows]
            if probabilities.shape[-1] < rows:  # keys past the last valid one: probability 0
                probabilities = torch.nn.functional.pad(probabilities, (0, rows - probabilities.shape[-1]))
            received += probabilities.amax(dim=0).sum(dim=0)
            width = (stop - start) // p
            own = probabilities[:, :, start:stop].reshape(heads, width, p, width, p)
            diagonal[start // p : stop // p] += own.diagonal(dim1=1, dim2=3).sum(dim=(0, 1, 2))
        return received.view(tokens, p).sum(-1) / p / tokens, diagonal / heads / p

    def _key_extent(self, rows: list[int]) -> tuple[list[int], list[bool]]:
        """Per utterance whose first ``rows[b]`` query frames are valid: one past the last key they attend, and
        whether any key before it is masked. For the whole batch from one host read (on a GPU, one wait instead
        of a few per utterance)."""
        batch, _, frames, _ = self.query.shape
        mask = self.key_padding_mask
        if mask is None:
            return [frames] * batch, [False] * batch
        index = torch.arange(frames, device=mask.device)
        if mask.dim() == 3:
            valid_rows = index[None, :] < torch.tensor(rows, device=mask.device)[:, None]
            attended = (mask & valid_rows[:, :, None]).any(1)  # [B, F]: keys some valid query attends
        else:
            attended = mask
        extent = torch.where(attended, index, -1).amax(1) + 1
        # pair masks are always applied (their rows differ); a key mask only when it has a hole before the extent
        holes = torch.ones_like(extent) if mask.dim() == 3 else (attended.sum(1) < extent).long()
        extent_list, holes_list = torch.stack([extent, holes]).tolist()
        return extent_list, [bool(hole) for hole in holes_list]

    def stats(self, lengths: torch.Tensor, frames_per_token: int, *, with_keys: bool = False,
              tokens: int | None = None) -> AttentionStats:
        """:func:`samp.attention_stats` of the full map, computed from the valid query rows only; ``tokens`` is the
        padded token axis (default: every whole token of the window).

        Exact, not an approximation: query frames at or past ``P·lengths[b]`` never vote and masked keys get
        probability 0, so each utterance needs only its ``P·L × valid-keys`` block (a 7.5 s clip in a 30 s window:
        1/16 of the map for a masked encoder, 1/4 for an unmasked one). Entries of padded tokens are 0. The sizes
        are read to the host once for the batch (lengths, when on the device, and the key extents); the results
        stay on the states' device.
        """
        batch, heads, frames, _ = self.query.shape
        p = frames_per_token
        n = frames // p if tokens is None else tokens
        device = self.query.device
        host_lengths = [int(length) for length in torch.as_tensor(lengths).tolist()]
        columns, holes = self._key_extent([p * length for length in host_lengths])
        received = torch.zeros(batch, n, device=device)
        self_attention = torch.zeros(batch, n, device=device)
        with torch.no_grad():
            for b, valid_tokens in enumerate(host_lengths):
                rows = p * valid_tokens
                mask = None
                if holes[b]:
                    mask = self.key_padding_mask[b, :columns[b]] if self.key_padding_mask.dim() == 2 else (
                        self.key_padding_mask[b, :rows, :columns[b]])
                one_received, one_self = self._streamed_stats(b, rows, columns[b], mask, p)
                received[b, :valid_tokens] = one_received
                self_attention[b, :valid_tokens] = one_self
        token_keys = pool_keys(self.keys[..., : n * p, :], p) if with_keys else None
        return AttentionStats(received_attention=received, self_attention=self_attention, token_keys=token_keys)


def _unpack(packed: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[ΣL_b, C]`` → ``[B, max L, C]`` zero padded."""
    lengths = [int(n) for n in torch.as_tensor(lengths).tolist()]
    if packed.dim() != 2 or packed.shape[0] != sum(lengths):
        raise ValueError(f"a packed sequence of {sum(lengths)} rows was expected; got shape {tuple(packed.shape)}")
    out = packed.new_zeros(len(lengths), max(lengths), packed.shape[-1])
    for b, part in enumerate(torch.split(packed, lengths)):
        out[b, : part.shape[0]] = part
    return out


def _head_count(module: nn.Module) -> int:
    for owner, name in ((module, "num_heads"), (module, "num_attention_heads"), (getattr(module, "config", None), "num_attention_heads")):
        value = getattr(owner, name, None) if owner is not None else None
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"cannot tell the head count of {type(module).__name__}")
