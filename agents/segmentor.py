"""Segmentor: referring phrases -> masklets (one tracked object per detection) in `objects`.

Per clip: decode the sampled frames once; pick a keyframe; Grounding DINO finds boxes for the
clip's phrases on it (batched across clips); SAM or HQ-SAM turns the boxes into masks; duplicates
and tiny masks are dropped; SAM 2 propagates the masks forward and backward through the sampled
frames. Frames where an object is absent (empty or tiny mask) are left out of its masklet.

With `backend: sam3`, SAM 3 video does all of it from the phrases (`agents.backends.sam3`).

Reads `clips`, `phrases`; writes `objects` (source "segmentor"). Rejections: `no_phrases`,
`no_objects_found`, decoding reasons from `agents.video`, `decode_error`, `segmentation_failed`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from agents.backends.preprocess import mask_boxes, mask_iou, restore_masks, sharpness
from agents.backends.vision import BoxSegmenter, Detection, Detector, VideoPropagator
from agents.base import Batch, Stage, StageConfig, StageOutput
from schemas import Lineage, ObjectRow, stable_id
from schemas.masks import encode_masks


class SegmentorConfig(StageConfig):
    backend: Literal["transformers", "official", "sam3"] = Field(
        "transformers", description="the Grounding DINO -> SAM -> SAM 2 chain as transformers checkpoints or the "
        "official sam2 / groundingdino-py packages, or sam3: SAM 3 video, text prompts straight to masklets"
    )
    video_model: str = Field("tiny:sam3-video", description="SAM 3 video checkpoint (backend sam3)")
    video_model_revision: str = "main"
    detector: str = Field("tiny:grounding-dino", description="Grounding DINO: tiny:<name>, folder or HF id")
    segmenter: str = Field("tiny:sam-hq", description="SAM or HQ-SAM checkpoint (the config says which)")
    propagator: str = Field("tiny:sam2-video", description="SAM 2 video checkpoint")
    detector_revision: str = "main"
    segmenter_revision: str = "main"
    propagator_revision: str = "main"
    allow_download: bool = Field(False, description="fetch missing Hugging Face checkpoints")
    seed: int = Field(0, description="seed of tiny random-weight builds")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on GPU, float32 on CPU"
    )
    box_threshold: float = Field(0.35, ge=0, le=1, description="minimum best-token probability of a box "
                                 "(sam3: minimum detection score of a new object)")
    text_threshold: float = Field(0.25, ge=0, le=1, description="minimum mean token probability of its phrase")
    keyframe: Literal["sharpest", "middle", "first", "last"] = "sharpest"
    keyframe_candidates: int = Field(5, ge=1, description="evenly spaced frames the sharpest is chosen from")
    min_mask_area: int = Field(64, ge=0, description="pixels (at clip size) below which a mask counts as absent")
    dedup_iou: float = Field(0.7, gt=0, le=1, description="keyframe mask IoU above which the weaker detection goes")
    max_detections_per_phrase: int = Field(3, ge=1)
    max_objects_per_clip: int = Field(8, ge=1)
    mask_threshold: float = Field(0.0, description="logit threshold of every mask")
    detector_batch_size: int = Field(8, ge=1, description="keyframes per Grounding DINO call")


@dataclass
class _ClipWork:
    """One clip on its way through the three models."""

    clip: object
    phrases: list
    frames: np.ndarray
    keyframe: int  # position in clip.frame_indices
    detections: list[Detection] | None = None


class Segmentor(Stage[SegmentorConfig]):
    name = "segmentor"
    config_model = SegmentorConfig
    reads = ("clips", "phrases")
    writes = ("objects",)
    version = "1"

    def __init__(self, config=None, *, detector: Detector | None = None, segmenter: BoxSegmenter | None = None,
                 propagator: VideoPropagator | None = None, video_segmenter=None):
        super().__init__(config)
        self.detector, self.segmenter, self.propagator = detector, segmenter, propagator
        self.video_segmenter = video_segmenter  # backend sam3: one model from phrases to masklets

    def setup(self) -> None:
        cfg = self.config
        _limit_cpu_threads(cfg)
        if cfg.backend == "sam3":
            from agents.backends.sam3 import load_sam3

            self.video_segmenter = self.video_segmenter or load_sam3(cfg)
            return
        if cfg.backend == "official":
            from agents.backends import official as factory
        else:
            from agents.backends import vision as factory
        if self.detector is None:
            self.detector = factory.load_detector(cfg)
        if self.segmenter is None:
            self.segmenter = factory.load_segmenter(cfg)
        if self.propagator is None:
            self.propagator = factory.load_propagator(cfg)

    def lineage(self) -> Lineage:
        if self.config.backend == "sam3":
            model = self.video_segmenter
            return Lineage(agent=self.name, model=model.name, model_revision=model.revision,
                           prompt_version=f"sam3@{self.policy_version()}")
        parts = (self.detector, self.segmenter, self.propagator)
        return Lineage(
            agent=self.name,
            model="+".join(p.name for p in parts),
            model_revision="+".join(p.revision for p in parts),
            prompt_version=self.policy_version(),
        )

    def policy_version(self) -> str:
        """A short hash of everything that decides which masks come out besides the weights."""
        cfg = self.config
        policy = {k: getattr(cfg, k) for k in (
            "box_threshold", "text_threshold", "keyframe", "keyframe_candidates", "min_mask_area", "dedup_iou",
            "max_detections_per_phrase", "max_objects_per_clip", "mask_threshold")}
        return hashlib.sha256(json.dumps(policy, sort_keys=True).encode()).hexdigest()[:12]

    def process_batch(self, batch: Batch) -> StageOutput:
        if self.config.backend == "sam3":
            from agents.backends.sam3 import segment_batch

            return segment_batch(self, batch)
        out = StageOutput()
        lineage = self.lineage()
        work = [w for clip in batch.clips if (w := self._prepare(batch, clip, out)) is not None]
        self._detect(work)
        for item in work:
            try:
                self._segment_clip(item, lineage, out)
            except Exception as err:  # one bad clip must not sink the shard
                out.reject(self.name, item.clip.clip_id, "segmentation_failed",
                           f"{type(err).__name__}: {err}", clip_id=item.clip.clip_id)
        return out

    def _prepare(self, batch: Batch, clip, out: StageOutput) -> _ClipWork | None:
        from agents.video import VideoError, read_frames

        phrases = batch.by_clip("phrases").get(clip.clip_id, [])
        if not phrases:
            out.reject(self.name, clip.clip_id, "no_phrases", "no phrases to ground", clip_id=clip.clip_id)
            return None
        try:
            frames = read_frames(batch.resolve(clip.video_path), clip.frame_indices)
        except VideoError as err:
            out.reject(self.name, clip.clip_id, err.reason, err.detail, clip_id=clip.clip_id)
            return None
        except Exception as err:
            out.reject(self.name, clip.clip_id, "decode_error", f"{type(err).__name__}: {err}", clip_id=clip.clip_id)
            return None
        phrases = sorted(phrases, key=lambda p: p.phrase_id)
        return _ClipWork(clip, phrases, frames, choose_keyframe(frames, self.config.keyframe,
                                                                 self.config.keyframe_candidates))

    def _detect(self, work: list[_ClipWork]) -> None:
        cfg = self.config
        found = self.detector.detect(
            [w.frames[w.keyframe] for w in work], [[p.text for p in w.phrases] for w in work],
            cfg.box_threshold, cfg.text_threshold,
        ) if work else []
        for item, detections in zip(work, found, strict=True):
            item.detections = _top_per_phrase(detections, cfg.max_detections_per_phrase)

    def _segment_clip(self, item: _ClipWork, lineage: Lineage, out: StageOutput) -> None:
        cfg, clip = self.config, item.clip
        size = (item.frames.shape[1], item.frames.shape[2])
        detections = item.detections or []
        if detections:
            grid, seg_scores = self.segmenter.segment(item.frames[item.keyframe],
                                                      np.array([d.box for d in detections], dtype=np.float32))
            masks = restore_masks(grid, size, cfg.mask_threshold)
            keep = select_objects(masks, [d.score for d in detections], cfg.min_mask_area, cfg.dedup_iou,
                                  cfg.max_objects_per_clip)
        else:
            keep = []
        if not keep:
            out.reject(self.name, clip.clip_id, "no_objects_found",
                       f"{len(detections)} detection(s) for {len(item.phrases)} phrase(s), none kept",
                       clip_id=clip.clip_id)
            return
        grid, presence = self.propagator.propagate(item.frames, item.keyframe, masks[keep])
        made = 0
        for slot, index in enumerate(keep):
            detection = detections[index]
            tracked = restore_masks(_object_slice(grid, slot), size, cfg.mask_threshold)  # (T, H, W)
            rank = sum(d.phrase_index == detection.phrase_index for d in detections[:index])
            row = self._masklet(item, detection, rank, tracked, presence[:, slot],
                                float(np.clip(seg_scores[index], 0, 1)), lineage)
            if row is None:
                out.counters["dropped_empty_masklet"] += 1
                continue
            out.add("objects", row)
            made += 1
        if not made:
            out.reject(self.name, clip.clip_id, "no_objects_found", "every masklet was empty after tracking",
                       clip_id=clip.clip_id)

    def _masklet(self, item: _ClipWork, detection: Detection, rank: int, tracked: np.ndarray,
                 presence: np.ndarray, seg_score: float, lineage: Lineage) -> ObjectRow | None:
        areas = tracked.reshape(len(tracked), -1).sum(axis=1)
        present = np.flatnonzero(areas >= max(self.config.min_mask_area, 1))
        if len(present) == 0:
            return None
        clip, phrase = item.clip, item.phrases[detection.phrase_index]
        masks = tracked[present]
        score = detection.score * seg_score * float(presence[present].mean())
        return ObjectRow.build(
            lineage,
            object_id=stable_id("object", clip.clip_id, self.name, phrase.phrase_id, rank),
            clip_id=clip.clip_id,
            label=phrase.text,
            frame_indices=[int(clip.frame_indices[t]) for t in present],
            masks=encode_masks(masks),
            boxes=[[float(v) for v in box] for box in mask_boxes(masks)],
            score=float(np.clip(score, 0, 1)),
            source=self.name,
        )


def choose_keyframe(frames: np.ndarray, policy: str, candidates: int) -> int:
    """Position of the keyframe among the sampled frames."""
    count = len(frames)
    if policy == "first":
        return 0
    if policy == "last":
        return count - 1
    if policy == "middle":
        return count // 2
    positions = np.unique(np.linspace(0, count - 1, min(candidates, count)).round().astype(int))
    return int(positions[int(np.argmax(sharpness(frames[positions])))])


def _top_per_phrase(detections: list[Detection], limit: int) -> list[Detection]:
    """The best `limit` boxes of each phrase, best first overall (ties broken by position)."""
    ranked = sorted(enumerate(detections), key=lambda pair: (-pair[1].score, pair[0]))
    taken: dict[int, int] = {}
    kept = []
    for _, d in ranked:
        if taken.get(d.phrase_index, 0) < limit:
            taken[d.phrase_index] = taken.get(d.phrase_index, 0) + 1
            kept.append(d)
    return kept


def select_objects(masks: np.ndarray, scores: list[float], min_area: int, dedup_iou: float,
                   limit: int) -> list[int]:
    """Indices of the masks to track: big enough, and not a duplicate of a better-scored one."""
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    order = [i for i in sorted(range(len(masks)), key=lambda i: (-scores[i], i)) if areas[i] >= max(min_area, 1)]
    kept: list[int] = []
    for i in order:
        if kept and mask_iou(masks[i : i + 1], masks[kept]).max() > dedup_iou:
            continue
        kept.append(i)
        if len(kept) == limit:
            break
    return kept


def _limit_cpu_threads(cfg: SegmentorConfig) -> None:
    """Torch on CPU uses every core unless told; an actor keeps to the CPUs it declared."""
    import torch

    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        torch.set_num_threads(max(1, int(cfg.resources.num_cpus)))


def _object_slice(grid, slot: int):
    from agents.backends.preprocess import GridMasks

    return GridMasks(grid.logits[:, slot], grid.input_size, grid.content_size)
