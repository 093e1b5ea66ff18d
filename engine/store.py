"""The dataset store: Parquet shards with an all-or-nothing commit per (stage, shard).

Layout of a dataset root:
    <root>/<table>/<stage>-<shard_id>.parquet   a committed shard not yet compacted
    <root>/<table>/part-<id>.parquet             compacted shards, each (stage, shard) a row range
    <root>/_commits/<stage>/<shard_id>.json      commit records written since the last fold
    <root>/_commits/index.parquet                every older commit record, folded into one file
    <root>/_staging/<txn>/                       files being written, never globbed
    <root>/_trash/<id>/                          files a compaction replaced (kept for readers a while)
    <root>/_lock                                 the writer lock (engine/lock.py)
    <root>/run.json                              the resolved configuration of the last run

A commit writes every file of a (stage, shard) into a staging folder, fsyncs them, writes a
manifest, then renames each file onto its deterministic name in its table folder and finally
writes the commit record. Renames are atomic, and the name depends only on (stage, shard), so a
reader sees either the old file or the new one, a retry overwrites instead of duplicating, and a
crash at any point is rolled forward from the manifest on the next open (or back, if the manifest
was never written).

FSYNC POLICY, per commit: each staged Parquet file (its bytes are durable before any name points
to it), then the manifest and its folder (the commit point: from here a crash rolls forward), then
the commit record and its folder. The renames between them get no fsync of their own: on a
journaling file system they are durable once the later record fsync is, and where that order does
not hold a lost rename is still caught, since either the manifest is still in staging (recovery
renames again) or the size check every build start makes (engine/verify.py) finds the shard file
missing or of the wrong size and recomputes it. That is 2 + (tables) fsyncs per commit instead of
4 + 2 x (tables). Compaction fsyncs each part, its manifest, and the folders it renames into.

The current state of the dataset is the index overlaid with the loose commit records (a loose
record wins when it is newer). Each record names where its rows live, per table: a whole shard
file, or a row range of a compacted part (`objects/part-ab12.parquet#120:40`). `table_version`
turns that state into the list of files (and, for a part whose shards were recomputed since, the
row ranges still live) that the DuckDB views and `read_table` read: a consistent version without
copying anything. A plain glob over a table folder shows the same rows except while a compaction
swaps files, or while a part holds rows a refresh has replaced (the build compacts those away).

A root may also be an object store or another fsspec filesystem (`s3://bucket/prefix`,
engine/storage.py). There nothing is renamed: a shard's files are written straight into their table
folders under unique names (`<stage>-<shard_id>.<txn>.parquet`), invisible until the commit record
that names them is written (one PUT, atomic); files a newer commit or a crash left unnamed are
deleted by a later writer `ORPHAN_AGE_S` after one first found them unnamed. The index is written
with one PUT too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.storage import StoreError, fsync_dir, open_storage, write_durable
from schemas import SCHEMA_VERSION, TABLES, Row, arrow_schema, row_model, to_arrow

STAGING = "_staging"
COMMITS = "_commits"
TRASH = "_trash"
INDEX_FILE = "index.parquet"
RUN_FILE = "run.json"
MANIFEST = "MANIFEST.json"
ORPHAN_AGE_S = 600.0  # a remote root's unnamed table files are deleted this long after first found
UNNAMED = f"{TRASH}/unnamed.json"


class CorruptDataset(StoreError):
    """A damaged file in a dataset (run.json, a shard, the index): named, with what to do."""

    exit_code = 65  # EX_DATAERR


@dataclass
class StagedShard:
    """Files of one (stage, shard) written to staging, not yet visible in any table."""

    stage: str
    shard_id: str
    txn_dir: str
    files: dict[str, str] = field(default_factory=dict)  # table -> staged file path
    rows: dict[str, int] = field(default_factory=dict)
    # size and SHA-256 of each staged file, taken by whoever wrote it (a worker, in parallel), so
    # the driver's commit does not read every file again
    sizes: dict[str, int] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    remote: dict[str, tuple[int, str]] = field(default_factory=dict)  # remote root: table -> (size, sha256)


@dataclass
class TableVersion:
    """What a reader reads for one table: whole files, and parts of which only some rows live."""

    files: list[str] = field(default_factory=list)  # absolute paths (URLs on a remote root) read whole
    partial: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # path -> [(first row, rows)]

    @property
    def empty(self) -> bool:
        return not self.files and not self.partial


def shard_file_name(stage: str, shard_id: str) -> str:
    return f"{stage}-{shard_id}.parquet"


def split_location(location: str) -> tuple[str, tuple[int, int] | None]:
    """`table/file.parquet` -> (path, None); `table/part-x.parquet#120:40` -> (path, (first row 120, 40 rows))."""
    path, _, span = location.partition("#")
    if not span:
        return path, None
    first, _, rows = span.partition(":")
    return path, (int(first), int(rows))


class DatasetStore:
    def __init__(self, root: str | Path, create: bool = True, recover: bool = False):
        self.storage = open_storage(root)
        self.remote = self.storage.remote
        self.address = self.storage.address  # what the user named: a path or a URL
        self.root = self.storage.root  # a local folder: the root, or a remote root's work folder
        if self.remote:
            self._open_remote(create)
        else:
            if self.root.exists() and not self.root.is_dir():
                raise StoreError(f"dataset path {self.root} is a file, not a directory")
            if not self.root.exists():
                if not create:
                    raise StoreError(f"no dataset at {self.root}")
                self.root.mkdir(parents=True)
        self._state: dict[str, dict[str, dict[str, Any]]] | None = None
        self._parts: dict[str, dict[str, Any]] = {}
        self._loose: set[tuple[str, str]] = set()
        self._seen: tuple = ()
        # The writer (the one that recovers) keeps its state in memory as it commits; a reader
        # re-reads it whenever the records on disk changed since it last looked.
        self._writer = recover
        if recover:  # only the process that owns the run may do this: it deletes torn staging
            self.recover()

    def _open_remote(self, create: bool) -> None:
        try:
            found = self.storage.exists()
        except Exception as err:  # noqa: BLE001 - no credentials, no endpoint, no bucket: one sentence
            raise StoreError(f"the dataset root {self.address} cannot be reached: {_first_line(err)}") from None
        if not found and not create:
            raise StoreError(f"no dataset at {self.address}")
        if found and self.storage.is_file(""):
            raise StoreError(f"dataset path {self.address} is a file, not a directory")
        self.root.mkdir(parents=True, exist_ok=True)

    # ----- layout -----
    def table_dir(self, table: str) -> Path:
        row_model(table)
        return self.root / table

    def table_files(self, table: str) -> list[Path]:
        row_model(table)
        if self.remote:
            return [PurePosixPath(self.storage.url(f"{table}/{name}"))  # type: ignore[misc]
                    for name, _, _ in self.storage.list_files(table, ".parquet")]
        folder = self.table_dir(table)
        return sorted(folder.glob("*.parquet")) if folder.is_dir() else []

    def url(self, rel: str) -> str:
        """A path inside the dataset as readers name it: a local path, or a URL on a remote root."""
        return self.storage.url(rel)

    def commit_path(self, stage: str, shard_id: str) -> Path:
        return self.root / COMMITS / stage / f"{shard_id}.json"

    @property
    def index_path(self) -> Path:
        return self.root / COMMITS / INDEX_FILE

    # ----- writing -----
    def stage_shard(self, stage: str, shard_id: str, tables: dict[str, Iterable[Row]]) -> StagedShard:
        """Write one Parquet file per table into a private staging folder (fsynced)."""
        return self.stage_arrow(stage, shard_id, {t: to_arrow(t, rows) for t, rows in tables.items()})

    def stage_arrow(self, stage: str, shard_id: str, tables: dict[str, pa.Table]) -> StagedShard:
        if self.remote:
            return self._stage_remote(stage, shard_id, tables)
        txn_dir = self.root / STAGING / f"{stage}-{shard_id}-{uuid.uuid4().hex[:8]}"
        txn_dir.mkdir(parents=True)
        staged = StagedShard(stage=stage, shard_id=shard_id, txn_dir=str(txn_dir))
        try:
            for table, arrow in tables.items():
                path = txn_dir / f"{table}.parquet"
                staged.sizes[table], staged.sha256[table] = write_parquet(arrow, path)
                staged.files[table] = str(path)
                staged.rows[table] = arrow.num_rows
        except BaseException:
            shutil.rmtree(txn_dir, ignore_errors=True)  # a full disk leaves no half-written shard
            raise
        return staged

    def _stage_remote(self, stage: str, shard_id: str, tables: dict[str, pa.Table]) -> StagedShard:
        """Write each table's file straight to its table folder under a unique name: invisible until
        a commit record names it."""
        txn = uuid.uuid4().hex[:12]
        staged = StagedShard(stage=stage, shard_id=shard_id, txn_dir="")
        for table, arrow in tables.items():
            rel = f"{table}/{stage}-{shard_id}.{txn}.parquet"
            data = parquet_bytes(arrow)
            self.storage.write_bytes(rel, data)
            staged.files[table] = rel
            staged.rows[table] = arrow.num_rows
            staged.remote[table] = (len(data), hashlib.sha256(data).hexdigest())
        return staged

    def discard(self, staged: StagedShard) -> None:
        """Drop a staged shard that will not be committed (the driver asks for it again)."""
        if self.remote:
            for rel in staged.files.values():
                self.storage.delete(rel)
            return
        shutil.rmtree(staged.txn_dir, ignore_errors=True)

    def commit(self, staged: StagedShard, record: dict[str, Any]) -> dict[str, Any]:
        """Make a staged shard visible: manifest, renames, commit record. Idempotent."""
        if self.remote:
            return self._commit_remote(staged, record)
        name = shard_file_name(staged.stage, staged.shard_id)
        moves = [(src, str(self.table_dir(t) / name)) for t, src in staged.files.items()]
        full_record = {
            **{k: v for k, v in record.items() if k not in ("damaged", "removed")},
            "stage": staged.stage,
            "shard_id": staged.shard_id,
            "files": {t: f"{t}/{name}" for t in staged.files},
            "rows": dict(staged.rows),
            "sizes": {t: staged.sizes.get(t) or os.path.getsize(p) for t, p in staged.files.items()},
            "sha256": {t: staged.sha256.get(t) or file_sha256(p) for t, p in staged.files.items()},
            "schema_version": SCHEMA_VERSION,
        }
        full_record.setdefault("committed_at", time.time())
        write_manifest(Path(staged.txn_dir), {"moves": moves, "record": full_record})
        self._roll_forward(Path(staged.txn_dir))
        return full_record

    def _commit_remote(self, staged: StagedShard, record: dict[str, Any]) -> dict[str, Any]:
        """The files are in place under unique names: the commit record (one PUT) is the commit point.
        The files of the commit it replaces are left for `sweep_orphans` (a reader may be reading them)."""
        full_record = {
            **{k: v for k, v in record.items() if k not in ("damaged", "removed")},
            "stage": staged.stage,
            "shard_id": staged.shard_id,
            "files": dict(staged.files),
            "rows": dict(staged.rows),
            "sizes": {t: size for t, (size, _) in staged.remote.items()},
            "sha256": {t: digest for t, (_, digest) in staged.remote.items()},
            "schema_version": SCHEMA_VERSION,
        }
        full_record.setdefault("committed_at", time.time())
        self.write_record(full_record)
        return full_record

    def _roll_forward(self, txn_dir: Path) -> None:
        manifest = json.loads((txn_dir / MANIFEST).read_text())
        if manifest.get("kind") == "compaction":
            from engine.compact import finish_compaction

            finish_compaction(self, txn_dir, manifest)
            return
        for src, dst in manifest["moves"]:
            if os.path.exists(src):
                Path(dst).parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)  # made durable by the record's fsyncs (see FSYNC POLICY)
        self.write_record(manifest["record"])
        shutil.rmtree(txn_dir, ignore_errors=True)

    def write_record(self, record: dict[str, Any]) -> None:
        """Write one loose commit record (the commit point of a shard) and update the cached state."""
        stage, shard_id = record["stage"], record["shard_id"]
        # One per shard and stage: not indented, so json's C encoder writes it (indenting takes
        # its pure-Python path, which cost the driver about 1 ms a record).
        self.write_json(f"{COMMITS}/{stage}/{shard_id}.json", record, indent=None)
        if self._state is not None:
            self._state.setdefault(stage, {})[shard_id] = record
            self._loose.add((stage, shard_id))

    def recover(self) -> int:
        """Finish commits whose manifest was written; discard the rest. Returns how many finished."""
        if self.remote:
            self._state = None
            self.sweep_orphans()
            return 0
        staging = self.root / STAGING
        finished = 0
        if not staging.is_dir():
            return 0
        for txn_dir in sorted(p for p in staging.iterdir() if p.is_dir()):
            if (txn_dir / MANIFEST).is_file():
                try:
                    self._roll_forward(txn_dir)
                    finished += 1
                    continue
                except (OSError, ValueError, KeyError):
                    pass  # a torn manifest: the commit never happened
            shutil.rmtree(txn_dir, ignore_errors=True)
        self._state = None
        return finished

    def sweep_orphans(self, min_age_s: float = ORPHAN_AGE_S) -> int:
        """Remote root: delete table files no commit record or part names (a crash before the record,
        a commit or a compaction that replaced them), `min_age_s` after a sweep first found them
        unnamed (`_trash/unnamed.json`), so a reader that listed them a moment ago can finish.
        Only the writer calls this."""
        named = {path for shards in self.state().values() for record in shards.values()
                 for path in (split_location(loc)[0] for loc in record.get("files", {}).values() if loc)}
        named |= set(self.parts())
        seen = (self.read_json(UNNAMED) or {}).get("first_seen", {})
        now, gone, waiting = time.time(), 0, {}
        for table in TABLES:
            for name, _, _ in self.storage.list_files(table, ".parquet"):
                rel = f"{table}/{name}"
                if rel in named:
                    continue
                if now - seen.get(rel, now) >= min_age_s:
                    self.storage.delete(rel)
                    gone += 1
                else:
                    waiting[rel] = seen.get(rel, now)
        if waiting or seen:
            self.write_json(UNNAMED, {"first_seen": waiting})
        return gone

    def remove_shard(self, stage: str, shard_id: str, tables: Iterable[str]) -> None:
        """Drop one (stage, shard): a tombstone record first, so a crash leaves it recomputable."""
        # rows left in a compacted part stop being live with the tombstone; the next compaction drops them
        self.write_record({"stage": stage, "shard_id": shard_id, "removed": True, "committed_at": time.time()})
        if self.remote:  # its files become orphans, swept by a later writer
            return
        for table in tables:
            (self.table_dir(table) / shard_file_name(stage, shard_id)).unlink(missing_ok=True)

    def mark_damaged(self, stage: str, shard_id: str, why: str) -> None:
        """Flag a committed (stage, shard) whose files are damaged: the next build recomputes it."""
        record = self.read_commit(stage, shard_id)
        if record is not None:
            self.write_record({**record, "damaged": why, "committed_at": time.time()})

    # ----- the committed state -----
    def state(self) -> dict[str, dict[str, dict[str, Any]]]:
        """stage -> shard_id -> current commit record (index overlaid with newer loose records)."""
        if self._state is not None and not self._writer and self._seen != self._disk_signature():
            self._state = None
        if self._state is None:
            self._seen = () if self._writer else self._disk_signature()
            self._state, self._parts = self._read_index()
            self._loose = set()
            for stage, shard_id, record in self._loose_records():
                current = self._state.setdefault(stage, {})
                self._loose.add((stage, shard_id))
                old = current.get(shard_id)
                if old is None or record.get("committed_at", 0) > old.get("committed_at", 0):
                    current[shard_id] = record
        return self._state

    def _loose_records(self) -> Iterable[tuple[str, str, dict[str, Any]]]:
        if self.remote:
            for stage in self.storage.list(COMMITS):
                if stage == INDEX_FILE or stage.startswith("."):
                    continue
                for name, _, _ in self.storage.list_files(f"{COMMITS}/{stage}", ".json"):
                    record = self.read_json(f"{COMMITS}/{stage}/{name}")
                    if record is not None:
                        yield stage, name[: -len(".json")], record
            return
        folder = self.root / COMMITS
        for stage_dir in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
            for path in stage_dir.glob("*.json"):
                record = _read_json(path)
                if record is not None:
                    yield stage_dir.name, path.stem, record

    def _disk_signature(self) -> tuple:
        if self.remote:  # object stores have no folder times: the loose records and the index themselves
            found = self.storage.list_files(COMMITS, INDEX_FILE)
            for stage in self.storage.list(COMMITS):
                if stage != INDEX_FILE and not stage.startswith("."):
                    found += [(f"{stage}/{n}", s, m) for n, s, m in self.storage.list_files(f"{COMMITS}/{stage}")]
            return tuple(sorted(found))
        folder = self.root / COMMITS
        try:
            return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()))
        except FileNotFoundError:
            return ()

    def _read_index(self) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, Any]]]:
        if not self.storage.is_file(f"{COMMITS}/{INDEX_FILE}"):
            return {}, {}
        try:
            table = self._read_index_table()
        except (OSError, pa.ArrowException) as err:
            raise CorruptDataset(f"the commit index {self.index_path} cannot be read ({_first_line(err)}); "
                                 "restore it from a backup, or rebuild with --recompute") from None
        state: dict[str, dict[str, dict[str, Any]]] = {}
        stages, shards, records = (table.column(c).to_pylist() for c in ("stage", "shard_id", "record"))
        decode = json.JSONDecoder().decode
        for stage, shard_id, record in zip(stages, shards, records, strict=True):
            state.setdefault(stage, {})[shard_id] = decode(record)
        meta = table.schema.metadata or {}
        parts = json.loads(meta.get(b"parts", b"{}"))
        if any("offsets" in info for info in parts.values()):
            _upgrade_group_locations(state, parts)
        return state, parts

    def _read_index_table(self) -> pa.Table:
        if self.remote:
            with self.storage.open(f"{COMMITS}/{INDEX_FILE}") as handle:
                return pq.read_table(handle)
        return pq.read_table(self.index_path)

    def parts(self) -> dict[str, dict[str, Any]]:
        """Compacted part files: relative path -> {size, sha256, rows}."""
        self.state()
        return self._parts

    def stages(self) -> list[str]:
        return sorted(self.state())

    def read_commit(self, stage: str, shard_id: str) -> dict[str, Any] | None:
        record = self.state().get(stage, {}).get(shard_id)
        return None if record is None or record.get("removed") else record

    def commits(self, stage: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in sorted(self.state().get(stage, {}).items()) if not v.get("removed")}

    def loose_records(self) -> int:
        self.state()
        return len(self._loose)

    def fold_index(self, relocated: dict[tuple[str, str], dict[str, Any]] | None = None,
                   parts: dict[str, dict[str, Any]] | None = None, target: Path | None = None) -> None:
        """Write every current record into the index (one file), then drop the loose records.

        Only the writer calls this. A crash between the two steps leaves loose records equal to
        their index entries, which the index wins (same `committed_at`)."""
        state = self.state()
        rows: list[tuple[str, str, float, str]] = []
        for stage, shards in sorted(state.items()):
            for shard_id, record in sorted(shards.items()):
                if record.get("removed"):
                    continue
                record = (relocated or {}).get((stage, shard_id), record)
                rows.append((stage, shard_id, float(record.get("committed_at", 0)),
                             json.dumps(record, sort_keys=True, default=str)))
        parts = self._parts if parts is None else parts
        index = pa.table({
            "stage": pa.array([r[0] for r in rows], pa.string()),
            "shard_id": pa.array([r[1] for r in rows], pa.string()),
            "committed_at": pa.array([r[2] for r in rows], pa.float64()),
            "record": pa.array([r[3] for r in rows], pa.large_string()),
        }).replace_schema_metadata({"parts": json.dumps(parts, sort_keys=True)})
        if self.remote:  # one PUT replaces the index; a compaction passes its target the same way
            self.storage.write_bytes(str(target) if target is not None else f"{COMMITS}/{INDEX_FILE}",
                                     parquet_bytes(index))
            if target is None:
                self.drop_loose_records()
            return
        table = index
        tmp = (target or self.index_path).with_name(f".{INDEX_FILE}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(table, tmp)
        if target is not None:  # a compaction stages the index and swaps it in from its manifest
            os.replace(tmp, target)
            return
        os.replace(tmp, self.index_path)
        fsync_dir(self.index_path.parent)
        self.drop_loose_records()

    def maybe_fold(self) -> bool:
        """Fold the loose records into the index once they are many: 5,000, or a tenth of the index, so a
        resume reads few loose records and the index is rewritten a handful of times each time it doubles."""
        state = self.state()
        total = sum(len(shards) for shards in state.values())
        if len(self._loose) < max(5000, total // 10):
            return False
        self.fold_index()
        return True

    def reload(self) -> None:
        """Forget the cached state (after files changed behind this object's back)."""
        self._state = None

    def drop_loose_records(self) -> None:
        for stage, shard_id in sorted(self._loose):
            self.storage.delete(f"{COMMITS}/{stage}/{shard_id}.json")
        self._loose = set()
        self._state = None

    # ----- reading -----
    def location(self, stage: str, shard_id: str, table: str) -> str | None:
        """Where the committed rows of (stage, shard) for `table` live; None when it has none."""
        record = self.read_commit(stage, shard_id)
        if record is None:
            return f"{table}/{shard_file_name(stage, shard_id)}"
        return record.get("files", {}).get(table)

    def read_location(self, location: str | None, table: str | None = None,
                      columns: list[str] | None = None) -> pa.Table | None:
        return read_location(self.storage, location, table, columns)

    def read_shard_rows(self, table: str, stage: str, shard_id: str) -> list[Row]:
        arrow = self.read_location(self.location(stage, shard_id, table), table)
        if arrow is None:
            return []
        model = row_model(table)
        return [model.model_validate(r) for r in arrow.to_pylist()]

    def table_version(self, table: str, skip_damaged: bool = False) -> TableVersion:
        """The files (and live row ranges of partly replaced parts) that make up `table` now.

        With skip_damaged, files whose size differs from their commit record are left out (the
        audit names them through engine/verify.py and checks the rest)."""
        version = TableVersion()
        listed: dict[str, dict[str, int]] = {}
        live: dict[str, list[tuple[int, int]]] = {}
        claimed: set[str] = set()  # shard file names that belong to a commit record
        for stage, shards in self.state().items():
            for shard_id, record in shards.items():
                claimed.add(shard_file_name(stage, shard_id))
                if record.get("removed"):
                    continue
                location = record.get("files", {}).get(table)
                if not location:
                    continue
                path, span = split_location(location)
                if span is None:
                    expected = record.get("sizes", {}).get(table) if skip_damaged else None
                    size = self.size_of(path, listed)
                    if size is not None and expected in (None, size):
                        version.files.append(self.url(path))
                else:
                    live.setdefault(path, []).append(span)
        for path, spans in sorted(live.items()):
            info = self.parts().get(path, {})
            absolute = self.url(path)
            if skip_damaged and self.size_of(path, listed) != info.get("size"):
                continue
            if sum(rows for _, rows in spans) == info.get("rows"):
                version.files.append(absolute)
            else:
                version.partial[absolute] = _merge_spans(spans)
        # files nobody committed (written by hand or by older tools) are part of the table as they are;
        # on a remote root an unnamed file is an uncommitted or replaced shard: never part of the table
        if not self.remote:
            version.files.extend(str(p) for p in self.table_files(table)
                                 if not p.name.startswith("part-") and p.name not in claimed)
        version.files.sort()
        return version

    def size_of(self, path: str, listed: dict[str, dict[str, int]]) -> int | None:
        """A file's size: a stat locally; on a remote root from one listing of its folder (kept in
        `listed`), not one request per file."""
        if not self.remote:
            return _size(self.root / path)
        folder = path.rsplit("/", 1)[0]
        if folder not in listed:
            listed[folder] = {f"{folder}/{name}": size for name, size, _ in self.storage.list_files(folder)}
        return listed[folder].get(path)

    def read_table(self, table: str) -> pa.Table:
        version = self.table_version(table)
        schema = arrow_schema(table)
        fs = self.storage.filesystem()
        pieces = [_read_parquet(f, schema=schema, filesystem=fs) for f in version.files]
        for path, ranges in version.partial.items():
            whole = _read_parquet(path, schema=schema, filesystem=fs)
            pieces.extend(whole.slice(first, rows) for first, rows in ranges)
        return pa.concat_tables(pieces) if pieces else schema.empty_table()

    # ----- run configuration -----
    def read_run_config(self) -> dict[str, Any] | None:
        path = self.url(RUN_FILE)
        if not self.storage.is_file(RUN_FILE):
            return None
        try:
            return json.loads(self.storage.read_bytes(RUN_FILE))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CorruptDataset(f"{path} is not valid JSON ({_first_line(err)}); delete it to let the next "
                                 "build write it again (the committed shards are kept)") from None

    def write_run_config(self, config: dict[str, Any]) -> None:
        self.write_json(RUN_FILE, config)

    # ----- small files -----
    def write_json(self, rel: str, payload: dict[str, Any], indent: int | None = 1) -> None:
        """Durably and atomically (a rename locally, one PUT on a remote root)."""
        self.storage.write_bytes(rel, _json_bytes(payload, indent))

    def read_json(self, rel: str) -> dict[str, Any] | None:
        """A small JSON file of the dataset (a commit record, `_state/...`); None when absent or
        unreadable (a torn record: its shard is simply not committed)."""
        try:
            return json.loads(self.storage.read_bytes(rel))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    # ----- clip files of a remote root -----
    def sync_media(self, clips: Iterable[Any], upload: bool) -> None:
        """Remote root: a clip's file lives at `<root>/<video_path>` and is decoded from a copy in the
        local work folder. upload=True publishes the copies a stage wrote (before its commit names
        them); upload=False fetches the ones this machine lacks. A local root needs neither."""
        if not self.remote:
            return
        for clip in clips:
            rel = clip["video_path"] if isinstance(clip, dict) else clip.video_path
            if not rel or Path(rel).is_absolute() or "://" in rel:
                continue
            local = self.root / rel
            if upload and local.is_file() and self.storage.size(rel) != local.stat().st_size:
                self.storage.upload(local, rel)
            elif not upload and not local.is_file():
                self.storage.download(rel, local)

    # ----- DuckDB -----
    def duckdb(self, database: str = ":memory:"):
        """A DuckDB connection with one view per table over its current version."""
        import duckdb

        con = duckdb.connect(database)
        self.register(con)
        for table in TABLES:
            view_sql(con, table, self.table_version(table))
        return con

    def register(self, con: Any) -> None:
        """Let a DuckDB connection read this root's URLs (no httpfs download: the fsspec filesystem)."""
        if self.remote:
            con.register_filesystem(self.storage.filesystem())


def view_sql(con: Any, table: str, version: TableVersion) -> str:
    """Create the view of one table version (whole files, plus the live row ranges of partial parts)
    on `con` and return its statement. Columns are matched by name; a contract column that no file
    has yet (files written before a nullable column was added) reads as a typed null."""
    selects = []
    if version.files:
        listed = ", ".join(_quote(f) for f in version.files)
        selects.append(f"SELECT * FROM read_parquet([{listed}], union_by_name = true)")
    for path, ranges in version.partial.items():
        keep = " OR ".join(f"file_row_number BETWEEN {first} AND {first + rows - 1}" for first, rows in ranges)
        selects.append(f"SELECT * EXCLUDE (file_row_number) FROM read_parquet({_quote(path)}, "
                       f"file_row_number = true) WHERE {keep}")
    if not selects:
        con.register(f"_empty_{table}", arrow_schema(table).empty_table())
        selects.append(f"SELECT * FROM _empty_{table}")
    body = "\nUNION ALL BY NAME ".join(selects)
    statement = f"CREATE OR REPLACE VIEW {table} AS {body}"
    con.execute(statement)
    missing = _missing_contract_columns(con, table)
    if missing:
        statement = f"CREATE OR REPLACE VIEW {table} AS SELECT *, {', '.join(missing)} FROM ({body})"
        con.execute(statement)
    return statement


def _missing_contract_columns(con: Any, table: str) -> list[str]:
    """`CAST(NULL AS type) AS name` for each contract column the view lacks (none for other tables)."""
    if table not in TABLES:
        return []
    have = set(con.table(table).columns)  # duckdb_columns() took 20 ms, this about 1
    if all(f.name in have for f in arrow_schema(table)):
        return []
    con.register(f"_contract_{table}", arrow_schema(table).empty_table())
    typed = con.execute(f"DESCRIBE SELECT * FROM _contract_{table}").fetchall()
    con.unregister(f"_contract_{table}")
    return [f'CAST(NULL AS {ctype}) AS "{name}"' for name, ctype, *_ in typed if name not in have]


def read_location(root: Any, location: str | None, table: str | None = None,
                  columns: list[str] | None = None) -> pa.Table | None:
    """The rows at one location (a whole shard file or a part's row group); None when absent.
    `root` is a dataset root (path or URL) or its storage (engine/storage.py)."""
    if not location:
        return None
    storage = root if hasattr(root, "remote") else open_storage(root)
    if storage.remote:
        return _read_remote_location(storage, location, table, columns)
    path, span = split_location(location)
    full = Path(storage.root) / path
    schema = arrow_schema(table) if table and columns is None else None
    if not full.exists():
        return None
    try:
        if span is not None:
            return _read_span(pq.ParquetFile(full), span, columns)
        whole = pq.ParquetFile(full).read(columns=columns)  # half the cost of read_table on small files
        if schema is None or whole.schema.equals(schema, check_metadata=False):
            return whole
        return pq.read_table(full, schema=schema)  # a file of an older schema
    except (OSError, pa.ArrowException) as err:
        raise _unreadable(full, err) from None


def _read_remote_location(storage: Any, location: str, table: str | None,
                          columns: list[str] | None) -> pa.Table | None:
    path, span = split_location(location)
    schema = arrow_schema(table) if table and columns is None else None
    try:
        with storage.open(path) as handle:
            part = pq.ParquetFile(handle)
            if span is not None:
                return _read_span(part, span, columns)
            whole = part.read(columns=columns)
        if schema is None or whole.schema.equals(schema, check_metadata=False):
            return whole
        return pq.read_table(storage.url(path), schema=schema, filesystem=storage.filesystem())  # an older schema
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException) as err:
        raise _unreadable(storage.url(path), err) from None


