"""An exclusive lock on one run, so two ``samp eval`` of the same configuration never do the same work twice.

The lock is an ``flock`` on a file in the run's folder: the kernel releases it when its process ends, however it
ends (a SIGKILLed run leaves no stale lock and resumes as before). The holder writes who it is into the file, so a
second run can say whom it waits for; it then finds the work done and appends nothing.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Callable


def _describe(holder: str) -> str:
    try:
        info = json.loads(holder)
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (ValueError, KeyError, TypeError):
        return "another process"


class RunLock:
    """``with RunLock(path):`` holds ``path`` exclusively; a second holder waits, saying whom it waits for."""

    def __init__(self, path: str | Path, *, log: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self._handle = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            self.log(f"samp eval: this run is in progress elsewhere ({_describe(handle.read())}; lock {self.path}); "
                     f"waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        since = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
