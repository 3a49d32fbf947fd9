"""samp: compress the audio tokens and audio encoders of speech LLMs, and measure what it costs.

    out = samp.compress(features, lengths, method="samp", keep_ratio=0.6, attention=stats)
    samp.keep_count(750, 0.6)        # 450
    samp.methods.available()         # every method and what it needs

``samp.models``, ``samp.eval``, ``samp.lowrank`` and ``samp.bench`` load on first use (they import transformers).
"""
import importlib

from samp import methods
from samp.methods import AttentionStats, Compressed, attention_stats, compress, keep_count

__all__ = ["AttentionStats", "Compressed", "attention_stats", "compress", "keep_count", "methods"]
__version__ = "0.1.0"

_LAZY_SUBPACKAGES = ("models", "eval", "lowrank", "bench")


def __getattr__(name):
    if name in _LAZY_SUBPACKAGES:
        return importlib.import_module(f"samp.{name}")
    raise AttributeError(f"module 'samp' has no attribute {name!r}")
