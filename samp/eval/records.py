"""Result records: one JSON line per model × method × keep ratio × dataset × subset, appended to
``<work-dir>/records.jsonl`` by ``samp eval`` and read by ``samp.bench`` (budgets, history, dashboard).

Schema (``schema`` = 1); every key is always present, ``null`` where it does not apply:

identity
    ``schema`` int; ``time`` ISO-8601 UTC (``2026-11-25T17:02:11Z``); ``git_sha`` str or null (not a checkout);
    ``samp_version``, ``torch_version``, ``transformers_version`` str; ``device`` str (``"cpu"`` or the GPU name).
configuration
    ``model`` str (the model's name, see samp.eval.identity); ``model_fingerprint`` str or null (its content
    fingerprint; null in older records and from callers that give none); ``method`` str; ``keep_ratio`` float
    (fraction of audio tokens kept); ``threshold`` float; ``flavor`` str (compression flavour: ``samp`` or a
    reference's); ``lowrank_plan`` str (the low-rank encoder directory ``samp lowrank apply`` wrote, given to
    ``--lowrank-encoder``, as an absolute path so every way of typing it is one setting) or null;
    ``scorer`` str (``"samp"`` or ``"evalkit"``: the normalisation/scoring flavour, see samp.eval);
    ``scorer_version`` str.
accuracy
    ``dataset``, ``subset`` str; ``dataset_fingerprint`` str or null (of the evaluated manifest items);
    ``metric`` ``"wer"`` or ``"accuracy"``; ``wer`` (fraction, ASR) or ``accuracy``
    (fraction, MQA), the other null; ASR: ``errors``, ``ref_tokens``, ``substitutions``, ``deletions``,
    ``insertions``; MQA: ``correct``, ``total``; both: ``n_items`` (items in the subset), ``n_failed`` (items
    without a prediction), ``coverage`` (= 1 − n_failed / n_items), ``ci_low``, ``ci_high`` (95 % percentile
    bootstrap over items, seeded; fractions like ``wer``/``accuracy``).
efficiency
    ``tokens_in``, ``tokens_out`` int (audio tokens before and after compression, summed over items);
    ``encode_s``, ``compress_s``, ``prefill_s``, ``decode_s`` float (seconds summed over batches);
    ``peak_memory_bytes`` int or null (CUDA peak allocated; null on CPU).

``value`` (a property) is ``wer`` or ``accuracy`` whichever applies.
"""
from __future__ import annotations

import dataclasses
import datetime
import subprocess
from dataclasses import dataclass
from pathlib import Path

from samp.eval.jsonl import append_jsonl, iter_jsonl

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Record:
    # identity
    time: str
    git_sha: str | None
    samp_version: str
    torch_version: str
    transformers_version: str
    device: str
    # configuration
    model: str
    method: str
    keep_ratio: float
    threshold: float
    flavor: str
    lowrank_plan: str | None
    scorer: str
    scorer_version: str
    # accuracy
    dataset: str
    subset: str
    metric: str
    wer: float | None
    accuracy: float | None
    errors: int | None
    ref_tokens: int | None
    substitutions: int | None
    deletions: int | None
    insertions: int | None
    correct: int | None
    total: int | None
    n_items: int
    n_failed: int
    coverage: float
    ci_low: float | None
    ci_high: float | None
    # efficiency
    tokens_in: int | None
    tokens_out: int | None
    encode_s: float | None
    compress_s: float | None
    prefill_s: float | None
    decode_s: float | None
    peak_memory_bytes: int | None
    # content fingerprints (samp.eval.identity); absent from older records, so optional
    model_fingerprint: str | None = None
    dataset_fingerprint: str | None = None
    schema: int = SCHEMA_VERSION

    def __post_init__(self):
        if self.metric not in ("wer", "accuracy"):
            raise ValueError(f"metric must be 'wer' or 'accuracy', got {self.metric!r}")
        if (self.wer is None) == (self.accuracy is None) or getattr(self, self.metric) is None:
            raise ValueError(f"a {self.metric!r} record sets {self.metric} and leaves the other null")

    @property
    def value(self) -> float:
        return self.wer if self.metric == "wer" else self.accuracy

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, row: dict) -> "Record":
        names = {f.name for f in dataclasses.fields(cls)}
        optional = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
        missing = sorted(names - set(row) - optional)
        if missing:
            raise ValueError(f"record lacks field(s) {', '.join(missing)}")
        if row.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"record schema {row.get('schema')} is not {SCHEMA_VERSION}")
        return cls(**{name: row[name] for name in names if name in row})


def append_record(path: str | Path, record: Record) -> None:
    """Append ``record`` to a JSONL file atomically (safe against concurrent writers and kills)."""
    if not isinstance(record, Record):
        raise ValueError(f"expected a Record, got {type(record).__name__}")
    append_jsonl(path, record.to_dict())


def read_records(path: str | Path) -> list[Record]:
    """Every record of a JSONL file, in file order; a malformed line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"records file {path} does not exist")
    records = []
    for number, row in iter_jsonl(path):
        try:
            records.append(Record.from_dict(row))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}, line {number}: {error}") from None
    return records


def git_sha(directory: str | Path | None = None) -> str | None:
    """The checked-out commit of the samp source tree, or None outside a git checkout."""
    directory = Path(directory) if directory is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def identity(device: str) -> dict:
    """The identity fields of a record made now."""
    import torch
    import transformers

    import samp

    return dict(
        time=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        git_sha=git_sha(), samp_version=samp.__version__, torch_version=torch.__version__,
        transformers_version=transformers.__version__, device=device,
    )
