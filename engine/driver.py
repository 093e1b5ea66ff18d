"""The driver loop: plan shards, feed the executor, commit each (stage, shard) as it lands.

At most as many shards are active at once as the executor has slots (actors x `max_in_flight`,
summed over the actor pools, from the placement; `max_shards_in_flight` caps it), each moving
through the stages on its own, so GPU stages start on the first clips and the driver's memory stays bounded whatever the
size of the source. Only the driver commits, so a crash of the driver at any moment leaves every
table consistent (see engine/store.py) and the next run resumes from the commit records.

Crash injection for tests: VDE_CRASH_AFTER_COMMITS=N kills this process (SIGKILL) right after
its N-th commit.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from agents.base import UndeclaredTable
from engine.collector import collector_paused
from engine.dedup import excluded_clips
from engine.errors import Stopped
from engine.pipeline import Pipeline, Plan, Shard, make_shards
from engine.progress import Progress
from engine.runner import ShardResult, ShardTask, _short_error
from engine.sources import iter_source
from engine.store import DatasetStore
from schemas import rejection

CRASH_ENV = "VDE_CRASH_AFTER_COMMITS"


@dataclass
class StopRequest:
    """Set by a SIGINT / SIGTERM handler: the loop stops submitting, commits what is in flight
    (a second signal: stops waiting), and `execute` raises `Stopped`."""

    signum: int | None = None
    count: int = 0

    def __call__(self, signum: int, frame: Any = None) -> None:
        self.signum = signum
        self.count += 1


@dataclass
class BuildOptions:
    shard_size: int = 4
    max_shards_in_flight: int | None = None  # None: the executor's slots
    prune: bool = False
    retry_failed: bool = True
    dry_run: bool = False
    stop: StopRequest | None = None


def plan_build(pipeline: Pipeline, store: DatasetStore, source: str, options: BuildOptions,
               damaged: set[tuple[str, str]] | None = None) -> Plan:
    with collector_paused():
        shards, removed = make_shards(store, iter_source(source), options.shard_size, options.prune,
                                      pipeline.source.name)
        plan = pipeline.plan(store, shards, options.retry_failed, damaged)
    plan.removed = removed
    return plan


def execute(
    pipeline: Pipeline,
    store: DatasetStore,
    plan: Plan,
    make_executor: Callable[[], Any],
    options: BuildOptions,
    progress: Progress,
) -> dict[str, Any]:
    for shard_id in plan.removed:
        for stage in pipeline.stages:
            store.remove_shard(stage.name, shard_id, (*stage.writes, "rejections"))
    work = plan.work
    for shard in work:
        for index, stage in enumerate(pipeline.stages):
            if index >= shard.start:
                progress.plan(stage.name, len(shard.clip_ids) or len(shard.items))
    if not work:
        return {"commits": 0, "removed_shards": len(plan.removed)}
    executor = make_executor()
    crash_after = int(os.environ.get(CRASH_ENV, "0") or 0)
    commits = 0
    pending = iter(work)
    by_id = {shard.shard_id: shard for shard in work}
    owner = {c: shard_id for shard_id, rec in store.commits(pipeline.source.name).items() for c in rec.get("clip_ids", [])}
    excluded = excluded_clips(store)
    active = 0
    in_flight = _shards_in_flight(executor, options)
    stop = options.stop or StopRequest()
    try:
        with progress:
            while True:
                if stop.count:  # stop submitting; what is running may still commit
                    executor.cancel_waiting()
                    if stop.count > 1 or not executor.in_flight():
                        break
                while not stop.count and active < in_flight and (shard := next(pending, None)):
                    _submit(pipeline, store, executor, progress, shard, shard.start, excluded)
                    active += 1
                if active == 0:
                    break
                got = executor.next_result(timeout=1.0) if hasattr(executor, "ray") else executor.next_result()
                if got is None:
                    progress.refresh()
                    continue
                task, result = got
                shard = by_id[task.shard_id]
                if isinstance(result, UndeclaredTable) or isinstance(getattr(result, "cause", None), UndeclaredTable):
                    raise result  # a stage that breaks its contract is a bug: stop, name it (Ray wraps it)
                if isinstance(result, Exception):
                    result = _failed(store, task, shard, pipeline, result)
                elif task.items and (repeated := _owned_elsewhere(result, owner, shard.shard_id)):
                    # another shard committed the same content while this one ran: ask again, naming it
                    store.discard(result.staged)
                    executor.submit(replace(task, owned_elsewhere={**task.owned_elsewhere, **repeated}))
                    continue
                if task.items:
                    for clip_id in result.clip_ids:
                        owner.setdefault(clip_id, shard.shard_id)
                _commit(store, pipeline, shard, task, result)
                commits += 1
                if commits % 1000 == 0:
                    store.maybe_fold()  # start-up and planning then read one index, not a file per shard
                if crash_after and commits >= crash_after:
                    os.kill(os.getpid(), signal.SIGKILL)
                progress.finished_task(task.stage, _clip_count(task, shard), result.rejected, result.seconds,
                                       result.counters)
                if task.stage_index + 1 < len(pipeline.stages) and not stop.count:
                    _submit(pipeline, store, executor, progress, shard, task.stage_index + 1, excluded)
                else:
                    active -= 1
    finally:
        executor.shutdown()
    if stop.signum is not None:
        raise Stopped(stop.signum, commits)
    return {"commits": commits, "removed_shards": len(plan.removed)}


def _shards_in_flight(executor: Any, options: BuildOptions) -> int:
    """Enough shards to fill every slot of every actor pool (a shard holds one slot at a time);
    the job's `max_shards_in_flight`, when set, caps it."""
    slots = getattr(executor, "slots", None) or DEFAULT_SHARDS_IN_FLIGHT
    return min(slots, options.max_shards_in_flight) if options.max_shards_in_flight else slots


