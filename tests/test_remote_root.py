"""Remote dataset roots (engine/storage.py): a build, a compaction and a refresh against an
S3-compatible server on loopback (moto's server mode, started here) give the same row ids and row
counts as the same commands on a local disk; the audit, SQL and an export read the remote root."""

import json
import logging
import uuid

import pytest

from engine.lock import DatasetLocked, WriterLock
from engine.run import main as cli
from engine.storage import open_storage
from engine.store import DatasetStore, StoreError
from schemas import TABLES

pytestmark = pytest.mark.slow
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
             "--shard-size", "1", "--stages", STAGES]
    assert cli(build) == 0
    assert cli(["compact", "--dataset", dataset]) == 0
    assert cli([*build, "--set", "template_writer.seed=1"]) == 0
    store = DatasetStore(dataset, create=False)
    return {t: sorted(store.read_table(t).column(m.KEY).to_pylist()) for t, m in TABLES.items()}


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
