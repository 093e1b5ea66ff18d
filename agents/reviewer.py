"""Reviewer: per (object, caption), a verdict on whether mask and caption agree.

Reads `objects` and `captions`, writes `reviews`. Each object is reviewed once, against its
`object_detailed` caption (the `object_short` one when that is all there is).
- `mode: llm`: the caption plus mask statistics (mean area, frames present, first and last box,
  distance travelled), for a text model;
- `mode: vlm`: the caption plus `num_frames` frames with the mask outlined (needs `clips`), as one
  video with the frames' time stamps to a backend that takes video, else as separate images.
`accept_rule: verdict` accepts when the model says accept and its score reaches `min_score`;
`accept_rule: score` accepts on the score alone (the tiny profile uses it with `min_score: 0`,
so random weights still hand the Refiner work).
A rejected object keeps its `reviews` row (verdict reject) AND gets a rejection row
`review_rejected`; the Refiner only sees accepted objects. Other rejections: `no_caption`, the
frame and mask reasons of the Annotator (vlm mode), and the answer failures of agents.chat_stage.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from agents.annotator import render_object_frames
from agents.base import Batch, StageOutput
from agents.chat_stage import Ask, ChatStage, ChatStageConfig
from schemas import ReviewRow, mask_area, mask_box, stable_id


class ReviewAnswer(BaseModel):
    verdict: Literal["accept", "reject"]
    score: float = Field(ge=0, le=1)
    reason: str = Field(min_length=1, max_length=300)


class ReviewerConfig(ChatStageConfig):
    prompt: str = "reviewer.v1"
    mode: Literal["llm", "vlm"] = "llm"
    accept_rule: Literal["verdict", "score"] = "verdict"
    min_score: float = Field(0.5, ge=0, le=1)
    num_frames: int = Field(4, ge=1, le=32, description="vlm mode: frames per object")
    max_side: int = Field(448, ge=28)


class MaskReviewer(ChatStage):
    name = "reviewer"
    config_model = ReviewerConfig
    reads = ("objects", "captions")
    writes = ("reviews",)
    version = "1"
    config: ReviewerConfig

    @classmethod
    def reads_for(cls, config: ReviewerConfig) -> tuple[str, ...]:
        return ("clips", *cls.reads) if config.mode == "vlm" else cls.reads

    def process_batch(self, batch: Batch) -> StageOutput:
        out = StageOutput()
        captions = object_captions(batch.rows("captions"))
        clips = {c.clip_id: c for c in batch.clips} if self.config.mode == "vlm" else {}
        # One clip's asks go out while the next clip's mask statistics (or frames) are prepared.
        groups = (self._clip_asks(batch, clips.get(clip_id), objects, captions, out)
                  for clip_id, objects in batch.by_clip("objects").items())
        for ask, result in self.ask_as_built(groups, out):
            self._verdict(ask, result, out)
        return out

    def _clip_asks(self, batch: Batch, clip, objects, captions, out: StageOutput) -> list[Ask]:
        """One clip's asks: an object without a caption is a rejection, the others are reviewed."""
        for obj in objects:
            if obj.object_id not in captions:
                out.reject(self.name, obj.object_id, "no_caption", "no object caption to review", obj.clip_id)
        objects = [obj for obj in objects if obj.object_id in captions]
        images = {}
        if self.config.mode == "vlm" and objects:
            if clip is None:
                for obj in objects:
                    out.reject(self.name, obj.object_id, "clip_missing", "vlm review needs the clip", obj.clip_id)
                return []
            images = render_object_frames(batch, clip, objects, self.config.num_frames, "contour",
                                          self.config.max_side, self.name, out)
        asks = []
        for obj in objects:
            if self.config.mode == "vlm" and obj.object_id not in images:
                continue  # rejected while rendering
            caption = captions[obj.object_id]
            visual = self.visual([images[obj.object_id][1]]) if self.config.mode == "vlm" else {}
            stats = mask_statistics(obj) if self.config.mode == "llm" else None
            messages = self.prompt.messages(**visual, label=obj.label, caption=caption.text, stats=stats)
            asks.append(Ask(obj.object_id, obj.clip_id, self.request(messages, ReviewAnswer), (obj, caption)))
        return asks

    def _verdict(self, ask: Ask, result, out: StageOutput) -> None:
        obj, caption = ask.context
        answer: ReviewAnswer = result.parsed
        passes = answer.score >= self.config.min_score
        accept = passes if self.config.accept_rule == "score" else passes and answer.verdict == "accept"
        reason = answer.reason.strip() or "-"
        if answer.verdict == "accept" and not accept:
            reason = f"score {answer.score:.2f} below {self.config.min_score:.2f}: {reason}"
        out.add("reviews", ReviewRow.build(
            self.lineage(result, f"+{self.config.mode}" + (self.media if self.config.mode == "vlm" else "")),
            review_id=stable_id("review", obj.object_id, caption.caption_id), clip_id=obj.clip_id,
            object_id=obj.object_id, caption_id=caption.caption_id,
            verdict="accept" if accept else "reject", score=answer.score, reason=reason,
        ))
        if accept:
            out.counters["accepted"] += 1
        else:
            out.reject(self.name, obj.object_id, "review_rejected", reason, obj.clip_id)


def object_captions(rows) -> dict:
    """object_id -> the caption to review: detailed if there is one, else short."""
    chosen = {}
    for row in rows:
        if row.object_id is None or row.kind not in ("object_detailed", "object_short"):
            continue
        current = chosen.get(row.object_id)
        if current is None or (current.kind == "object_short" and row.kind == "object_detailed"):
            chosen[row.object_id] = row
    return chosen


def mask_statistics(obj) -> dict:
    height, width = obj.masks[0].size
    areas = np.array([mask_area(m) for m in obj.masks], dtype=float)
    boxes = [mask_box(m) for m in obj.masks]
    present = [b for b, a in zip(boxes, areas, strict=False) if a > 0] or boxes
    centres = np.array([((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in present])
    travel = float(np.linalg.norm(np.diff(centres, axis=0), axis=1).sum()) if len(centres) > 1 else 0.0
    return {
        "frames": len(obj.masks),
        "present": int((areas > 0).sum()),
        "area_pct": 100.0 * float(areas.mean()) / (height * width),
        "first_box": [round(v) for v in present[0]],
        "last_box": [round(v) for v in present[-1]],
        "travel_px": round(travel),
    }
