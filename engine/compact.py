"""Compaction: many small committed shard files -> a few part files of a target size.

Each (stage, shard) becomes a row range of a part, so it stays the unit of resume and of
recompute: a refresh commits the new rows as a shard file again and the part's old range stops
being live (the views skip it); the next compaction rewrites such parts without it. Row groups
hold many shards (`ROW_GROUP_ROWS`): DuckDB scans a part of a few thousand-row groups about 20x
faster than one of a group per shard.

A compaction writes its parts and the new commit index into a staging folder, then a manifest;
from there `finish_compaction` moves the parts into the table folders, swaps the index in (the
commit point: readers switch to the new version), moves the replaced files to `_trash/<id>/`
and drops the loose commit records the index now holds. A crash before the manifest leaves
nothing; after it, the next writer rolls it forward. Replaced files wait in `_trash` for
`retention_s` so a reader that listed them a moment ago can still finish (a reader that finds a
file gone re-reads the version and retries).

On a remote root (engine/storage.py) nothing is renamed: the parts are uploaded under their unique
names, then the new index is written with one PUT (the commit point), then the loose records it
holds are deleted. Replaced files stay where they are, named by no record, until a writer's sweep
deletes them `retention_s` after a sweep first found them unnamed; a crash before the index leaves parts nobody names, swept the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.storage import fsync_dir
from engine.store import (
    MANIFEST,
    STAGING,
    TRASH,
    DatasetStore,
    file_sha256,
    split_location,
    write_json_durable,
)
from schemas import TABLES, arrow_schema

TARGET_BYTES = 128 << 20
RETENTION_S = 600.0
MIN_LOOSE_FILES = 1000
ROW_GROUP_ROWS = 65536  # a build compacts on its own once a table has this many shard files


@dataclass
class CompactionSummary:
    parts_written: int = 0
    shards_moved: int = 0
    files_replaced: int = 0
    files_per_table: dict[str, int] = field(default_factory=dict)


def compact(store: DatasetStore, target_bytes: int = TARGET_BYTES, retention_s: float = RETENTION_S) -> CompactionSummary:
    """Merge every loose shard file and every partly dead or small part into parts of ~target_bytes."""
    vacuum(store, retention_s)
    state, parts = store.state(), store.parts()
    compaction_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    txn_dir = store.root / STAGING / f"compact-{compaction_id}"
    txn_dir.mkdir(parents=True)
    summary = CompactionSummary()
    relocated: dict[tuple[str, str], dict[str, Any]] = {}
    new_parts: dict[str, dict[str, Any]] = {}
    moves: list[tuple[str, str]] = []
    replaced: set[str] = set()
    try:
        for table in TABLES:
            pieces, sources = _pieces_to_rewrite(store, state, parts, table, target_bytes)
            if not pieces:
                continue
            written = _write_parts(store, table, pieces, txn_dir, target_bytes)
            for rel, info, placed in written:
                new_parts[rel] = info
                moves.append((str(txn_dir / rel), str(store.root / rel)))
                for (stage, shard_id), location in placed.items():
                    record = relocated.setdefault((stage, shard_id), _copy(state[stage][shard_id]))
                    record["files"][table] = location
                    for key in ("sizes", "sha256"):
                        record.get(key, {}).pop(table, None)
            placed_keys = {key for _, _, placed in written for key in placed}
            for stage, shard_id in (key for key, _ in pieces if key not in placed_keys):
                record = relocated.setdefault((stage, shard_id), _copy(state[stage][shard_id]))
                record["files"][table] = None  # no rows in this table
            replaced |= sources
            summary.shards_moved += len(pieces)
            summary.parts_written += len(written)
        live = _live_parts(state, relocated)
        kept_parts = {p: info for p, info in parts.items() if p in live and p not in replaced}
        replaced |= {p for p in parts if p not in kept_parts}
        if store.remote:
            _publish_remote(store, moves, relocated, {**kept_parts, **new_parts}, txn_dir)
            summary.files_replaced = len(replaced)
            summary.files_per_table = {t: len(store.table_version(t).files) for t in TABLES}
            return summary
        store.fold_index(relocated, {**kept_parts, **new_parts}, target=txn_dir / "index.parquet")
        manifest = {"kind": "compaction", "id": compaction_id, "moves": moves,
                    "index": str(txn_dir / "index.parquet"), "replaced": sorted(replaced),
                    "loose": sorted(store._loose)}
        write_json_durable(txn_dir / MANIFEST, manifest)
    except BaseException:
        shutil.rmtree(txn_dir, ignore_errors=True)
        raise
    finish_compaction(store, txn_dir, json.loads((txn_dir / MANIFEST).read_text()))
    summary.files_replaced = len(replaced)
    summary.files_per_table = {t: len(store.table_files(t)) for t in TABLES}
    return summary


def _publish_remote(store: DatasetStore, moves: list[tuple[str, str]], relocated: dict, parts: dict,
                    txn_dir: Path) -> None:
    """Upload the parts (written locally), then swap the index in with one PUT."""
    try:
        for src, dst in moves:
            store.storage.upload(Path(src), Path(dst).relative_to(store.root).as_posix())
        store.fold_index(relocated, parts)
    finally:
        shutil.rmtree(txn_dir, ignore_errors=True)
    store.reload()


def finish_compaction(store: DatasetStore, txn_dir: Path, manifest: dict[str, Any]) -> None:
    """Roll a written compaction forward; every step may run again after a crash."""
    for src, dst in manifest["moves"]:
        if os.path.exists(src):
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    for folder in {Path(dst).parent for _, dst in manifest["moves"]}:
        fsync_dir(folder)
    if os.path.exists(manifest["index"]):
        os.replace(manifest["index"], store.index_path)
        fsync_dir(store.index_path.parent)
    trash = store.root / TRASH / manifest["id"]
    for rel in manifest["replaced"]:
        src = store.root / rel
        if src.exists():
            (trash / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, trash / rel)
    for stage, shard_id in manifest["loose"]:
        store.commit_path(stage, shard_id).unlink(missing_ok=True)
    shutil.rmtree(txn_dir, ignore_errors=True)
    store.reload()


def vacuum(store: DatasetStore, retention_s: float = RETENTION_S) -> int:
    """Delete replaced files older than the retention; returns how many folders (remote: files) went."""
    if store.remote:
        return store.sweep_orphans(retention_s)
    folder = store.root / TRASH
    gone = 0
    for batch in sorted(folder.iterdir()) if folder.is_dir() else []:
        if time.time() - batch.stat().st_mtime >= retention_s:
            shutil.rmtree(batch, ignore_errors=True)
            gone += 1
    return gone


def needs_compaction(store: DatasetStore, min_loose_files: int = MIN_LOOSE_FILES) -> bool:
    """True when a table has many shard files, or a part holds rows a later commit replaced."""
    if any(len(store.table_files(t)) >= min_loose_files for t in TABLES):
        return True
    if set(store.parts()) - _live_parts(store.state(), {}):  # a part whose every shard was recomputed
        return True
    return any(store.table_version(t).partial for t in TABLES)


def maintain(store: DatasetStore, min_loose_files: int = MIN_LOOSE_FILES) -> CompactionSummary | None:
    """What a build does at its end: compact when worth it, else fold many loose commit records."""
    if needs_compaction(store, min_loose_files):
        return compact(store)
    if store.loose_records() >= min_loose_files:
        store.fold_index()
    return None


def _pieces_to_rewrite(store: DatasetStore, state: dict, parts: dict, table: str, target_bytes: int):
    """The (stage, shard) pieces of `table` that go into new parts, and the files they replace."""
    by_part: dict[str, list] = {}
    pieces: list[tuple[tuple[str, str], str]] = []
    for stage, shards in state.items():
        for shard_id, record in shards.items():
            location = None if record.get("removed") else record.get("files", {}).get(table)
            if not location:
                continue
            path, span = split_location(location)
            if span is None:
                pieces.append(((stage, shard_id), location))
            else:
                by_part.setdefault(path, []).append(((stage, shard_id), location))
    sources = {location for _, location in pieces}
    for path, held in by_part.items():
        info = parts.get(path, {})
        partial = sum(split_location(loc)[1][1] for _, loc in held) != info.get("rows")
        if partial or info.get("size", 0) < target_bytes // 4:
            pieces.extend(held)
            sources.add(path)
    pieces.sort(key=lambda piece: (piece[0][1], piece[0][0]))  # a shard's stages side by side
    return pieces, sources


def _write_parts(store: DatasetStore, table: str, pieces, txn_dir: Path, target_bytes: int):
    """Write pieces as row ranges into parts of ~target_bytes: [(rel path, info, {key: location})]."""
    schema = arrow_schema(table)
    out: list = []
    part = None  # [rel, handle, writer, info, placed, pending tables]
    for key, location in pieces:
        rows = store.read_location(location, table)
        if rows is None or rows.num_rows == 0:
            continue
        if part is None:
            rel = f"{table}/part-{uuid.uuid4().hex[:16]}.parquet"
            (txn_dir / table).mkdir(parents=True, exist_ok=True)
            handle = open(txn_dir / rel, "wb")
            part = [rel, handle, pq.ParquetWriter(handle, schema, compression="zstd"), {"rows": 0}, {}, []]
        rel, handle, writer, info, placed, pending = part
        placed[key] = f"{rel}#{info['rows']}:{rows.num_rows}"
        info["rows"] += rows.num_rows
        pending.append(rows.cast(schema))
        if info["rows"] - info.setdefault("flushed", 0) >= ROW_GROUP_ROWS:  # no re-count of pending per piece
            _flush(writer, pending)
            info["flushed"] = info["rows"]
        if handle.tell() >= target_bytes:
            out.append(_close(part, txn_dir))
            part = None
    if part is not None:
        out.append(_close(part, txn_dir))
    return out


def _flush(writer, pending: list) -> None:
    if pending:
        merged = pa.concat_tables(pending)
        writer.write_table(merged, row_group_size=merged.num_rows)
        pending.clear()


def _close(part, txn_dir: Path):
    rel, handle, writer, info, placed, pending = part
    _flush(writer, pending)
    writer.close()
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    info.pop("flushed", None)
    info["size"] = os.path.getsize(txn_dir / rel)
    info["sha256"] = file_sha256(txn_dir / rel)
    return rel, info, placed


def _live_parts(state: dict, relocated: dict) -> set[str]:
    live = set()
    for stage, shards in state.items():
        for shard_id, record in shards.items():
            record = relocated.get((stage, shard_id), record)
            if record.get("removed"):
                continue
            for location in record.get("files", {}).values():
                if location and "#" in location:
                    live.add(split_location(location)[0])
    return live


def _copy(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "files": dict(record.get("files", {})), "sizes": dict(record.get("sizes", {})),
            "sha256": dict(record.get("sha256", {}))}

