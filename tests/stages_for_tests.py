"""Stages used by engine tests to inject faults (importable by Ray workers)."""

from __future__ import annotations

import os
from pathlib import Path

from agents.base import Batch, Stage, StageConfig, StageOutput
from schemas import CaptionRow, Lineage, stable_id


class DyingConfig(StageConfig):
    marker_dir: str  # one marker file per shard: the first attempt at a shard kills the process


class DyingCaptioner(Stage[DyingConfig]):
    """Kills its own process (as a CUDA crash or an OOM kill would) the first time it sees a shard."""

    name = "dying"
    config_model = DyingConfig
    reads = ("clips",)
    writes = ("captions",)

    def process_batch(self, batch: Batch) -> StageOutput:
        key = "-".join(sorted(c.clip_id for c in batch.clips)) or "empty"
        marker = Path(self.config.marker_dir) / f"{key}.died"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return caption_each_clip(self, batch, "survived")


class NicenessProbe(Stage):
    """Writes, as each clip's caption, the CPU niceness of the process that ran it."""

    name = "niceness"
    reads = ("clips",)
    writes = ("captions",)

    def process_batch(self, batch: Batch) -> StageOutput:
        return caption_each_clip(self, batch, str(os.nice(0)))


class NicenessProbeToo(NicenessProbe):
    name = "niceness_too"


def caption_each_clip(stage: Stage, batch: Batch, text: str) -> StageOutput:
    """One clip caption per clip of the batch, with this text, made by this stage."""
    out = StageOutput()
    for clip in batch.clips:
        out.add("captions", CaptionRow.build(
            Lineage(agent=stage.name, model="none"), caption_id=stable_id(stage.name, clip.clip_id),
            clip_id=clip.clip_id, kind="clip", text=text, source=stage.name))
    return out
