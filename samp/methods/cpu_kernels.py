"""Compiled (numba) loops for the sequential parts of the CPU path: Samp's grouping (with its merged tokens), the
greedy DPP and the weighted sums of kept tokens. As Python loops of numpy calls (T steps of a dozen calls each), the
per-call cost, not the arithmetic, dominated; compiled, each step is only its arithmetic.

Each function works on one utterance's numpy arrays. The arithmetic is that of the numpy and torch code these loops
replaced except for the order of additions inside dot products and row updates, so decisions agree with it wherever
round-off does not decide them (the golden and property suites hold that, and 480 method × setting cases gave the
same assignments before and after). Compiled code is
cached beside this module (or, where that is read-only, in numba's per-user cache), so it is compiled once per
machine, not once per process.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# A DPP candidate whose residual falls below this share of its kernel diagonal counts as spanned by the picks.
EXHAUSTED_SHARE = 1e-5

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@njit(fastmath={"reassoc"}, **_JIT)
def _dots64(a, b):
    """``(b·b, a·b)`` of float32 vectors in one pass over ``b``, accumulated in float64; reassociation lets the
    sums vectorise (they then vary with SIMD width at ~1e-16 relative, far below float32 round-off)."""
    square, product = 0.0, 0.0
    for k in range(b.shape[0]):
        value = np.float64(b[k])
        square += value * value
        product += np.float64(a[k]) * value
    return square, product


@njit(**_JIT)
def group_and_merge(rows, threshold, norm_eps, raw_weights, self_attention):
    """Samp's grouping of one utterance, and its merged tokens, in one pass over ``rows`` ``[n, C]`` float32.

    Token ``j`` joins the open group when its mean cosine to all current members is at least ``threshold``: that
    mean is ``(Σ unit rows of the group) · unit(j) / size``, so a running float32 sum of the open group's unit rows
    makes each step one pass over row ``j`` (its norm and that dot product together), and the N×N similarity
    matrix is never built. As each group closes its members are still in cache, and its merged token is formed:
    the mean of its rows weighted by ``raw_weights`` clamped at 0 and normalised inside the group (evenly when they
    are all 0), and its mean ``self_attention``.

    Returns ``starts`` (bool ``[n]``), ``join_scores`` (float64 ``[n]``, NaN for starts), the merged rows
    ``[groups, C]`` and their mean self-attention ``[groups]``.
    """
    n, channels = rows.shape
    starts = np.zeros(n, dtype=np.bool_)
    join_scores = np.full(n, np.nan)
    merged = np.empty((n, channels), dtype=np.float32)
    relevance = np.empty(n, dtype=np.float32)
    if n == 0:
        return starts, join_scores, merged, relevance
    starts[0] = True
    group_sum = np.empty(channels, dtype=np.float32)
    # a zero row has cosine 0 with everything
    square, _ = _dots64(rows[0], rows[0])
    inverse_previous = np.float32(1.0) / max(np.float32(np.sqrt(square)), np.float32(norm_eps))
    size, opened, groups = 1, 0, 0
    for j in range(1, n):
        square, product = _dots64(rows[j - 1] if size == 1 else group_sum, rows[j])
        inverse = np.float32(1.0) / max(np.float32(np.sqrt(square)), np.float32(norm_eps))
        if size == 1:
            score = product * np.float64(inverse_previous) * np.float64(inverse)
        else:
            score = product * np.float64(inverse) / size
        if score >= threshold:
            if size == 1:
                for k in range(channels):
                    group_sum[k] = rows[j - 1, k] * inverse_previous + rows[j, k] * inverse
            else:
                for k in range(channels):
                    group_sum[k] += rows[j, k] * inverse
            size += 1
            join_scores[j] = score
        else:
            relevance[groups] = _merge_run(rows, raw_weights, self_attention, opened, j, merged[groups])
            groups += 1
            starts[j] = True
            size, opened = 1, j
        inverse_previous = inverse
    relevance[groups] = _merge_run(rows, raw_weights, self_attention, opened, n, merged[groups])
    groups += 1
    return starts, join_scores, merged[:groups], relevance[:groups]


@njit(**_JIT)
def _merge_run(rows, raw_weights, self_attention, start, stop, out):
    """Writes the weighted mean of ``rows[start:stop]`` into ``out``; returns their mean self-attention."""
    total = np.float32(0.0)
    attention = np.float32(0.0)
    for t in range(start, stop):
        total += max(raw_weights[t], np.float32(0.0))
        attention += self_attention[t]
    members = np.float32(stop - start)
    for t in range(start, stop):
        weight = max(raw_weights[t], np.float32(0.0)) / total if total > 0 else np.float32(1.0) / members
        if t == start:
            for k in range(out.shape[0]):
                out[k] = weight * rows[t, k]
        else:
            for k in range(out.shape[0]):
                out[k] += weight * rows[t, k]
    return attention / members


@njit(**_JIT)
def greedy_dpp_picks(kernel, diag, count):
    """Greedy MAP of a DPP (Chen et al. 2018) with kernel ``[M, M]`` and its exact diagonal ``[M]`` (float32):
    ``count`` picks in pick order. Each step picks the largest residual (ties to the lowest index); a candidate
    whose residual falls below ``EXHAUSTED_SHARE`` of its diagonal is spanned by the picks and held at exactly 0.

    Picked candidates leave the active set (the last active one takes their place), so step t updates only the
    M − t candidates left, four basis rows at a time: about 40 % of the work of updating all M."""
    m = diag.shape[0]
    zero = np.float32(0.0)
    residual = np.empty(m, dtype=np.float32)
    spanned = np.empty(m, dtype=np.float32)
    index = np.empty(m, dtype=np.int64)  # active position → candidate
    for j in range(m):
        index[j] = j
        spanned[j] = diag[j] * np.float32(EXHAUSTED_SHARE)
        residual[j] = zero if diag[j] < spanned[j] else diag[j]
    basis = np.zeros((count, m), dtype=np.float32)  # basis[s, k]: s-th orthogonalised kernel row, active position k
    picks = np.empty(count, dtype=np.int64)
    coefficients = np.empty(count, dtype=np.float32)
    row = np.empty(m, dtype=np.float32)
    active = m
    for step in range(count):
        best, best_residual, best_index = 0, residual[0], index[0]
        for k in range(1, active):
            if residual[k] > best_residual or (residual[k] == best_residual and index[k] < best_index):
                best, best_residual, best_index = k, residual[k], index[k]
        picks[step] = best_index
        last = active - 1
        for s in range(step):
            coefficients[s] = basis[s, best]
            basis[s, best] = basis[s, last]
        index[best], residual[best], spanned[best] = index[last], residual[last], spanned[last]
        active = last
        kernel_row = kernel[best_index]
        for k in range(active):
            row[k] = kernel_row[index[k]]
        s = 0
        while s + 4 <= step:
            c0, c1, c2, c3 = coefficients[s], coefficients[s + 1], coefficients[s + 2], coefficients[s + 3]
            b0, b1, b2, b3 = basis[s], basis[s + 1], basis[s + 2], basis[s + 3]
            for k in range(active):
                row[k] -= (c0 * b0[k] + c1 * b1[k]) + (c2 * b2[k] + c3 * b3[k])
            s += 4
        while s < step:
            c0, b0 = coefficients[s], basis[s]
            for k in range(active):
                row[k] -= c0 * b0[k]
            s += 1
        # a spanned pick (gain 0) adds no direction: its row is zeroed
        scale = np.float32(1.0) / np.sqrt(best_residual) if best_residual > zero else zero
        out = basis[step]
        for k in range(active):
            value = row[k] * scale
            out[k] = value
            left = residual[k] - value * value
            residual[k] = zero if left < spanned[k] else left
    return picks


@njit(**_JIT)
def weighted_rows(features, ids, weights, out):
    """``out[s] = Σ weights[t] · features[t]`` over the tokens ``t`` with ``ids[t] == s`` (-1: dropped), for one
    utterance's float32 ``[N, C]``, written into ``out`` ``[S, C]``. One pass over the kept rows; a segment's first
    member initialises it, so the output needs no zeroing pass (segments without members are zeroed at the end)."""
    segments, channels = out.shape
    touched = np.zeros(segments, dtype=np.bool_)
    for t in range(ids.shape[0]):
        s = ids[t]
        if s < 0:
            continue
        weight = weights[t]
        if touched[s]:
            for k in range(channels):
                out[s, k] += weight * features[t, k]
        else:
            touched[s] = True
            for k in range(channels):
                out[s, k] = weight * features[t, k]
    for s in range(segments):
        if not touched[s]:
            out[s] = 0.0

