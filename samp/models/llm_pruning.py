"""In-LLM pruning (FastV, DART inside the LLM) through hooks on the stock decoder layers — no modeling fork.

The recipe of spec/new-methods.md §3.3. For one ``generate`` call on one prompt (B = 1, DynamicCache):

* a forward hook on layer ``K − 1``'s attention recomputes, at prefill, what the rule needs from that layer's
  input: one attention row (FastV's code), every row (its paper) or the post-RoPE keys (DART) — no attention
  weights are requested, so SDPA and FlashAttention stay on;
* a forward pre-hook on every layer ``≥ K`` gathers, at prefill, the hidden states (layer ``K`` only), position
  embeddings, position ids, ``cache_position`` and the mask at the kept positions — original positions, gaps
  included — and at every decode step keeps only the mask columns of the kept prefix plus the decoded tokens.

Layers ``< K`` keep every token in their cache, so the cache length that ``generate`` reads (layer 0's) keeps the
original numbering of decoded positions; layers ``≥ K`` hold ``L′ + t`` entries.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch import nn

from samp.methods.counts import check_keep_ratio, keep_count
from samp.methods.in_llm import FASTV_ROWS, dart_llm_keep, fastv_keep, fastv_scores

IN_LLM_METHODS = ("fastv", "dart-llm")
# Attention implementations whose masks are plain tensors (or None) that can be gathered.
HOOKABLE_ATTENTION = ("eager", "sdpa", "flash_attention_2", "flash_attention_3")


@dataclass(frozen=True)
class LLMPruning:
    """What to prune inside the LLM: ``method`` (``fastv`` | ``dart-llm``) keeps ``keep_count(n, keep_ratio)`` of
    the ``n`` audio tokens from decoder layer ``layer`` (``K ≥ 1``) on. ``rows``: FastV's score rows (``last``:
    the last prompt token, as its code; ``mean``: every row, as its paper). ``audio_pivots`` / ``text_pivots``:
    DART's pivots in the audio span and after it."""

    method: str
    keep_ratio: float
    layer: int = 2
    rows: str = "last"
    audio_pivots: int = 4
    text_pivots: int = 4

    def __post_init__(self):
        if self.method not in IN_LLM_METHODS:
            raise ValueError(f"unknown in-LLM method {self.method!r}; available: {', '.join(IN_LLM_METHODS)}")
        check_keep_ratio(self.keep_ratio)
        if isinstance(self.layer, bool) or not isinstance(self.layer, int) or self.layer < 1:
            raise ValueError(
                f"layer must be an int >= 1 (K = 0 would prune before the LLM: use a post-projector method); "
                f"got {self.layer!r}")
        if self.rows not in FASTV_ROWS:
            raise ValueError(f"rows must be one of {', '.join(FASTV_ROWS)}; got {self.rows!r}")
        for name in ("audio_pivots", "text_pivots"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "audio_pivots" else 0):
                raise ValueError(f"{name} must be a {'positive' if name == 'audio_pivots' else 'non-negative'} int; "
                                 f"got {value!r}")


def find_decoder(model: nn.Module) -> nn.Module:
    """The text decoder inside ``model``: the module holding ``embed_tokens``, decoder ``layers`` and ``norm``."""
    for module in model.modules():
        layers = getattr(module, "layers", None)
        if (isinstance(layers, nn.ModuleList) and len(layers) and hasattr(module, "embed_tokens")
                and hasattr(module, "norm") and hasattr(layers[0], "self_attn")):
            return module
    raise ValueError(
        f"{type(model).__name__} has no decoder with embed_tokens, layers[i].self_attn and norm: in-LLM pruning "
        "hooks the stock decoder layers of Llama/Qwen-style LLMs")


def _check_hookable(decoder: nn.Module, layer: int) -> None:
    layers = decoder.layers
    if layer >= len(layers):
        raise ValueError(f"layer must be below the LLM's {len(layers)} decoder layers; got {layer}")
    implementation = getattr(decoder.config, "_attn_implementation", None)
    if implementation not in HOOKABLE_ATTENTION:
        raise ValueError(
            f"attention implementation {implementation!r} cannot be hooked (its masks cannot be gathered); use one "
            f"of {', '.join(HOOKABLE_ATTENTION)}")
    attention = layers[layer - 1].self_attn
    missing = [name for name in ("q_proj", "k_proj", "scaling", "head_dim") if not hasattr(attention, name)]
    rotary = getattr(sys.modules[type(attention).__module__], "apply_rotary_pos_emb", None)
    if missing or rotary is None:
        raise ValueError(
            f"{type(attention).__name__} cannot be hooked: it lacks "
            f"{', '.join(missing + ([] if rotary else ['apply_rotary_pos_emb in its module']))}")


