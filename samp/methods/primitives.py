"""Shared tensor primitives of the clean (``flavor="samp"``) methods.

Every clean method decides, per input token, an output slot (``-1`` when pruned) and a non-negative weight;
:func:`weighted_slots` turns that plan into features. So "each output token is the weighted mean of exactly the
inputs assigned to it" holds by construction for every method.
"""
from __future__ import annotations

import contextvars
import functools
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from samp.methods import cpu_kernels
from samp.methods.cpu_kernels import EXHAUSTED_SHARE

# Rows whose norm is below this are treated as zero vectors (cosine 0 with everything) instead of producing NaN.
NORM_EPS = 1e-12


_FORCE_DEVICE_PATH = contextvars.ContextVar("samp_force_device_path", default=False)


def on_device(tensor: torch.Tensor) -> bool:
    """Whether the methods take their device path for ``tensor``: every non-CPU tensor, and CPU tensors inside
    :func:`device_path`. The device path keeps all work on the tensor's device and reads nothing back to the host
    (host loops run over sizes known before the work starts); the CPU path keeps whatever is fastest on a CPU
    (numpy loops included)."""
    return tensor.device.type != "cpu" or _FORCE_DEVICE_PATH.get()


@contextmanager
def device_path() -> Iterator[None]:
    """Run the methods' device path on CPU tensors too: how tests check it against the CPU path and count its host
    synchronisations, and how benchmarks time it, on a machine without an accelerator."""
    token = _FORCE_DEVICE_PATH.set(True)
    try:
        yield
    finally:
        _FORCE_DEVICE_PATH.reset(token)


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm; zero rows stay zero."""
    norms = x.norm(dim=-1, keepdim=True)
    return x / norms.clamp_min(NORM_EPS)


def inverse_norms(rows: torch.Tensor) -> torch.Tensor:
    """``1 / ‖row‖₂`` per row, 0 for a zero row: scaling a product of raw rows by these gives their cosines (0 with
    a zero row) without a normalised copy of the rows."""
    norms = rows.norm(dim=-1)
    return (norms > NORM_EPS).to(norms.dtype) / norms.clamp_min(NORM_EPS)


def inverse_norms_of_gram(products: torch.Tensor) -> torch.Tensor:
    """:func:`inverse_norms` of rows from their products ``[..., M, M]`` (the diagonal holds the squared norms), when
    the products are needed anyway: no second pass over the rows."""
    norms = products.diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt()
    return (norms > NORM_EPS).to(norms.dtype) / norms.clamp_min(NORM_EPS)


def adjacent_cosine(unit: torch.Tensor) -> torch.Tensor:
    """``[B, N, C]`` unit rows → ``[B, N-1]`` cosine between each token and the next."""
    return (unit[:, :-1] * unit[:, 1:]).sum(-1)


def ranks_descending(scores: torch.Tensor) -> torch.Tensor:
    """Rank of every entry along the last axis when sorted by decreasing score, ties broken by lower index first.

    ``ranks < m`` then selects the top ``m`` per row, with a different ``m`` per row.
    """
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(scores.shape[-1], device=scores.device).expand_as(order))
    return ranks


def valid_mask(lengths: torch.Tensor, n: int) -> torch.Tensor:
    return torch.arange(n, device=lengths.device)[None, :] < lengths[:, None]


def group_ids(starts: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Contiguous groups from a ``[B, N]`` "token starts a new group" mask → group index per token (-1 padding)."""
    ids = torch.cumsum(starts.long(), dim=1) - 1
    return ids.masked_fill(~valid, -1)


