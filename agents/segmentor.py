"""Segmentor: referring phrases -> masklets (one tracked object per detection) in `objects`.

Per clip: decode the tracking frames once: the sampling plan plus frames at `track_fps` (default
4 per second, so that tracking follows motion; capped by the clip's frame count and
`max_track_frames`). Pick `keyframes` keyframes spread over the clip (default 3: the sharpest of
each third). Grounding DINO finds boxes for the clip's phrases on every keyframe (batched across
clips); SAM or HQ-SAM turns each keyframe's boxes into masks; duplicates and tiny masks on a
keyframe are dropped. SAM 2 then tracks every candidate in ONE session per clip, each prompted on
its own keyframe and propagated forward and backward from there; candidates that turn out to be
the same object (masklet IoU over the clip above `merge_iou`, whichever keyframe found them) are
merged, the best-scored one (its best keyframe) kept. Frames where an object is absent (empty or
tiny mask) are left out of its masklet.

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
    keyframe_candidates: int = Field(5, ge=1, description="evenly spaced frames the sharpest is chosen from "
                                     "(per keyframe span)")
    keyframes: int = Field(3, ge=1, description="detection keyframes, one per equal span of the clip")
    track_fps: float = Field(4.0, gt=0, description="frames per second SAM 2 tracks over, besides the sampling plan")
    max_track_frames: int = Field(64, ge=2, description="cap on the tracking frames of one clip")
    merge_iou: float = Field(0.5, gt=0, le=1, description="masklet IoU above which two candidates are one object")
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
    frames: np.ndarray  # at `indices`
    indices: list[int]  # clip frame numbers of the tracking frames
    keyframes: list[int]  # positions in `indices`
    detections: list[list[Detection]] | None = None  # per keyframe


@dataclass
class _Candidate:
    """A detection turned into a keyframe mask, waiting to be tracked."""

    keyframe: int
    detection: Detection
    mask: np.ndarray
    seg_score: float

    @property
    def score(self) -> float:
        return self.detection.score * self.seg_score


class Segmentor(Stage[SegmentorConfig]):
    name = "segmentor"
    config_model = SegmentorConfig
    reads = ("clips", "phrases")
    writes = ("objects",)
    version = "2"  # 2: several keyframes, tracking frames at track_fps, candidates merged by masklet IoU

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
            "max_detections_per_phrase", "max_objects_per_clip", "mask_threshold", "keyframes", "track_fps",
            "max_track_frames", "merge_iou")}
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
        from agents.video import VideoError

        cfg = self.config
        phrases = batch.by_clip("phrases").get(clip.clip_id, [])
        if not phrases:
            out.reject(self.name, clip.clip_id, "no_phrases", "no phrases to ground", clip_id=clip.clip_id)
            return None
        indices = tracking_frames(clip, cfg.track_fps, cfg.max_track_frames)
        try:
            frames = batch.read_frames(clip, indices)
        except VideoError as err:
            out.reject(self.name, clip.clip_id, err.reason, err.detail, clip_id=clip.clip_id)
            return None
        except Exception as err:
            out.reject(self.name, clip.clip_id, "decode_error", f"{type(err).__name__}: {err}", clip_id=clip.clip_id)
            return None
        phrases = sorted(phrases, key=lambda p: p.phrase_id)
        keyframes = choose_keyframes(frames, cfg.keyframe, cfg.keyframe_candidates, cfg.keyframes)
        return _ClipWork(clip, phrases, frames, indices, keyframes)

    def _detect(self, work: list[_ClipWork]) -> None:
        cfg = self.config
        images = [w.frames[k] for w in work for k in w.keyframes]
        phrases = [[p.text for p in w.phrases] for w in work for _ in w.keyframes]
        found = iter(self.detector.detect(images, phrases, cfg.box_threshold, cfg.text_threshold) if images else [])
        for item in work:
            item.detections = [_top_per_phrase(next(found), cfg.max_detections_per_phrase) for _ in item.keyframes]

    def _candidates(self, item: _ClipWork) -> list[_Candidate]:
        """Keyframe masks of every keyframe's detections, tiny and duplicate ones dropped per keyframe."""
        cfg = self.config
        size = (item.frames.shape[1], item.frames.shape[2])
        candidates = []
        for keyframe, detections in zip(item.keyframes, item.detections or [], strict=True):
            if not detections:
                continue
            grid, seg_scores = self.segmenter.segment(item.frames[keyframe],
                                                      np.array([d.box for d in detections], dtype=np.float32))
            masks = restore_masks(grid, size, cfg.mask_threshold)
            keep = select_objects(masks, [d.score for d in detections], cfg.min_mask_area, cfg.dedup_iou,
                                  cfg.max_objects_per_clip)
            candidates += [_Candidate(keyframe, detections[i], masks[i], float(np.clip(seg_scores[i], 0, 1)))
                           for i in keep]
        candidates.sort(key=lambda c: -c.score)
        return candidates[: cfg.max_objects_per_clip * cfg.keyframes]

    def _segment_clip(self, item: _ClipWork, lineage: Lineage, out: StageOutput) -> None:
        cfg, clip = self.config, item.clip
        size = (item.frames.shape[1], item.frames.shape[2])
        candidates = self._candidates(item)
        if not candidates:
            found = sum(len(d) for d in item.detections or [])
            out.reject(self.name, clip.clip_id, "no_objects_found",
                       f"{found} detection(s) on {len(item.keyframes)} keyframe(s) for {len(item.phrases)} "
                       f"phrase(s), none kept", clip_id=clip.clip_id)
            return
        grid, presence = self.propagator.propagate(item.frames, [c.keyframe for c in candidates],
                                                   np.stack([c.mask for c in candidates]))
        tracked = [restore_masks(_object_slice(grid, slot), size, cfg.mask_threshold) for slot in range(len(candidates))]
        kept = merge_tracks(tracked, cfg.merge_iou, cfg.max_objects_per_clip)
        out.counters["merged_candidates"] += len(candidates) - len(kept)
        ranks: dict[int, int] = {}
        made = 0
        for slot in kept:
            candidate = candidates[slot]
            rank = ranks.get(candidate.detection.phrase_index, 0)
            ranks[candidate.detection.phrase_index] = rank + 1
            row = self._masklet(item, candidate, rank, tracked[slot], presence[:, slot], lineage)
            if row is None:
                out.counters["dropped_empty_masklet"] += 1
                continue
            out.add("objects", row)
            made += 1
        if not made:
            out.reject(self.name, clip.clip_id, "no_objects_found", "every masklet was empty after tracking",
                       clip_id=clip.clip_id)

    def _masklet(self, item: _ClipWork, candidate: _Candidate, rank: int, tracked: np.ndarray,
                 presence: np.ndarray, lineage: Lineage) -> ObjectRow | None:
        areas = tracked.reshape(len(tracked), -1).sum(axis=1)
        present = np.flatnonzero(areas >= max(self.config.min_mask_area, 1))
        if len(present) == 0:
            return None
        clip, phrase = item.clip, item.phrases[candidate.detection.phrase_index]
        masks = tracked[present]
        score = candidate.score * float(presence[present].mean())
        return ObjectRow.build(
            lineage,
            object_id=stable_id("object", clip.clip_id, self.name, phrase.phrase_id, rank),
            clip_id=clip.clip_id,
            label=phrase.text,
            frame_indices=[int(item.indices[t]) for t in present],
            masks=encode_masks(masks),
            boxes=[[float(v) for v in box] for box in mask_boxes(masks)],
            score=float(np.clip(score, 0, 1)),
            source=self.name,
        )


