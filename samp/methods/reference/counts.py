"""Keep counts exactly as each reference model computes them (reference-algorithms.md §2).

The three models disagree on rounding (quirk 7): Qwen2-Audio rounds half-to-even in float64 with a minimum of 2,
GLM-ASR truncates in float64 with no minimum, Kimi-Audio truncates in float32 (a Python float times a 0-d int64
tensor) with a minimum of 2 for most methods. VisionZip splits the budget into a dominant and a 5 % contextual share
that are truncated separately, so it usually keeps one token fewer.
"""
from __future__ import annotations

import torch

FLAVORS = ("qwen2_audio", "glm_asr", "kimi_audio")

# VisionZip's contextual share is hard-coded in every port (§4.2 step 1).
CONTEXTUAL_SHARE = 0.05

# Kimi-Audio's cdpruner variants use `int(r·L)` without the minimum of 2 the other Kimi methods apply (§2).
_KIMI_NO_MINIMUM = ("cdpruner", "cdpruner-attention")


def check_flavor(flavor: str) -> None:
    if flavor not in FLAVORS:
        raise ValueError(f"unknown reference flavor {flavor!r}; expected one of {', '.join(FLAVORS)}")


def _kimi_float32_product(ratio: float, n: int) -> float:
    # Kimi multiplies a Python float by a 0-d int64 tensor: PyTorch computes that product in float32,
    # so 0.7·90 is 63.0 there but 62.999… in float64 (§2).
    return float(torch.tensor(n, dtype=torch.int64) * ratio)


def visionzip_counts(n: int, keep_ratio: float, flavor: str) -> tuple[int, int]:
    """``(n_dominant, n_contextual)`` for VisionZip (§2, §4.2).

    Qwen2-Audio and GLM-ASR: ``max(int(n·(r−0.05)), 1)`` and ``max(int(n·0.05), 1)`` in float64 (note
    ``0.6 − 0.05 = 0.5499999999999999``). Kimi-Audio: ``int((r−0.05)·n)`` without a minimum and
    ``max(int(0.05·n), 1)``, both products in float32.
    """
    check_flavor(flavor)
    if flavor == "kimi_audio":
        dominant = int(_kimi_float32_product(keep_ratio - CONTEXTUAL_SHARE, n))
        contextual = max(int(_kimi_float32_product(CONTEXTUAL_SHARE, n)), 1)
        return dominant, contextual
    dominant = max(int(n * (keep_ratio - CONTEXTUAL_SHARE)), 1)
    contextual = max(int(n * CONTEXTUAL_SHARE), 1)
    return dominant, contextual


def reference_keep_count(n: int, keep_ratio: float, flavor: str, method: str = "samp") -> int:
    """Model-side keep count ``T`` of the SA-MAP reference for ``n`` valid tokens (§2).

    Reproduces the reference exactly, including counts above ``n`` (Qwen2-Audio's minimum of 2 at ``n = 1``) and
    the count 0 (GLM-ASR at ``n = 1``); ``base`` keeps all ``n`` tokens.
    """
    check_flavor(flavor)
    if n < 0:
        raise ValueError(f"token count must be non-negative, got {n}")
    if method == "base":
        return n
    if method == "visionzip":
        return sum(visionzip_counts(n, keep_ratio, flavor))
    if flavor == "qwen2_audio":
        # Python's round() is round-half-to-even: 187.5 → 188, 112.5 → 112, 18.5 → 18.
        return max(round(n * keep_ratio), 2)
    if flavor == "glm_asr":
        return int(keep_ratio * n)
    truncated = int(_kimi_float32_product(keep_ratio, n))
    return truncated if method in _KIMI_NO_MINIMUM else max(truncated, 2)


def vispruner_important_count(keep: int) -> int:
    """VisPruner's important share ``round(0.5·T)`` (half-to-even in every port; the original floors, §4.3)."""
    return round(0.5 * keep)
