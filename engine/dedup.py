"""Dataset-wide near-duplicate removal: one pass over every clip, sticky once applied.

Ingest removes copies only inside one shard. `find_duplicates` compares every clip of the dataset
(the frame pHashes ingest keeps in `clips.metadata` at `curation.phash`); `apply` then

1. records the dropped clips in `<root>/_state/excluded_clips.json` (merged: once excluded, always
   excluded), before touching any table, so the decision survives a crash;
2. rewrites every committed (stage, shard) holding rows of a dropped clip, each as its own atomic
   commit through the store, keeping the shard's fingerprint so a refresh does not recompute it;
3. writes one `near_duplicate` rejection per dropped clip to `rejections/dedup-global.parquet`.

A crash between steps leaves every table consistent, and running `apply` again finishes the job.
The runner drops excluded clips from every later stage's inputs and outputs (`excluded_clips`), so a
re-ingest never brings a dropped clip back.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from agents.curation.dedup import Duplicate, find_near_duplicates, records_from_metadata
from engine.runner import is_excluded
from engine.store import DatasetStore
from schemas import ClipRow, rejection, row_model

STATE_FILE = Path("_state") / "excluded_clips.json"
DEDUP_STAGE = "dedup"
GLOBAL_SHARD = "global"
REASON = "near_duplicate"

_cache: dict[str, tuple[int, frozenset[str]]] = {}  # state path -> (mtime_ns, excluded ids)


def find_duplicates(store: DatasetStore, max_distance: float) -> list[Duplicate]:
    """Every clip that nearly copies a better one anywhere in the dataset."""
    rows = [ClipRow.model_validate(r) for r in store.read_table("clips").to_pylist()]
    return find_near_duplicates(records_from_metadata(rows), max_distance)


def apply(store: DatasetStore, duplicates: list[Duplicate]) -> dict[str, int]:
    """Exclude the duplicates for good and prune their rows; returns rows removed per table."""
    excluded = _record_exclusions(store, duplicates)
    pruned: Counter[str] = Counter()
    for stage, shard_id, record in _committed_shards(store):
        pruned.update(_prune_shard(store, stage, shard_id, record, set(excluded)))
    _write_rejections(store, excluded)
    return dict(pruned)


def excluded_clips(root: str | Path | DatasetStore) -> frozenset[str]:
    """The dataset's excluded clip ids (empty when nothing was ever applied), cached by mtime."""
    if isinstance(root, DatasetStore):
        if root.remote:
            return frozenset((root.read_json(STATE_FILE.as_posix()) or {}).get("excluded", {}))
        root = root.root
    path = Path(root) / STATE_FILE
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        return frozenset()
    cached = _cache.get(str(path))
    if cached and cached[0] == mtime:
        return cached[1]
    ids = frozenset(_read_state(path))
    _cache[str(path)] = (mtime, ids)
    return ids


def _read_state(path: Path) -> dict[str, dict[str, Any]]:
    try:
        return json.loads(path.read_text()).get("excluded", {})
    except FileNotFoundError:
        return {}


def _record_exclusions(store: DatasetStore, duplicates: list[Duplicate]) -> dict[str, dict[str, Any]]:
    if store.remote:
        state = (store.read_json(STATE_FILE.as_posix()) or {}).get("excluded", {})
    else:
        state = _read_state(store.root / STATE_FILE)
    for dup in duplicates:
        state.setdefault(dup.clip_id, {"kept_id": dup.kept_id, "distance": dup.distance})
    store.write_json(STATE_FILE.as_posix(), {"excluded": dict(sorted(state.items()))})
    return state


def _committed_shards(store: DatasetStore):
    for stage in store.stages():
        if stage == DEDUP_STAGE:
            continue
        for shard_id, record in store.commits(stage).items():
            yield stage, shard_id, record


def _prune_shard(store: DatasetStore, stage: str, shard_id: str, record: dict, excluded: set[str]) -> dict[str, int]:
    tables = list(record.get("files", {}))
    if not any(_holds_clip(store, record["files"][t], excluded) for t in tables):
        return {}
    rows = {table: store.read_shard_rows(table, stage, shard_id) for table in tables}
    kept = {table: [r for r in table_rows if not is_excluded(r, excluded)] for table, table_rows in rows.items()}
    removed = {table: len(rows[table]) - len(kept[table]) for table in rows}
    if not any(removed.values()):
        return {}
    staged = store.stage_shard(stage, shard_id, kept)
    clip_ids = [c for c in record.get("clip_ids", []) if c not in excluded]
    store.commit(staged, {**record, "clip_ids": clip_ids, "committed_at": time.time()})
    return {table: n for table, n in removed.items() if n}


def _holds_clip(store: DatasetStore, location: str | None, excluded: set[str]) -> bool:
    """A cheap look at one column, so only the shards that need a rewrite are read in full."""
    table = location.split("/", 1)[0] if location else None
    if table is None or "clip_id" not in row_model(table).ARROW.names:
        return False
    ids = store.read_location(location, columns=["clip_id"])
    return ids is not None and bool(excluded & set(ids.column("clip_id").to_pylist()))


def _write_rejections(store: DatasetStore, excluded: dict[str, dict[str, Any]]) -> None:
    rows = [
        rejection(DEDUP_STAGE, clip_id, REASON,
                  f"near duplicate of {why['kept_id']} (mean pHash distance {why['distance']} bits)", clip_id)
        for clip_id, why in sorted(excluded.items())
    ]
    staged = store.stage_shard(DEDUP_STAGE, GLOBAL_SHARD, {"rejections": rows})
    store.commit(staged, {"clip_ids": sorted(excluded), "committed_at": time.time()})
