"""`samp.compress`: validate once, run a method, return :class:`Compressed`."""
from __future__ import annotations

import math
from typing import Sequence

import torch

from samp.methods.batch import Batch
from samp.methods.counts import check_flavor, check_keep_ratio, keep_count
from samp.methods.dart import DEFAULT_PIVOTS
from samp.methods.primitives import normalised_weights, on_device, valid_mask, weighted_sum
from samp.methods.registry import get
from samp.methods.result import Compressed
from samp.methods.stats import AttentionStats, attention_stats, pool_keys


def compress(
    features: torch.Tensor,
    lengths: torch.Tensor | Sequence[int],
    *,
    method: str = "samp",
    keep_ratio: float = 0.6,
    threshold: float = 0.85,
    attention: torch.Tensor | AttentionStats | None = None,
    keys: torch.Tensor | None = None,
    frames_per_token: int = 2,
    flavor: str = "samp",
    seed: int = 0,
    pivots: int = DEFAULT_PIVOTS,
) -> Compressed:
    """Compress a padded batch of projected audio tokens.

    features ``[B, N, C]`` (rows at or past ``lengths[b]`` are padding and never influence the result);
    lengths ``[B]`` valid tokens per utterance (1 … N); attention: the last encoder layer's softmax probabilities
    ``[B, H, P·N, P·N]`` (``P = frames_per_token``) or precomputed :class:`AttentionStats`; keys: that layer's key
    states ``[B, H, P·N, d]`` (VisionZip). ``threshold`` is the cosine threshold of the merging methods, ``seed``
    seeds ``random``, ``pivots`` is DART's number of pivot tokens. ``flavor="samp"`` is the clean algorithm;
    ``qwen2_audio | glm_asr | kimi_audio`` reproduce the SA-MAP reference for that model, quirks included (those
    need the full attention map).
    """
    spec = check_options(method, keep_ratio, threshold, flavor)
    if spec.plan is None:
        raise ValueError(f"method {method!r} prunes inside the LLM ({spec.kind}), not the projected tokens: run it "
                         f"through adapter.generate(method={method!r}) (samp.models.llm_pruning)")
    keep_ratio = float(keep_ratio)
    if isinstance(frames_per_token, bool) or not isinstance(frames_per_token, int) or frames_per_token < 1:
        raise ValueError(f"frames_per_token must be a positive int; got {frames_per_token!r}")
    if isinstance(pivots, bool) or not isinstance(pivots, int) or pivots < 1:
        raise ValueError(f"pivots must be a positive int (DART's pivot tokens per utterance); got {pivots!r}")
    if spec.needs_attention and attention is None:
        raise ValueError(f"method {method!r} needs the encoder's attention: pass attention= (a map or AttentionStats)")
    if spec.needs_keys and keys is None and not (
        isinstance(attention, AttentionStats) and attention.token_keys is not None
    ):
        raise ValueError(f"method {method!r} needs the last encoder layer's key states: pass keys=")
    if flavor == "samp" and isinstance(features, torch.Tensor) and on_device(features):
        return _compress_on_device(spec, features, lengths, keep_ratio, float(threshold), attention, keys,
                                   frames_per_token, int(seed), pivots)
    features, lengths = _check_features(features, lengths)
    batch_size, n, _ = features.shape
    valid = valid_mask(lengths, n)
    if isinstance(attention, torch.Tensor):
        _check_map(attention, batch_size, n, frames_per_token, lengths)
    if keys is not None:
        _check_keys(keys, batch_size, n, frames_per_token)

    if flavor != "samp":
        if isinstance(attention, AttentionStats):
            raise ValueError(
                f"flavor={flavor!r} reproduces the reference from the full attention map; pass the "
                "[B, H, P·N, P·N] probabilities, not AttentionStats"
            )
        from samp.methods.reference import compress_reference

        return compress_reference(
            features, lengths, method=method, keep_ratio=keep_ratio, threshold=float(threshold),
            attention=attention, keys=keys, frames_per_token=frames_per_token, flavor=flavor,
        )

    stats = _stats(attention, keys, lengths, frames_per_token, batch_size, n, valid)
    _check_stats(stats)
    work = features.float()
    host_lengths = tuple(lengths.tolist())
    host_counts = tuple(keep_count(length, keep_ratio) for length in host_lengths)
    counts = torch.tensor(host_counts, dtype=torch.long, device=features.device)
    batch = Batch(features=work, lengths=lengths, counts=counts, threshold=float(threshold), seed=int(seed),
                  stats=stats, pivots=pivots, host_lengths=host_lengths, host_counts=host_counts)
    return _planned(spec, batch, features.dtype)


