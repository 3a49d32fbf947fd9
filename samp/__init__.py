"""samp: compress the audio tokens and audio encoders of speech LLMs, and measure what it costs.

    out = samp.compress(features, lengths, method="samp", keep_ratio=0.6, attention=stats)
    samp.keep_count(750, 0.6)        # 450
    samp.methods.available()         # every method and what it needs
"""
from samp.methods import AttentionStats, Compressed, attention_stats, compress, keep_count

__all__ = ["AttentionStats", "Compressed", "attention_stats", "compress", "keep_count"]
__version__ = "0.1.0"