def segment_sum(values: torch.Tensor, ids: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Sum ``values [B, N, ...]`` into ``[B, num_segments, ...]`` by ``ids [B, N]``; entries with id -1 are dropped."""
    batch, n = ids.shape
    # Dropped entries go to one extra bin that is cut off, which avoids copying the kept rows out first.
    spill = batch * num_segments
    offsets = num_segments * torch.arange(batch, device=ids.device)[:, None]
    flat_ids = torch.where(ids >= 0, ids + offsets, spill).reshape(-1)
    out = values.new_zeros((spill + 1,) + values.shape[2:])
    out.index_add_(0, flat_ids, values.reshape((batch * n,) + values.shape[2:]))
    return out[:spill].view((batch, num_segments) + values.shape[2:])


def normalised_weights(ids: torch.Tensor, raw: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Weights that sum to one inside each segment; a segment whose raw weights are all zero is averaged evenly."""
    raw = torch.where(ids >= 0, raw.clamp_min(0), torch.zeros_like(raw))
    totals = segment_sum(raw, ids, num_segments)
    counts = segment_sum((ids >= 0).to(raw.dtype), ids, num_segments)
    gather_ids = ids.clamp_min(0)
    member_total = totals.gather(1, gather_ids)
    member_count = counts.gather(1, gather_ids)
    even = (ids >= 0).to(raw.dtype) / member_count.clamp_min(1)
    weights = torch.where(member_total > 0, raw / member_total.clamp_min(torch.finfo(raw.dtype).tiny), even)
    return torch.where(ids >= 0, weights, torch.zeros_like(weights))


def weighted_slots(
    features: torch.Tensor, ids: torch.Tensor, raw_weights: torch.Tensor, num_segments: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean of the inputs of each segment. Returns ``(segment features [B, S, C], weights [B, N])``."""
    weights = normalised_weights(ids, raw_weights, num_segments)
    return weighted_sum(features, ids, weights, num_segments), weights


def weighted_sum(features: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor, num_segments: int) -> torch.Tensor:
    """``out[b, s] = Σ weights[b, n] · features[b, n]`` over the tokens with ``ids[b, n] == s`` (id -1: dropped).

    On a CPU, one compiled pass per utterance over its kept rows: unlike scaling the features first and summing, it
    makes no weighted copy of the input, whose fresh pages cost more than the sums (a sparse ``[S, N]`` by ``[N, C]``
    product, the way before, took 2.5× as long at N = 750, C = 4096).
    """
    if on_device(features):
        # Sparse products need the kept tokens' indices on the host; one scatter-add of weighted rows does not.
        # Padding rows (possibly NaN) carry id -1 and land in the bin segment_sum cuts off.
        return segment_sum(features * weights.to(features.dtype)[..., None], ids, num_segments)
    features = features.detach().float()
    weights = weights.float()
    out = features.new_empty(features.shape[0], num_segments, features.shape[2])
    for b in range(features.shape[0]):
        cpu_kernels.weighted_rows(features[b].numpy(), ids[b].numpy(), weights[b].numpy(), out[b].numpy())
    return out


def gram(rows: torch.Tensor) -> torch.Tensor:
    """``rows @ rows.T`` of rows ``[M, C]``, float32 (on a CPU, :func:`cpu_gram`)."""
    if on_device(rows):
        return rows @ rows.transpose(-2, -1)
    return torch.from_numpy(cpu_gram(rows.detach().float().contiguous().numpy()))


def cpu_gram(rows: np.ndarray) -> np.ndarray:
    """``rows @ rows.T`` of a C-contiguous float32 ``[M, C]`` array.

    Numpy's product of an array with its own transpose is a BLAS ``syrk``: one triangle, mirrored, so exactly
    symmetric, in about 0.6× the time of torch's full product at DPP-kernel sizes (M ≈ 500, C = 4096). Numpy's
    BLAS keeps its own thread pool; it is held to torch's thread count, so ``torch.set_num_threads`` governs this
    product as it does every other.
    """
    threads = torch.get_num_threads()
    if all(blas.num_threads == threads for blas in _numpy_blas()):
        return rows @ rows.T
    with _blas_threads().limit(limits=threads, user_api="blas"):
        return rows @ rows.T


@functools.cache
def _blas_threads() -> ThreadpoolController:
    return ThreadpoolController()


@functools.cache
def _numpy_blas() -> tuple:
    """The BLAS libraries loaded (numpy's among them), whose thread counts are read cheaply before each product."""
    return tuple(_blas_threads().select(user_api="blas").lib_controllers)


def greedy_dpp(
    rows: torch.Tensor,
    valid: torch.Tensor,
    counts: torch.Tensor,
    relevance: torch.Tensor | None = None,
    steps: int | None = None,
) -> torch.Tensor:
    """Greedy DPP MAP on a padded batch: candidate rows ``[B, M, C]`` (cosine similarity), valid ``[B, M]``, counts
    ``[B]``, relevance ``[B, M]`` or None. Returns a ``[B, M]`` mask of exactly ``counts[b]`` distinct valid
    candidates per row. ``steps``: the largest count when the host knows it (the device path's loop length)."""
    if on_device(rows):
        return greedy_dpp_device(rows, valid, counts, relevance, steps)
    sizes = valid.sum(1).tolist()
    picks = greedy_dpp_items(
        [dpp_kernel(rows[b, :size], None if relevance is None else relevance[b, :size])
         for b, size in enumerate(sizes)],
        counts.tolist(),
    )
    selected = torch.zeros_like(valid)
    for b, item_picks in enumerate(picks):
        selected[b, torch.as_tensor(item_picks, dtype=torch.long, device=valid.device)] = True
    return selected


def greedy_dpp_device(
    rows: torch.Tensor,
    valid: torch.Tensor,
    counts: torch.Tensor,
    relevance: torch.Tensor | None = None,
    steps: int | None = None,
) -> torch.Tensor:
    """:func:`greedy_dpp` without leaving the device: the kernel of the whole padded batch in one batched product and
    the greedy loop in torch. ``steps`` (a host int, at least ``counts.max()``) defaults to the number of
    candidate slots, so that no count is read back; callers pass the largest count they know on the host."""
    kernels, diags = dpp_kernels_batched(rows, valid, relevance)
    steps = rows.shape[1] if steps is None else steps
    picks = greedy_picks_device(kernels, diags, valid, steps)
    wanted = torch.arange(steps, device=rows.device)[None, :] < counts.to(rows.device)[:, None]
    selected = torch.zeros(valid.shape, dtype=torch.long, device=rows.device)
    selected.scatter_add_(1, picks, wanted.long())
    return selected > 0


def dpp_kernels_batched(
    rows: torch.Tensor, valid: torch.Tensor, relevance: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`dpp_kernel` for a padded batch ``[B, M, C]``, as device tensors ``[B, M, M]`` and ``[B, M]``; padding
    candidates get a zero kernel row and diagonal (the greedy loop never picks them)."""
    rows = torch.where(valid[..., None], rows.float(), 0.0)
    scale = inverse_norms(rows)
    nonzero = (scale > 0).float()
    if relevance is not None:
        relevance = torch.where(valid, relevance.float(), 0.0)
        scale = scale * relevance
    kernels = torch.bmm(rows, rows.transpose(1, 2)).mul_(scale[:, :, None]).mul_(scale[:, None, :])
    return with_exact_diagonal(kernels, nonzero if relevance is None else relevance.square() * nonzero)


def with_exact_diagonal(kernels: torch.Tensor, diags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernels ``[B, M, M]`` with their diagonal set to ``diags`` ``[B, M]`` (in place), so round-off never decides
    a pick."""
    kernels.diagonal(dim1=1, dim2=2).copy_(diags)
    return kernels, diags


def greedy_picks_device(kernels: torch.Tensor, diags: torch.Tensor, valid: torch.Tensor, steps: int) -> torch.Tensor:
    """The greedy loop of :func:`greedy_dpp_items` in torch on the kernels' device: ``[B, steps]`` picks in pick order
    (entries past an utterance's count are meaningless). The arithmetic of the CPU path's compiled loop
    (:func:`samp.methods.cpu_kernels.greedy_dpp_picks`) but for the order of additions, so the picks agree with it
    wherever round-off does not decide them.

    The T steps stay sequential (each pick depends on the residuals the previous one left); each is a fixed handful
    of whole-batch kernels (O(B·t·M) work for step t) and nothing is read back, so the launches queue ahead of the
    device."""
    batch, m = diags.shape
    inf = torch.full((), float("-inf"), device=diags.device)  # a fill, not a host copy: capturable in a CUDA graph
    spanned = torch.where(valid, diags * EXHAUSTED_SHARE, inf)
    residual = torch.where(valid, diags, inf)
    residual = torch.where(residual < spanned, 0.0, residual)
    basis = torch.zeros(batch, steps, m, device=diags.device)
    picks = torch.zeros(batch, steps, dtype=torch.long, device=diags.device)
    for step in range(steps):
        pick = residual.argmax(dim=1, keepdim=True)  # [B, 1]; the first maximum: ties go to the lower index
        picks[:, step : step + 1] = pick
        gain = residual.gather(1, pick)[:, 0]
        residual.scatter_(1, pick, inf.expand(batch, 1))
        spanned.scatter_(1, pick, inf.expand(batch, 1))
        row = kernels.gather(1, pick[:, :, None].expand(batch, 1, m))[:, 0]  # [B, M]
        if step:
            coefficients = basis[:, :step].gather(2, pick[:, None, :].expand(batch, step, 1))  # [B, step, 1]
            row = row - torch.bmm(coefficients.transpose(1, 2), basis[:, :step])[:, 0]
        positive = gain > 0
        scale = torch.where(positive, 1 / torch.sqrt(torch.where(positive, gain, 1.0)), 0.0)
        row = row * scale[:, None]
        basis[:, step] = row
        residual = residual - row * row
        residual = torch.where(residual < spanned, 0.0, residual)
    return picks


_CAPTURED_GREEDY: dict = {}


def greedy_picks_captured(kernels: torch.Tensor, diags: torch.Tensor, valid: torch.Tensor, steps: int) -> torch.Tensor:
    """:func:`greedy_picks_device` replayed from a CUDA graph captured once per shape, steps and device: the T
    steps' few thousand small kernels then cost one launch instead of one each. Same picks (the same kernels run).
    CUDA only; the graphs stay cached (their memory too) for the life of the process."""
    if kernels.device.type != "cuda":
        raise ValueError(f"greedy_picks_captured needs CUDA tensors; got {kernels.device}")
    key = (tuple(kernels.shape), steps, kernels.device)
    if key not in _CAPTURED_GREEDY:
        static = (kernels.clone(), diags.clone(), valid.clone())
        side = torch.cuda.Stream(kernels.device)
        side.wait_stream(torch.cuda.current_stream(kernels.device))
        with torch.cuda.stream(side):  # warm-up outside the graph: allocator pools, cuBLAS workspaces
            greedy_picks_device(*static, steps)
        torch.cuda.current_stream(kernels.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            picks = greedy_picks_device(*static, steps)
        _CAPTURED_GREEDY[key] = (graph, static, picks)
    graph, static, picks = _CAPTURED_GREEDY[key]
    for target, source in zip(static, (kernels, diags, valid)):
        target.copy_(source)
    graph.replay()
    return picks.clone()


def dpp_kernel(rows: torch.Tensor, relevance: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The kernel ``diag(ρ) · Ŝ · diag(ρ)`` of CPU rows ``[M, C]``, Ŝ their cosine similarity (ρ = 1 when None),
    as float32 numpy with its diagonal, which is set exactly (ρ², or 0 for a zero row) so that round-off never
    decides a pick. The rows need not be unit: the product's diagonal holds their squared norms, and scaling the
    M×M product costs less than a normalised copy. Numpy throughout: at a few dozen tokens an utterance, torch's
    per-call cost would exceed the arithmetic."""
    kernel = cpu_gram(rows.detach().float().contiguous().numpy())
    norms = np.sqrt(np.maximum(np.diagonal(kernel), 0))
    nonzero = norms > NORM_EPS
    scale = np.where(nonzero, 1 / np.maximum(norms, NORM_EPS), 0).astype(np.float32)
    diag = nonzero.astype(np.float32)
    if relevance is not None:
        relevance = relevance.detach().float().numpy()
        scale *= relevance
        diag *= relevance * relevance
    kernel *= scale[:, None]
    kernel *= scale[None, :]
    np.fill_diagonal(kernel, diag)
    return kernel, diag


def greedy_dpp_items(kernels: list[tuple[np.ndarray, np.ndarray]], counts: list[int]) -> list[np.ndarray]:
    """Greedy MAP of a DPP (Chen et al. 2018) for several utterances.

    kernels: per utterance its ``dpp_kernel`` (``[M_b, M_b]`` kernel, ``[M_b]`` diagonal); counts: items to pick
    (at most ``M_b``). Returns each utterance's picks in pick order.

    Unlike the reference: the diagonal is exact, a candidate already spanned by the picks adds no direction (so
    collinear candidates cannot produce NaN or blow up), argmax ties go to the lowest index — spanned candidates
    are then taken in index order — and picks never exceed the candidates, so every pick is distinct. The loop is
    compiled (:func:`samp.methods.cpu_kernels.greedy_dpp_picks`), one utterance at a time.
    """
    sizes = [diag.shape[0] for _, diag in kernels]
    if any(count > size for count, size in zip(counts, sizes)):
        raise ValueError(f"greedy_dpp asked for {counts} items from {sizes} candidates")
    return [cpu_kernels.greedy_dpp_picks(np.ascontiguousarray(kernel, dtype=np.float32),
                                         np.ascontiguousarray(diag, dtype=np.float32), int(count))
            for (kernel, diag), count in zip(kernels, counts)]


def slots_from_groups(ids: torch.Tensor, keep_groups: torch.Tensor) -> torch.Tensor:
    """Output slot of every token given its group id and a ``[B, M]`` mask of kept groups (kept order = slot order)."""
    group_slot = torch.cumsum(keep_groups.long(), dim=1) - 1
    group_slot = group_slot.masked_fill(~keep_groups, -1)
    slots = group_slot.gather(1, ids.clamp_min(0))
    return slots.masked_fill(ids < 0, -1)