def _upgrade_group_locations(state: dict, parts: dict) -> None:
    """Parts written by the first compaction named a shard by row group (`part.parquet#3`) and kept
    the groups' first rows (`offsets`); today a location is a row range (`part.parquet#120:40`)."""
    for info in parts.values():
        if "offsets" in info:
            info.setdefault("rows", info["offsets"][-1])
    for shards in state.values():
        for record in shards.values():
            for table, location in record.get("files", {}).items():
                path, _, group = (location or "").partition("#")
                offsets = parts.get(path, {}).get("offsets")
                if group and ":" not in group and offsets:
                    first, end = offsets[int(group)], offsets[int(group) + 1]
                    record["files"][table] = f"{path}#{first}:{end - first}"


def _read_span(part: pq.ParquetFile, span: tuple[int, int], columns: list[str] | None) -> pa.Table:
    """Rows [first, first + rows) of a part: only the row groups that hold them are read."""
    first, rows = span
    groups, start, at = [], None, 0
    for index in range(part.metadata.num_row_groups):
        size = part.metadata.row_group(index).num_rows
        if at + size > first and at < first + rows:
            groups.append(index)
            start = at if start is None else start
        at += size
    if not groups:  # a range past the end: a part shorter than its record says
        return part.read_row_groups([0], columns=columns).slice(0, 0)
    return part.read_row_groups(groups, columns=columns).slice(first - start, rows)


