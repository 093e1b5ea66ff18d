"""Dataset integrity through the real CLI and build: one writer at a time, verified shards that a
build repairs, clean failures on damaged files, and a dry-run plan that matches the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.build import build
from engine.compact import compact
from engine.config import load_job_config
from engine.run import main
from engine.store import CorruptDataset, DatasetStore
from engine.verify import verify
from schemas import TABLES

REPO = Path(__file__).resolve().parents[1]
STAGES = "ingest,ground_truth,template_writer"
FLAGS = ["--executor", "local", "--stages", STAGES, "--shard-size", "2"]
HOLDER = ("import sys, time; sys.path.insert(0, sys.argv[3]); from engine.lock import WriterLock; "
          "WriterLock(sys.argv[1], 'build-motionvid-qa').acquire(); print('held', flush=True); time.sleep(float(sys.argv[2]))")


def _build(root, source="virtual:4", *extra) -> int:
    return main(["build-motionvid-qa", "--dataset", str(root), "--source", source, *FLAGS, *extra])


def _rows(root) -> dict[str, list[str]]:
    store = DatasetStore(root)
    return {t: sorted(json.dumps(r, sort_keys=True, default=str) for r in store.read_table(t).to_pylist())
            for t in TABLES}


def _stamps(root) -> dict[tuple[str, str], float]:
    store = DatasetStore(root)
    return {(stage, shard): rec["committed_at"] for stage in STAGES.split(",")
            for shard, rec in store.commits(stage).items()}


def _hold_lock(root, seconds=60.0) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), str(seconds), str(REPO)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


# ----- one writer at a time -----
def test_a_second_writer_is_refused_naming_the_holder_and_readers_go_on(tmp_path, capsys):
    assert _build(tmp_path) == 0
    holder = _hold_lock(tmp_path)
    try:
        capsys.readouterr()
        assert _build(tmp_path) == 75
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"pid {holder.pid}" in err and "--wait" in err
        assert main(["dedup", "--dataset", str(tmp_path), "--apply"]) == 75
        assert main(["build-motionvid-qa", "--dataset", str(tmp_path), "--recompute", *FLAGS]) == 75
        assert main(["audit", "--dataset", str(tmp_path), "--strict"]) == 0  # readers never need the lock
    finally:
        holder.kill()
        holder.wait()
    assert _build(tmp_path) == 0  # the kernel released the dead holder's lock


def test_wait_starts_when_the_holder_finishes(tmp_path, capsys):
    holder = _hold_lock(tmp_path, seconds=1.0)
    started = time.monotonic()
    assert _build(tmp_path, "virtual:2", "--wait") == 0
    assert time.monotonic() - started >= 0.5 and "waiting for build-motionvid-qa" in capsys.readouterr().err
    holder.wait()


def test_concurrent_builds_and_dedup_are_refused_and_the_dataset_stays_sound(tmp_path, capsys):
    command = [sys.executable, "-m", "engine.run", "build-motionvid-qa", "--dataset", str(tmp_path),
               "--source", "virtual:10", *FLAGS]
    first = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "_lock"
    deadline = time.monotonic() + 60
    while not (lock.exists() and f'"pid": {first.pid}' in lock.read_text()):
        assert time.monotonic() < deadline and first.poll() is None, "the first build never took the lock"
        time.sleep(0.05)
    assert _build(tmp_path, "virtual:10") == 75
    assert main(["dedup", "--dataset", str(tmp_path), "--apply"]) == 75
    assert "being written by build-motionvid-qa" in capsys.readouterr().err
    assert first.wait(timeout=300) == 0, first.stderr.read()
    # the structural checks (answer-letter balance on 10 template clips is a property of the sample)
    structural = [f"--check={name}" for name in ("rows_per_table", "duplicate_questions", "lineage",
                                                "rejection_reasons", "expected_tables", "stage_errors")]
    assert main(["audit", "--dataset", str(tmp_path), "--strict", *structural]) == 0
    assert DatasetStore(tmp_path).read_table("clips").num_rows == 10


# ----- verified shards -----
@pytest.mark.parametrize("damage", ["delete", "truncate", "alter"])
def test_a_damaged_shard_is_named_and_the_next_build_restores_its_rows(tmp_path, capsys, damage):
    assert _build(tmp_path) == 0
    original, stamps = _rows(tmp_path), _stamps(tmp_path)
    shard = sorted(DatasetStore(tmp_path).commits("ground_truth"))[0]
    target = tmp_path / "objects" / f"ground_truth-{shard}.parquet"
    data = target.read_bytes()
    if damage == "delete":
        target.unlink()
    elif damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    else:  # same size, one byte changed in the middle
        middle = len(data) // 2
        target.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    capsys.readouterr()
    assert main(["audit", "--dataset", str(tmp_path), "--strict", "--json"]) == 1
    named = capsys.readouterr().err
    assert f"objects/ground_truth-{shard}.parquet is {'missing' if damage == 'delete' else damage[:5]}" in named
    assert _build(tmp_path, "virtual:4", *(["--verify"] if damage == "alter" else [])) == 0
    assert f"repairing: objects/ground_truth-{shard}.parquet" in capsys.readouterr().err
    assert _rows(tmp_path) == original and verify(DatasetStore(tmp_path), checksums=True) == []
    changed = {key for key, stamp in _stamps(tmp_path).items() if stamps[key] != stamp}
    assert changed == {("ground_truth", shard), ("template_writer", shard)}  # that shard and its dependants only


def test_verify_repair_marks_and_a_build_recomputes_on_a_compacted_dataset(tmp_path, capsys):
    assert _build(tmp_path) == 0
    original = _rows(tmp_path)
    compact(DatasetStore(tmp_path, recover=True), retention_s=0)
    part = next((tmp_path / "mcqs").glob("part-*.parquet"))
    part.write_bytes(part.read_bytes()[:-10])
    assert main(["verify", "--dataset", str(tmp_path)]) == 1
    assert f"mcqs/{part.name} is truncated" in capsys.readouterr().out
    assert main(["verify", "--dataset", str(tmp_path), "--repair"]) == 0
    assert _build(tmp_path) == 0
    assert _rows(tmp_path) == original and verify(DatasetStore(tmp_path), checksums=True) == []


# ----- clean failures -----
def test_a_corrupt_run_json_is_one_sentence_and_a_distinct_exit_code(tmp_path, capsys):
    assert _build(tmp_path, "virtual:2") == 0
    (tmp_path / "run.json").write_text("{not json")
    capsys.readouterr()
    assert _build(tmp_path, "virtual:2") == 65
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "run.json is not valid JSON" in err and "Traceback" not in err


def test_a_truncated_shard_read_by_a_reader_is_one_sentence(tmp_path):
    assert _build(tmp_path, "virtual:2") == 0
    target = next((tmp_path / "mcqs").glob("*.parquet"))
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(CorruptDataset, match=f"{target.name} cannot be read.*verify --dataset"):
        DatasetStore(tmp_path).read_table("mcqs")


def test_no_temporary_files_are_left_when_a_write_fails(tmp_path, monkeypatch):
    store = DatasetStore(tmp_path, recover=True)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pyarrow.parquet.write_table", full_disk)
    with pytest.raises(OSError):
        store.stage_shard("ingest", "s1", {"clips": []})
    monkeypatch.setattr("os.fsync", full_disk)  # the disk fills while the temporary file is written
    with pytest.raises(OSError):
        store.write_run_config({"a": 1})
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == [] and not any((tmp_path / "_staging").iterdir())


# ----- the dry-run plan is what the run does -----
def _config(source, **stage_config):
    cfg = load_job_config(None, {"source": source, "executor": "local", "stages": STAGES.split(","), "shard_size": 2})
    cfg.stage_config.update(stage_config)
    return cfg


def _plan_then_run(root, cfg) -> tuple[set, set, dict]:
    before = _stamps(root)
    planned = build(cfg, str(root), dry_run=True)
    build(cfg, str(root))
    ran = {key for key, stamp in _stamps(root).items() if before.get(key) != stamp}
    return {tuple(t) for t in planned["tasks"]}, ran, planned["plan"]


def test_dry_run_plans_exactly_what_the_run_does(tmp_path):
    build(_config("virtual:4"), str(tmp_path))
    planned, ran, per_stage = _plan_then_run(tmp_path, _config("virtual:7"))  # a refresh: new clips
    assert planned == ran and len(ran) == 2 * 3  # two new shards, every stage
    assert {stage: sum(v for k, v in counts.items() if k != "up_to_date") for stage, counts in per_stage.items()} \
        == {"ingest": 3, "ground_truth": 3, "template_writer": 3}

    changed = _config("virtual:7", template_writer={"categories": ["MR", "LM"]})
    planned, ran, per_stage = _plan_then_run(tmp_path, changed)  # a config change: one stage, every shard
    assert planned == ran == {("template_writer", s) for s in DatasetStore(tmp_path).commits("template_writer")}
    assert per_stage["template_writer"] == {"config_changed": 7}

    store = DatasetStore(tmp_path)
    shard = sorted(store.commits("ground_truth"))[0]
    store.write_record({**store.read_commit("ground_truth", shard), "retryable": 1})  # as a failed call leaves it
    planned, ran, per_stage = _plan_then_run(tmp_path, changed)  # a retry: that shard from that stage on
    assert planned == ran == {("ground_truth", shard), ("template_writer", shard)}
    assert per_stage["ground_truth"]["failed_before"] == 2


def test_refresh_and_resume_on_a_compacted_dataset_give_the_rows_of_a_fresh_build(tmp_path, capsys):
    assert _build(tmp_path / "grown", "virtual:4") == 0
    assert main(["compact", "--dataset", str(tmp_path / "grown"), "--retention-s", "0"]) == 0
    assert "compacted" in capsys.readouterr().out
    assert _build(tmp_path / "grown", "virtual:6") == 0  # a refresh: the new shards land beside the parts
    stamps = _stamps(tmp_path / "grown")
    assert _build(tmp_path / "grown", "virtual:6") == 0 and _stamps(tmp_path / "grown") == stamps  # nothing to redo
    assert _build(tmp_path / "fresh", "virtual:6") == 0
    assert _rows(tmp_path / "grown") == _rows(tmp_path / "fresh")


def test_a_repaired_part_leaves_the_table_folder_after_the_build(tmp_path, capsys):
    assert _build(tmp_path) == 0
    compact(DatasetStore(tmp_path, recover=True), retention_s=0)
    part = next((tmp_path / "objects").glob("part-*.parquet"))
    part.unlink()
    assert _build(tmp_path) == 0  # every shard of that part recomputed, then the dead part's index entry dropped
    assert "repairing: objects/" in capsys.readouterr().err
    store = DatasetStore(tmp_path)
    assert not store.parts().get(f"objects/{part.name}") and verify(store, checksums=True) == []
