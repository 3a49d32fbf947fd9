"""Evaluation: datasets and manifests, text normalisation, WER/CER and MQA scoring, the resumable sharded runner,
and result records.

    samp.eval.normalize("It's $3.50!", "en")                    # "it is $3.50"
    samp.eval.score_asr(refs, hyps, "zh")                       # AsrScore(wer=..., errors=..., n_failed=...)
    samp.eval.score_mqa(prompt, "The answer is B.", "Car horn", "mmau-test-mini")   # True
    samp.eval.bootstrap_ci(errors_per_item, ref_tokens_per_item, seed=0)

``flavor="evalkit"`` reproduces the reference harness (Kimi-Audio-Evalkit / SA-MAP) exactly; the default
``flavor="samp"`` fixes its known problems (see samp.eval.normalize, samp.eval.metrics and samp.eval.mqa).
"""
from samp.eval.datasets import DATASETS, DatasetSpec, dataset_names, get_dataset, task_prompt
from samp.eval.manifest import ManifestItem, find_manifest, load_manifest
from samp.eval.metrics import AsrScore, bootstrap_ci, score_asr
from samp.eval.mqa import MqaScore, parse_options, score_mqa, score_mqa_items
from samp.eval.normalize import normalize, tokenize
from samp.eval.records import Record, append_record, read_records

__all__ = [
    "DATASETS", "AsrScore", "DatasetSpec", "ManifestItem", "MqaScore", "Record", "append_record", "bootstrap_ci",
    "dataset_names", "find_manifest", "get_dataset", "load_manifest", "normalize", "parse_options", "read_records",
    "score_asr", "score_mqa", "score_mqa_items", "task_prompt", "tokenize",
]