DEFAULT_SHARDS_IN_FLIGHT = 8  # an executor without actor pools (the local one runs one task at a time)


def _submit(pipeline: Pipeline, store: DatasetStore, executor: Any, progress: Progress, shard: Shard,
            index: int, excluded: frozenset[str] = frozenset()) -> None:
    stage = pipeline.stages[index]
    task = ShardTask(
        stage_index=index,
        stage=stage.name,
        shard_id=shard.shard_id,
        fingerprint=pipeline.fingerprints(shard)[index],
        items=shard.items if stage.is_source else [],
        inputs=pipeline.inputs_for(index, shard.shard_id, store),
        clip_ids=list(shard.clip_ids),
        excluded=excluded,
    )
    executor.submit(task)
    progress.started_task(stage.name, _clip_count(task, shard))


def _clip_count(task: ShardTask, shard: Shard) -> int:
    return len(task.items) if task.items else len(shard.clip_ids)


def _commit(store: DatasetStore, pipeline: Pipeline, shard: Shard, task: ShardTask, result: ShardResult) -> None:
    record: dict[str, Any] = {
        "fingerprint": task.fingerprint,
        "clip_ids": result.clip_ids,
        "retryable": result.retryable,
        "rejected": result.rejected,
        "counters": result.counters,
        "seconds": round(result.seconds, 3),
        "committed_at": time.time(),
    }
    if result.started_at is not None:  # when the worker began it: its busy span, without the wait to commit
        record["started_at"] = round(result.started_at, 3)
    if task.items:  # the source: which items the shard holds, and the clips they made
        record["source_keys"] = sorted(i.source_key for i in shard.items)
        record["signature"] = shard.signature
        shard.clip_ids = list(result.clip_ids)
    store.commit(result.staged, record)


def _failed(store: DatasetStore, task: ShardTask, shard: Shard, pipeline: Pipeline, err: Exception) -> ShardResult:
    """A task whose worker failed for good: every clip of the shard gets a retryable rejection."""
    stage = pipeline.stages[task.stage_index]
    ids = [(i.source_key, None) for i in task.items] if task.items else [(c, c) for c in shard.clip_ids]
    rejections = [rejection(stage.name, item, "stage_error", _short_error(err), clip, retryable=True)
                  for item, clip in ids]
    tables = {t: [] for t in stage.writes}
    tables["rejections"] = rejections
    staged = store.stage_shard(stage.name, task.shard_id, tables)
    return ShardResult(task, staged, [c for _, c in ids if c], len(rejections), len(rejections), {}, 0.0)


def _owned_elsewhere(result: ShardResult, owner: dict[str, str], shard_id: str) -> dict[str, str]:
    """Clips of a source result whose content another shard already committed (clip -> shard)."""
    return {c: owner[c] for c in result.clip_ids if owner.get(c, shard_id) != shard_id}


def write_run_summary(store: DatasetStore, run_config: dict[str, Any], summary: dict[str, Any]) -> str:
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    store.write_json(f"_runs/{run_id}.json", {"config": run_config, **summary})
    store.write_run_config({**run_config, "last_run": {"run_id": run_id, **summary}})
    return run_id
