"""The dataset store: Parquet shards with an all-or-nothing commit per (stage, shard).

Layout of a dataset root:
    <root>/<table>/<stage>-<shard_id>.parquet   the tables; a glob shows a complete table
    <root>/_staging/<txn>/                       files being written, never globbed
    <root>/_commits/<stage>/<shard_id>.json      one record per committed (stage, shard)
    <root>/run.json                              the resolved configuration of the last run

A commit writes every file of a (stage, shard) into a staging folder, fsyncs them, writes a
manifest, then renames each file onto its deterministic name in its table folder and finally
writes the commit record. Renames are atomic, and the name depends only on (stage, shard), so a
reader sees either the old file or the new one, a retry overwrites instead of duplicating, and a
crash at any point is rolled forward from the manifest on the next open (or back, if the manifest
was never written).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import UserError
from schemas import SCHEMA_VERSION, TABLES, Row, arrow_schema, row_model, to_arrow

STAGING = "_staging"
COMMITS = "_commits"
RUN_FILE = "run.json"
MANIFEST = "MANIFEST.json"


class StoreError(UserError):
    """A dataset root that cannot be used; the message is meant for the user."""


@dataclass
class StagedShard:
    """Files of one (stage, shard) written to staging, not yet visible in any table."""

    stage: str
    shard_id: str
    txn_dir: str
    files: dict[str, str] = field(default_factory=dict)  # table -> staged file path
    rows: dict[str, int] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


def shard_file_name(stage: str, shard_id: str) -> str:
    return f"{stage}-{shard_id}.parquet"


class DatasetStore:
    def __init__(self, root: str | Path, create: bool = True, recover: bool = False):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"dataset path {self.root} is a file, not a directory")
        if not self.root.exists():
            if not create:
                raise StoreError(f"no dataset at {self.root}")
            self.root.mkdir(parents=True)
        if recover:  # only the process that owns the run may do this: it deletes torn staging
            self.recover()

    # ----- layout -----
    def table_dir(self, table: str) -> Path:
        row_model(table)
        return self.root / table

    def table_files(self, table: str) -> list[Path]:
        folder = self.table_dir(table)
        return sorted(folder.glob("*.parquet")) if folder.is_dir() else []

    def commit_path(self, stage: str, shard_id: str) -> Path:
        return self.root / COMMITS / stage / f"{shard_id}.json"

    # ----- writing -----
    def stage_shard(self, stage: str, shard_id: str, tables: dict[str, Iterable[Row]]) -> StagedShard:
        """Write one Parquet file per table into a private staging folder (fsynced)."""
        txn_dir = self.root / STAGING / f"{stage}-{shard_id}-{uuid.uuid4().hex[:8]}"
        txn_dir.mkdir(parents=True)
        staged = StagedShard(stage=stage, shard_id=shard_id, txn_dir=str(txn_dir))
        for table, rows in tables.items():
            arrow = to_arrow(table, rows)
            path = txn_dir / f"{table}.parquet"
            write_parquet(arrow, path)
            staged.files[table] = str(path)
            staged.rows[table] = arrow.num_rows
        return staged

    def commit(self, staged: StagedShard, record: dict[str, Any]) -> dict[str, Any]:
        """Make a staged shard visible: manifest, renames, commit record. Idempotent."""
        name = shard_file_name(staged.stage, staged.shard_id)
        moves = [(src, str(self.table_dir(t) / name)) for t, src in staged.files.items()]
        full_record = {
            **record,
            "stage": staged.stage,
            "shard_id": staged.shard_id,
            "files": {t: f"{t}/{name}" for t in staged.files},
            "rows": dict(staged.rows),
            "schema_version": SCHEMA_VERSION,
        }
        manifest = Path(staged.txn_dir) / MANIFEST
        write_json_durable(manifest, {"moves": moves, "record": full_record})
        self._roll_forward(Path(staged.txn_dir))
        return full_record

    def _roll_forward(self, txn_dir: Path) -> None:
        manifest = json.loads((txn_dir / MANIFEST).read_text())
        for src, dst in manifest["moves"]:
            if os.path.exists(src):
                Path(dst).parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
                _fsync_dir(Path(dst).parent)
        record = manifest["record"]
        write_json_durable(self.commit_path(record["stage"], record["shard_id"]), record)
        shutil.rmtree(txn_dir, ignore_errors=True)

    def recover(self) -> int:
        """Finish commits whose manifest was written; discard the rest. Returns how many finished."""
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
        return finished

    def remove_shard(self, stage: str, shard_id: str, tables: Iterable[str]) -> None:
        """Drop one (stage, shard): the commit record first, so a crash leaves it recomputable."""
        self.commit_path(stage, shard_id).unlink(missing_ok=True)
        for table in tables:
            (self.table_dir(table) / shard_file_name(stage, shard_id)).unlink(missing_ok=True)

    # ----- reading -----
    def read_commit(self, stage: str, shard_id: str) -> dict[str, Any] | None:
        path = self.commit_path(stage, shard_id)
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def commits(self, stage: str) -> dict[str, dict[str, Any]]:
        folder = self.root / COMMITS / stage
        out: dict[str, dict[str, Any]] = {}
        if folder.is_dir():
            for path in sorted(folder.glob("*.json")):
                try:
                    out[path.stem] = json.loads(path.read_text())
                except json.JSONDecodeError:
                    continue
        return out

    def read_shard_rows(self, table: str, stage: str, shard_id: str) -> list[Row]:
        path = self.table_dir(table) / shard_file_name(stage, shard_id)
        if not path.exists():
            return []
        model = row_model(table)
        return [model.model_validate(r) for r in pq.read_table(path).to_pylist()]

    def read_table(self, table: str) -> pa.Table:
        files = self.table_files(table)
        if not files:
            return arrow_schema(table).empty_table()
        return pa.concat_tables([pq.read_table(f, schema=arrow_schema(table)) for f in files])

    # ----- run configuration -----
    def read_run_config(self) -> dict[str, Any] | None:
        path = self.root / RUN_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def write_run_config(self, config: dict[str, Any]) -> None:
        write_json_durable(self.root / RUN_FILE, config)

    # ----- DuckDB -----
    def duckdb(self, database: str = ":memory:"):
        """A DuckDB connection with one view per table over its folder of shards."""
        import duckdb

        con = duckdb.connect(database)
        for table in TABLES:
            files = self.table_files(table)
            if files:
                glob = str(self.table_dir(table) / "*.parquet").replace("'", "''")
                con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{glob}')")
            else:
                empty = arrow_schema(table).empty_table()
                con.register(f"_empty_{table}", empty)
                con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM _empty_{table}")
        return con


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write and fsync, so a rename after it never exposes a torn file."""
    with open(path, "wb") as handle:
        pq.write_table(table, handle, compression="zstd")
        handle.flush()
        os.fsync(handle.fileno())


def write_json_durable(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w") as handle:
        json.dump(payload, handle, indent=1, sort_keys=True, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
