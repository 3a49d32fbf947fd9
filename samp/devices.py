"""Which torch device a command runs on: a name checked against what this machine has, before any work starts."""
from __future__ import annotations


def available_devices() -> list[str]:
    """Device names torch can use here: ``cpu``, then ``cuda:0`` … and ``mps`` where present."""
    import torch

    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def resolve_device(requested: str | None) -> str:
    """``requested`` if this machine has it (default: ``cuda`` when available, else ``cpu``); else a ValueError
    that lists the devices there are."""
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    have = available_devices()
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {requested!r}; this machine has: {', '.join(have)}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {requested!r}: CUDA is not available on this machine (torch "
                             f"{torch.__version__}); it has: {', '.join(have)}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {requested!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                             f"it has: {', '.join(have)}")
    elif device.type == "mps" and "mps" not in have:
        raise ValueError(f"device {requested!r}: MPS is not available on this machine; it has: {', '.join(have)}")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {requested!r} is not supported by samp; this machine has: {', '.join(have)}")
    return requested
