"""What a benchmark ran on: GPU, driver, CUDA, torch, transformers, Python. pytest-benchmark's machine id omits
the GPU, so timings from two cards would otherwise be compared as if they were one machine."""
from __future__ import annotations

import platform
import shutil
import subprocess
from importlib import metadata

import torch


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def nvidia_driver_version() -> str | None:
    """The driver version from ``nvidia-smi``; ``None`` without one (CPU machines, containers without it)."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        output = subprocess.run([executable, "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    versions = [line.strip() for line in output.splitlines() if line.strip()]
    return versions[0] if versions else None


def machine_info() -> dict:
    """A flat, JSON-serialisable description; GPU fields are ``None`` on a machine without CUDA."""
    cuda = torch.cuda.is_available()
    gpus = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())] if cuda else []
    memory = torch.cuda.get_device_properties(0).total_memory if cuda else None
    return {
        "gpu": gpus[0] if gpus else None,
        "gpu_count": len(gpus),
        "gpus": gpus,
        "gpu_memory_bytes": memory,
        "driver": nvidia_driver_version() if cuda else None,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "samp": _version("samp"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def device_class(info: dict) -> str:
    """What timings may be compared across: the GPU model, or ``cpu``."""
    return info.get("gpu") or "cpu"