def llm_pruning_hooks(model: nn.Module, pruning: LLMPruning):
    """``span → prune_in_llm(model, pruning, span=span)``, once ``model`` is known to be hookable (checked here,
    before any audio is encoded)."""
    prune_in_llm(model, pruning, span=(0, 1))
    return lambda span: prune_in_llm(model, pruning, span=span)


def _cache_of(kwargs: dict):
    for name in ("cache", "past_key_values", "past_key_value"):
        if kwargs.get(name) is not None:
            return kwargs[name]
    return None


class prune_in_llm:
    """Context manager: within it, each ``generate`` (or forward) prefill of ``model`` prunes the audio span
    ``[start, stop)`` of its single prompt as ``pruning`` says. ``span`` is the span or, with ``placeholder_id``,
    found at prefill as the run of that token id in the prompt. ``kept`` holds the absolute positions kept at the
    last prefill. Enter it once per ``generate`` call (its state is per prompt)."""

    def __init__(self, model: nn.Module, pruning: LLMPruning, *, span: tuple[int, int] | None = None,
                 placeholder_id: int | None = None):
        if (span is None) == (placeholder_id is None):
            raise ValueError("give exactly one of span=(start, stop) and placeholder_id (the token marking the audio)")
        self.model, self.pruning, self.span, self.placeholder_id = model, pruning, span, placeholder_id
        self.decoder = find_decoder(model)
        _check_hookable(self.decoder, pruning.layer)
        self.kept: torch.Tensor | None = None
        self._handles = []

    # --- state of one prompt ---
    def _reset(self):
        self.kept, self._length, self._scores, self._keys, self._prompt_ids = None, None, None, None, None
        self._prefill = False  # between layer K-1's prefill and the last layer's

    def __enter__(self):
        self._reset()
        layers = self.decoder.layers
        k = self.pruning.layer
        self._handles.append(self.decoder.embed_tokens.register_forward_hook(self._see_ids))
        self._handles.append(layers[k - 1].self_attn.register_forward_hook(self._score, with_kwargs=True))
        for index in range(k, len(layers)):
            self._handles.append(layers[index].register_forward_pre_hook(
                lambda module, args, kwargs, first=(index == k), last=(index == len(layers) - 1):
                self._gather(args, kwargs, first, last),
                with_kwargs=True))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _see_ids(self, module, args, output):
        ids = args[0] if args else None
        if ids is not None and ids.dim() == 2 and ids.shape[1] > 1:
            self._prompt_ids = ids

    def _audio_span(self, length: int) -> tuple[int, int]:
        if self.span is not None:
            start, stop = self.span
        else:
            if self._prompt_ids is None:
                raise ValueError("the prompt came as embeddings: give span=(start, stop), not placeholder_id")
            where = torch.nonzero(self._prompt_ids[0] == self.placeholder_id).squeeze(1)
            if where.numel() == 0:
                raise ValueError(f"the prompt has no placeholder id {self.placeholder_id}")
            start, stop = int(where[0]), int(where[-1]) + 1
            if where.numel() != stop - start:
                raise ValueError(f"the placeholder ids {self.placeholder_id} in the prompt are not one contiguous run")
        if not 0 <= start < stop <= length:
            raise ValueError(f"audio span [{start}, {stop}) is not inside the prompt of {length} tokens")
        return start, stop

    # --- layer K-1: what the rule needs from that layer's input ---
    def _score(self, module, args, kwargs, output):
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        if hidden.shape[1] == 1:
            return None
        if hidden.shape[0] != 1:
            raise ValueError(f"in-LLM pruning runs one prompt at a time (batch 1, as FastV and DART do); got "
                             f"batch {hidden.shape[0]}")
        if self._length is not None:
            raise ValueError("a second multi-token forward in one pruned generate: chunked prefill and assisted "
                             "decoding are not supported")
        cache = _cache_of(kwargs)
        if cache is not None and type(cache).__name__ != "DynamicCache":
            raise ValueError(f"in-LLM pruning needs a DynamicCache (layers hold different lengths); got "
                             f"{type(cache).__name__}")
        self._length, self._prefill = hidden.shape[1], True
        cos, sin = kwargs["position_embeddings"]
        if self.pruning.method == "fastv":
            rows = slice(-1, None) if self.pruning.rows == "last" else slice(None)
            queries, keys = _rotated_queries_keys(module, hidden, cos, sin, rows)
            logits = (queries.float() @ keys.float().transpose(-1, -2)) * module.scaling  # [1, H, Q, L]
            if self.pruning.rows == "mean":  # every query row: causal
                causal = torch.ones(logits.shape[-2:], dtype=torch.bool, device=logits.device).triu(1)
                logits = logits.masked_fill(causal, float("-inf"))
            self._scores = torch.softmax(logits, dim=-1)[0]
        else:
            _, keys = _rotated_queries_keys(module, hidden, cos, sin, None)
            self._keys = keys[0].transpose(0, 1).reshape(self._length, -1)  # [L, H·d]
        return None

    # --- layers >= K: gather at prefill, trim the mask while decoding ---
    def _gather(self, args, kwargs, first: bool, last: bool):
        if self._length is None:
            raise ValueError("decoder layer K ran before layer K-1's attention: the model's layers cannot be hooked")
        if self._prefill:
            if first:
                hidden = args[0] if args else kwargs["hidden_states"]
                self.kept = self._select(hidden)
                if args:
                    args = (hidden[:, self.kept],) + tuple(args[1:])
                else:
                    kwargs = {**kwargs, "hidden_states": hidden[:, self.kept]}
            self._prefill = not last
            return args, _gathered(kwargs, self.kept)
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            columns = torch.cat([self.kept, torch.arange(self._length, mask.shape[-1], device=self.kept.device)])
            kwargs["attention_mask"] = mask.index_select(-1, columns.to(mask.device))
        return args, kwargs

    def _select(self, hidden: torch.Tensor) -> torch.Tensor:
        start, stop = self._audio_span(self._length)
        count = keep_count(stop - start, self.pruning.keep_ratio)
        if self.pruning.method == "fastv":
            chosen = fastv_keep(fastv_scores(self._scores, start, stop), count)
        else:
            normed = self.decoder.norm(hidden)[0]
            chosen = dart_llm_keep(self._keys, normed, start, stop, count, self.pruning.audio_pivots,
                                   self.pruning.text_pivots)
        device = hidden.device
        return torch.cat([torch.arange(start, device=device), start + chosen.to(device),
                          torch.arange(stop, self._length, device=device)])