def _compress_on_device(spec, features, lengths, keep_ratio, threshold, attention, keys, frames_per_token, seed,
                        pivots) -> Compressed:
    """The clean flavour on the device path: the same checks and result as the CPU path, with one host
    synchronisation in all — the validity flags (and the lengths, when they live on the device) are read together
    before any method work. Lengths passed as a list cost no synchronisation at all."""
    batch_size, n, _ = _check_shapes(features)
    host_lengths = None
    if isinstance(lengths, torch.Tensor):
        _check_lengths_tensor(lengths, batch_size)
        lengths = lengths.to(device=features.device, dtype=torch.long)
    else:
        host_lengths = _host_lengths(lengths, batch_size, n)
        lengths = torch.tensor(host_lengths, dtype=torch.long, device=features.device)
    if isinstance(attention, torch.Tensor):
        _check_map_shape(attention, batch_size, n, frames_per_token)
    if keys is not None:
        _check_keys_shape(keys, batch_size, n, frames_per_token)
    safe_lengths = lengths.clamp(1, n)  # until they are read: out-of-range lengths must not break the flags' work
    valid = valid_mask(safe_lengths, n)
    flags = [torch.isfinite(features.sum(-1)).logical_or(~valid).all()]
    if isinstance(attention, torch.Tensor):
        flags.append(torch.isfinite(attention).all())
    if keys is not None:
        flags.append(torch.isfinite(keys).all())
    stats = _stats(attention, keys, safe_lengths, frames_per_token, batch_size, n, valid)
    flags.append(torch.isfinite(stats.received_attention).all() & torch.isfinite(stats.self_attention).all())
    probe = torch.stack(flags).long()
    if host_lengths is None:
        probe = torch.cat([lengths, probe])
    values = probe.tolist()  # the one host synchronisation
    if host_lengths is None:
        host_lengths = tuple(values[:batch_size])
        _check_length_range(host_lengths, n)
        values = values[batch_size:]
    ok = iter(values)
    if not next(ok):
        _check_features(features, host_lengths)  # raises, naming the first bad token
    if isinstance(attention, torch.Tensor) and not next(ok):
        raise ValueError("attention contains NaN or inf")
    if keys is not None and not next(ok):
        raise ValueError("keys contain NaN or inf")
    if not next(ok):
        raise ValueError("attention statistics contain NaN or inf")
    host_counts = tuple(keep_count(length, keep_ratio) for length in host_lengths)
    counts = torch.tensor(host_counts, dtype=torch.long, device=features.device)
    batch = Batch(features=features.float(), lengths=lengths, counts=counts, threshold=threshold, seed=seed,
                  stats=stats, pivots=pivots, host_lengths=host_lengths, host_counts=host_counts)
    return _planned(spec, batch, features.dtype)


