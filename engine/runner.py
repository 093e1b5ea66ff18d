"""Running one stage on one shard, wherever it runs (in-process or inside a Ray actor).

The worker reads the shard's upstream rows from committed Parquet files, calls the stage, turns
invalid rows into rejections, writes the results to staging and returns a small summary; the driver
only commits. A stage that raises on a whole batch is retried clip by clip so one poison clip
becomes one rejection row instead of failing its neighbours.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.base import Batch, SourceItem, Stage, StageOutput
from engine.dedup import excluded_clips, is_excluded
from engine.store import DatasetStore, StagedShard, read_location
from schemas import row_model, validate_rows
from schemas.enums import RETRYABLE_REASONS


@dataclass
class ShardTask:
    stage_index: int
    stage: str
    shard_id: str
    fingerprint: str
    items: list[SourceItem] = field(default_factory=list)
    inputs: dict[str, list[str]] = field(default_factory=dict)  # table -> committed locations (relative)
    clip_ids: list[str] = field(default_factory=list)


@dataclass
class ShardResult:
    task: ShardTask
    staged: StagedShard
    clip_ids: list[str]
    rejected: int
    retryable: int
    counters: dict[str, int]
    seconds: float
    chat_tokens: dict[str, int] = field(default_factory=dict)


def load_batch(root: Path, task: ShardTask) -> Batch:
    tables: dict[str, list[Any]] = {}
    for table, locations in task.inputs.items():
        model = row_model(table)
        rows: list[Any] = []
        for location in locations:  # a shard file, or a row group of a compacted part
            arrow = read_location(root, location, table)
            if arrow is not None:
                rows.extend(model.model_validate(r) for r in arrow.to_pylist())
        tables[table] = rows
    return Batch(root=root, items=list(task.items), tables=tables)


def run_task(stage: Stage, store: DatasetStore, task: ShardTask) -> ShardResult:
    started = time.perf_counter()
    batch = load_batch(store.root, task)
    # Clips dropped by a dataset-wide dedup stay dropped: never fed to a stage, never written again.
    excluded = excluded_clips(store.root)
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
    tables["rejections"] = _without(_dedupe(rejections), excluded)
    clip_ids = sorted({r.clip_id for r in tables.get("clips", [])}) or [c for c in task.clip_ids if c not in excluded]
    staged = store.stage_shard(stage.name, task.shard_id, tables)
    return ShardResult(
        task=task,
        staged=staged,
        clip_ids=clip_ids,
        rejected=len(tables["rejections"]),
        retryable=sum(1 for r in tables["rejections"] if r.retryable),
        counters=dict(output.counters),
        seconds=time.perf_counter() - started,
    )


def _without(rows: list, excluded: frozenset[str]) -> list:
    return [r for r in rows if not is_excluded(r, excluded)] if excluded else rows


def _call_isolating_failures(stage: Stage, batch: Batch) -> StageOutput:
    try:
        return stage(batch)
    except Exception as err:  # noqa: BLE001 - any failure of one batch must not end the run
        if getattr(err, "whole_shard", False):  # e.g. a Batch API job still running: retry later
            return _reject_all(stage, batch, getattr(err, "reason", "stage_error"), _short_error(err))
    merged = StageOutput()
    for part in _split(batch):
        try:
            result = stage(part)
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
        return [Batch(root=batch.root, items=[item]) for item in batch.items]
    clip_ids = sorted({c.clip_id for c in batch.clips} | {r.clip_id for rows in batch.tables.values() for r in rows if hasattr(r, "clip_id")})
    parts = []
    for clip_id in clip_ids:
        tables = {t: [r for r in rows if getattr(r, "clip_id", None) == clip_id] for t, rows in batch.tables.items()}
        parts.append(Batch(root=batch.root, tables=tables))
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
