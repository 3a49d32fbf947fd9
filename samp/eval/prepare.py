"""``samp data prepare NAME SOURCE``: turn a downloaded dataset into a manifest plus 16 kHz audio files.

Two source layouts are understood:

* an OpenSLR LibriSpeech folder (``.../LibriSpeech/test-clean/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt``
  next to ``<utterance>.flac``), either one split folder or the folder holding several (``dev-clean``,
  ``test-other``, ...); the split becomes the subset (``test-clean`` -> ``test_clean``);
* Hugging Face parquet files with embedded audio (an ``audio`` column of ``{bytes, path}``), one file or a folder
  of them; the transcript comes from the first of ``text``, ``transcription``, ``sentence``, ``normalized_text``,
  ``answer``; an MQA dataset needs ``question`` and ``answer`` columns.

Output: ``<out>/<NAME>/<NAME>.jsonl`` (Evalkit layout, found by ``--data-root <out>``) and
``<out>/<NAME>/audio/<subset>/<n>.wav``. The registered question of the dataset is used unless a ``question``
column exists.

Datasets shipped in Debian packages (``PocketSphinx-en``, ``Asterisk-en``; see samp.eval.packaged_speech) are read
from an install root instead (default ``/``) and also get their split manifests: ``<NAME>.calibration.jsonl``,
``<NAME>.test.jsonl``, ``<NAME>.ci.jsonl`` (rows as in ``<NAME>.jsonl``, same ``index``), audio at
``audio/<key>.wav``, and ``<NAME>.summary.json`` with the size of every split and what was left out and why.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from samp.eval.audio import TARGET_RATE, read_audio, resample
from samp.eval.datasets import DatasetSpec
from samp.eval.packaged_speech import RAW_RATE, SPLITS, Collected, recipe_for

TEXT_COLUMNS = ("text", "transcription", "sentence", "normalized_text", "answer")


@dataclass(frozen=True)
class _Example:
    subset: str
    answer: str
    question: str | None
    wave: np.ndarray
    source: str  # where it came from, for error messages and meta


def _write_wav(path: Path, wave: np.ndarray) -> None:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), wave, TARGET_RATE, subtype="PCM_16")


def _librispeech_examples(source: Path) -> Iterator[_Example]:
    transcripts = sorted(source.rglob("*.trans.txt"))
    if not transcripts:
        raise ValueError(f"{source} holds no LibriSpeech '*.trans.txt' files")
    for transcript in transcripts:
        # <split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
        split = transcript.parent.parent.parent.name
        subset = split.replace("-", "_")
        for number, line in enumerate(transcript.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            utterance, _, text = line.partition(" ")
            if not text.strip():
                raise ValueError(f"{transcript}, line {number}: no transcript after the utterance id {utterance!r}")
            audio = transcript.parent / f"{utterance}.flac"
            if not audio.is_file():
                raise ValueError(f"{transcript}, line {number}: audio file {audio} does not exist")
            yield _Example(subset, text.strip(), None, read_audio(audio), str(audio))


def _parquet_examples(source: Path, spec: DatasetSpec, subset: str | None) -> Iterator[_Example]:
    try:
        import pyarrow.parquet as parquet
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise ValueError("reading parquet needs pyarrow: pip install pyarrow") from None
    import soundfile

    files = sorted(source.rglob("*.parquet")) if source.is_dir() else [source]
    if not files:
        raise ValueError(f"{source} holds no .parquet files")
    for file in files:
        try:
            table = parquet.read_table(file)
        except Exception as error:  # pyarrow raises several types for corrupt files
            raise ValueError(f"{file} is not a readable parquet file: {error}") from None
        columns = set(table.column_names)
        if "audio" not in columns:
            raise ValueError(f"{file} has no 'audio' column (columns: {', '.join(sorted(columns))})")
        if spec.task == "mqa":
            text_column = "answer" if "answer" in columns else None
            if text_column is None or "question" not in columns:
                raise ValueError(f"{file}: an MQA dataset needs 'question' and 'answer' columns")
        else:
            text_column = next((c for c in TEXT_COLUMNS if c in columns), None)
            if text_column is None:
                raise ValueError(f"{file} has no transcript column (one of {', '.join(TEXT_COLUMNS)})")
        file_subset = subset or (spec.subsets[0] if len(spec.subsets) == 1 else file.stem.split("-")[0])
        for row_number, row in enumerate(table.to_pylist()):
            where = f"{file}, row {row_number}"
            audio = row["audio"]
            data = audio.get("bytes") if isinstance(audio, dict) else None
            if not data:
                raise ValueError(f"{where}: the audio cell holds no embedded bytes")
            try:
                wave, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
            except Exception as error:  # libsndfile's own error type
                raise ValueError(f"{where}: embedded audio cannot be decoded: {error}") from None
            if wave.shape[0] == 0:
                raise ValueError(f"{where}: embedded audio has no samples")
            answer = row[text_column]
            if not isinstance(answer, str) or not answer.strip():
                raise ValueError(f"{where}: empty or missing {text_column!r}")
            row_subset = row.get("subset") if isinstance(row.get("subset"), str) and not subset else file_subset
            yield _Example(row_subset, answer.strip(), row.get("question"), resample(wave.mean(axis=1), rate),
                           where)


@dataclass(frozen=True)
class PreparedSplits:
    """What :func:`prepare_packaged` wrote: the full manifest, one manifest per split, and the summary."""

    manifest: Path
    split_manifests: dict[str, Path]
    summary: dict


def _read_packaged_audio(path: Path, raw: bool) -> np.ndarray:
    if not raw:
        return read_audio(path)  # resamples (band-limited FFT) to 16 kHz
    data = path.read_bytes()
    if not data or len(data) % 2:
        raise ValueError(f"audio file {path} is not headerless 16-bit PCM ({len(data)} bytes)")
    wave = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    return resample(wave, RAW_RATE)


def _write_rows(path: Path, rows: list[dict]) -> None:
    partial = path.with_suffix(".jsonl.partial")
    with partial.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(partial, path)


def prepare_packaged(spec: DatasetSpec, root: str | Path | None, out_dir: str | Path) -> PreparedSplits:
    """Write a Debian-package dataset read from the install ``root`` (default ``/``): manifests for everything and
    for each split, 16 kHz audio, and ``<NAME>.summary.json``."""
    from tqdm import tqdm

    recipe = recipe_for(spec.name)
    if recipe is None:
        raise ValueError(f"{spec.name} is not shipped in a Debian package; give the folder it was downloaded to")
    root = Path(root) if root is not None else Path("/")
    if not root.is_dir():
        raise ValueError(f"install root {root} does not exist")
    collected: Collected = recipe.collect(root)
    if not collected.items:
        raise ValueError(f"{root}: {spec.name} has no usable utterances (all {len(collected.excluded)} left out)")
    target = Path(out_dir) / spec.name
    target.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    for index, item in enumerate(tqdm(collected.items, desc=f"prepare {spec.name}", unit="item")):
        wave = _read_packaged_audio(item.audio, item.raw)
        audio = Path("audio") / f"{item.key}.wav"
        _write_wav(target / audio, wave)
        seconds[item.key] = wave.size / TARGET_RATE
        meta = {"source": str(item.audio), "package": item.package, "key": item.key, "split": item.split,
                "ci": item.key in collected.splits["ci"], "seconds": round(seconds[item.key], 3)}
        if item.transcript_as_shipped is not None:
            meta["transcript_as_shipped"] = item.transcript_as_shipped
        rows[item.key] = {"index": index, "audio_path": str(audio), "question": spec.question,
                          "answer": item.answer, "subset": item.subset, "meta": meta}
    manifest = target / f"{spec.name}.jsonl"
    _write_rows(manifest, list(rows.values()))
    split_manifests = {}
    sizes = {"all": {"items": len(rows), "seconds": round(sum(seconds.values()), 1)}}
    for split in SPLITS:
        keys = collected.splits[split]
        path = target / f"{spec.name}.{split}.jsonl"
        if keys:
            _write_rows(path, [rows[key] for key in keys])
            split_manifests[split] = path
        else:  # an empty manifest is an error to load, so there is none; a stale one from an older run goes
            path.unlink(missing_ok=True)
        sizes[split] = {"items": len(keys), "seconds": round(sum(seconds[key] for key in keys), 1)}
    summary = {"dataset": spec.name, "root": str(root), "packages": list(recipe.packages), "splits": sizes,
               "excluded": [{"key": e.key, "reason": e.reason, "detail": e.detail} for e in collected.excluded]}
    (target / f"{spec.name}.summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n",
                                                      encoding="utf-8")
    return PreparedSplits(manifest, split_manifests, summary)


def prepare(spec: DatasetSpec, source: str | Path | None, out_dir: str | Path, *,
            subset: str | None = None) -> Path:
    """Write ``<out>/<NAME>/<NAME>.jsonl`` and its audio; returns the manifest path. ``source`` may be None only for
    a Debian-package dataset (its install root then defaults to ``/``)."""
    from tqdm import tqdm

    if recipe_for(spec.name) is not None:
        if subset is not None:
            raise ValueError(f"{spec.name} names its own subsets; --subset does not apply")
        return prepare_packaged(spec, source, out_dir).manifest
    if source is None:
        raise ValueError(f"{spec.name} needs a source: the folder or parquet file it was downloaded to")
    source = Path(source)
    if not source.exists():
        raise ValueError(f"source {source} does not exist")
    if source.is_dir() and any(source.rglob("*.trans.txt")):
        examples = _librispeech_examples(source)
    elif source.suffix == ".parquet" or (source.is_dir() and any(source.rglob("*.parquet"))):
        examples = _parquet_examples(source, spec, subset)
    else:
        raise ValueError(f"{source} is neither a LibriSpeech folder (*.trans.txt + *.flac) nor parquet with audio")
    target = Path(out_dir) / spec.name
    manifest = target / f"{spec.name}.jsonl"
    partial = manifest.with_suffix(".jsonl.partial")
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    with partial.open("w", encoding="utf-8") as handle:
        for index, example in enumerate(tqdm(examples, desc=f"prepare {spec.name}", unit="item")):
            name = subset or example.subset
            audio = Path("audio") / name / f"{index}.wav"
            _write_wav(target / audio, example.wave)
            row = {"index": index, "audio_path": str(audio), "question": example.question or spec.question,
                   "answer": example.answer, "subset": name, "meta": {"source": example.source}}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    if count == 0:
        partial.unlink()
        raise ValueError(f"{source} produced no items")
    os.replace(partial, manifest)
    return manifest