def _planned(spec, batch: Batch, dtype: torch.dtype) -> Compressed:
    """Run the method's plan and turn it into the weighted means, on either path. The kept count is checked (a
    method bug, never the caller's): on the host on the CPU path, on the device without a read-back otherwise."""
    plan = spec.plan(batch)
    kept = (plan.slots.amax(dim=1) + 1).clamp_min(0)
    if batch.device_path:
        torch._assert_async((kept == batch.counts).all(),
                            f"method {spec.name!r} kept another number of tokens than asked")
    elif not torch.equal(kept, batch.counts):
        raise AssertionError(f"method {spec.name!r} kept {kept.tolist()} tokens instead of {list(batch.host_counts)}")
    segments = max(batch.host_counts)
    weights = normalised_weights(plan.slots, plan.weights.float(), segments)
    out = weighted_sum(batch.features, plan.slots, weights, segments)
    return Compressed(features=out.to(dtype), lengths=batch.counts, assignment=plan.slots, weights=weights)


def check_options(method: str, keep_ratio: float, threshold: float, flavor: str = "samp"):
    """The :class:`~samp.methods.registry.MethodSpec` of ``method`` once the setting is known to be valid; raises a
    ValueError naming what is wrong. Needs no tensor, so a caller checks a setting before loading a model."""
    spec = get(method)
    keep_ratio = check_keep_ratio(keep_ratio)
    check_flavor(flavor)
    if method == "base" and keep_ratio != 1.0:
        raise ValueError(f"method 'base' keeps every token; pass keep_ratio=1.0 (got {keep_ratio})")
    if (isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold)
            or not -1.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must be a finite number in [-1, 1] (a cosine similarity); got {threshold!r}")
    if flavor != "samp":
        from samp.methods.reference import METHODS as REFERENCE_METHODS

        if method not in REFERENCE_METHODS:
            raise ValueError(f"method {method!r} has no {flavor!r} reference flavour (the SA-MAP reference has "
                             f"{', '.join(sorted(REFERENCE_METHODS))}); use flavor='samp'")
    return spec


