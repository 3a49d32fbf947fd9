"""Stable identities of what a run evaluates: a model and a dataset are a name plus a content fingerprint, so the
same checkpoint reached by two paths is one model, and two different checkpoints that share a folder name are not.

Names: a checkpoint folder takes its own name, and a generically named one (``model``, ``checkpoint``) its parent's
(``fixtures/speech_tiny/model`` is ``speech_tiny``); a manifest ``<NAME>.jsonl`` names its dataset, and a generic
``manifest.jsonl`` takes its folder's name (resolved, so ``./manifest.jsonl`` is never nameless).
Fingerprints: 12 hex digits of a SHA-256 over the model's ``config.json`` and, for each weights file, its name, size
and first and last MiB (a checkpoint of any size fingerprints in milliseconds); over the evaluated manifest items.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from samp.eval.datasets import DatasetSpec, custom_dataset, get_dataset
from samp.eval.manifest import ManifestItem

GENERIC_MODEL_FOLDERS = ("model", "checkpoint")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_SAMPLE_BYTES = 1 << 20
_DIGITS = 12


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    fingerprint: str | None

    def label(self) -> str:
        return self.name if self.fingerprint is None else f"{self.name}@{self.fingerprint[:8]}"


def model_identity(model_dir: str | Path) -> ModelIdentity:
    """Name and fingerprint of the checkpoint in ``model_dir`` (a ValueError when it has no ``config.json``)."""
    directory = Path(model_dir).resolve()
    config = directory / "config.json"
    if not config.is_file():
        raise ValueError(f"{model_dir} has no config.json: not a model checkpoint directory")
    digest = hashlib.sha256(config.read_bytes())
    for path in sorted(p for p in directory.iterdir()
                       if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name.endswith(".index.json"))):
        size = path.stat().st_size
        digest.update(f"\n{path.name}:{size}\n".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(_SAMPLE_BYTES))
            if size > 2 * _SAMPLE_BYTES:
                handle.seek(size - _SAMPLE_BYTES)
                digest.update(handle.read())
    return ModelIdentity(name=model_name(directory), fingerprint=digest.hexdigest()[:_DIGITS])


def model_name(model_dir: str | Path) -> str:
    """The checkpoint folder's name, or its parent's when the folder is generically named (``model``)."""
    directory = Path(model_dir).resolve()
    if directory.name in GENERIC_MODEL_FOLDERS and directory.parent.name:
        return directory.parent.name
    return directory.name or "model"


def manifest_dataset(path: str | Path, task: str = "asr", lang: str | None = "en") -> DatasetSpec:
    """The dataset a manifest given by path stands for: a registered one when its name is registered, else a custom
    ``task``/``lang`` dataset; never an empty name."""
    path = Path(path)
    name = path.stem
    if name == "manifest":
        name = path.resolve().parent.name or "manifest"
    try:
        return get_dataset(name)
    except ValueError:
        return custom_dataset(name, task, lang if task == "asr" else None)


def dataset_fingerprint(items: Sequence[ManifestItem]) -> str:
    """Fingerprint of the evaluated items: what each asks and expects and which audio file it reads (by name), so
    the same manifest from another folder matches and an edited or truncated one does not."""
    digest = hashlib.sha256()
    for item in items:
        row = [item.index, item.subset, [Path(p).name for p in item.audio_paths], item.question, item.answer]
        digest.update(json.dumps(row, ensure_ascii=False, sort_keys=True, default=str).encode() + b"\n")
    return digest.hexdigest()[:_DIGITS]
