"""The evaluation runner: infer (resumable, sharded), score, and write records.

Inference is one injected callable per batch, ``infer(spec, items) -> list[Prediction]``, so resuming, sharding,
scoring and records do not depend on a model; :func:`adapter_inference` builds the real one over a
``samp.models`` adapter.

Work-dir layout::

    <work-dir>/records.jsonl                                     one Record per dataset × subset (appended)
    <work-dir>/<run>/<dataset>/predictions.rank<R>.jsonl         result lines as they are produced, per rank
    <work-dir>/<run>/<dataset>/predictions.jsonl                 merged by rank 0, manifest order
    <work-dir>/<run>/rank<R>.lock                                held by the process of rank R while it runs
    <work-dir>/<run>/model.json                                  the model fingerprint the folder's results are of

``<run>`` is ``<model name>/<method>-keep<keep_ratio>-thr<threshold>-<flavor>[-<lowrank plan>]``. A result line
holds the manifest fields, ``prediction`` (``null`` when the item failed, with ``error``), the ``prompt`` the model
saw, audio token counts and stage timings. Lines are appended atomically, so a killed run resumes where it
stopped: items already in any rank file are skipped (failed ones too, unless ``--retry-failed``), a torn last line
is dropped. Rank ``r`` of ``world_size`` processes (``torchrun``) takes the items whose manifest
``index % world_size == r``; rank 0 merges and scores. A second run of the same setting waits on the lock, then
finds the work done; a dataset whose results already have their record appends nothing ("already complete").
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from samp.eval.datasets import DatasetSpec, task_prompt
from samp.eval.identity import dataset_fingerprint
from samp.eval.jsonl import append_jsonl, drop_torn_tail, iter_jsonl
from samp.eval.lock import RunLock
from samp.eval.manifest import ManifestItem
from samp.eval.metrics import bootstrap_ci, item_edits, score_edits, scored_edits
from samp.eval.mqa import score_mqa_items
from samp.eval.normalize import check_flavor
from samp.eval.records import Record, append_record, identity
from samp.methods.api import check_options

SCORER_VERSION = "2"


@dataclass(frozen=True)
class RunConfig:
    """What is evaluated: the model, the compression setting, and the scoring flavour."""

    model: str
    method: str = "samp"
    keep_ratio: float = 0.6
    threshold: float = 0.85
    flavor: str = "samp"
    scorer: str = "samp"
    lowrank_plan: str | None = None
    batch_size: int = 1
    seed: int = 0
    model_fingerprint: str | None = None  # samp.eval.identity; guards a run folder against another same-named model

    def __post_init__(self):
        if not self.model:
            raise ValueError("the model needs a name")
        check_options(self.method, self.keep_ratio, self.threshold, self.flavor)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        check_flavor(self.scorer)

    @property
    def run_name(self) -> str:
        model_name = Path(self.model.rstrip("/")).name or "model"
        setting = f"{self.method}-keep{self.keep_ratio:g}-thr{self.threshold:g}-{self.flavor}"
        if self.lowrank_plan:
            setting += f"-{Path(self.lowrank_plan).stem}"
        return f"{model_name}/{setting}"


@dataclass(frozen=True)
class Prediction:
    """What inference produced for one item: ``text`` is None when it failed (``error`` says why)."""

    text: str | None
    prompt: str
    tokens_in: int | None = None
    tokens_out: int | None = None
    encode_s: float | None = None
    compress_s: float | None = None
    prefill_s: float | None = None
    decode_s: float | None = None
    peak_memory_bytes: int | None = None
    error: str | None = None


Infer = Callable[[DatasetSpec, Sequence[ManifestItem]], Sequence[Prediction]]


def dataset_dir(work_dir: str | Path, config: RunConfig, spec: DatasetSpec) -> Path:
    return Path(work_dir) / config.run_name / spec.name


def _rank_file(directory: Path, rank: int) -> Path:
    return directory / f"predictions.rank{rank}.jsonl"


def _counted_lines(directory: Path) -> dict[int, dict]:
    """The result line that counts for each index, over every rank file: the first successful one (a duplicate
    from two runs racing is ignored), else the latest failure (a retry that failed again has the newer error)."""
    by_index: dict[int, dict] = {}
    for path in sorted(directory.glob("predictions.rank*.jsonl")):
        for _, row in iter_jsonl(path):
            counted = by_index.get(row["index"])
            if counted is None or counted["prediction"] is None:
                by_index[row["index"]] = row
    return by_index


def _completed_indices(directory: Path, retry_failed: bool) -> set[int]:
    return {index for index, row in _counted_lines(directory).items()
            if not retry_failed or row["prediction"] is not None}


def _result_line(item: ManifestItem, prediction: Prediction) -> dict:
    return {
        "index": item.index, "subset": item.subset, "audio_path": [str(p) for p in item.audio_paths],
        "question": item.question, "answer": item.answer, "meta": item.meta,
        "prediction": prediction.text, **{k: v for k, v in dataclasses.asdict(prediction).items() if k != "text"},
    }


def _infer_or_fail(infer: Infer, spec: DatasetSpec, batch: Sequence[ManifestItem]) -> list[Prediction]:
    """Predictions of ``batch``; if the batch fails, each item is tried alone so only the culprits are lost."""
    try:
        predictions = list(infer(spec, batch))
        if len(predictions) != len(batch):
            raise RuntimeError(f"inference returned {len(predictions)} predictions for {len(batch)} items")
        return predictions
    except Exception as error:  # recorded per item; the message names the exception
        if len(batch) > 1:
            return [p for item in batch for p in _infer_or_fail(infer, spec, [item])]
        print(f"samp eval: {spec.name} item {batch[0].index} failed: {error}", file=sys.stderr)
        return [Prediction(text=None, prompt="", error=f"{type(error).__name__}: {error}")]


def run_inference(
    items: Sequence[ManifestItem], spec: DatasetSpec, infer: Infer, directory: str | Path, *, batch_size: int = 1,
    rank: int = 0, world_size: int = 1, progress: bool = True, retry_failed: bool = False,
) -> int:
    """Infer every item of this rank's shard that has no result line yet; returns how many were inferred.

    An item whose inference raises (alone: a failing batch is retried item by item) is recorded as failed
    (``prediction`` null, ``error`` set) so that one bad file does not stop a long run; it shows up as lost
    coverage in the records. A resumed run does not retry it unless ``retry_failed`` (after fixing the file or
    freeing memory): the retry appends a new line, which supersedes the failure if it succeeds.
    """
    from tqdm import tqdm

    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    own_file = _rank_file(directory, rank)
    drop_torn_tail(own_file)
    done = _completed_indices(directory, retry_failed)
    shard = [item for item in items if item.index % world_size == rank]
    todo = [item for item in shard if item.index not in done]
    label = spec.name if world_size == 1 else f"{spec.name} rank {rank}/{world_size}"
    if len(todo) < len(shard):
        print(f"{label}: resuming: {len(shard) - len(todo)} of {len(shard)} done", file=sys.stderr, flush=True)
    bar = tqdm(total=len(todo), desc=label, unit="item", disable=not progress, file=sys.stderr)
    try:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            for item, prediction in zip(batch, _infer_or_fail(infer, spec, batch)):
                append_jsonl(own_file, _result_line(item, prediction))
            bar.update(len(batch))
    finally:
        bar.close()
    return len(todo)


def collect_predictions(directory: str | Path, items: Sequence[ManifestItem]) -> list[dict]:
    """Result lines of ``items`` from every rank file, in manifest order; every item must have one."""
    directory = Path(directory)
    by_index = _counted_lines(directory)
    missing = [item.index for item in items if item.index not in by_index]
    if missing:
        shown = ", ".join(str(i) for i in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise ValueError(f"{len(missing)} of {len(items)} items in {directory} have no result line "
                         f"(indices {shown}); run inference first (without --reeval)")
    return [by_index[item.index] for item in items]


def merge_predictions(directory: str | Path, items: Sequence[ManifestItem]) -> Path:
    """Write ``predictions.jsonl`` (all ranks, manifest order) next to the rank files."""
    import json
    import os

    directory = Path(directory)
    rows = collect_predictions(directory, items)
    merged = directory / "predictions.jsonl"
    partial = merged.with_suffix(".jsonl.partial")
    partial.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(partial, merged)
    return merged


@dataclass(frozen=True)
class SubsetScore:
    """Accuracy fields of one subset, ready for a record."""

    subset: str
    metric: str
    value: float
    n_items: int
    n_failed: int
    ci_low: float
    ci_high: float
    errors: int | None = None
    ref_tokens: int | None = None
    substitutions: int | None = None
    deletions: int | None = None
    insertions: int | None = None
    correct: int | None = None
    total: int | None = None

    @property
    def coverage(self) -> float:
        return (self.n_items - self.n_failed) / self.n_items


def score_rows(rows: Sequence[dict], spec: DatasetSpec, scorer: str = "samp", *, n_resamples: int = 1000,
               seed: int = 0) -> list[SubsetScore]:
    """Score result lines per subset (subsets in sorted order, as the reference reports them)."""
    check_flavor(scorer)
    subsets: dict[str, list[dict]] = {}
    for row in rows:
        subsets.setdefault(row["subset"], []).append(row)
    scores = []
    for subset in sorted(subsets):
        group = subsets[subset]
        answers = [r["answer"] for r in group]
        predictions = [r["prediction"] for r in group]
        try:
            if spec.task == "asr":
                scores.append(_score_asr_subset(subset, answers, predictions, spec.lang, scorer, n_resamples, seed))
            else:
                prompts = [r.get("prompt") or "" for r in group]
                score, verdicts = score_mqa_items(prompts, predictions, answers, spec.name, scorer)
                low, high = bootstrap_ci([float(v) for v in verdicts], n_resamples=n_resamples, seed=seed)
                scores.append(SubsetScore(subset, "accuracy", score.accuracy, score.total, score.n_failed, low, high,
                                          correct=score.correct, total=score.total))
        except ValueError as error:
            raise ValueError(f"{spec.name} / {subset}: {error}") from None
    return scores


def _score_asr_subset(subset, answers, predictions, lang, scorer, n_resamples, seed) -> SubsetScore:
    all_edits = item_edits(answers, predictions, lang, scorer)
    score = score_edits(all_edits, scorer)
    edits = scored_edits(all_edits, scorer)  # the bootstrap resamples what was scored
    low, high = bootstrap_ci([e.errors for e in edits], [e.ref_tokens for e in edits], n_resamples=n_resamples,
                             seed=seed)
    return SubsetScore(subset, "wer", score.wer, score.n_items, score.n_failed, low, high, errors=score.errors,
                       ref_tokens=score.ref_tokens, substitutions=score.substitutions, deletions=score.deletions,
                       insertions=score.insertions)


def _sum_or_none(values):
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def make_record(config: RunConfig, spec: DatasetSpec, score: SubsetScore, rows: Sequence[dict], device: str,
                dataset_fingerprint: str | None = None) -> Record:
    """The record of one subset: identity now, the run's configuration, its score and summed efficiency."""
    subset_rows = [r for r in rows if r["subset"] == score.subset]
    peaks = [r.get("peak_memory_bytes") for r in subset_rows if r.get("peak_memory_bytes") is not None]
    return Record(
        **identity(device), model=config.model, method=config.method, keep_ratio=config.keep_ratio,
        threshold=config.threshold, flavor=config.flavor, lowrank_plan=config.lowrank_plan, scorer=config.scorer,
        scorer_version=SCORER_VERSION, dataset=spec.name, subset=score.subset, metric=score.metric,
        wer=score.value if score.metric == "wer" else None,
        accuracy=score.value if score.metric == "accuracy" else None,
        errors=score.errors, ref_tokens=score.ref_tokens, substitutions=score.substitutions,
        deletions=score.deletions, insertions=score.insertions, correct=score.correct, total=score.total,
        n_items=score.n_items, n_failed=score.n_failed, coverage=score.coverage, ci_low=score.ci_low,
        ci_high=score.ci_high,
        tokens_in=_sum_or_none(r.get("tokens_in") for r in subset_rows),
        tokens_out=_sum_or_none(r.get("tokens_out") for r in subset_rows),
        encode_s=_sum_or_none(r.get("encode_s") for r in subset_rows),
        compress_s=_sum_or_none(r.get("compress_s") for r in subset_rows),
        prefill_s=_sum_or_none(r.get("prefill_s") for r in subset_rows),
        decode_s=_sum_or_none(r.get("decode_s") for r in subset_rows),
        peak_memory_bytes=max(peaks) if peaks else None,
        model_fingerprint=config.model_fingerprint, dataset_fingerprint=dataset_fingerprint,
    )


