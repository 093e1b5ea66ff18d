"""Remote dataset roots (engine/storage.py): a build, a compaction and a refresh against an
S3-compatible server on loopback (moto's server mode, started here) give the same row ids and row
counts as the same commands on a local disk; the audit, SQL, an export and the report read it."""

import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from engine.lock import DatasetLocked, WriterLock
from engine.run import main as cli
from engine.storage import open_storage
from engine.store import DatasetStore, StoreError
from engine.verify import verify
from schemas import TABLES, CaptionRow

STAGES = "ingest,ground_truth,template_writer,analyzer"


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_server, monkeypatch):
    import boto3

    for key, value in {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    name = f"vde-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name


def _run_all(dataset: str) -> dict[str, list[str]]:
    """Build, compact, refresh (a changed stage config), as a user would type them."""
    build = ["build-motionvid-qa", "--dataset", dataset, "--source", "virtual:4", "--executor", "local",
             "--shard-size", "2", "--stages", STAGES]
    assert cli(build) == 0
    assert cli(["compact", "--dataset", dataset]) == 0
    assert cli([*build, "--set", "template_writer.seed=1"]) == 0
    store = DatasetStore(dataset, create=False)
    return {t: sorted(store.read_table(t).column(m.KEY).to_pylist()) for t, m in TABLES.items()}


@pytest.mark.slow
def test_build_compact_refresh_on_s3_match_a_local_disk(bucket, tmp_path, capsys):
    url = f"s3://{bucket}/datasets/demo"
    remote, local = _run_all(url), _run_all(str(tmp_path / "local"))
    for table in ("clips", "objects", "mcqs", "phrases"):
        assert remote[table], f"the build wrote no {table}"
    assert remote == local  # the same row ids, so the same row counts per table

    store = DatasetStore(url, create=False)
    assert store.parts(), "the compaction wrote no part to the bucket"
    assert store.read_commit("template_writer", next(iter(store.commits("template_writer"))))
    storage = open_storage(url)
    assert all(storage.is_file(c["video_path"]) for c in store.read_table("clips").to_pylist())  # media uploaded

    capsys.readouterr()
    assert cli(["audit", "--dataset", url, "--json"]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks and all(c["status"] != "error" for c in checks.values()), checks
    assert cli(["audit", "--dataset", url, "--sql", "SELECT count(*) AS n FROM mcqs", "--json"]) == 0
    assert str(len(remote["mcqs"])) in capsys.readouterr().out

    out = tmp_path / "export"
    assert cli(["export", "--dataset", url, "--format", "motionbench", "--to", str(out), "--media", "copy"]) == 0
    lines = (out / "video_info.meta.jsonl").read_text().splitlines()
    assert lines and all((out / json.loads(line)["video_path"]).is_file() for line in lines)

    assert cli(["report", "--dataset", url, "--to", str(tmp_path / "report")]) == 0
    assert url in (tmp_path / "report" / "index.html").read_text()
    assert len(list((tmp_path / "report" / "previews").glob("*.webp"))) == len(remote["clips"])


@pytest.mark.slow
def test_kill_9_on_s3_then_resume_gives_the_rows_of_an_uninterrupted_local_run(bucket, tmp_path):
    """The driver dies (SIGKILL) right after its 3rd commit, leaving its lock object and maybe files
    of shards in flight; the same command resumes (the dead holder is on this host) and finishes."""
    build = ["build-motionvid-qa", "--source", "virtual:4", "--executor", "local", "--shard-size", "1",
             "--stages", "ingest,ground_truth,template_writer"]
    url = f"s3://{bucket}/resumed"
    env = {**os.environ, "VDE_CRASH_AFTER_COMMITS": "3"}
    crashed = subprocess.run([sys.executable, "-m", "engine.run", *build, "--dataset", url], env=env,
                             cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=300)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    assert open_storage(url).is_file("_lock")  # a SIGKILL releases nothing on S3
    assert len(DatasetStore(url, create=False).commits("ingest")) < 4
    assert cli([*build, "--dataset", url]) == 0
    assert cli([*build, "--dataset", str(tmp_path / "local")]) == 0
    ids = {}
    for root in (url, str(tmp_path / "local")):
        store = DatasetStore(root, create=False)
        ids[root] = {t: sorted(store.read_table(t).column(m.KEY).to_pylist()) for t, m in TABLES.items()}
    assert ids[url] == ids[str(tmp_path / "local")] and len(ids[url]["clips"]) == 4
    assert not open_storage(url).is_file("_lock")


def test_the_remote_writer_lock_is_one_object_created_only_if_absent(bucket):
    url = f"s3://{bucket}/locked"
    held = WriterLock(url, "build").acquire()
    try:
        with pytest.raises(DatasetLocked, match="is being written by build"):
            WriterLock(url, "compact").acquire()
    finally:
        held.release()
    WriterLock(url, "compact").acquire().release()  # released: the next writer gets it


def test_a_missing_filesystem_package_is_named_with_its_extra(monkeypatch):
    import fsspec

    def missing(protocol, **kwargs):
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(fsspec, "filesystem", missing)
    with pytest.raises(StoreError, match=r"needs s3fs, which is not installed: pip install 'videodata-engine\[s3\]'"):
        DatasetStore("s3://bucket/data")


LINEAGE = dict(agent="t", model="m", model_revision="r", prompt_version="p")


def _captions(shard: str, text: str = "x") -> dict:
    return {"captions": [CaptionRow(caption_id=f"caption-{shard}-{i}", clip_id=f"clip-{shard}-0000", kind="motion",
                                    text=f"{text}{i}", source="t", **LINEAGE) for i in range(3)]}


def test_remote_files_are_invisible_until_their_commit_record_and_leftovers_are_swept():
    url = f"memory://vde-{uuid.uuid4().hex[:8]}/data"
    store = DatasetStore(url, recover=True)
    store.commit(store.stage_shard("annotator", "s1", _captions("a")), {"fingerprint": "f"})
    crashed = store.stage_shard("annotator", "s2", _captions("b"))  # the writer dies before the record
    assert DatasetStore(url).read_table("captions").num_rows == 3  # staged files are not part of the table
    store.commit(store.stage_shard("annotator", "s1", _captions("a", "new")), {"fingerprint": "g"})  # a refresh
    reader = DatasetStore(url)
    assert sorted(reader.read_table("captions").column("text").to_pylist()) == ["new0", "new1", "new2"]
    assert len(store.storage.list("captions")) == 3  # the replaced file and the uncommitted one remain
    assert store.sweep_orphans(min_age_s=3600) == 0  # leftovers wait: a reader may still be using them
    assert len(store.read_json("_trash/unnamed.json")["first_seen"]) == 2
    assert store.sweep_orphans(min_age_s=0) == 2
    assert store.storage.list("captions") == [store.read_commit("annotator", "s1")["files"]["captions"].split("/")[1]]
    assert crashed.files["captions"] not in store.storage.list("captions")
    assert verify(DatasetStore(url), checksums=True) == []


def test_verify_names_a_damaged_remote_file():
    url = f"memory://vde-{uuid.uuid4().hex[:8]}/data"
    store = DatasetStore(url, recover=True)
    store.commit(store.stage_shard("annotator", "s1", _captions("a")), {"fingerprint": "f"})
    path = store.read_commit("annotator", "s1")["files"]["captions"]
    store.storage.write_bytes(path, store.storage.read_bytes(path)[:-10])
    problems = verify(DatasetStore(url))
    assert [(p.path, p.shards) for p in problems] == [(path, (("annotator", "s1"),))]
    assert problems[0].what.startswith("truncated")


def test_a_file_url_is_a_local_root(tmp_path, capsys):
    store = DatasetStore(tmp_path / "ds", recover=True)
    store.commit(store.stage_shard("annotator", "s1", _captions("a")), {"fingerprint": "f"})
    url = f"file://{tmp_path / 'ds'}"
    assert not DatasetStore(url).remote and DatasetStore(url).read_table("captions").num_rows == 3
    assert cli(["compact", "--dataset", url]) == 0
    capsys.readouterr()
    assert cli(["audit", "--dataset", url, "--sql", "SELECT count(*) AS n FROM captions", "--json"]) == 0
    assert '"n": 3' in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "ds" / "captions").iterdir()][0].startswith("part-")


