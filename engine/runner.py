"""Running one stage on one shard, wherever it runs (in-process or inside a Ray actor).

The worker reads the shard's upstream rows from committed Parquet files, calls the stage, turns
invalid rows into rejections, writes the results to staging and returns a small summary; the driver
only commits. A stage that raises on a whole batch is retried clip by clip so one poison clip
becomes one rejection row instead of failing its neighbours.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.base import Batch, SourceItem, Stage, StageOutput, UndeclaredTable
from engine.store import DatasetStore, StagedShard, read_location
from schemas import RejectionRow, rejection, row_model, to_arrow, validate_rows
from schemas.enums import RETRYABLE_REASONS, Reason


@dataclass
class ShardTask:
    stage_index: int
    stage: str
    shard_id: str
    fingerprint: str
    items: list[SourceItem] = field(default_factory=list)
    inputs: dict[str, list[str]] = field(default_factory=dict)  # table -> committed locations (relative)
    clip_ids: list[str] = field(default_factory=list)
    # clips dropped by a dataset-wide dedup (`dedup --apply`): never fed to a stage, never written again
    excluded: frozenset[str] = frozenset()
    # source stage: clips whose content another shard holds (clip_id -> that shard): duplicate_clip
    owned_elsewhere: dict[str, str] = field(default_factory=dict)


@dataclass
class ShardResult:
    task: ShardTask
    staged: StagedShard
    clip_ids: list[str]
    rejected: int
    retryable: int
    counters: dict[str, int]
    seconds: float
    started_at: float | None = None  # the worker's clock (time.time()) when it began the task


def load_batch(root: Path, task: ShardTask, stage: Stage, storage: Any = None) -> Batch:
    """The stage's declared tables for this shard, and nothing else: reading any other table
    from the batch raises UndeclaredTable. `storage` reads a remote root (engine/storage.py)."""
    declared = stage.inputs()
    tables: dict[str, list[Any]] = {table: [] for table in declared}
    for table, locations in task.inputs.items():
        if table not in declared:
            continue
        rows: list[Any] = []
        for location in locations:  # a shard file, or a row group of a compacted part
            rows.extend(read_rows(root, location, table, storage))
        tables[table] = rows
    return Batch(root=root, items=list(task.items), tables=tables, stage=stage.name, declared=frozenset(declared))


def read_rows(root: Path, location: str, table: str, storage: Any = None) -> list[Any]:
    """The validated rows at one location: from this process's memory when it wrote or already
    read that very file (stages co-located with their upstream or with each other, the local
    executor), else from the file."""
    local = storage is None or not storage.remote
    path = Path(root) / location
    remembered = WRITTEN.get(path) if local else None
    if isinstance(remembered, list):
        return remembered
    arrow = remembered if remembered is not None else read_location(storage or root, location, table)
    if arrow is None:
        return []
    model = row_model(table)
    rows = [model.model_validate(r) for r in arrow.to_pylist()]
    if local:
        WRITTEN.keep(path, rows, arrow.nbytes)
    return rows


class WrittenShards:
    """Rows of the shard files this process staged or read lately, keyed by the file's identity (device,
    inode, size, modification time), which the commit's rename keeps and any rewrite changes.
    A table whose Arrow schema rounds values (float32 boxes) keeps its Arrow table instead of
    the rows, so a reader gets exactly what reading the file gives. At most `limit` files and
    `max_bytes` of their Arrow size are kept (masks of long 4K clips make large shards); the
    oldest go first, and a file larger than the budget is not kept."""

    def __init__(self, limit: int = 256, max_bytes: int = 512 * 2**20):
        self.limit = limit
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple[int, ...], tuple[list[Any] | Any, int]] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()  # actors run several shards in threads

    def remember(self, path: str | Path, rows: list[Any], arrow: Any) -> None:
        """Rows this process staged at `path`."""
        self._put(path, rows if _exact_round_trip(arrow.schema) else arrow, arrow.nbytes)

    def keep(self, path: Path, rows: list[Any], nbytes: int) -> None:
        """Rows validated from a file as it is now (`nbytes`: its Arrow size): the next reader of
        that file gets them."""
        self._put(path, rows, nbytes)

    def _put(self, path: str | Path, entry: list[Any] | Any, nbytes: int) -> None:
        key = _identity(path)
        if key is None or nbytes > self.max_bytes:
            return
        with self.lock:
            if key in self.entries:
                self.bytes -= self.entries.pop(key)[1]
            self.entries[key] = (entry, nbytes)
            self.bytes += nbytes
            while len(self.entries) > self.limit or self.bytes > self.max_bytes:
                self.bytes -= self.entries.popitem(last=False)[1][1]

    def get(self, path: Path) -> list[Any] | Any | None:
        if "#" in path.name or not self.entries:  # a row range of a compacted part: never ours
            return None
        key = _identity(path)
        with self.lock:
            found = self.entries.get(key) if key is not None else None
        return found[0] if found else None


def _identity(path: str | Path) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _exact_round_trip(schema: Any) -> bool:
    import pyarrow as pa

    def exact(kind: pa.DataType) -> bool:
        if pa.types.is_float16(kind) or pa.types.is_float32(kind):
            return False
        return all(exact(kind.field(i).type) for i in range(kind.num_fields))

    return all(exact(f.type) for f in schema)


WRITTEN = WrittenShards()


def run_task(stage: Stage, store: DatasetStore, task: ShardTask) -> ShardResult:
    started, started_at = time.perf_counter(), time.time()
    batch = load_batch(store.root, task, stage, store.storage)
    store.sync_media(batch.tables.get("clips", []), upload=False)
    excluded = task.excluded
    batch.tables = {t: _without(rows, excluded) for t, rows in batch.tables.items()}
    # A shard that ingest left empty has nothing for a later stage: its model is never loaded for it.
    empty = not batch.items and not any(batch.tables.values())
    output = StageOutput() if empty else _call_isolating_failures(stage, batch)
    tables: dict[str, list[Any]] = {}
    rejections = list(output.rejections)
    for table in stage.writes:
        valid, invalid = validate_rows(table, output.rows.get(table, []), stage.name)
        tables[table] = _without(valid, excluded)
        rejections.extend(invalid)
    if task.owned_elsewhere and "clips" in tables:
        tables["clips"] = _drop_owned_elsewhere(stage.name, tables["clips"], task.owned_elsewhere, rejections)
    tables["rejections"] = _without(_dedupe(rejections), excluded)
    clip_ids = sorted({r.clip_id for r in tables.get("clips", [])}) or [c for c in task.clip_ids if c not in excluded]
    store.sync_media(tables.get("clips", []), upload=True)  # the clip files first, then the rows naming them
    arrows = {t: to_arrow(t, rows) for t, rows in tables.items()}
    staged = store.stage_arrow(stage.name, task.shard_id, arrows)
    if not store.remote:  # a remote root's files are not this machine's: nothing to hand over
        for table, path in staged.files.items():
            WRITTEN.remember(path, tables[table], arrows[table])
    return ShardResult(
        task=task,
        staged=staged,
        clip_ids=clip_ids,
        rejected=len(tables["rejections"]),
        retryable=sum(1 for r in tables["rejections"] if r.retryable),
        counters=dict(output.counters),
        seconds=time.perf_counter() - started,
        started_at=started_at,
    )


def _without(rows: list, excluded: frozenset[str]) -> list:
    return [r for r in rows if not is_excluded(r, excluded)] if excluded else rows


def is_excluded(row: Any, excluded: frozenset[str] | set[str]) -> bool:
    """A row that belongs to an excluded clip; the near_duplicate rejections explaining why stay."""
    if getattr(row, "clip_id", None) not in excluded:
        return False
    return not (isinstance(row, RejectionRow) and row.reason == Reason.near_duplicate)


def _drop_owned_elsewhere(stage: str, clips: list, owners: dict[str, str], rejections: list) -> list:
    """A clip whose content another shard already holds (a copied file, a repeated manifest row)
    stays there: here it becomes a `duplicate_clip` rejection, so no table holds a clip_id twice."""
    from agents.ingest import repeat_item_id

    for row in clips:
        if row.clip_id in owners:
            rejections.append(rejection(stage, repeat_item_id(row, clips), Reason.duplicate_clip.value,
                                        f"same content as a clip of shard {owners[row.clip_id]} (clip {row.clip_id})",
                                        row.clip_id))
    return [row for row in clips if row.clip_id not in owners]


def _call_isolating_failures(stage: Stage, batch: Batch) -> StageOutput:
    try:
        return stage(batch)
    except UndeclaredTable:
        raise  # a broken stage contract is a bug in the stage, not bad input: it ends the run
    except Exception as err:  # noqa: BLE001 - any failure of one batch must not end the run
        if getattr(err, "whole_shard", False):  # e.g. a Batch API job still running: retry later
            return _reject_all(stage, batch, getattr(err, "reason", "stage_error"), _short_error(err))
    merged = StageOutput()
    for part in _split(batch):
        try:
            result = stage(part)
        except UndeclaredTable:
            raise
        except Exception as err:  # noqa: BLE001
            for item_id, clip_id in _part_ids(part):
                merged.reject(stage.name, item_id, "stage_error", _short_error(err), clip_id=clip_id)
            continue
        for table, rows in result.rows.items():
            merged.rows[table].extend(rows)
        merged.rejections.extend(result.rejections)
        for key, value in result.counters.items():
            merged.counters[key] += value
    return merged


def _reject_all(stage: Stage, batch: Batch, reason: str, detail: str) -> StageOutput:
    out = StageOutput()
    for part in _split(batch):
        for item_id, clip_id in _part_ids(part):
            out.reject(stage.name, item_id, reason, detail, clip_id=clip_id)
    return out


def _split(batch: Batch) -> list[Batch]:
    if batch.items:
        return [batch.part(items=[item]) for item in batch.items]
    clip_ids = sorted({r.clip_id for rows in batch.tables.values() for r in rows if hasattr(r, "clip_id")})
    parts = []
    for clip_id in clip_ids:
        tables = {t: [r for r in rows if getattr(r, "clip_id", None) == clip_id] for t, rows in batch.tables.items()}
        parts.append(batch.part(tables=tables))
    return parts


def _part_ids(part: Batch) -> list[tuple[str, str | None]]:
    if part.items:
        return [(item.source_key, None) for item in part.items]
    ids = {r.clip_id for rows in part.tables.values() for r in rows if hasattr(r, "clip_id")}
    return [(clip_id, clip_id) for clip_id in sorted(ids)]


def _short_error(err: Exception) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(err).__name__}: {err}{where}"[:500]


def _dedupe(rejections: list) -> list:
    seen: dict[str, Any] = {}
    for row in rejections:
        seen.setdefault(row.rejection_id, row)
    return list(seen.values())


def is_retryable(reason: str) -> bool:
    return reason in RETRYABLE_REASONS
