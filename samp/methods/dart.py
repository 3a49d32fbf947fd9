"""DART (Wen et al., EMNLP 2025) after the projector: a few pivot tokens, then the tokens least like each pivot.

The clean rule (spec/new-methods.md §2.2), per utterance with ``T`` tokens to keep:

1. ``P = min(pivots, T)`` pivots: the highest scores, in descending order (ties → lower index). The score is the
   token's L1 norm (``dart``; the original ranks layer-(K−1) keys by L1 norm, and no keys exist after the
   projector) or the attention it receives in the encoder's last layer (``dart-attention``).
2. The ``R = T − P`` remaining places are shared out in pivot order: pivot ``j`` gets ``⌊R/P⌋ + [j < R mod P]``.
3. Each pivot in turn takes its quota of not-yet-kept tokens with the smallest cosine to it (least duplicated;
   ties → lower index).

Unlike the original: exactly ``T`` distinct tokens (its count misses the target and raises when candidates run
out), pivots are visited by score (not in Python ``set`` hash order), zero rows have cosine 0, and there are no
text pivots (nothing but audio exists after the projector).
"""
from __future__ import annotations

import torch

from samp.methods.baselines import _keep_mask_plan
from samp.methods.batch import Batch, Plan
from samp.methods.primitives import inverse_norms

DEFAULT_PIVOTS = 4


def dart(batch: Batch) -> Plan:
    return _dart(batch, torch.linalg.vector_norm(batch.features, ord=1, dim=-1))


def dart_attention(batch: Batch) -> Plan:
    return _dart(batch, batch.received)


def _dart(batch: Batch, scores: torch.Tensor) -> Plan:
    keep = torch.zeros_like(batch.valid)
    for b, (length, count) in enumerate(zip(batch.host_lengths, batch.host_counts)):
        keep[b, dart_keep(batch.features[b, :length], scores[b, :length], count, batch.pivots)] = True
    return _keep_mask_plan(batch, keep)


def dart_keep(rows: torch.Tensor, scores: torch.Tensor, count: int, pivots: int = DEFAULT_PIVOTS) -> torch.Tensor:
    """Sorted indices of the ``count`` tokens DART keeps from ``rows`` ``[n, C]`` with pivot scores ``[n]``."""
    n = rows.shape[0]
    if count >= n:
        return torch.arange(n, device=rows.device)
    rows = rows.float()
    pivots = min(pivots, count)
    pivot_ids = torch.sort(scores.float(), descending=True, stable=True).indices[:pivots]
    kept = torch.zeros(n, dtype=torch.bool, device=rows.device)
    kept[pivot_ids] = True
    take_least_similar(rows[pivot_ids], rows, kept, count - pivots)
    return torch.nonzero_static(kept, size=count)[:, 0]  # exactly count are kept: no read-back for the size


def take_least_similar(pivot_rows: torch.Tensor, rows: torch.Tensor, kept: torch.Tensor, remaining: int) -> None:
    """Share ``remaining`` places over the pivots ``[P, C]`` in order — pivot ``j`` gets ``⌊R/P⌋ + [j < R mod P]`` —
    each taking the not-yet-kept ``rows`` ``[n, C]`` with the smallest cosine to it (ties → lower index). Marks
    them in ``kept`` ``[n]``, in place."""
    pivot_rows, rows = pivot_rows.float(), rows.float()
    pivots = pivot_rows.shape[0]
    scale = inverse_norms(rows)
    cosine = (pivot_rows @ rows.T).mul_(inverse_norms(pivot_rows)[:, None]).mul_(scale[None, :])  # [P, n]
    for rank in range(pivots):
        quota = remaining // pivots + (1 if rank < remaining % pivots else 0)
        if quota == 0:
            break  # quotas only decrease with rank
        similarity = cosine[rank].masked_fill(kept, float("inf"))
        kept[torch.sort(similarity, stable=True).indices[:quota]] = True