def _same_setting(record: Record, config: RunConfig, spec: DatasetSpec, fingerprint: str) -> bool:
    return (record.model, record.model_fingerprint, record.method, record.keep_ratio, record.threshold,
            record.flavor, record.lowrank_plan, record.scorer, record.scorer_version, record.dataset,
            record.dataset_fingerprint) == (
        config.model, config.model_fingerprint, config.method, config.keep_ratio, config.threshold, config.flavor,
        config.lowrank_plan, config.scorer, SCORER_VERSION, spec.name, fingerprint)


def recorded_already(records_path: Path, config: RunConfig, spec: DatasetSpec, fingerprint: str,
                     rows: Sequence[dict]) -> Record | None:
    """The latest record of this setting and dataset whose subsets hold exactly the items and failures ``rows``
    hold now (so a retry that changed them is new), or None: then the results still need a record."""
    if not records_path.is_file():
        return None
    subsets: dict[str, tuple[int, int]] = {}
    for row in rows:
        items, failed = subsets.get(row["subset"], (0, 0))
        subsets[row["subset"]] = (items + 1, failed + (row["prediction"] is None))
    latest: dict[str, Record] = {}
    for _, line in iter_jsonl(records_path):
        try:
            record = Record.from_dict(line)
        except (TypeError, ValueError):
            continue  # another tool's line or an older schema: never the record of this run
        if _same_setting(record, config, spec, fingerprint) and record.subset in subsets:
            latest[record.subset] = record
    if set(latest) != set(subsets) or any(
            (latest[s].n_items, latest[s].n_failed) != counts for s, counts in subsets.items()):
        return None
    return max(latest.values(), key=lambda record: record.time)