def _check_shapes(features) -> tuple[int, int, int]:
    if not isinstance(features, torch.Tensor):
        raise ValueError(f"features must be a torch.Tensor [B, N, C]; got {type(features).__name__}")
    if features.dim() != 3:
        raise ValueError(f"features must be [B, N, C]; got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise ValueError(f"features must be floating point; got {features.dtype}")
    batch_size, n, channels = features.shape
    if batch_size == 0 or n == 0 or channels == 0:
        raise ValueError(f"features must be non-empty [B, N, C]; got shape {tuple(features.shape)}")
    return batch_size, n, channels


def _check_lengths_tensor(lengths: torch.Tensor, batch_size: int) -> None:
    if lengths.dim() != 1 or lengths.shape[0] != batch_size:
        raise ValueError(f"lengths must be [B] = [{batch_size}]; got shape {tuple(lengths.shape)}")
    if lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be integers; got {lengths.dtype}")


def _host_lengths(lengths, batch_size: int, n: int) -> tuple[int, ...]:
    """Lengths given as a host sequence, checked as a tensor would be, then read without a tensor round trip."""
    _check_lengths_tensor(torch.as_tensor(lengths), batch_size)
    host = tuple(int(length) for length in lengths)
    _check_length_range(host, n)
    return host


def _check_length_range(lengths: Sequence[int], n: int) -> None:
    if any(length < 1 or length > n for length in lengths):
        raise ValueError(
            f"lengths must be in 1..N={n} (an utterance needs at least one audio token); got {list(lengths)}"
        )


def _check_features(features, lengths) -> tuple[torch.Tensor, torch.Tensor]:
    batch_size, n, channels = _check_shapes(features)
    lengths = torch.as_tensor(lengths)
    _check_lengths_tensor(lengths, batch_size)
    lengths = lengths.to(device=features.device, dtype=torch.long)
    if bool(((lengths < 1) | (lengths > n)).any()):
        _check_length_range(lengths.tolist(), n)
    valid = valid_mask(lengths, n)
    # One cheap pass first: a NaN or inf anywhere in a row makes its sum non-finite.
    if bool(torch.isfinite(features.sum(-1)).logical_or(~valid).all()):
        return features, lengths
    finite = torch.isfinite(features).all(dim=-1) | ~valid
    if not bool(finite.all()):
        b, t = (int(i) for i in torch.nonzero(~finite)[0])
        raise ValueError(f"features contain NaN or inf in a valid token (utterance {b}, token {t})")
    return features, lengths


def _check_map(attention: torch.Tensor, batch_size: int, n: int, p: int, lengths: torch.Tensor) -> None:
    _check_map_shape(attention, batch_size, n, p)
    if not _all_finite(attention):
        raise ValueError("attention contains NaN or inf")


def _check_map_shape(attention: torch.Tensor, batch_size: int, n: int, p: int) -> None:
    expected = (batch_size, p * n, p * n)
    if attention.dim() != 4 or (attention.shape[0], attention.shape[2], attention.shape[3]) != expected:
        raise ValueError(
            f"attention must be [B, H, P·N, P·N] = [{batch_size}, H, {p * n}, {p * n}] for N={n}, "
            f"frames_per_token={p}; got shape {tuple(attention.shape)}"
        )


def _check_keys(keys: torch.Tensor, batch_size: int, n: int, p: int) -> None:
    _check_keys_shape(keys, batch_size, n, p)
    if not _all_finite(keys):
        raise ValueError("keys contain NaN or inf")


def _check_keys_shape(keys: torch.Tensor, batch_size: int, n: int, p: int) -> None:
    if keys.dim() != 4 or keys.shape[0] != batch_size or keys.shape[2] != p * n:
        raise ValueError(
            f"keys must be [B, H, P·N, d] = [{batch_size}, H, {p * n}, d]; got shape {tuple(keys.shape)}"
        )


def _all_finite(values: torch.Tensor) -> bool:
    """A NaN or inf makes the sum non-finite; only a finite sum that overflowed needs the element-wise check, which
    on a 20×1500×1500 map would allocate a 45M-element mask."""
    return bool(torch.isfinite(values.sum())) or bool(torch.isfinite(values).all())


def _check_stats(stats: AttentionStats) -> None:
    if not (bool(torch.isfinite(stats.received_attention).all()) and bool(torch.isfinite(stats.self_attention).all())):
        raise ValueError("attention statistics contain NaN or inf")


def _stats(attention, keys, lengths, p, batch_size, n, valid) -> AttentionStats | None:
    if attention is None:
        token_keys = pool_keys(keys, p) if keys is not None else None
        zeros = torch.zeros(batch_size, n, device=lengths.device)
        return AttentionStats(received_attention=zeros, self_attention=zeros, token_keys=token_keys)
    if isinstance(attention, torch.Tensor):
        stats = attention_stats(attention, lengths, p, keys)
    elif isinstance(attention, AttentionStats):
        stats = attention
        for name in ("received_attention", "self_attention"):
            value = getattr(stats, name)
            if tuple(value.shape) != (batch_size, n):
                raise ValueError(f"AttentionStats.{name} must be [B, N] = [{batch_size}, {n}]; got {tuple(value.shape)}")
        if stats.token_keys is not None and tuple(stats.token_keys.shape[:2]) != (batch_size, n):
            raise ValueError(f"AttentionStats.token_keys must be [B, N, d]; got {tuple(stats.token_keys.shape)}")
        if keys is not None:
            stats = AttentionStats(stats.received_attention, stats.self_attention, pool_keys(keys, p))
    else:
        raise ValueError(f"attention must be a tensor or AttentionStats; got {type(attention).__name__}")
    received = stats.received_attention.float().to(valid.device).masked_fill(~valid, 0.0)
    self_attention = stats.self_attention.float().to(valid.device).masked_fill(~valid, 0.0)
    token_keys = stats.token_keys.float().to(valid.device) if stats.token_keys is not None else None
    return AttentionStats(received_attention=received, self_attention=self_attention, token_keys=token_keys)
