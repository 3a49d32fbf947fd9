"""Evaluation manifests: JSON Lines compatible with Kimi-Audio-Evalkit, and where to find them.

One line per item::

    {"index": 0, "audio_path": "wav/0.wav", "question": "...", "answer": "...", "subset": "test_clean",
     "meta": {...}}                                   # meta optional

``index`` is an integer (a string of digits is accepted, as MELD writes it) unique within the file;
``audio_path`` a path or a list of paths, relative paths being relative to the manifest's folder (or, where no
such file exists, to the working directory, as Evalkit's downloader writes them); ``question`` may be empty.
Every problem is reported with the line it is on.

Lookup (:func:`find_manifest`): an explicit path for the dataset in the config file, else under the data root
``<root>/<NAME>/<NAME>.jsonl``, ``<root>/<SERIES>/<NAME>.jsonl``, ``<root>/<SERIES>/<NAME>/<NAME>.jsonl`` or
``<root>/<NAME>.jsonl``. The config file is YAML or JSON shaped like Evalkit's ``config.yaml``::

    DATASETS:
      dataset_root: /data/eval
      datasets:
        LibriSpeech: /data/librispeech/LibriSpeech.jsonl
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samp.eval.datasets import DatasetSpec

REQUIRED_FIELDS = ("index", "audio_path", "question", "answer", "subset")


@dataclass(frozen=True)
class ManifestItem:
    """One row of a manifest, paths resolved."""

    index: int
    audio_paths: tuple[Path, ...]
    question: str
    answer: str
    subset: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def _resolve_audio(manifest: Path, audio: str) -> Path:
    # Relative to the manifest's folder; Evalkit's downloader writes paths relative to where it ran, so the
    # working directory is the fallback.
    candidate = Path(audio)
    if candidate.is_absolute():
        return candidate
    beside = manifest.parent / candidate
    return beside if beside.exists() or not candidate.exists() else candidate.resolve()


def _row_error(path: Path, line: int, message: str) -> ValueError:
    return ValueError(f"{path}, line {line}: {message}")


def _parse_row(path: Path, line: int, row: Any, check_audio: bool) -> ManifestItem:
    if not isinstance(row, dict):
        raise _row_error(path, line, f"expected a JSON object, got {type(row).__name__}")
    missing = [name for name in REQUIRED_FIELDS if name not in row]
    if missing:
        raise _row_error(path, line, f"missing field(s) {', '.join(missing)}")
    index = row["index"]
    if isinstance(index, str) and index.strip().lstrip("-").isdigit():
        index = int(index)
    if isinstance(index, bool) or not isinstance(index, int):
        raise _row_error(path, line, f"'index' must be an integer, got {row['index']!r}")
    audio = row["audio_path"]
    audio_list = [audio] if isinstance(audio, str) else audio
    if not isinstance(audio_list, list) or not audio_list or not all(isinstance(a, str) and a for a in audio_list):
        raise _row_error(path, line, f"'audio_path' must be a path or a non-empty list of paths, got {audio!r}")
    audio_paths = tuple(_resolve_audio(path, a) for a in audio_list)
    if check_audio:
        for audio_path in audio_paths:
            if not audio_path.is_file():
                raise _row_error(path, line, f"audio file {audio_path} does not exist")
    for name in ("question", "answer", "subset"):
        value = row[name]
        if name == "answer" and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # numeric MQA options ("3") are written as numbers by some exporters
        if not isinstance(value, str):
            raise _row_error(path, line, f"{name!r} must be a string, got {value!r}")
    if not row["subset"]:
        raise _row_error(path, line, "'subset' is empty")
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise _row_error(path, line, f"'meta' must be an object, got {meta!r}")
    return ManifestItem(index=index, audio_paths=audio_paths, question=row["question"], answer=str(row["answer"]),
                        subset=row["subset"], meta=dict(meta))


def load_manifest(path: str | Path, *, check_audio: bool = True, limit: int | None = None) -> list[ManifestItem]:
    """Read and validate a manifest. ``limit`` keeps the first N items (after validation of those N)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"manifest {path} does not exist")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    items: list[ManifestItem] = []
    seen: dict[int, int] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                raise _row_error(path, line_number, f"not valid JSON ({error.msg})") from None
            item = _parse_row(path, line_number, row, check_audio)
            if item.index in seen:
                raise _row_error(path, line_number, f"index {item.index} already used on line {seen[item.index]}")
            seen[item.index] = line_number
            items.append(item)
            if limit is not None and len(items) >= limit:
                break
    if not items:
        raise ValueError(f"manifest {path} has no items")
    return items


def load_config(path: str | Path) -> dict:
    """The ``DATASETS`` section of an Evalkit-style config file (YAML or JSON)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            config = json.loads(text)
        else:
            import yaml

            config = yaml.safe_load(text)
    except Exception as error:  # both parsers' errors carry the position
        raise ValueError(f"config file {path} cannot be parsed: {error}") from None
    section = (config or {}).get("DATASETS", {}) if isinstance(config, dict) else None
    if not isinstance(section, dict):
        raise ValueError(f"config file {path}: 'DATASETS' must be a mapping")
    return section


def find_manifest(spec: DatasetSpec, *, data_root: str | Path | None = None, config: str | Path | None = None) -> Path:
    """Where ``spec``'s manifest is (see the module docstring for the order)."""
    tried: list[Path] = []
    root = Path(data_root) if data_root is not None else None
    if config is not None:
        section = load_config(config)
        explicit = (section.get("datasets") or {}).get(spec.name)
        if explicit:
            explicit_path = Path(explicit)
            if not explicit_path.is_file():
                raise ValueError(f"config {config} names {explicit_path} for {spec.name}, which does not exist")
            return explicit_path
        if root is None and section.get("dataset_root"):
            root = Path(section["dataset_root"])
    if root is None:
        raise ValueError(f"no manifest location for {spec.name}: give a data root or a config file")
    for candidate in (root / spec.name / f"{spec.name}.jsonl", root / spec.series / f"{spec.name}.jsonl",
                      root / spec.series / spec.name / f"{spec.name}.jsonl", root / f"{spec.name}.jsonl"):
        tried.append(candidate)
        if candidate.is_file():
            return candidate
    raise ValueError(f"no manifest for {spec.name}; looked for " + ", ".join(str(t) for t in tried))
