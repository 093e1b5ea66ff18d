"""Compaction and the commit index: fewer files, the same rows, safe beside readers and crashes."""

import json
import os

import duckdb
import pytest

from engine import compact as compaction
from engine.audit import AuditDatabase
from engine.store import DatasetStore
from schemas import CaptionRow, RejectionRow

LINEAGE = dict(agent="t", model="m", model_revision="r", prompt_version="p")


def _captions(shard, n=3, text="x"):
    return [CaptionRow(caption_id=f"{shard}-{i}", clip_id=f"clip-{shard}", kind="motion", text=f"{text}{i}",
                       source="t", **LINEAGE) for i in range(n)]


def _fill(store, shards=12, stages=("annotator", "refiner")):
    for stage in stages:
        for shard in range(shards):
            rows = {"captions": _captions(f"{stage}{shard}"),
                    "rejections": [RejectionRow(rejection_id=f"{stage}{shard}", item_id="i", stage=stage,
                                                reason="bad_thing")] if shard % 3 == 0 else []}
            store.commit(store.stage_shard(stage, f"s{shard:02d}", rows), {"fingerprint": f"f{shard}"})


def _ids(store, table="captions"):
    return sorted(store.read_table(table).column(0).to_pylist())


def _view_ids(root, table="captions"):
    con = DatasetStore(root).duckdb()
    return sorted(r[0] for r in con.execute(f"SELECT * FROM {table}").fetchall())


def _glob(root, table="captions"):
    return sorted(r[0] for r in duckdb.sql(f"SELECT * FROM read_parquet('{root}/{table}/*.parquet')").fetchall())


def test_compaction_merges_files_and_keeps_every_row_and_record(tmp_path):
    store = DatasetStore(tmp_path, recover=True)
    _fill(store)
    before = _ids(store)
    assert len(store.table_files("captions")) == 24 and len(before) == 72
    summary = compaction.compact(store, retention_s=0)
    assert summary.files_per_table["captions"] == 1 and summary.files_per_table["rejections"] == 1
    reader = DatasetStore(tmp_path)
    assert _ids(reader) == before == _view_ids(tmp_path) == _glob(tmp_path)
    assert not list((tmp_path / "_commits").glob("*/*.json"))  # every record now lives in the index
    record = reader.read_commit("annotator", "s03")
    assert record["fingerprint"] == "f3" and "#" in record["files"]["captions"]
    assert [r.caption_id for r in reader.read_shard_rows("captions", "annotator", "s03")] == [
        "annotator3-0", "annotator3-1", "annotator3-2"]
    assert reader.read_commit("annotator", "s01")["files"]["rejections"] is None  # that shard had none


def test_a_refresh_after_compaction_replaces_rows_and_the_next_compaction_drops_the_old(tmp_path):
    store = DatasetStore(tmp_path, recover=True)
    _fill(store)
    compaction.compact(store, retention_s=0)
    store.commit(store.stage_shard("annotator", "s04", {"captions": _captions("annotator4", text="new")}), {})
    rows = {r["caption_id"]: r["text"] for r in DatasetStore(tmp_path).read_table("captions").to_pylist()}
    assert len(rows) == 72 and rows["annotator4-0"] == "new0"
    assert len(_view_ids(tmp_path)) == 72  # the view skips the part's replaced row group
    assert compaction.needs_compaction(store)
    compaction.compact(store, retention_s=0)
    assert _glob(tmp_path) == _view_ids(tmp_path) and len(_glob(tmp_path)) == 72
    assert not compaction.needs_compaction(store)


def test_removed_shard_leaves_the_compacted_table(tmp_path):
    store = DatasetStore(tmp_path, recover=True)
    _fill(store)
    compaction.compact(store, retention_s=0)
    store.remove_shard("refiner", "s05", ("captions", "rejections"))
    assert len(_ids(DatasetStore(tmp_path))) == 69 and store.read_commit("refiner", "s05") is None
    compaction.compact(store, retention_s=0)
    assert len(_glob(tmp_path)) == 69 and DatasetStore(tmp_path).read_commit("refiner", "s05") is None


