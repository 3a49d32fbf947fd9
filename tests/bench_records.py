"""A complete samp.eval record as a JSON object, for the benchmark-suite tests."""


def record(value, metric="wer", ci=None, **changes):
    """A complete samp.eval record as its JSON object."""
    row = dict(time="2026-11-25T10:00:00Z", git_sha="0123456789abcdef", samp_version="0.1.0", torch_version="2.13.0",
               transformers_version="5.24.0", device="cpu", model="Qwen/Qwen2-Audio-7B", method="samp",
               keep_ratio=0.6, threshold=0.85, flavor="samp", lowrank_plan=None, scorer="samp", scorer_version="1",
               dataset="librispeech", subset="test_clean", metric=metric, wer=value if metric == "wer" else None,
               accuracy=value if metric == "accuracy" else None, errors=None, ref_tokens=None, substitutions=None,
               deletions=None, insertions=None, correct=None, total=None, n_items=100, n_failed=0, coverage=1.0,
               ci_low=None if ci is None else ci[0], ci_high=None if ci is None else ci[1], tokens_in=1000,
               tokens_out=600, encode_s=None, compress_s=None, prefill_s=0.02, decode_s=None, peak_memory_bytes=None,
               schema=1)
    row.update(changes)
    return row