def test_dedup_apply_on_a_remote_root_prunes_and_the_exclusions_live_there():
    from agents.curation.dedup import Duplicate
    from engine import dedup

    url = f"memory://vde-{uuid.uuid4().hex[:8]}/data"
    store = DatasetStore(url, recover=True)
    for shard in ("a", "b"):
        store.commit(store.stage_shard("annotator", shard, _captions(shard)), {"fingerprint": "f"})
    assert dedup.apply(store, [Duplicate("clip-a-0000", "clip-b-0000", 1.0)]) == {"captions": 3}
    reader = DatasetStore(url)
    assert set(reader.read_table("captions").column("clip_id").to_pylist()) == {"clip-b-0000"}
    assert dedup.excluded_clips(reader) == {"clip-a-0000"}  # read from the root, not a local folder


def test_an_unreachable_remote_root_is_one_sentence(monkeypatch, capsys):
    import socket

    with socket.socket() as closed:  # a loopback port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    for key, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(key, value)
    assert cli(["audit", "--dataset", "s3://nowhere/data"]) != 0
    err = capsys.readouterr().err
    assert "s3://nowhere/data cannot be reached: Could not connect" in err and "Traceback" not in err


@pytest.mark.slow
def test_recompute_on_a_remote_root_clears_it_first():
    url = f"memory://vde-{uuid.uuid4().hex[:8]}/data"
    build = ["build-motionvid-qa", "--dataset", url, "--executor", "local", "--shard-size", "1",
             "--stages", "ingest,ground_truth,template_writer"]
    assert cli([*build, "--source", "virtual:2"]) == 0
    assert cli([*build, "--source", "virtual:3:7"]) != 0  # another source is refused...
    assert cli([*build, "--source", "virtual:3:7", "--recompute"]) == 0  # ...unless rebuilt from scratch
    store = DatasetStore(url, create=False)
    assert store.read_table("clips").num_rows == 3
    assert len(store.storage.list("clips")) == len(store.commits("ingest")) == 3  # no file of the first build left
