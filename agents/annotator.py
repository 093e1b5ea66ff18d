"""Annotator: per tracked object, a VLM caption of its appearance and motion.

Reads `clips` and `objects`, writes `captions` (kinds `object_detailed` and `object_short`).
For each object, `num_frames` of its mask frames (evenly spaced) are decoded, rendered with the
configured visual prompt (`spotlight`, `trails` or `contour`, see agents.visual_prompts) and sent
with the prompt: as one video with the frames' time stamps to a backend that takes video (Qwen-VL
local or in vLLM), else as separate images. As in MotionSight, the visual prompt is drawn on every
frame and the drawn frames are the video the model watches (not images beside it), so the model
sees the spotlight or the trail move with the object along the clip's time axis. The prompt kind
is part of the config fingerprint and of each row's `prompt_version`
(`annotator.v1@<hash>+spotlight+video`). `save_prompt_frames` writes the rendered frames as PNGs
(`<folder>/<clip_id>/<object_id>_<frame>.png`) for inspection.

Rejections: `clip_missing` (object whose clip is not in the shard), the video reasons of
agents.video (`truncated_video`, ...), `bad_mask` / `mask_size_mismatch` (undecodable masks or
masks of another size than the clip), `empty_mask` (no mask pixels in the sampled frames), and
the answer failures of agents.chat_stage. With the tiny profile the captions are noise from
random weights; schema-guided decoding makes them parse, so the stage produces rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from agents.base import Batch, StageOutput
from agents.chat_stage import Ask, ChatStage, ChatStageConfig, FrameSequence
from agents.visual_prompts import PromptKind, blur_windows, render, to_image
from schemas import CaptionRow, decode_mask, stable_id

PROMPT_HELP = {
    "spotlight": "everything but the object's region is darkened",
    "trails": "each frame blends in the moments just before it, so motion leaves a short trail",
    "contour": "the object is outlined in red",
}


class AnnotatorAnswer(BaseModel):
    detailed: str = Field(min_length=1, max_length=600)
    short: str = Field(min_length=1, max_length=120)


class AnnotatorConfig(ChatStageConfig):
    prompt: str = "annotator.v1"
    visual_prompt: PromptKind = "spotlight"
    num_frames: int = Field(4, ge=1, le=32, description="frames per object sent to the VLM")
    max_side: int = Field(448, ge=28, description="frames are downscaled to this longest side")
    save_prompt_frames: str | None = Field(None, description="folder for rendered prompt frames")


class ObjectAnnotator(ChatStage):
    name = "annotator"
    config_model = AnnotatorConfig
    reads = ("clips", "objects")
    writes = ("captions",)
    version = "1"
    config: AnnotatorConfig

    def process_batch(self, batch: Batch) -> StageOutput:
        out = StageOutput()
        for ask, result in self.ask_as_built(self._asks_per_clip(batch, out), out):
            obj = ask.context
            for position, (kind, text) in enumerate(
                (("object_detailed", result.parsed.detailed), ("object_short", result.parsed.short))
            ):
                lineage = self.lineage(result if position == 0 else None, f"+{self.config.visual_prompt}{self.media}")
                out.add("captions", CaptionRow.build(
                    lineage, caption_id=stable_id("caption", obj.object_id, kind), clip_id=obj.clip_id,
                    object_id=obj.object_id, kind=kind, text=text.strip() or "-", source=self.name,
                ))
        return out

    def _asks_per_clip(self, batch: Batch, out: StageOutput) -> Iterator[list[Ask]]:
        """Each clip's asks as soon as its frames are drawn (its requests leave while the next
        clip is decoded)."""
        clips = {c.clip_id: c for c in batch.clips}
        for clip_id, objects in batch.by_clip("objects").items():
            clip = clips.get(clip_id)
            if clip is None:
                for obj in objects:
                    out.reject(self.name, obj.object_id, "clip_missing", "object's clip is not in the shard", clip_id)
                continue
            yield self._asks_for_clip(batch, clip, objects, out)

    def _asks_for_clip(self, batch: Batch, clip, objects, out: StageOutput) -> list[Ask]:
        cfg = self.config
        shown = render_object_frames(batch, clip, objects, cfg.num_frames, cfg.visual_prompt, cfg.max_side,
                                     self.name, out)
        asks = []
        for obj in objects:
            if obj.object_id not in shown:
                continue
            frame_numbers, frames = shown[obj.object_id]
            if cfg.save_prompt_frames:
                save_frames(Path(cfg.save_prompt_frames), obj, frame_numbers, frames.frames)
            messages = self.prompt.messages(
                **self.visual([frames]), num_frames=len(frame_numbers), label=obj.label,
                visual_prompt_help=PROMPT_HELP[cfg.visual_prompt],
            )
            asks.append(Ask(obj.object_id, obj.clip_id, self.request(messages, AnnotatorAnswer), obj))
        return asks


def render_object_frames(
    batch: Batch, clip, objects, num_frames: int, kind: PromptKind, max_side: int, stage: str, out: StageOutput
) -> dict[str, tuple[list[int], FrameSequence]]:
    """object_id -> (clip frame numbers, the frames with the visual prompt drawn as PIL images and
    their time stamps); objects whose frames or masks cannot be used are rejection rows instead."""
    from agents.video import VideoError

    picks = {o.object_id: sample(o.frame_indices, num_frames) for o in objects}
    wanted = sorted({clip_frame for chosen in picks.values() for _, clip_frame in chosen})
    if kind == "trails":  # the blur needs the consecutive frames before each shown frame
        wanted = sorted({f for window in blur_windows(wanted) for f in window})
    try:
        frames = batch.read_frames(clip, wanted)
        times = dict(zip(wanted, batch.frame_times(clip, wanted), strict=True))
    except Exception as err:  # read_frames maps decode errors; opening a non-video raises PyAV's own
        reason = err.reason if isinstance(err, VideoError) else "decode_error"
        for obj in objects:
            out.reject(stage, obj.object_id, reason, f"{type(err).__name__}: {err}", clip.clip_id)
        return {}
    by_index = dict(zip(wanted, frames, strict=False))
    shown = {}
    for obj in objects:
        chosen = picks[obj.object_id]
        try:
            masks = np.stack([decode_mask(obj.masks[position]) for position, _ in chosen])
        except Exception as err:  # corrupt RLE from upstream: this object only
            out.reject(stage, obj.object_id, "bad_mask", f"{type(err).__name__}: {err}", clip.clip_id)
            continue
        if masks.shape[1:] != frames.shape[1:3]:
            detail = f"masks {masks.shape[1:]} but frames {frames.shape[1:3]}"
            out.reject(stage, obj.object_id, "mask_size_mismatch", detail, clip.clip_id)
            continue
        if not masks.any():
            out.reject(stage, obj.object_id, "empty_mask", "no mask pixels in the sampled frames", clip.clip_id)
            continue
        windows = ([np.stack([by_index[w] for w in window]) for window in blur_windows([f for _, f in chosen])]
                   if kind == "trails" else None)
        drawn = render(kind, np.stack([by_index[f] for _, f in chosen]), masks, windows)
        numbers = [f for _, f in chosen]
        shown[obj.object_id] = (numbers, FrameSequence([to_image(frame, max_side) for frame in drawn],
                                                       [times[f] for f in numbers]))
    return shown



def save_frames(root: Path, obj, frame_numbers: list[int], images) -> None:
    folder = root / obj.clip_id
    folder.mkdir(parents=True, exist_ok=True)
    for image, number in zip(images, frame_numbers, strict=False):
        image.save(folder / f"{obj.object_id}_{number:05d}.png")


def sample(frame_indices: list[int], count: int) -> list[tuple[int, int]]:
    """`count` evenly spaced (position in the masklet, clip frame index) pairs, first and last included."""
    n = len(frame_indices)
    if n <= count:
        positions = list(range(n))
    else:
        positions = sorted({round(i * (n - 1) / (count - 1)) for i in range(count)}) if count > 1 else [n // 2]
    return [(p, int(frame_indices[p])) for p in positions]