def check_run_dir(work_dir: str | Path, config: RunConfig) -> None:
    """Refuse a run folder that holds another model's results under the same name (checked before a model loads);
    the folder remembers the model fingerprint of its first run."""
    held = held_fingerprint(work_dir, config)
    if config.model_fingerprint is not None and held is not None and held != config.model_fingerprint:
        raise ValueError(f"{Path(work_dir) / config.run_name} holds results of another model named {config.model!r} "
                         f"(fingerprint {held}; this one is {config.model_fingerprint}): give another --work-dir")


def held_fingerprint(work_dir: str | Path, config: RunConfig) -> str | None:
    """The model fingerprint the run folder remembers, if any."""
    import json

    marker = Path(work_dir) / config.run_name / "model.json"
    if not marker.is_file():
        return None
    return json.loads(marker.read_text(encoding="utf-8")).get("fingerprint")


def _mark_run_dir(work_dir: str | Path, config: RunConfig) -> None:
    import json

    if config.model_fingerprint is None:
        return
    marker = Path(work_dir) / config.run_name / "model.json"
    if not marker.is_file():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"model": config.model, "fingerprint": config.model_fingerprint}) + "\n",
                          encoding="utf-8")


def evaluate(
    config: RunConfig, datasets: Sequence[tuple[DatasetSpec, Sequence[ManifestItem]]], work_dir: str | Path,
    infer: Infer | None, *, skip_eval: bool = False, reeval: bool = False, rank: int = 0, world_size: int = 1,
    barrier: Callable[[], None] = lambda: None, device: str = "cpu", progress: bool = True,
    retry_failed: bool = False,
) -> list[Record]:
    """Infer (unless ``reeval``; failed items again with ``retry_failed``), then on rank 0 merge, score and append
    records (unless ``skip_eval``).

    Each process holds its rank's lock on the run (``<run>/rank<R>.lock``) throughout: a second run of the same
    setting waits for the first, then finds its work done. A dataset whose results already have their record is
    "already complete": nothing is appended unless ``reeval`` (score again) or ``retry_failed``.

    Returns the records written (empty on other ranks and with ``skip_eval``).
    """
    if skip_eval and reeval:
        raise ValueError("--skip-eval and --reeval exclude each other: one only infers, the other only scores")
    if retry_failed and reeval:
        raise ValueError("--retry-failed and --reeval exclude each other: retrying infers, --reeval only scores")
    if not reeval and infer is None:
        raise ValueError("inference is needed (no --reeval) but no model was given")
    check_run_dir(work_dir, config)
    if reeval and config.model_fingerprint is None:  # scoring needs no checkpoint: the folder knows which it was
        config = dataclasses.replace(config, model_fingerprint=held_fingerprint(work_dir, config))
    with RunLock(Path(work_dir) / config.run_name / f"rank{rank}.lock"):
        check_run_dir(work_dir, config)  # a run of another same-named model may have held the lock
        _mark_run_dir(work_dir, config)
        if not reeval:
            for spec, items in datasets:
                run_inference(items, spec, infer, dataset_dir(work_dir, config, spec), batch_size=config.batch_size,
                              rank=rank, world_size=world_size, progress=progress, retry_failed=retry_failed)
        barrier()
        if rank != 0 or skip_eval:
            return []
        return _score_and_record(config, datasets, Path(work_dir), device, rescore=reeval or retry_failed)