def test_crash_after_the_compaction_manifest_rolls_forward(tmp_path, monkeypatch):
    store = DatasetStore(tmp_path, recover=True)
    _fill(store)
    before = _ids(store)
    real = compaction.finish_compaction
    monkeypatch.setattr(compaction, "finish_compaction", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        compaction.compact(store, retention_s=0)
    monkeypatch.setattr(compaction, "finish_compaction", real)
    assert _ids(DatasetStore(tmp_path)) == before  # nothing visible changed yet
    recovered = DatasetStore(tmp_path, recover=True)
    assert len(recovered.table_files("captions")) == 1 and _ids(recovered) == before == _glob(tmp_path)


def test_crash_before_the_manifest_changes_nothing(tmp_path, monkeypatch):
    store = DatasetStore(tmp_path, recover=True)
    _fill(store, shards=4)
    monkeypatch.setattr(compaction, "write_json_durable", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        compaction.compact(store, retention_s=0)
    assert len(store.table_files("captions")) == 8 and not any((tmp_path / "_staging").iterdir())
    assert len(_ids(DatasetStore(tmp_path, recover=True))) == 24


def test_an_open_audit_survives_a_compaction(tmp_path):
    store = DatasetStore(tmp_path, recover=True)
    _fill(store)
    db = AuditDatabase(tmp_path)
    try:
        compaction.compact(store, retention_s=0)
        compaction.vacuum(store, retention_s=0)  # the old files are gone for good
        assert db.query("SELECT count(*) FROM captions").rows == [(72,)]
    finally:
        db.close()


def test_fold_moves_loose_records_into_one_index_and_a_torn_fold_is_harmless(tmp_path):
    store = DatasetStore(tmp_path, recover=True)
    _fill(store, shards=5)
    records = {s: store.commits(s) for s in ("annotator", "refiner")}
    store.fold_index()
    assert [p.name for p in (tmp_path / "_commits").iterdir() if p.is_file()] == ["index.parquet"]
    assert not list((tmp_path / "_commits").glob("*/*.json"))
    reader = DatasetStore(tmp_path)
    assert {s: reader.commits(s) for s in records} == records
    stale = tmp_path / "_commits" / "annotator" / "s01.json"  # a fold that died before deleting records
    stale.parent.mkdir(exist_ok=True)
    stale.write_text(json.dumps(records["annotator"]["s01"]))
    assert DatasetStore(tmp_path).commits("annotator") == records["annotator"]
    newer = {**records["annotator"]["s01"], "fingerprint": "changed", "committed_at": 1e12}
    stale.write_text(json.dumps(newer))
    assert DatasetStore(tmp_path).read_commit("annotator", "s01")["fingerprint"] == "changed"


def test_a_reader_sees_commits_made_after_it_opened(tmp_path):
    writer = DatasetStore(tmp_path, recover=True)
    reader = DatasetStore(tmp_path)
    assert reader.commits("annotator") == {}
    _fill(writer, shards=2, stages=("annotator",))
    assert len(reader.commits("annotator")) == 2
    writer.fold_index()
    assert len(reader.commits("annotator")) == 2 and os.path.exists(writer.index_path)


def test_dedup_apply_and_a_resume_work_on_a_compacted_dataset(tmp_path):
    from agents.curation.dedup import Duplicate
    from engine import dedup

    store = DatasetStore(tmp_path, recover=True)
    _fill(store)
    compaction.compact(store, retention_s=0)
    pruned = dedup.apply(store, [Duplicate("clip-annotator3", "clip-annotator4", 1.0)])
    assert pruned == {"captions": 3}
    reader = DatasetStore(tmp_path)
    assert len(_ids(reader)) == 69 and "clip-annotator3" not in set(reader.read_table("captions").column("clip_id").to_pylist())
    assert reader.read_commit("annotator", "s03")["fingerprint"] == "f3"  # kept, so a refresh leaves it alone
    compaction.compact(DatasetStore(tmp_path, recover=True), retention_s=0)
    assert len(_glob(tmp_path)) == 69 == len(_view_ids(tmp_path))


def test_shard_ranges_that_straddle_row_groups_read_back_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(compaction, "ROW_GROUP_ROWS", 5)  # groups of 5-7 rows, shards of 3: ranges cross them
    store = DatasetStore(tmp_path, recover=True)
    _fill(store)
    expected = {(st, sh): [r.caption_id for r in store.read_shard_rows("captions", st, sh)]
                for st in ("annotator", "refiner") for sh in store.commits(st)}
    compaction.compact(store, retention_s=0)
    import pyarrow.parquet as pq

    part = next((tmp_path / "captions").glob("part-*.parquet"))
    assert pq.ParquetFile(part).metadata.num_row_groups > 5
    reader = DatasetStore(tmp_path)
    assert {key: [r.caption_id for r in reader.read_shard_rows("captions", *key)] for key in expected} == expected
    store.commit(store.stage_shard("annotator", "s04", {"captions": _captions("annotator4", text="new")}), {})
    assert len(_view_ids(tmp_path)) == 72 == len(_ids(DatasetStore(tmp_path)))
