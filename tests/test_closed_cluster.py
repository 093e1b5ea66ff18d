"""Closed by default: every process of the Ray cluster a run starts listens on loopback only."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers_ray import pids_under

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent


def _listening(pids: list[int]) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket the processes hold, from
    /proc: a process's socket inodes matched against /proc/net/tcp and tcp6 (state 0A = LISTEN)."""
    listeners = {}
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                hex_ip, hex_port = fields[1].split(":")
                listeners[fields[9]] = (_address(hex_ip, width), int(hex_port, 16))
    found = []
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            inodes = {os.readlink(fd)[8:-1] for fd in Path(f"/proc/{pid}/fd").iterdir()
                      if os.readlink(fd).startswith("socket:[")}
        except OSError:
            continue
        found += [(name, *listeners[i]) for i in inodes if i in listeners]
    return found


def _address(hex_ip: str, width: int) -> str:
    raw = bytes.fromhex(hex_ip)
    # the kernel prints each 32-bit word in host (little-endian) order
    words = b"".join(raw[k:k + 4][::-1] for k in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def _cluster_pids(driver: int, temp_dir: str) -> list[int]:
    return sorted({driver, *pids_under(temp_dir)})


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def test_a_run_started_cluster_binds_loopback_only(tmp_path):
    temp_dir = tempfile.mkdtemp(prefix="vb", dir="/tmp")  # the run's Ray session lives here
    dataset = tmp_path / "ds"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": temp_dir}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "engine.run", "build-motionvid-qa", "--dataset", str(dataset), "--source",
           "virtual:5", "--stages", "ingest,ground_truth,template_writer", "--shard-size", "1", "--executor", "ray"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 240
        while not list(dataset.glob("_commits/*/*.json")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        sockets = _listening(_cluster_pids(proc.pid, temp_dir))
        names = {name for name, _, _ in sockets}
        assert {"gcs_server", "raylet"} <= names, sockets  # the servers were found
        open_ = [s for s in sockets if not _is_loopback(s[1])]
        assert open_ == [], open_  # no 0.0.0.0, no ::, no machine address
    finally:
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
