"""Timers that measure GPU work, not kernel launches.

CUDA runs asynchronously: a host clock read after a call returns sees the launch, not the work (timings taken
that way are 10-50x too fast). On CUDA devices the stage timer records CUDA events on the current stream and
synchronises once when read; on CPU it uses ``time.perf_counter``.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, TypeVar

import torch

T = TypeVar("T")


def as_device(device: str | torch.device | None) -> torch.device:
    return torch.device("cpu") if device is None else torch.device(device)


def synchronize(device: str | torch.device | None) -> None:
    """Wait for queued work on a CUDA device; nothing on CPU."""
    device = as_device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synced(function: Callable[..., T], device: str | torch.device | None) -> Callable[..., T]:
    """``function`` followed by a device synchronisation, for ``benchmark.pedantic`` targets."""
    def run(*args, **kwargs):
        result = function(*args, **kwargs)
        synchronize(device)
        return result
    return run


@dataclass
class StageTimer:
    """Times named stages of one run: ``with timer.stage("prefill"): ...`` then ``timer.seconds()``.

    A stage entered twice accumulates. Reading the times synchronises the device once.
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _pending: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        self.device = as_device(self.device)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if not name:
            raise ValueError("a stage needs a name")
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            try:
                yield
            finally:
                end.record()
                self._pending.append((name, start, end))
        else:
            start = time.perf_counter()
            try:
                yield
            finally:
                self._pending.append((name, start, time.perf_counter()))

    def seconds(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        if self.device.type == "cuda" and self._pending:
            synchronize(self.device)
        for name, start, end in self._pending:
            elapsed = start.elapsed_time(end) / 1000.0 if self.device.type == "cuda" else end - start
            totals[name] = totals.get(name, 0.0) + elapsed
        return totals


@contextmanager
def peak_memory(device: str | torch.device | None) -> Iterator[dict]:
    """Peak CUDA memory allocated inside the block, in bytes, under ``result["peak_memory_bytes"]`` (``None`` on
    CPU: the process high-water mark there is not attributable to one block)."""
    device = as_device(device)
    result: dict = {"peak_memory_bytes": None}
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield result
    finally:
        if device.type == "cuda":
            synchronize(device)
            result["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)


@contextmanager
def synchronizing_forward(module: torch.nn.Module) -> Iterator[None]:
    """Synchronise the device after every forward of ``module`` inside the block, so host clocks read in later
    forward hooks (an adapter's prefill clock) see finished work. A no-op on CPU parameters."""
    parameter = next(module.parameters(), None)
    if parameter is None or parameter.device.type != "cuda":
        yield
        return
    device = parameter.device
    handle = module.register_forward_hook(lambda *_: synchronize(device))
    try:
        yield
    finally:
        handle.remove()


def fastest_seconds(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """The fastest of ``rounds`` wall-clock times of each run, the runs interleaved round by round.

    Why the fastest and why interleaved: on a shared machine other jobs only ever add time, and they come in bursts;
    taking each run's least-disturbed round, with the runs alternating so a burst hits them alike, gives ratios that
    hold from one run of the suite to the next (medians of back-to-back blocks moved by 30 % here). Runs that queue
    CUDA work must synchronise themselves (see ``synced``).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: min(seconds) for name, seconds in times.items()}


def ratio_to_baseline(run: Callable[[], object], baseline: Callable[[], object], *, rounds: int,
                      budget: float | None = None, trials: int = 3) -> float:
    """``fastest(run) / fastest(baseline)``, interleaved (see ``fastest_seconds``).

    With a ``budget``, up to ``trials`` independent trials are made and the lowest ratio is returned as soon as one
    is within the budget: a single trial can still land on a long burst of someone else's work, while a run that
    really costs more than its budget exceeds it in every trial.
    """
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    best = float("inf")
    for _ in range(trials if budget is not None else 1):
        seconds = fastest_seconds({"run": run, "baseline": baseline}, rounds)
        best = min(best, seconds["run"] / seconds["baseline"])
        if budget is None or best <= budget:
            break
    return best
