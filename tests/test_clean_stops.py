"""Clean failures and stops: a full disk, a read-only folder, a bad manifest each end the run with one
sentence, their own exit code and no temporary files; SIGINT / SIGTERM on a real Ray run stop
submitting, commit what is in flight, shut Ray down and exit 130 / 143 with one line; the same
command then finishes with exactly the rows of an uninterrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers_ray import pids_under
from tests.test_resume import _build, _snapshot

REPO = Path(__file__).resolve().parent.parent
BUILD = [sys.executable, "-m", "engine.run", "build-motionvid-qa"]


def _env(**extra) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def _in_small_filesystem(folder: Path, size: str, command: list[str], options: str = "") -> subprocess.CompletedProcess:
    """Run `command` with a tmpfs of `size` mounted at `folder`, in a private mount namespace
    (unshare: no root needed where user namespaces are allowed)."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("needs unshare with user namespaces")
    script = f'mount -t tmpfs -o size={size}{options} tmpfs "{folder}" && exec "$@"'
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", *command], env=_env(),
                          capture_output=True, text=True, timeout=300)


def test_full_disk_is_one_sentence_exit_4_and_no_temporary_files(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    probe = tmp_path / "probe.txt"
    cmd = [*BUILD, "--dataset", str(folder / "ds"), "--source", "virtual:6", "--executor", "local",
           "--stages", "ingest,ground_truth,template_writer", "--shard-size", "1"]
    run = _in_small_filesystem(folder, "400k", [sys.executable, "-c", _RUN_AND_LIST, str(probe), *cmd])
    assert run.returncode == 4, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the disk is full") and "run the same command again" in last
    assert "Traceback" not in run.stderr
    left = probe.read_text().split()
    assert left == [], left  # the namespace's tmpfs is gone afterwards: the listing was taken inside


# Runs the build, then lists what it left half-written, from inside the mount namespace.
_RUN_AND_LIST = """
import subprocess, sys
from pathlib import Path
probe, cmd = sys.argv[1], sys.argv[2:]
run = subprocess.run(cmd)
root = Path(cmd[cmd.index('--dataset') + 1])
staging = [p for p in (root / '_staging').glob('*') if not (p / 'MANIFEST.json').exists()]
left = staging + list(root.rglob('.*.tmp')) + list((root / '_cache').rglob('.*.json.*'))
Path(probe).write_text(' '.join(str(p) for p in left))
sys.exit(run.returncode)
"""


def test_read_only_dataset_folder_is_one_sentence_exit_5(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    cmd = [*BUILD, "--dataset", str(folder / "ds"), "--source", "virtual:2", "--executor", "local",
           "--stages", "ingest"]
    run = _in_small_filesystem(folder, "1m", cmd, options=",ro")
    assert run.returncode == 5, run.stderr[-2000:]
    assert run.stderr.strip().splitlines() == [
        f"error: permission denied ({folder / 'ds'}); make the folder writable by this user or choose another "
        "one, then run the same command again"]


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "m.parquet"
    bad.write_bytes(b"garbage")
    args = ["--dataset", str(tmp_path / "ds"), "--source", str(bad), "--executor", "local", "--stages", "ingest"]
    quiet = subprocess.run([*BUILD, *args], env=_env(), capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 6 and "Traceback" not in quiet.stderr
    assert quiet.stderr.strip().splitlines()[-1].startswith(f"error: manifest {bad} is not a readable Parquet file")
    loud = subprocess.run([*BUILD, *args, "--debug"], env=_env(), capture_output=True, text=True, timeout=120)
    assert loud.returncode == 6 and "Traceback" in loud.stderr


def test_manifest_line_that_is_not_utf8_is_a_rejection_row_not_a_crash(tmp_path):
    from engine.store import DatasetStore

    bad = tmp_path / "m.jsonl"
    bad.write_bytes(b"\xff\xfe\x00 not text\n")
    run = subprocess.run([*BUILD, "--dataset", str(tmp_path / "ds"), "--source", str(bad), "--executor", "local",
                          "--stages", "ingest"], env=_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "Traceback" not in run.stderr
    rejections = DatasetStore(tmp_path / "ds").read_table("rejections").to_pylist()
    assert [(r["reason"], r["detail"].split(" (")[0]) for r in rejections] == [("invalid_utf8", "line 1 is not UTF-8")]


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_a_ray_run_cleanly_and_the_same_command_resumes(tmp_path, signum, code):
    reference = tmp_path / "reference"
    assert _build(reference).returncode == 0
    dataset = tmp_path / "ds"
    temp_dir = tempfile.mkdtemp(prefix="vs", dir="/tmp")  # the run's Ray processes, to check they are gone
    cmd = [*BUILD, "--dataset", str(dataset), "--source", "virtual:5", "--stages", "ingest,ground_truth,template_writer",
           "--shard-size", "2", "--executor", "ray"]
    proc = subprocess.Popen(cmd, env=_env(RAY_TMPDIR=temp_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    deadline = time.monotonic() + 240
    while not list(dataset.glob("_commits/*/*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    try:
        assert proc.returncode == code, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"stopped by {signal.Signals(signum).name} after ") and last.endswith(
            "shard commits; run the same command to resume"), last
        for marker in ("Traceback", "SIGABRT", "Aborted", "*** ", "KeyboardInterrupt"):
            assert marker not in err, err[-3000:]
        assert not _ray_processes_under(temp_dir)  # Ray was shut down
        assert not [p for p in (dataset / "_staging").glob("*") if not (p / "MANIFEST.json").exists()]
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    resumed = _build(dataset, executor="ray")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _snapshot(dataset) == _snapshot(reference)


def _ray_processes_under(temp_dir: str) -> list[int]:
    time.sleep(1.0)
    return pids_under(temp_dir)
