"""Decoding under a guard: a hanging or crashing decoder costs one rejection row, not the run.

Work that opens untrusted video files runs in a separate Python process, started with
`python -m agents.curation.safe_decode` (never forked: a fork of a Ray actor or of a process with
decoder threads can deadlock) and kept alive between calls so its start-up is paid once. The
parent waits for each answer with a deadline; past it, the process is killed and a fresh one
starts on the next call. A process that dies mid-call (a segfault in native code, os._exit)
shows up as end-of-file on its pipe.

The entry point is a dotted name ("package.module:function") resolved in the worker, so a test
can swap in a decoder that hangs or crashes: the fake stands exactly at the decode boundary.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

STARTUP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class DecodeFailure:
    """Why a guarded call produced nothing; `reason` is a rejection code."""

    reason: str  # decode_timeout | decoder_crashed | decode_error | a VideoError reason
    detail: str


class GuardedDecoder:
    """One long-lived worker process running decode entry points under a deadline."""

    def __init__(self, timeout_s: float = 120.0, preload: tuple[str, ...] = ()):
        self.timeout_s = timeout_s
        self.preload = preload  # entries the worker runs once before it says ready (library imports)
        self._proc: subprocess.Popen | None = None
        self._recv: Connection | None = None
        self._send: Connection | None = None

    def call(self, entry: str, *args: Any, timeout_s: float | None = None, **kwargs: Any) -> Any:
        """Run `entry(*args, **kwargs)` in the worker; its result, or a DecodeFailure."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        if not self._ensure_started():
            return DecodeFailure("decoder_crashed", f"decoder process did not start (exit code {self._reap()})")
        try:
            self._send.send((entry, args, kwargs))
        except (BrokenPipeError, OSError):
            return DecodeFailure("decoder_crashed", f"decoder process gone before {entry} (exit code {self._reap()})")
        if not self._recv.poll(timeout):
            self._stop()
            return DecodeFailure("decode_timeout", f"{_short(entry)} gave no answer within {timeout:.1f} s")
        try:
            status, payload = self._recv.recv()
        except (EOFError, OSError):
            return DecodeFailure("decoder_crashed", f"decoder process died during {_short(entry)} (exit code {self._reap()})")
        if status == "ok":
            return payload
        return DecodeFailure(*payload)

    def close(self) -> None:
        self._stop()

    def __enter__(self) -> GuardedDecoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self._stop()

    def _ensure_started(self) -> bool:
        """Start the worker if needed and wait until it has loaded the decoders, so a call's
        deadline measures decoding, not interpreter start-up on a busy machine."""
        if self._proc is not None and self._proc.poll() is None:
            return True
        self._stop()
        parent_recv, child_send = os.pipe()
        child_recv, parent_send = os.pipe()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(_import_path()))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "agents.curation.safe_decode", str(child_recv), str(child_send), *self.preload],
            pass_fds=(child_recv, child_send),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        os.close(child_recv)
        os.close(child_send)
        self._recv = Connection(parent_recv, writable=False)
        self._send = Connection(parent_send, readable=False)
        try:
            return self._recv.poll(STARTUP_TIMEOUT_S) and self._recv.recv() == ("ready", None)
        except (EOFError, OSError):
            return False

    def _reap(self) -> int | None:
        code = self._proc.wait(timeout=5) if self._proc is not None else None
        self._stop()
        return code

    def _stop(self) -> None:
        proc, self._proc = getattr(self, "_proc", None), None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        for name in ("_recv", "_send"):
            conn = getattr(self, name, None)
            if conn is not None:
                conn.close()
                setattr(self, name, None)


def _import_path() -> list[str]:
    # The worker must import what the parent imports (the project root, test helpers).
    return [os.path.abspath(p) if p else os.getcwd() for p in sys.path]


def _short(entry: str) -> str:
    return entry.rsplit(":", 1)[-1]


def resolve_entry(entry: str):
    module_name, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _answer(entry: str, args: tuple, kwargs: dict) -> tuple[str, Any]:
    from agents.video import VideoError

    try:
        return "ok", resolve_entry(entry)(*args, **kwargs)
    except VideoError as err:
        return "error", (err.reason, err.detail)
    except Exception as err:  # any decoder failure is a rejection, never a dead worker
        return "error", ("decode_error", f"{type(err).__name__}: {err}"[:400])


def serve(recv: Connection, send: Connection, preload: list[str] | tuple[str, ...] = ()) -> None:
    """The worker loop: answer requests until the parent closes the pipe."""
    import av  # noqa: F401  (PyAV loaded before the first deadline starts)

    for entry in preload:  # the libraries the entries need, loaded once per worker, not in a call's time
        _answer(entry, (), {})  # a failure shows again, as a rejection, in the call that needs it
    send.send(("ready", None))
    while True:
        try:
            entry, args, kwargs = recv.recv()
        except (EOFError, OSError):
            return
        send.send(_answer(entry, args, kwargs))


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False), sys.argv[3:])
