"""Dataset-wide near-duplicate removal: copies in different shards, the sticky exclusion, crash safety."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from agents.base import Batch, Stage, StageConfig, StageOutput
from engine import dedup
from engine.run import main as cli
from engine.runner import ShardTask, run_task
from engine.store import DatasetStore
from schemas import CaptionRow, Lineage, stable_id
from tests.helpers_footage import FPS, SEGMENT_FRAMES, object_segment, pan_segment

CURATION = ["--set", "ingest.curation.enabled=true", "--set", "ingest.curation.filters.min_short_side=128",
            "--set", "ingest.curation.filters.min_duration=1.0"]
FAKE_CHAT = ["--set", "analyzer.chat.backend=fake"]


def _build(root, source, stages, *extra):
    code = cli(["build-motionvid-qa", "--dataset", str(root), "--source", str(source), "--stages", stages,
                "--executor", "local", "--shard-size", "1", *CURATION, *extra])
    assert code == 0


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """The same pan shot twice (full size and a smaller re-encode, in different files) and another shot."""
    import cv2

    from agents.video import write_video

    folder = tmp_path_factory.mktemp("src")
    pan = pan_segment(11, SEGMENT_FRAMES, (200, 120, 60))
    write_video(folder / "a_original.mp4", pan, FPS)
    write_video(folder / "b_copy.mp4", [cv2.resize(f, (208, 156), interpolation=cv2.INTER_AREA) for f in pan], FPS)
    write_video(folder / "c_other.mp4", object_segment(12, SEGMENT_FRAMES, (60, 140, 220)), FPS)
    return folder


@pytest.fixture(scope="module")
def ingested(footage, tmp_path_factory):
    root = tmp_path_factory.mktemp("ds") / "pristine"
    _build(root, footage, "ingest")
    return root


def _copy(ingested, tmp_path, name="ds"):
    target = tmp_path / name
    shutil.copytree(ingested, target)
    return target


def _clip_of(store, file_name):
    (clip_id,) = [r["clip_id"] for r in store.read_table("clips").to_pylist() if r["source_key"].endswith(file_name)]
    return clip_id


def _dedup(capsys, root, *flags):
    capsys.readouterr()
    assert cli(["dedup", "--dataset", str(root), "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def _rows_of_clip(store, clip_id):
    """(table, reason) of every row anywhere that belongs to clip_id."""
    con = store.duckdb()
    found = []
    for table in ("clips", "phrases", "rejections"):
        for (reason,) in con.execute(
            f"SELECT {'reason' if table == 'rejections' else 'NULL'} FROM {table} WHERE clip_id = ?", [clip_id]
        ).fetchall():
            found.append((table, reason))
    return sorted(found, key=str)


def _assert_globs_match_commits(store):
    """Every table glob holds exactly the rows the commit records say, and no id twice."""
    con = store.duckdb()
    for table in ("clips", "rejections", "phrases"):
        expected = sum(rec["rows"].get(table, 0) for stage in ("ingest", "analyzer", "dedup")
                       for rec in store.commits(stage).values())
        key = "clip_id" if table == "clips" else ("rejection_id" if table == "rejections" else "phrase_id")
        total, distinct = con.execute(f"SELECT count(*), count(DISTINCT {key}) FROM {table}").fetchone()
        assert total == distinct == expected, table


def test_copies_in_different_shards_are_found_and_dropped_for_good(footage, ingested, tmp_path, capsys):
    root = _copy(ingested, tmp_path)
    store = DatasetStore(root)
    original, copy, other = (_clip_of(store, n) for n in ("a_original.mp4", "b_copy.mp4", "c_other.mp4"))
    assert len({r["shard_id"] for r in store.commits("ingest").values()}) == 3  # one video per shard

    report = _dedup(capsys, root)
    assert [(d["clip_id"], d["kept_id"]) for d in report["duplicates"]] == [(copy, original)]  # larger copy kept
    assert report["duplicates"][0]["distance"] <= 8 and report["pruned"] is None
    assert store.read_table("clips").num_rows == 3  # a report changes nothing

    applied = _dedup(capsys, root, "--apply")
    assert applied["pruned"] == {"clips": 1}
    assert sorted(store.read_table("clips").column("clip_id").to_pylist()) == sorted([original, other])
    (rejection,) = [r for r in store.read_table("rejections").to_pylist() if r["stage"] == "dedup"]
    assert rejection["reason"] == "near_duplicate" and rejection["clip_id"] == rejection["item_id"] == copy
    assert original in rejection["detail"]
    _assert_globs_match_commits(store)
    assert all(copy not in rec["clip_ids"] for rec in store.commits("ingest").values())

    _build(root, footage, "ingest,analyzer", *FAKE_CHAT)  # ingest is up to date; the analyzer runs on every shard
    assert _rows_of_clip(store, copy) == [("rejections", "near_duplicate")]
    assert ("rejections", "no_caption") in _rows_of_clip(store, original)  # the analyzer saw the kept copy

    _build(root, footage, "ingest,analyzer", *FAKE_CHAT, "--set", "ingest.num_samples=8")  # re-ingest everything
    assert {len(r["frame_indices"]) for r in store.read_table("clips").to_pylist()} == {8}
    assert _rows_of_clip(store, copy) == [("rejections", "near_duplicate")]
    assert sorted(store.read_table("clips").column("clip_id").to_pylist()) == sorted([original, other])
    _assert_globs_match_commits(store)
    assert _dedup(capsys, root)["duplicates"] == []


def _snapshot(root):
    store = DatasetStore(root)
    tables = {t: sorted(json.dumps(r, sort_keys=True, default=str) for r in store.read_table(t).to_pylist())
              for t in ("clips", "rejections")}
    records = {stage: {k: (v["clip_ids"], v["rows"], v.get("fingerprint")) for k, v in store.commits(stage).items()}
               for stage in ("ingest", "dedup")}
    return tables, records, json.loads((root / dedup.STATE_FILE).read_text())


def test_a_crash_during_apply_is_finished_by_applying_again(ingested, tmp_path, monkeypatch):
    clean = _copy(ingested, tmp_path, "clean")
    dedup.apply(DatasetStore(clean), dedup.find_duplicates(DatasetStore(clean), 8.0))

    crashed = _copy(ingested, tmp_path, "crashed")
    store = DatasetStore(crashed)
    copy = _clip_of(store, "b_copy.mp4")
    fingerprint = store.read_commit("ingest", next(k for k, v in store.commits("ingest").items() if copy in v["clip_ids"]))
    real_commit, commits = DatasetStore.commit, []

    def commit_then_crash(self, staged, record):
        if commits:
            raise OSError("disk gone")
        commits.append(staged.shard_id)
        return real_commit(self, staged, record)

    monkeypatch.setattr(DatasetStore, "commit", commit_then_crash)
    with pytest.raises(OSError, match="disk gone"):
        dedup.apply(store, dedup.find_duplicates(store, 8.0))
    monkeypatch.undo()
    assert commits == [fingerprint["shard_id"]]  # the shard rewrite landed, the rejection did not
    assert copy in dedup.excluded_clips(crashed)
    assert copy not in store.read_table("clips").column("clip_id").to_pylist()
    _assert_globs_match_commits(DatasetStore(crashed, recover=True))

    # The clip is already gone from `clips`, so the second pass finds nothing new: the state file carries it.
    again = DatasetStore(crashed, recover=True)
    assert dedup.find_duplicates(again, 8.0) == []
    assert dedup.apply(again, []) == {}
    assert _snapshot(crashed) == _snapshot(clean)
    assert again.read_commit("ingest", fingerprint["shard_id"])["fingerprint"] == fingerprint["fingerprint"]


def test_text_report_and_user_errors(ingested, tmp_path, capsys):
    assert cli(["dedup", "--dataset", str(ingested)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 near duplicate(s)") and " keep " in out and "applied" not in out
    assert not (ingested / dedup.STATE_FILE).exists()  # reporting never excludes anything
    assert cli(["dedup", "--dataset", str(tmp_path / "missing")]) == 2
    assert cli(["dedup", "--dataset", str(ingested), "--max-distance", "70"]) == 2
    assert "between 0 and 64" in capsys.readouterr().err


class _Seer(Stage[StageConfig]):
    """Captions every clip it is given and rejects each one twice (one near_duplicate)."""

    name = "seer"
    config_model = StageConfig
    reads = ("clips",)
    writes = ("captions",)

    def process_batch(self, batch: Batch) -> StageOutput:
        out = StageOutput()
        for clip in batch.clips:
            self.seen.append(clip.clip_id)
        for clip_id in self.also:
            lineage = Lineage(agent=self.name, model="none")
            out.add("captions", CaptionRow.build(lineage, caption_id=stable_id("cap", clip_id), clip_id=clip_id,
                                                 kind="clip", text="a clip", source=self.name))
            out.reject(self.name, clip_id, "no_caption", "", clip_id=clip_id)
            out.reject(self.name, clip_id, "near_duplicate", "", clip_id=clip_id)
        return out


def test_runner_keeps_excluded_clips_out_of_inputs_and_outputs(ingested, tmp_path):
    root = _copy(ingested, tmp_path)
    store = DatasetStore(root)
    copy, original = _clip_of(store, "b_copy.mp4"), _clip_of(store, "a_original.mp4")
    files = [rec["files"]["clips"] for rec in store.commits("ingest").values()]
    stage = _Seer({})
    stage.seen, stage.also = [], [copy, original]
    task = ShardTask(stage_index=1, stage="seer", shard_id="s", fingerprint="f", inputs={"clips": files})

    run_task(stage, store, task)
    assert copy in stage.seen  # nothing excluded yet

    (root / dedup.STATE_FILE).parent.mkdir()
    (root / dedup.STATE_FILE).write_text(json.dumps({"excluded": {copy: {"kept_id": original, "distance": 0.4}}}))
    stage.seen = []
    result = run_task(stage, store, replace(task, excluded=dedup.excluded_clips(root)))  # the driver reads it once
    assert copy not in stage.seen and original in stage.seen
    captions = _staged(result, "captions")
    assert [c.clip_id for c in captions] == [original]
    kept = {(r.clip_id, r.reason) for r in _staged(result, "rejections")}
    assert kept == {(original, "no_caption"), (original, "near_duplicate"), (copy, "near_duplicate")}


def _staged(result, table):
    import pyarrow.parquet as pq

    from schemas import row_model

    return [row_model(table).model_validate(r) for r in pq.read_table(result.staged.files[table]).to_pylist()]
