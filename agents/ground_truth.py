"""Ground truth of virtual clips: exact object masklets and the motion caption, from the scene.

Reads `clips`; for each clip with source "virtual" writes one `objects` row per object seen in the
clip's sampled frames (exact, occlusion-aware masks rendered by the same geometry as the video)
and one `captions` row of kind "motion". Other clips are not this stage's business and pass by.
A virtual clip whose scene cannot be read, or does not match the clip, becomes a rejection.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from agents.base import Batch, Stage, StageConfig, StageOutput
from agents.virtual.captions import motion_caption
from agents.virtual.render import render_masks
from agents.virtual.scene import SceneSpec, scene_from_metadata
from schemas import CaptionRow, ClipRow, Lineage, ObjectRow, encode_masks, mask_box, stable_id

SOURCE = "virtual"


def ground_truth_object_id(clip_id: str, object_index: int) -> str:
    return stable_id("object", clip_id, SOURCE, object_index)


def motion_caption_id(clip_id: str) -> str:
    return stable_id("caption", clip_id, SOURCE, "motion")


class GroundTruthConfig(StageConfig):
    """No settings: the ground truth is fully decided by the scene."""


class GroundTruth(Stage[GroundTruthConfig]):
    name: ClassVar[str] = "ground_truth"
    config_model: ClassVar[type[StageConfig]] = GroundTruthConfig
    reads: ClassVar[tuple[str, ...]] = ("clips",)
    writes: ClassVar[tuple[str, ...]] = ("objects", "captions")
    version: ClassVar[str] = "1"

    def process_batch(self, batch: Batch) -> StageOutput:
        out = StageOutput()
        for clip in batch.clips:
            if clip.source != SOURCE:
                continue
            try:
                spec = scene_from_metadata(clip.metadata)
                _check_matches(spec, clip)
            except ValueError as err:
                out.reject(self.name, clip.clip_id, "invalid_metadata", str(err), clip_id=clip.clip_id)
                continue
            self._annotate(clip, spec, out)
        return out

    def _annotate(self, clip: ClipRow, spec: SceneSpec, out: StageOutput) -> None:
        lineage = Lineage(agent=self.name, model="virtual-renderer", model_revision=spec.renderer_version,
                          prompt_version="none")
        frames = list(clip.frame_indices)
        masks = render_masks(spec, frames)  # (T, N, H, W)
        for obj in spec.objects:
            seen = np.flatnonzero(masks[:, obj.index].any(axis=(1, 2)))
            if seen.size == 0:
                out.counters["objects_never_visible"] += 1
                continue
            rles = encode_masks(masks[seen, obj.index])
            out.add("objects", ObjectRow.build(
                lineage,
                object_id=ground_truth_object_id(clip.clip_id, obj.index),
                clip_id=clip.clip_id, label=obj.label,
                frame_indices=[frames[i] for i in seen], masks=rles, boxes=[mask_box(r) for r in rles],
                score=1.0, source=SOURCE,
            ))
        out.add("captions", CaptionRow.build(
            lineage, caption_id=motion_caption_id(clip.clip_id), clip_id=clip.clip_id, object_id=None,
            kind="motion", text=motion_caption(spec), source=SOURCE,
        ))


def _check_matches(spec: SceneSpec, clip: ClipRow) -> None:
    if (spec.width, spec.height) != (clip.width, clip.height):
        raise ValueError(f"scene is {spec.width}x{spec.height} but the clip is {clip.width}x{clip.height}")
    if max(clip.frame_indices) >= spec.num_frames:
        raise ValueError(f"sampled frame {max(clip.frame_indices)} is past the scene's {spec.num_frames} frames")
