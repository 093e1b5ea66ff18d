"""Crash-resume, exactly once: SIGKILL the driver after N commits, run again, and the dataset has
exactly the rows of an uninterrupted run; readers never see a torn or duplicated table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from engine.run import main as cli
from engine.store import DatasetStore

REPO = Path(__file__).resolve().parent.parent
STAGES = "ingest,ground_truth,template_writer"
KEYS = {"clips": "clip_id", "objects": "object_id", "captions": "caption_id", "mcqs": "question_id",
        "rejections": "rejection_id"}


def _build(dataset, *extra, crash_after=None, executor="local"):
    env = {**os.environ}
    env.pop("VDE_CRASH_AFTER_COMMITS", None)
    if crash_after:
        env["VDE_CRASH_AFTER_COMMITS"] = str(crash_after)
    cmd = [sys.executable, "-m", "engine.run", "build-motionvid-qa", "--dataset", str(dataset),
           "--source", "virtual:5", "--stages", STAGES, "--shard-size", "2", "--executor", executor, *extra]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _snapshot(dataset) -> dict[str, list]:
    out = {}
    for table, key in KEYS.items():
        files = list((Path(dataset) / table).glob("*.parquet"))
        if not files:
            out[table] = []
            continue
        rows = duckdb.sql(f"SELECT {key} FROM read_parquet('{dataset}/{table}/*.parquet') ORDER BY 1").fetchall()
        out[table] = [r[0] for r in rows]
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    dataset = tmp_path_factory.mktemp("ref") / "ds"
    done = _build(dataset)
    assert done.returncode == 0, done.stderr[-2000:]
    snap = _snapshot(dataset)
    assert len(snap["clips"]) == 5 and len(snap["mcqs"]) > 10
    return snap


@pytest.mark.parametrize("crash_after", [1, 4, 8])
def test_kill_9_then_resume_gives_exactly_the_uninterrupted_rows(tmp_path, reference, crash_after):
    dataset = tmp_path / "ds"
    crashed = _build(dataset, crash_after=crash_after)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    partial = _snapshot(dataset)  # a reader right after the crash: whole files, no duplicates
    for table, ids in partial.items():
        assert len(ids) == len(set(ids)), table
        assert set(ids) <= set(reference[table]), table
    committed = sum(len(DatasetStore(dataset).commits(s)) for s in STAGES.split(","))
    assert committed == crash_after

    resumed = _build(dataset)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _snapshot(dataset) == reference
    run = json.loads((dataset / "run.json").read_text())["last_run"]
    total = 3 * 3  # 3 shards x 3 stages
    assert run["commits"] == total - crash_after  # committed work is not recomputed


def test_config_guard_refuses_another_source_and_names_the_flag(tmp_path, capsys):
    dataset = tmp_path / "ds"
    assert cli(["build-motionvid-qa", "--dataset", str(dataset), "--source", "virtual:2", "--stages", "ingest",
                "--executor", "local"]) == 0
    capsys.readouterr()
    code = cli(["build-motionvid-qa", "--dataset", str(dataset), "--source", "virtual:2:7", "--stages", "ingest",
                "--executor", "local"])
    err = capsys.readouterr().err
    assert code == 2 and "different source" in err and "--recompute" in err
    assert cli(["build-motionvid-qa", "--dataset", str(dataset), "--source", "virtual:2:7", "--stages", "ingest",
                "--executor", "local", "--recompute"]) == 0
    clips = duckdb.sql(f"SELECT source_key FROM '{dataset}/clips/*.parquet' ORDER BY 1").fetchall()
    assert [c for (c,) in clips] == ["virtual:7:000000", "virtual:7:000001"]


def test_more_virtual_scenes_is_a_refresh_not_a_new_source(tmp_path):
    dataset = tmp_path / "ds"
    args = ["build-motionvid-qa", "--dataset", str(dataset), "--stages", "ingest", "--executor", "local"]
    assert cli([*args, "--source", "virtual:2"]) == 0
    assert cli([*args, "--source", "virtual:3"]) == 0
    assert duckdb.sql(f"SELECT count(*) FROM '{dataset}/clips/*.parquet'").fetchall() == [(3,)]
