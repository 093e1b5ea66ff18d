"""Stages used by engine tests to inject faults (importable by Ray workers)."""

from __future__ import annotations

import os
import time
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


class SlowSetupConfig(StageConfig):
    setup_s: float = 0.0  # how long loading its "model" takes
    fail: bool = False  # the load ends with an error
    done_file: str = ""  # where the time (time.time()) the setup ended is written


class SlowSetupCaptioner(Stage[SlowSetupConfig]):
    """A stage whose setup takes a while (a large model loading), then works or fails."""

    name = "slow_setup"
    config_model = SlowSetupConfig
    reads = ("clips",)
    writes = ("captions",)

    def setup(self) -> None:
        time.sleep(self.config.setup_s)
        if self.config.done_file:
            Path(self.config.done_file).write_text(repr(time.time()))
        if self.config.fail:
            raise RuntimeError("weights file is truncated")

    def process_batch(self, batch: Batch) -> StageOutput:
        return caption_each_clip(self, batch, "loaded")


def caption_each_clip(stage: Stage, batch: Batch, text: str) -> StageOutput:
    """One clip caption per clip of the batch, with this text, made by this stage."""
    out = StageOutput()
    for clip in batch.clips:
        out.add("captions", CaptionRow.build(
            Lineage(agent=stage.name, model="none"), caption_id=stable_id(stage.name, clip.clip_id),
            clip_id=clip.clip_id, kind="clip", text=text, source=stage.name))
    return out
