"""Append-only JSON Lines files that survive a kill: each line is written by one ``write`` on an ``O_APPEND``
descriptor under an exclusive lock, and a reader treats an unterminated last line (the process died inside the
write) as not written."""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator


def append_jsonl(path: str | Path, row: dict[str, Any]) -> None:
    """Append ``row`` as one line, atomically with respect to other appenders and to a kill."""
    line = (json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            written = os.write(descriptor, line)
            if written != len(line):  # a short write on a local file means the disk is full
                raise OSError(f"short write to {path}: {written} of {len(line)} bytes")
            os.fsync(descriptor)
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every complete line. A malformed complete line is an error naming it."""
    path = Path(path)
    data = path.read_bytes()
    complete, _, _torn_tail = data.rpartition(b"\n")
    if not complete and not data.endswith(b"\n"):
        return
    for number, raw in enumerate(complete.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}, line {number}: not valid JSON ({error})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object")
        yield number, row


def drop_torn_tail(path: str | Path) -> bool:
    """Truncate an unterminated last line left by a killed writer; True if something was dropped."""
    path = Path(path)
    if not path.exists():
        return False
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as handle:
        handle.truncate(keep)
    return True
