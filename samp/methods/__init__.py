"""Token-compression methods: pure tensor code, one registry, one entry point (:func:`compress`)."""
from samp.methods.api import check_options, compress
from samp.methods.counts import keep_count
from samp.methods.registry import MethodSpec, available, get
from samp.methods.result import Compressed
from samp.methods.stats import AttentionStats, attention_stats

__all__ = [
    "AttentionStats",
    "Compressed",
    "MethodSpec",
    "attention_stats",
    "available",
    "check_options",
    "compress",
    "get",
    "keep_count",
]
