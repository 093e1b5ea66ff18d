import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from engine.store import MANIFEST, DatasetStore, StoreError, write_manifest
from schemas import CaptionRow, RejectionRow

LINEAGE = dict(agent="t", model="m", model_revision="r", prompt_version="p")


def _captions(n, clip="c" * 16, text="x"):
    return [CaptionRow(caption_id=f"{i:016d}", clip_id=clip, kind="motion", text=f"{text}{i}", source="t", **LINEAGE)
            for i in range(n)]


def _rejections(n):
    return [RejectionRow(rejection_id=f"{i:016d}", item_id=f"i{i}", stage="s", reason="bad_thing") for i in range(n)]


def _glob_count(root, table):
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{root}/{table}/*.parquet')").fetchall()[0][0]


def test_commit_makes_tables_visible_and_records_it(tmp_path):
    store = DatasetStore(tmp_path / "ds")
    staged = store.stage_shard("annotator", "s1", {"captions": _captions(3), "rejections": _rejections(1)})
    assert store.table_files("captions") == []  # staged files are invisible to table globs
    record = store.commit(staged, {"fingerprint": "f1"})
    assert record["rows"] == {"captions": 3, "rejections": 1}
    assert store.read_commit("annotator", "s1")["fingerprint"] == "f1"
    assert _glob_count(tmp_path / "ds", "captions") == 3
    assert not any((tmp_path / "ds" / "_staging").iterdir())


def test_same_shard_twice_overwrites_instead_of_duplicating(tmp_path):
    store = DatasetStore(tmp_path)
    for text in ("first", "second"):
        store.commit(store.stage_shard("annotator", "s1", {"captions": _captions(4, text=text)}), {})
    assert _glob_count(tmp_path, "captions") == 4
    texts = {r.text for r in store.read_shard_rows("captions", "annotator", "s1")}
    assert texts == {f"second{i}" for i in range(4)}


def test_crash_after_manifest_rolls_forward(tmp_path, monkeypatch):
    store = DatasetStore(tmp_path)
    staged = store.stage_shard("annotator", "s1", {"captions": _captions(2), "rejections": _rejections(2)})
    real_replace = os.replace
    calls = []

    def crash_on_second_file(src, dst):
        calls.append(dst)
        if str(dst).endswith(".parquet") and len([c for c in calls if str(c).endswith(".parquet")]) == 2:
            raise KeyboardInterrupt("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_second_file)
    with pytest.raises(KeyboardInterrupt):
        store.commit(staged, {"fingerprint": "f"})
    monkeypatch.setattr(os, "replace", real_replace)
    # Each table glob is complete on its own even now: one file landed whole, the other not at all.
    assert _glob_count(tmp_path, "captions") in (0, 2)
    assert store.read_commit("annotator", "s1") is None
    reopened = DatasetStore(tmp_path, recover=True)
    assert reopened.read_commit("annotator", "s1")["fingerprint"] == "f"
    assert _glob_count(tmp_path, "captions") == 2 and _glob_count(tmp_path, "rejections") == 2


def test_crash_before_manifest_is_discarded(tmp_path):
    store = DatasetStore(tmp_path)
    store.stage_shard("annotator", "s1", {"captions": _captions(2)})
    assert DatasetStore(tmp_path, recover=True).read_commit("annotator", "s1") is None
    assert not any((tmp_path / "_staging").iterdir())
    assert _empty_or_missing(tmp_path / "captions")


def test_torn_manifest_is_a_commit_that_never_happened(tmp_path):
    """The manifest is written in place (no temporary file): cut short by a crash, it is discarded."""
    store = DatasetStore(tmp_path)
    staged = store.stage_shard("annotator", "s1", {"captions": _captions(2)})
    whole = tmp_path / "whole"
    whole.mkdir()
    write_manifest(whole, {"moves": [[staged.files["captions"], str(tmp_path / "captions" / "x.parquet")]],
                           "record": {"stage": "annotator", "shard_id": "s1"}})
    torn = (whole / MANIFEST).read_text()[:40]
    (Path(staged.txn_dir) / MANIFEST).write_text(torn)
    assert DatasetStore(tmp_path, recover=True).read_commit("annotator", "s1") is None
    assert not any((tmp_path / "_staging").iterdir())
    assert _empty_or_missing(tmp_path / "captions")


def test_killed_writer_never_exposes_a_torn_file(tmp_path):
    """SIGKILL a process in the middle of many commits; every glob stays readable and whole."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.getcwd()!r})
        from engine.store import DatasetStore
        from schemas import CaptionRow
        store = DatasetStore({str(tmp_path)!r})
        for shard in range(40):
            rows = [CaptionRow(caption_id=f"{{shard:08d}}{{i:08d}}", clip_id="c"*16, kind="motion",
                    text="t" * 2000, source="t", agent="a", model="m") for i in range(200)]
            staged = store.stage_shard("annotator", f"s{{shard}}", {{"captions": rows}})
            store.commit(staged, {{}})
            if shard == 17:
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    store = DatasetStore(tmp_path, recover=True)
    assert _glob_count(tmp_path, "captions") == 18 * 200
    ids = duckdb.sql(f"SELECT count(DISTINCT caption_id) FROM read_parquet('{tmp_path}/captions/*.parquet')")
    assert ids.fetchall()[0][0] == 18 * 200
    assert len(store.commits("annotator")) == 18


def test_dataset_path_that_is_a_file_is_a_clear_error(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        DatasetStore(target)


def test_duckdb_views_cover_every_table_even_empty(tmp_path):
    store = DatasetStore(tmp_path)
    store.commit(store.stage_shard("annotator", "s1", {"captions": _captions(2)}), {})
    con = store.duckdb()
    assert con.execute("SELECT count(*) FROM captions").fetchall()[0][0] == 2
    assert con.execute("SELECT count(*) FROM mcqs").fetchall()[0][0] == 0
    cols = [r[0] for r in con.execute("DESCRIBE mcqs").fetchall()]
    assert "question_id" in cols and "answer" in cols


def test_run_config_round_trip(tmp_path):
    store = DatasetStore(tmp_path)
    store.write_run_config({"a": 1})
    assert store.read_run_config() == {"a": 1}
    assert json.loads((tmp_path / "run.json").read_text()) == {"a": 1}


def _empty_or_missing(folder):
    return not folder.exists() or not any(folder.iterdir())
