"""Processes of a Ray cluster a test started with its own `--temp-dir` (found by command line)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def pids_under(temp_dir: str) -> list[int]:
    """Processes (other than this one) whose command line names `temp_dir`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if temp_dir.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return sorted(found)


def stop_processes_under(temp_dir: str) -> None:
    """`ray stop` would stop every Ray cluster on the machine: stop only this head's processes."""
    for pid in pids_under(temp_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.5)
