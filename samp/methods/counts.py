"""The keep-count rule: how many audio tokens a method keeps out of ``n`` valid ones."""
from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

FLAVORS = ("samp", "qwen2_audio", "glm_asr", "kimi_audio")


def check_keep_ratio(keep_ratio: float) -> float:
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)):
        raise ValueError(f"keep_ratio must be a number in (0, 1]; got {keep_ratio!r}")
    if not math.isfinite(keep_ratio) or not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1] (the fraction of audio tokens kept); got {keep_ratio}")
    return float(keep_ratio)


def check_flavor(flavor: str) -> str:
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}; available: {', '.join(FLAVORS)}")
    return flavor


def keep_count(n: int, keep_ratio: float, flavor: str = "samp", method: str = "samp") -> int:
    """Tokens kept out of ``n``.

    ``flavor="samp"``: ``max(round_half_up(n · keep_ratio), 1)``, never more than ``n``. The product is taken in
    decimal arithmetic on the ratio as written, so ``0.7 · 45`` is 31.5 → 32 rather than float64's 31.499… → 31.
    Reference flavours apply each SA-MAP model's own rule, which depends on the method (see
    ``samp.methods.reference``).
    """
    check_keep_ratio(keep_ratio)
    check_flavor(flavor)
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer token count; got {n!r}")
    n = int(n)
    if flavor != "samp":
        from samp.methods.reference import reference_keep_count

        return reference_keep_count(n, keep_ratio, flavor, method)
    if n == 0:
        return 0
    kept = int((Decimal(n) * Decimal(repr(keep_ratio))).to_integral_value(rounding=ROUND_HALF_UP))
    return min(max(kept, 1), n)