def tracking_frames(clip, track_fps: float, cap: int) -> list[int]:
    """Clip frame numbers SAM 2 tracks over: the sampling plan plus an even grid at `track_fps`,
    at most `cap` (thinned evenly, first and last kept) and never more than the clip has."""
    wanted = max(2, int(np.ceil(clip.duration * track_fps)) + 1)
    grid = np.linspace(0, clip.num_frames - 1, min(wanted, clip.num_frames)).round().astype(int)
    frames = sorted({int(f) for f in clip.frame_indices} | {int(f) for f in grid})
    if len(frames) > cap:
        frames = [frames[i] for i in sorted(set(np.linspace(0, len(frames) - 1, cap).round().astype(int)))]
    return frames


def choose_keyframes(frames: np.ndarray, policy: str, candidates: int, count: int) -> list[int]:
    """Positions of `count` keyframes: the clip cut into equal spans, one keyframe per span."""
    spans = [span for span in np.array_split(np.arange(len(frames)), min(count, len(frames))) if len(span)]
    return sorted({int(span[0]) + choose_keyframe(frames[span], policy, candidates) for span in spans})


def merge_tracks(tracked: list[np.ndarray], merge_iou: float, limit: int) -> list[int]:
    """Slots to keep, best first: a masklet overlapping a better one (IoU over the whole clip
    above `merge_iou`) is the same object found on another keyframe."""
    kept: list[int] = []
    for slot, masks in enumerate(tracked):
        if any(_volume_iou(masks, tracked[k]) > merge_iou for k in kept):
            continue
        kept.append(slot)
        if len(kept) == limit:
            break
    return kept


def _volume_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


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
