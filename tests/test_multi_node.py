"""Multi-node proof: a head and two worker nodes on loopback (`ray.cluster_utils.Cluster`); a worker
node hosting stage actors is killed mid-run; the run finishes with exactly the row ids of an
undisturbed run (its actors restart on the surviving node and retry the shard they held)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.test_resume import STAGES, _build, _snapshot

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent

# Runs in its own process: a cluster of three nodes, the build connected to it, and a thread that
# kills the worker node hosting an actor once two commits have landed.
SCRIPT = """
import json, sys, threading, time
from pathlib import Path
import ray
from ray.cluster_utils import Cluster
from engine.run import main

dataset, stages = sys.argv[1], sys.argv[2]
node = {"node_ip_address": "127.0.0.1", "include_dashboard": False}
cluster = Cluster(initialize_head=True, head_node_args={**node, "num_cpus": 0})
workers = [cluster.add_node(**node, num_cpus=2) for _ in range(2)]
cluster.wait_for_nodes()
killed = {}

def kill_a_worker_mid_run():
    while len(list(Path(dataset).glob("_commits/*/*.json"))) < 2:
        time.sleep(0.05)
    hosting = {a["Address"]["NodeID"] for a in ray._private.state.actors().values() if a["State"] == "ALIVE"}
    victim = next(w for w in workers if w.node_id in hosting)
    killed["commits_before"] = len(list(Path(dataset).glob("_commits/*/*.json")))
    cluster.remove_node(victim, allow_graceful=False)
    killed["node"] = victim.node_id

threading.Thread(target=kill_a_worker_mid_run, daemon=True).start()
code = main(["build-motionvid-qa", "--dataset", dataset, "--source", "virtual:5", "--stages", stages,
             "--shard-size", "1", "--ray-address", cluster.address])
commits = len(list(Path(dataset).glob("_commits/*/*.json")))
print("RESULT " + json.dumps({"code": code, "killed": killed, "commits": commits}), flush=True)
ray.shutdown()
cluster.shutdown()
"""


def test_killing_a_worker_node_mid_run_gives_the_undisturbed_rows(tmp_path):
    reference = tmp_path / "reference"
    assert _build(reference, "--shard-size", "1").returncode == 0
    dataset = tmp_path / "ds"
    temp_dir = tempfile.mkdtemp(prefix="vm", dir="/tmp")  # short: Ray puts unix sockets in it
    # without the last one Ray swaps 127.0.0.1 for the machine's address (engine.build._loopback_only)
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": temp_dir, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    try:
        run = subprocess.run([sys.executable, "-c", SCRIPT, str(dataset), STAGES], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, (run.stdout + run.stderr)[-4000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["code"] == 0, run.stderr[-4000:]
    assert result["killed"].get("node"), result  # a node was killed ...
    assert result["killed"]["commits_before"] < result["commits"]  # ... before the run was done
    assert _snapshot(dataset) == _snapshot(reference)