def _score_and_record(config: RunConfig, datasets, work_dir: Path, device: str, rescore: bool) -> list[Record]:
    records = []
    records_path = work_dir / "records.jsonl"
    for spec, items in datasets:
        directory = dataset_dir(work_dir, config, spec)
        merge_predictions(directory, items)
        rows = collect_predictions(directory, items)
        fingerprint = dataset_fingerprint(items)
        previous = None if rescore else recorded_already(records_path, config, spec, fingerprint, rows)
        if previous is not None:
            failed = sum(row["prediction"] is None for row in rows)
            print(f"{spec.name}: already complete ({len(rows)} items, recorded {previous.time} in {records_path}); "
                  f"nothing appended. --reeval scores it again"
                  + (f", --retry-failed infers its {failed} failed items again" if failed else ""),
                  file=sys.stderr, flush=True)
            continue
        for score in score_rows(rows, spec, config.scorer, seed=config.seed):
            record = make_record(config, spec, score, rows, device, fingerprint)
            append_record(records_path, record)
            records.append(record)
    return records


def format_table(records: Sequence[Record]) -> str:
    """A readable table of records for the terminal."""
    header = ("model", "dataset", "subset", "method", "keep", "metric", "value %", "95% CI", "coverage", "items",
              "tok in→out")
    lines = []
    for r in records:
        ci = f"{r.ci_low * 100:.2f}–{r.ci_high * 100:.2f}" if r.ci_low is not None else "-"
        tokens = f"{r.tokens_in}→{r.tokens_out}" if r.tokens_in is not None else "-"
        model = r.model + (f"@{r.model_fingerprint[:8]}" if r.model_fingerprint else "")
        dataset = r.dataset + (f"@{r.dataset_fingerprint[:8]}" if r.dataset_fingerprint else "")
        lines.append((model, dataset, r.subset, r.method, f"{r.keep_ratio:g}", r.metric, f"{r.value * 100:.2f}", ci,
                      f"{r.coverage * 100:.1f}%", str(r.n_items), tokens))
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    render = lambda row: "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([render(header), render(tuple("-" * w for w in widths)), *map(render, lines)])