def _merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, rows in sorted(spans):
        if merged and merged[-1][0] + merged[-1][1] == first:
            merged[-1] = (merged[-1][0], merged[-1][1] + rows)
        else:
            merged.append((first, rows))
    return merged


def _read_parquet(path: str | Path, schema: pa.Schema | None = None, filesystem: Any = None) -> pa.Table:
    try:
        return pq.read_table(path, schema=schema, filesystem=filesystem)
    except (OSError, pa.ArrowException) as err:
        raise _unreadable(path, err) from None


def _unreadable(path: str | Path, err: Exception) -> CorruptDataset:
    text = str(path)
    root = text.rsplit("/", 2)[0] if "://" in text else Path(path).parent.parent
    return CorruptDataset(f"{path} cannot be read ({_first_line(err)}); run `python -m engine.run verify "
                          f"--dataset {root} --repair`, then build again to recompute it")


def parquet_bytes(table: pa.Table) -> bytes:
    """A Parquet file in memory (a remote root writes each file with one PUT)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def write_parquet(table: pa.Table, path: Path) -> tuple[int, str]:
    """Write and fsync, so a rename after it never exposes a torn file. Returns the file's size
    and SHA-256 (of the bytes written, without reading the file back)."""
    data = parquet_bytes(table)
    try:
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise
    return len(data), hashlib.sha256(data).hexdigest()


def write_manifest(txn_dir: Path, payload: dict[str, Any]) -> None:
    """A commit's manifest, written in place in its private staging folder: a torn one reads as
    invalid JSON, which recovery treats as a commit that never happened (no temporary file needed)."""
    with open(txn_dir / MANIFEST, "w") as handle:
        handle.write(json.dumps(payload, sort_keys=True, default=str))  # json.dump never uses the C encoder
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(txn_dir)


def write_json_durable(path: Path, payload: dict[str, Any]) -> None:
    write_durable(path, _json_bytes(payload))


def _json_bytes(payload: dict[str, Any], indent: int | None = 1) -> bytes:
    return json.dumps(payload, indent=indent, sort_keys=True, default=str).encode()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None  # a torn record: its shard is simply not committed


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _first_line(err: Exception) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0][:200]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"

