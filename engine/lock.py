"""One writer at a time: an OS file lock on `<root>/_lock`, released by the kernel when the holder dies.

Build, `dedup --apply`, `--recompute`, `compact` and `verify --repair` hold it for as long as they
write. The holder writes its host, pid, job and start time into the file so a second writer can
say who holds it. Readers (audit, report, export, SQL) never take it: they read a committed version.

On a remote root (`s3://...`) there is no OS lock: the lock is the object `_lock`, created only if
absent (S3's conditional write, `If-None-Match: *`), so two writers starting together cannot both
get it. What it does not give: the kernel does not free it when its holder dies. A holder on this
host whose pid is gone is taken over; one on another host stays until it is released, or until a
person who knows it has stopped deletes `<root>/_lock` (the error message says so).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path

from engine.storage import is_remote, open_storage
from engine.store import StoreError

LOCK_FILE = "_lock"


class DatasetLocked(StoreError):
    exit_code = 75  # EX_TEMPFAIL: try again later


class WriterLock:
    def __init__(self, root: str | Path, job: str):
        self.remote = is_remote(root)
        self.storage = open_storage(root) if self.remote else None
        self.path = Path(root) / LOCK_FILE if not self.remote else Path(LOCK_FILE)
        self.where = str(root).rstrip("/")
        self.job = job
        self._fd: int | None = None
        self._token: str | None = None

    def _info(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "job": self.job,
                "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}

    def acquire(self, wait: bool = False) -> WriterLock:
        if self.remote:
            return self._acquire_remote(wait)
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
        os.pwrite(fd, json.dumps(self._info()).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def _acquire_remote(self, wait: bool) -> WriterLock:
        token = uuid.uuid4().hex
        payload = json.dumps({**self._info(), "token": token}).encode()
        told = False
        while True:
            try:
                created = self.storage.put_if_absent(LOCK_FILE, payload)
            except (NotImplementedError, ValueError):
                raise StoreError(f"{self.where} cannot hold a writer lock: its filesystem cannot create a file "
                                 "only if it is absent") from None
            if created:
                self._token = token
                return self
            info = self._read()
            if _dead_here(info):  # its holder died on this host: nobody else can be using it
                self.storage.delete(LOCK_FILE)
                continue
            if not wait:
                raise DatasetLocked(f"{self.where} is being written by {self.holder()}; wait for it to finish, "
                                    f"or pass --wait (if that writer is gone for good, delete {self.where}/{LOCK_FILE})")
            if not told:
                print(f"waiting for {self.holder()} to finish with {self.where}", file=sys.stderr)
                told = True
            time.sleep(2.0)

    def _read(self) -> dict:
        try:
            text = self.storage.read_bytes(LOCK_FILE) if self.remote else self.path.read_bytes()
            return json.loads(text or b"{}")
        except (OSError, json.JSONDecodeError):
            return {}

    def holder(self) -> str:
        info = self._read()
        if not info:
            return "another process"
        return f"{info.get('job', 'a writer')} (pid {info.get('pid')} on {info.get('host')}, since {info.get('since')})"

    def release(self) -> None:
        if self._token is not None:
            if self._read().get("token") == self._token:
                self.storage.delete(LOCK_FILE)
            self._token = None
            return
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> WriterLock:
        return self if self._fd is not None or self._token is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _dead_here(info: dict) -> bool:
    """A remote lock whose holder ran on this host and has exited."""
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return False
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