# --- the real inference: a samp.models adapter ------------------------------------------------------------------
def prompt_for(adapter, spec: DatasetSpec, item: ManifestItem) -> str:
    """The full prompt (one audio placeholder included) that ``adapter``'s family gets for ``item``.

    Qwen2-Audio (base) and Kimi-Audio get the reference's layouts; a family whose processor has a chat template gets
    one user turn (audio, then the instruction) rendered by it; otherwise the placeholder precedes the instruction.
    """
    if adapter.family == "whisper":  # an encoder-decoder transcriber: no instruction (its prompt is previous text)
        return ""
    text = task_prompt(spec, adapter.family, item.question)
    if adapter.family == "qwen2_audio":
        return f"<|audio_bos|>{adapter.placeholder}<|audio_eos|>{text}"
    if adapter.family == "kimi_audio":  # the reference: the user's text turn, then the audio turn
        return f"{text}{adapter.placeholder}"
    processor = adapter.processor
    if getattr(processor, "chat_template", None) and hasattr(processor, "apply_chat_template"):
        conversation = [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": text}]}]
        rendered = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        if isinstance(rendered, str) and rendered.count(adapter.placeholder) == 1:
            return rendered
    return f"{adapter.placeholder}{text}"


def needs_semantic_ids(adapter) -> bool:
    """Kimi-Audio without a speech tokenizer in its processor takes each item's discrete speech tokens from the
    manifest: ``meta.semantic_ids`` (LM-vocabulary ids at 12.5 Hz, made once with the user's tokenizer)."""
    return adapter.family == "kimi_audio" and getattr(adapter.processor, "speech_tokenizer", None) is None


def _has_semantic_ids(item: ManifestItem) -> bool:
    ids = item.meta.get("semantic_ids")
    return isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)


def semantic_ids_of(item: ManifestItem) -> list[int]:
    if not _has_semantic_ids(item):
        raise ValueError(f"item {item.index} has no meta.semantic_ids (a list of integer speech-token ids), which "
                         f"Kimi-Audio needs when its processor has no speech tokenizer")
    return item.meta["semantic_ids"]