def _rotated_queries_keys(attention: nn.Module, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                          rows: slice | None) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Post-RoPE queries of ``hidden[:, rows]`` ``[B, H, Q, d]`` (None without ``rows``) and keys of every token,
    repeated for GQA ``[B, H, L, d]``, as the stock attention computes them."""
    rotate = sys.modules[type(attention).__module__].apply_rotary_pos_emb
    batch, length, _ = hidden.shape
    dim = attention.head_dim
    keys = attention.k_proj(hidden).view(batch, length, -1, dim).transpose(1, 2)
    if hasattr(attention, "k_norm"):
        keys = attention.k_norm(keys)
    keys = rotate(keys, keys, cos, sin)[0]
    heads = attention.q_proj.out_features // dim
    keys = keys.repeat_interleave(heads // keys.shape[1], dim=1)
    if rows is None:
        return None, keys
    picked = hidden[:, rows]
    queries = attention.q_proj(picked).view(batch, picked.shape[1], -1, dim).transpose(1, 2)
    if hasattr(attention, "q_norm"):
        queries = attention.q_norm(queries)
    return rotate(queries, queries, cos[:, rows], sin[:, rows])[0], keys


def _gathered(kwargs: dict, kept: torch.Tensor) -> dict:
    """The layer's kwargs at the kept positions (new tensors: HF passes the same objects to every layer)."""
    out = dict(kwargs)
    if out.get("position_embeddings") is not None:
        cos, sin = out["position_embeddings"]
        out["position_embeddings"] = (cos.index_select(-2, kept.to(cos.device)),
                                      sin.index_select(-2, kept.to(sin.device)))
    for name in ("position_ids", "cache_position"):
        if isinstance(out.get(name), torch.Tensor):
            out[name] = out[name].index_select(-1, kept.to(out[name].device))
    mask = out.get("attention_mask")
    if isinstance(mask, torch.Tensor):
        index = kept.to(mask.device)
        mask = mask.index_select(-1, index)
        if mask.dim() == 4:
            mask = mask.index_select(-2, index)
        out["attention_mask"] = mask
    return out
