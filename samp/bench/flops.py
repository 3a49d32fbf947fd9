"""FLOP counts recorded beside measured times (spec/new-methods.md).

Prefill: FastV's per-layer formula, which DivPrune's ``tflops.py`` reuses, ``4·L·d² + 2·L²·d + 2·L·d·m`` for ``L``
tokens, hidden size ``d`` and MLP size ``m``; a model that prunes to ``L′`` tokens before layer ``K`` costs
``K·f(L) + (N−K)·f(L′)``. Selection: the leading terms of each rule's cost as the spec states it, in multiply-adds
counted as two FLOPs.
"""
from __future__ import annotations


def layer_flops(tokens: int, hidden: int, intermediate: int) -> int:
    return 4 * tokens * hidden**2 + 2 * tokens**2 * hidden + 2 * tokens * hidden * intermediate


def prefill_flops(layers: int, hidden: int, intermediate: int, tokens: int, kept_tokens: int | None = None,
                  prune_layer: int = 0) -> int:
    """Prefill FLOPs of ``layers`` decoder layers on ``tokens`` tokens, pruned to ``kept_tokens`` before layer
    ``prune_layer`` (None: nothing pruned inside the model)."""
    if kept_tokens is None:
        kept_tokens, prune_layer = tokens, layers
    if not 0 <= prune_layer <= layers:
        raise ValueError(f"prune_layer must be in 0..{layers}; got {prune_layer}")
    return (prune_layer * layer_flops(tokens, hidden, intermediate)
            + (layers - prune_layer) * layer_flops(kept_tokens, hidden, intermediate))


def similarity_flops(n: int, channels: int) -> int:
    """The n×n cosine-similarity product every method's time is compared with."""
    return 2 * n * n * channels


def divprune_flops(n: int, channels: int, kept: int) -> int:
    """The cosine matrix, then one max-update of n entries per pick (spec §1.2: O(n²C + Tn))."""
    return 2 * n * n * channels + 2 * kept * n


def dart_flops(n: int, channels: int, pivots: int) -> int:
    """L1 scores, then each pivot's cosines to every token (spec §2.2: O(nC + P·n·C))."""
    return n * channels + 2 * pivots * n * channels