def check_items(adapter, datasets: Sequence[tuple[DatasetSpec, Sequence[ManifestItem]]]) -> None:
    """Refuse up front what would make every item fail: Kimi-Audio items without their speech tokens, Whisper on
    anything but transcription in a language its checkpoint has."""
    if adapter.family == "whisper":
        for spec, _ in datasets:
            if spec.task != "asr":
                raise ValueError(f"Whisper only transcribes; dataset {spec.name} is a {spec.task} task")
            adapter.check_language(spec.lang, "transcribe")
    if not needs_semantic_ids(adapter):
        return
    for spec, items in datasets:
        lacking = [item.index for item in items if not _has_semantic_ids(item)]
        if lacking:
            shown = ", ".join(str(i) for i in lacking[:5]) + (" ..." if len(lacking) > 5 else "")
            raise ValueError(
                f"Kimi-Audio needs discrete speech tokens: {len(lacking)} of {len(items)} items of {spec.name} have "
                f"no meta.semantic_ids (indices {shown}); add the ids your speech tokenizer gives (one per 80 ms) "
                f"to the manifest, or load the model with a speech_tokenizer"
            )


def adapter_inference(adapter, config: RunConfig, *, max_new_tokens: int = 256) -> Infer:
    """Batch inference through a ``samp.models`` adapter: greedy decoding, compression as ``config`` says.

    Items of a batch that share a prompt are generated together; timings of a generate call are split evenly
    over its items, so sums over a subset stay exact.
    """
    import torch

    from samp.eval.audio import read_audio

    def infer(spec: DatasetSpec, items: Sequence[ManifestItem]) -> list[Prediction]:
        by_prompt: dict[str, list[int]] = {}
        for position, item in enumerate(items):
            if len(item.audio_paths) != 1:
                raise ValueError(f"item {item.index} has {len(item.audio_paths)} audio files; one is supported")
            by_prompt.setdefault(prompt_for(adapter, spec, item), []).append(position)
        out: list[Prediction | None] = [None] * len(items)
        for prompt, positions in by_prompt.items():
            audios = [read_audio(items[p].audio_paths[0], adapter.sampling_rate) for p in positions]
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            extra = {}
            if needs_semantic_ids(adapter):
                extra["semantic_ids"] = [semantic_ids_of(items[p]) for p in positions]
            if adapter.family == "whisper":  # no instruction; the dataset's language picks the language token
                prompt_arg, extra["language"] = None, spec.lang
            else:
                prompt_arg = prompt
            result = adapter.generate(
                audios, prompt_arg, method=config.method, keep_ratio=config.keep_ratio, threshold=config.threshold,
                flavor=config.flavor, sampling_rate=adapter.sampling_rate, seed=config.seed,
                max_new_tokens=max_new_tokens, do_sample=False, **extra,
            )
            peak = int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
            share = 1.0 / len(positions)
            timings = result.timings
            for p, text, (before, after) in zip(positions, result.texts, result.audio_tokens):
                out[p] = Prediction(text=text, prompt=prompt, tokens_in=before, tokens_out=after,
                                    encode_s=timings.encode * share, compress_s=timings.compress * share,
                                    prefill_s=timings.prefill * share, decode_s=timings.decode * share,
                                    peak_memory_bytes=peak)
        return out

    return infer


def install_lowrank_encoder(model, directory: str | Path) -> None:
    """Swap ``model``'s audio encoder for the compressed one ``samp lowrank apply`` wrote to ``directory``
    (before the adapter is built: adapters keep a reference to the encoder)."""
    from samp.lowrank import load as load_encoder
    from samp.lowrank.cli import audio_encoder
    from samp.lowrank.layers import get_submodule_parent

    dense = audio_encoder(model)
    name = next((n for n, m in model.named_modules() if m is dense and n), None)
    if name is None:
        raise ValueError(f"cannot locate the audio encoder inside {type(model).__name__}")
    parameter = next(dense.parameters())
    try:
        compressed = load_encoder(directory, device=parameter.device)
    except FileNotFoundError as error:
        raise ValueError(str(error)) from None
    if type(compressed) is not type(dense):
        raise ValueError(f"{directory} holds a {type(compressed).__name__}, but the model's audio encoder is a "
                         f"{type(dense).__name__}")
    parent, attribute = get_submodule_parent(model, name)
    setattr(parent, attribute, compressed.to(dtype=parameter.dtype))


def distributed_context():
    """``(rank, world_size, barrier, close)`` from torchrun's launcher environment, or a single process."""
    import os

    import torch.distributed as dist

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return 0, 1, (lambda: None), (lambda: None)
    import torch

    if torch.cuda.is_available():  # before the process group, so NCCL knows each rank's GPU
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), dist.barrier, dist.destroy_process_group

