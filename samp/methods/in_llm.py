"""Selection rules of the methods that prune audio tokens inside the LLM, right before decoder layer ``K``.

Pure tensor code (spec/new-methods.md §2.2 and §3.2); :mod:`samp.models.llm_pruning` computes their inputs in hooks
on the stock decoder layers and applies the result. Indices are relative to the audio span ``[start, stop)`` of
the prompt and come back sorted.
"""
from __future__ import annotations

import torch

from samp.methods.dart import take_least_similar
from samp.methods.primitives import ranks_descending

FASTV_ROWS = ("last", "mean")


def fastv_scores(probabilities: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Attention each span token receives: ``probabilities`` ``[H, Q, L]`` (softmax rows of layer ``K − 1``) averaged
    over heads and over the ``Q`` query rows given — the last prompt row as FastV's code does, or every row as its
    paper describes (a causal row gives 0 to keys after it)."""
    return probabilities[:, :, start:stop].float().mean(dim=(0, 1))


def fastv_keep(scores: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` highest scores (ties → lower index), sorted. (Sizes known on the host: no read-back.)"""
    return torch.nonzero_static(ranks_descending(scores) < count, size=min(count, scores.numel()))[:, 0]


def dart_llm_keep(key_rows: torch.Tensor, hidden: torch.Tensor, start: int, stop: int, count: int,
                  audio_pivots: int = 4, text_pivots: int = 4) -> torch.Tensor:
    """DART inside the LLM. ``key_rows`` ``[L, H·d]``: layer ``K − 1``'s post-RoPE keys (pivot scores: their L1
    norms); ``hidden`` ``[L, D]``: layer ``K``'s input after the model's final norm (similarity features).

    Audio pivots: the ``min(audio_pivots, count)`` span tokens with the largest key norm; text pivots: the
    ``text_pivots`` tokens after the span with the largest key norm (fewer if fewer follow). The
    ``count − audio pivots`` remaining places are shared over audio then text pivots, each in descending score,
    every pivot taking the span tokens least similar to it. Exactly ``count`` span tokens are kept.
    """
    n = stop - start
    if count >= n:
        return torch.arange(n, device=hidden.device)
    scores = torch.linalg.vector_norm(key_rows.float(), ord=1, dim=-1)
    audio = torch.sort(scores[start:stop], descending=True, stable=True).indices[: min(audio_pivots, count)]
    text = stop + torch.sort(scores[stop:], descending=True, stable=True).indices[:text_pivots]
    span = hidden[start:stop]
    kept = torch.zeros(n, dtype=torch.bool, device=hidden.device)
    kept[audio] = True
    take_least_similar(torch.cat([span[audio], hidden[text]]), span, kept, count - audio.numel())
    return torch.nonzero_static(kept, size=count)[:, 0]
