"""The pipeline: stages in order, shards of clips, and the plan of what must run.

A shard is a fixed group of source items. Its id is a hash of its items' keys, and once assigned
an item stays in its shard, so a refresh adds new shards instead of reshuffling old ones. Each
(stage, shard) has a fingerprint chained from the shard's content and every stage config up to
that stage: a stage runs for a shard when its committed fingerprint differs (new clips, a changed
model / prompt / threshold upstream) or when it left retryable rejections last time.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from agents.base import SourceItem, Stage
from engine.errors import UserError
from engine.store import DatasetStore


@dataclass
class Shard:
    shard_id: str
    items: list[SourceItem]
    signature: str
    clip_ids: list[str] = field(default_factory=list)
    # first stage index that must run, and why; set by `Pipeline.plan`
    start: int | None = None
    why: str = ""


@dataclass
class Plan:
    shards: list[Shard]
    removed: list[str]  # shard ids whose items all left the source
    per_stage: dict[str, dict[str, int]]  # stage -> reason -> clips

    @property
    def work(self) -> list[Shard]:
        return [s for s in self.shards if s.start is not None]

    def tasks(self, names: list[str]) -> set[tuple[str, str]]:
        """Every (stage, shard) the plan runs: each shard with work, from its first stage on."""
        return {(name, s.shard_id) for s in self.work for i, name in enumerate(names) if i >= s.start}


class Pipeline:
    def __init__(self, stages: list[Stage]):
        if not stages or not stages[0].is_source:
            raise UserError("a pipeline starts with the ingest stage")
        self.stages = stages
        self._stage_fingerprints: list[str] | None = None
        self.source = stages[0]
        self._check_tables()

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def _check_tables(self) -> None:
        """Every table a stage reads must be written by an earlier stage: checked before any work."""
        produced: set[str] = set()
        for stage in self.stages:
            stage.check_tables()
            missing = [t for t in stage.reads_for(stage.config) if t not in produced]
            if missing:
                raise UserError(
                    f"stage {stage.name} reads {', '.join(missing)}, which no earlier stage writes; "
                    f"stages in order: {' -> '.join(self.names)}"
                )
            produced.update(stage.writes)

    def inputs_for(self, index: int, shard_id: str, store: DatasetStore | None = None) -> dict[str, list[str]]:
        """Where the shard's upstream rows live: shard files, or row ranges of compacted parts."""
        from engine.store import shard_file_name

        def where(stage: Stage, table: str) -> str | None:
            if store is None:
                return f"{table}/{shard_file_name(stage.name, shard_id)}"
            return store.location(stage.name, shard_id, table)

        stage = self.stages[index]
        return {
            table: [loc for s in self.stages[:index] if table in s.writes and (loc := where(s, table))]
            for table in stage.inputs()
        }

    def fingerprints(self, shard: Shard) -> list[str]:
        if self._stage_fingerprints is None:  # configs are fixed for a run: hash them once
            self._stage_fingerprints = [stage.fingerprint() for stage in self.stages]
        chain, previous = [], shard.signature
        for fingerprint in self._stage_fingerprints:
            previous = _hash(previous, fingerprint)
            chain.append(previous)
        return chain

    def plan(self, store: DatasetStore, shards: list[Shard], retry_failed: bool = True,
             damaged: set[tuple[str, str]] | None = None) -> Plan:
        """What must run, per shard and stage. `damaged` (stage, shard)s run again whatever their record
        says (a dry run passes the files a build would repair)."""
        commits = {s.name: store.commits(s.name) for s in self.stages}
        per_stage: dict[str, dict[str, int]] = {s.name: defaultdict(int) for s in self.stages}
        for shard in shards:
            ingest = commits[self.source.name].get(shard.shard_id)
            shard.clip_ids = list(ingest.get("clip_ids", [])) if ingest else []
            fps = self.fingerprints(shard)
            shard.start, shard.why = None, ""
            for index, stage in enumerate(self.stages):
                record = commits[stage.name].get(shard.shard_id)
                # a shard not ingested yet: as many clips as items (what a virtual or plain source gives)
                clips = len(shard.items) if stage.is_source or not ingest else len(shard.clip_ids)
                if shard.start is not None:
                    per_stage[stage.name]["upstream_changed"] += clips
                    continue
                reason = _why_run(record, fps[index], retry_failed)
                if damaged and (stage.name, shard.shard_id) in damaged:
                    reason = "damaged"
                if reason:
                    shard.start, shard.why = index, reason
                    per_stage[stage.name][reason] += clips
                else:
                    per_stage[stage.name]["up_to_date"] += clips
        return Plan(shards=shards, removed=[], per_stage={k: dict(v) for k, v in per_stage.items()})


def _why_run(record: dict | None, fingerprint: str, retry_failed: bool) -> str:
    if record is None:
        return "new"
    if record.get("damaged"):
        return "damaged"
    if record.get("fingerprint") != fingerprint:
        return "config_changed"
    if retry_failed and record.get("retryable", 0) > 0:
        return "failed_before"
    return ""


def make_shards(
    store: DatasetStore, items: Iterable[SourceItem], shard_size: int, prune: bool = False, source: str = "ingest"
) -> tuple[list[Shard], list[str]]:
    """Group source items into shards, keeping every already-committed item in its shard.

    Returns the shards and the ids of shards to remove (all their items left the source; only
    with prune). Without prune, a shard that lost items keeps its committed rows untouched.
    """
    recorded = store.commits(source)
    owner = {key: shard_id for shard_id, rec in recorded.items() for key in rec.get("source_keys", [])}
    kept: dict[str, list[SourceItem]] = defaultdict(list)
    fresh: list[SourceItem] = []
    seen: set[str] = set()
    shards: list[Shard] = []
    for item in items:
        if item.source_key in seen:
            continue  # the same entry listed twice in a manifest
        seen.add(item.source_key)
        if item.source_key in owner:
            kept[owner[item.source_key]].append(item)
            continue
        fresh.append(item)
        if len(fresh) == shard_size:
            shards.append(_new_shard(fresh))
            fresh = []
    if fresh:
        shards.append(_new_shard(fresh))
    removed = []
    for shard_id, rec in recorded.items():
        present = kept.get(shard_id, [])
        if len(present) == len(rec.get("source_keys", [])):
            shards.append(Shard(shard_id, present, _signature(present)))
        elif not present:
            if prune:
                removed.append(shard_id)
        elif prune:
            shards.append(Shard(shard_id, present, _signature(present)))
        else:  # items left the source: keep the committed rows as they are
            shards.append(Shard(shard_id, present, rec.get("signature", _signature(present))))
    return shards, removed


def _new_shard(items: list[SourceItem]) -> Shard:
    shard_id = _hash(*sorted(i.source_key for i in items))[:16]
    return Shard(shard_id, list(items), _signature(items))


def _signature(items: list[SourceItem]) -> str:
    return _hash(*(f"{i.source_key}|{i.signature}|{i.caption}|{i.start}|{i.end}" for i in sorted(items, key=lambda i: i.source_key)))


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]
