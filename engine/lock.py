"""One writer at a time: an OS file lock on `<root>/_lock`, released by the kernel when the holder dies.

Build, `dedup --apply`, `--recompute`, `compact` and `verify --repair` hold it for as long as they
write. The holder writes its host, pid, job and start time into the file so a second writer can
say who holds it. Readers (audit, report, export, SQL) never take it: they read a committed version.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from engine.store import StoreError

LOCK_FILE = "_lock"


class DatasetLocked(StoreError):
    exit_code = 75  # EX_TEMPFAIL: try again later


class WriterLock:
    def __init__(self, root: str | Path, job: str):
        self.path = Path(root) / LOCK_FILE
        self.job = job
        self._fd: int | None = None

    def acquire(self, wait: bool = False) -> WriterLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.holder()
            if not wait:
                os.close(fd)
                raise DatasetLocked(f"{self.path.parent} is being written by {holder}; wait for it to finish, "
                                    "or pass --wait to start when it does") from None
            print(f"waiting for {holder} to finish with {self.path.parent}", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        info = {"host": socket.gethostname(), "pid": os.getpid(), "job": self.job,
                "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        os.pwrite(fd, json.dumps(info).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            info = {}
        if not info:
            return "another process"
        return f"{info.get('job', 'a writer')} (pid {info.get('pid')} on {info.get('host')}, since {info.get('since')})"

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> WriterLock:
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
