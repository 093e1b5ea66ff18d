"""The engine on real Ray: a local cluster started by the run, and `ray job submit` against a
head started with `ray start --head` on 127.0.0.1."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pytest

from engine.run import main as cli
from tests.helpers_media import write_bad_files, write_good_clip
from tests.helpers_ray import stop_processes_under

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _count(root, sql):
    return duckdb.sql(sql.replace("{root}", str(root))).fetchall()


def test_build_on_local_ray_cluster(ray_local, tmp_path):
    src = tmp_path / "videos"
    expected = write_bad_files(src)
    for i in range(3):
        write_good_clip(src / f"good{i}.mp4", seed=i)
    code = cli(["build-motionvid-qa", "--dataset", str(tmp_path / "ds"), "--source", str(src),
                "--stages", "ingest", "--shard-size", "2"])
    assert code == 0
    assert _count(tmp_path / "ds", "SELECT count(*) FROM '{root}/clips/*.parquet'") == [(3,)]
    reasons = _count(tmp_path / "ds", "SELECT reason FROM '{root}/rejections/*.parquet' ORDER BY reason")
    assert sorted(r for (r,) in reasons) == sorted(expected.values())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def ray_head():
    """A real Ray head on loopback, in its own temp dir so only its processes are stopped."""
    temp_dir = tempfile.mkdtemp(prefix="vr", dir="/tmp")  # short: Ray puts unix sockets in it
    port, dash, agent, agent_grpc, client, env_agent, metrics = (_free_port() for _ in range(7))
    # Ray 2.60 turns token auth on: the head and every CLI call share this token, so the test
    # needs no ~/.ray/auth_token (a fresh machine has none) and leaves none behind.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    start = subprocess.run(
        [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=4",
         # every port explicit: another cluster on this machine (the test session's) holds the defaults
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--ray-client-server-port={client}", f"--runtime-env-agent-port={env_agent}",
         f"--metrics-export-port={metrics}",
         f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        stop_processes_under(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_job_submit_against_a_running_head(ray_head, tmp_path):
    address, env = ray_head
    src = tmp_path / "videos"
    src.mkdir()
    write_good_clip(src / "good.mp4", seed=7)
    (src / "empty.mp4").write_bytes(b"")
    dataset = tmp_path / "ds"
    for _ in range(20):  # `ray start` returns before the head's job agent accepts jobs
        job = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
             "python", "-m", "engine.run", "build-motionvid-qa", "--dataset", str(dataset),
             "--source", str(src), "--stages", "ingest"],
            env=env, capture_output=True, text=True, timeout=400, cwd=REPO,
        )
        if "No available agent" not in job.stdout + job.stderr:
            break
        time.sleep(3)
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    assert "succeeded" in job.stdout + job.stderr
    assert _count(dataset, "SELECT count(*) FROM '{root}/clips/*.parquet'") == [(1,)]
    assert _count(dataset, "SELECT reason FROM '{root}/rejections/*.parquet'") == [("empty_file",)]


def _execute_on_ray(stages: list, src: Path, root: Path, shard_size: int = 2) -> dict:
    """The stages over the videos in `src` through the real driver and the Ray executor."""
    from engine.driver import BuildOptions, execute, plan_build
    from engine.executors import RayExecutor
    from engine.pipeline import Pipeline
    from engine.progress import Progress
    from engine.store import DatasetStore

    pipeline = Pipeline(stages)
    store = DatasetStore(root, recover=True)
    options = BuildOptions(shard_size=shard_size)
    plan = plan_build(pipeline, store, str(src), options)
    return execute(pipeline, store, plan, lambda: RayExecutor(stages, store.root), options,
                   Progress(pipeline.names, live=False, interval=1e9))


def test_actor_dying_mid_batch_is_restarted_and_its_batch_retried(ray_local, tmp_path):
    from agents.ingest import Ingest
    from tests.stages_for_tests import DyingCaptioner

    src = tmp_path / "videos"
    src.mkdir()
    for i in range(4):
        write_good_clip(src / f"v{i}.mp4", n=8, seed=i)
    markers = tmp_path / "markers"
    markers.mkdir()
    stages = [Ingest(), DyingCaptioner({"marker_dir": str(markers), "resources": {"num_cpus": 0.5}})]
    result = _execute_on_ray(stages, src, tmp_path / "ds")
    assert result["commits"] == 4
    assert len(list(markers.iterdir())) == 2  # the actor died once per shard
    rows = _count(tmp_path / "ds", "SELECT text, count(*) FROM '{root}/captions/*.parquet' GROUP BY 1")
    assert rows == [("survived", 4)]
    assert _count(tmp_path / "ds", "SELECT count(*) FROM '{root}/rejections/*.parquet'") == [(0,)]


@pytest.mark.parametrize("fail", [False, True])
def test_shards_start_on_ready_actors_while_a_slow_model_still_loads(ray_local, tmp_path, fail):
    """Ingest's shards commit while the next stage's actor is still loading its model; a load that
    fails then ends the run in one sentence naming the stage, and the committed shards stay."""
    from agents.ingest import Ingest
    from engine.errors import UserError
    from engine.store import DatasetStore
    from tests.stages_for_tests import SlowSetupCaptioner

    src = tmp_path / "videos"
    src.mkdir()
    for i in range(4):
        write_good_clip(src / f"v{i}.mp4", n=8, seed=i)
    done = tmp_path / "setup-done"
    slow = SlowSetupCaptioner({"setup_s": 6.0, "fail": fail, "done_file": str(done),
                               "resources": {"num_cpus": 0.5}})
    if fail:
        with pytest.raises(UserError, match="stage slow_setup cannot start: weights file is truncated"):
            _execute_on_ray([Ingest(), slow], src, tmp_path / "ds")
    else:
        assert _execute_on_ray([Ingest(), slow], src, tmp_path / "ds")["commits"] == 4
    loaded_at = float(done.read_text())
    ingest = DatasetStore(tmp_path / "ds").commits("ingest")
    assert len(ingest) == 2  # both shards of the first stage, committed
    assert all(r["committed_at"] < loaded_at for r in ingest.values())  # before the slow stage could take them
    captions = DatasetStore(tmp_path / "ds").read_table("captions")
    assert captions.num_rows == (0 if fail else 4)


def test_a_stage_placed_with_nice_runs_at_that_lower_priority(ray_local, tmp_path):
    from agents.ingest import Ingest
    from tests.stages_for_tests import NicenessProbe, NicenessProbeToo

    src = tmp_path / "videos"
    src.mkdir()
    for i in range(2):
        write_good_clip(src / f"v{i}.mp4", n=8, seed=i)
    stages = [Ingest(), NicenessProbe({"resources": {"num_cpus": 0.5}}),
              NicenessProbeToo({"resources": {"num_cpus": 0.5, "nice": 3}})]
    _execute_on_ray(stages, src, tmp_path / "ds")
    found = dict(_count(tmp_path / "ds", "SELECT DISTINCT source, text::INT FROM '{root}/captions/*.parquet'"))
    assert len(found) == 2  # one niceness per actor: Ray's own worker niceness, then 3 lower
    assert found["niceness_too"] == min(19, found["niceness"] + 3)


def test_ray_job_asking_for_gpus_the_head_lacks_fails_with_the_placement_sentence(ray_head, tmp_path):
    address, env = ray_head
    for _ in range(20):  # `ray start` returns before the head's job agent accepts jobs
        started = time.monotonic()
        job = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
             "python", "-m", "engine.run", "build-motionvid-qa", "--dataset", str(tmp_path / "ds"),
             "--source", "virtual:2", "--stages", "ingest,ground_truth,analyzer", "--placement", "gpu-cluster"],
            env=env, capture_output=True, text=True, timeout=400, cwd=REPO,
        )
        if "No available agent" not in job.stdout + job.stderr:
            break
        time.sleep(3)
    out = job.stdout + job.stderr
    assert job.returncode != 0 and "needs 1 GPU (analyzer 1), the cluster has 0" in out, out[-3000:]
    assert time.monotonic() - started < 120
    assert not list((tmp_path / "ds").glob("clips/*.parquet"))


def test_kill_9_of_a_ray_driver_then_resume_matches_a_local_run(tmp_path):
    from tests.test_resume import _build, _snapshot

    reference = tmp_path / "local"
    assert _build(reference).returncode == 0
    dataset = tmp_path / "ray"
    crashed = _build(dataset, crash_after=3, executor="ray")
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    resumed = _build(dataset, executor="ray")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _snapshot(dataset) == _snapshot(reference)  # same ids whichever executor ran them
