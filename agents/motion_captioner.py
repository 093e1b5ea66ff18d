"""Motion captioner: a dense clip-level motion caption (kind `motion`) written by a VLM, for clips
that came without a usable caption, so that raw footage gets phrases, objects and questions.

Where it runs, and why: right after ingest (and the virtual ground truth), before the Analyzer.
The Analyzer finds the nouns to segment in a caption, so a captionless clip needs this caption
before anything can be segmented: for real footage no masks exist yet when it runs. It therefore
follows MotionSight's zero-shot visual prompting with what exists at that point:
- the motion-blur cue, always: each shown moment is the frame blended with the ~7 CONSECUTIVE video
  frames before it (decay ~0.65, agents.visual_prompts), so what moves leaves a short trail and a
  moving camera smears the whole frame;
- the object-centric spotlight, when objects of the clip already exist in the run (the virtual
  ground truth, or an objects table written by an earlier stage): the same moments with everything
  but the objects' union box darkened, sent after the blurred ones;
- the camera-motion estimate of the clip (`ClipRow.camera_motion`, from curation or ingest's
  estimate; exact for virtual scenes) in the text, as a hint the model checks against the frames.
To a backend that takes video (Qwen-VL, local or in vLLM) the blurred moments go as one video with
the moments' time stamps from the frame reader (frame times in a variable-frame-rate clip), and the
spotlit moments as a second video with the same stamps: MotionSight draws its prompts on the
video's frames and shows the model the drawn video, so the cue moves along the time axis the
model's M-RoPE positions encode. Other backends get the same frames as separate images, the times
written in the text.
A second, object-spotlit pass after the Segmentor would cost a second VLM call per clip for a
caption the Annotator already writes per object; the per-object captions cover that ground.

Which clips: `when: missing` (default) captions clips whose caption has fewer than
`min_caption_words` words; `when: always` captions every clip. Virtual clips are captioned too
(`virtual: true`) although they carry a scene description: their exact motion caption makes them
the benchmark that `eval` scores this stage on. Downstream, the Analyzer and the question writer
use these captions only where no other caption exists.

Reads `clips` (and `objects` when present); writes `captions` (kind `motion`, source
`motion_captioner`, token counts and lineage with `+blur` / `+blur+spotlight` and `+video` /
`+images` in the prompt version).
Rejections: the video reasons of agents.video (`truncated_video`, ...), `decode_error`, and the
answer failures of agents.chat_stage (`parse_failed`, `api_error`).
Example caption: "A red ball rolls from the left edge to the centre, then bounces twice; after it
stops, a blue cube slides up. The camera pans slowly right."
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from agents.base import Batch, StageOutput
from agents.chat_stage import Ask, ChatStage, ChatStageConfig, FrameSequence
from agents.curation.filters import CAMERA_WORDS
from agents.visual_prompts import blur_windows, motion_blur, spotlight, to_image
from schemas import CaptionRow, decode_mask, stable_id


class MotionCaptionAnswer(BaseModel):
    caption: str = Field(min_length=1, max_length=1200)


class MotionCaptionerConfig(ChatStageConfig):
    prompt: str = "motion_captioner.v1"
    when: Literal["missing", "always"] = Field("missing", description="caption clips without a usable caption, or all")
    virtual: bool = Field(True, description="also caption virtual clips (scored against their exact caption)")
    min_caption_words: int = Field(4, ge=1, description="a clip caption with fewer words is not usable")
    num_frames: int = Field(8, ge=1, le=32, description="moments shown, evenly spaced over the sampling plan")
    history: int = Field(7, ge=0, description="consecutive frames blended before each moment")
    decay: float = Field(0.65, gt=0, le=1, description="weight of each older frame in the blur")
    spotlight: bool = Field(True, description="add spotlit frames when the clip's objects exist")
    max_side: int = Field(448, ge=28, description="frames are downscaled to this longest side")
    max_tokens: int = Field(384, ge=16)


class MotionCaptioner(ChatStage):
    name = "motion_captioner"
    config_model = MotionCaptionerConfig
    reads = ("clips",)
    optional_reads = ("objects",)
    writes = ("captions",)
    version = "1"
    config: MotionCaptionerConfig

    def process_batch(self, batch: Batch) -> StageOutput:
        out = StageOutput()
        objects = batch.by_clip("objects")
        asks = []
        for clip in batch.clips:
            if not self.wants(clip):
                out.counters["skipped_has_caption"] += 1
                continue
            ask = self._ask(batch, clip, objects.get(clip.clip_id, []), out)
            if ask is not None:
                asks.append(ask)
        for ask, result in self.ask(asks, out):
            clip, cues = ask.context
            text = " ".join(result.parsed.caption.split())
            out.add("captions", CaptionRow.build(
                self.lineage(result, cues), caption_id=motion_caption_id(clip.clip_id), clip_id=clip.clip_id,
                object_id=None, kind="motion", text=text or "-", source=self.name,
            ))
        return out

    def wants(self, clip) -> bool:
        if clip.source == "virtual":
            return self.config.virtual
        return self.config.when == "always" or len((clip.caption or "").split()) < self.config.min_caption_words

    def _ask(self, batch: Batch, clip, objects: list, out: StageOutput) -> Ask | None:
        from agents.video import VideoError

        cfg = self.config
        targets = pick(clip.frame_indices, cfg.num_frames)
        windows = blur_windows(targets, cfg.history)
        needed = sorted({f for window in windows for f in window})
        try:
            frames = dict(zip(needed, batch.read_frames(clip, needed), strict=True))
            times = batch.frame_times(clip, targets)
        except Exception as err:  # a decode failure costs this clip only
            reason = err.reason if isinstance(err, VideoError) else "decode_error"
            out.reject(self.name, clip.clip_id, reason, f"{type(err).__name__}: {err}", clip.clip_id)
            return None
        blurred = [motion_blur(np.stack([frames[f] for f in w]), cfg.decay) for w in windows]
        lit = spotlit(np.stack([frames[t] for t in targets]), targets, objects) if cfg.spotlight else None
        cues = "+blur" + ("+spotlight" if lit is not None else "") + self.media
        shown = [FrameSequence([to_image(image, cfg.max_side) for image in drawn], times)
                 for drawn in ([blurred, list(lit)] if lit is not None else [blurred])]
        messages = self.prompt.messages(
            **self.visual(shown), num_frames=len(targets),
            spotlight=lit is not None, camera=CAMERA_WORDS.get(clip.camera_motion or "", ""),
            seconds=round(clip.duration, 1), times=[round(t, 1) for t in times],
            labels=sorted({o.label for o in objects}), caption=(clip.caption or "").strip(),
        )
        return Ask(clip.clip_id, clip.clip_id, self.request(messages, MotionCaptionAnswer), (clip, cues))


def motion_caption_id(clip_id: str) -> str:
    return stable_id("caption", clip_id, MotionCaptioner.name, "motion")


def pick(frame_indices: list[int], count: int) -> list[int]:
    """`count` evenly spaced frames of the sampling plan, first and last included."""
    n = len(frame_indices)
    if n <= count:
        return [int(f) for f in frame_indices]
    positions = np.unique(np.linspace(0, n - 1, count).round().astype(int)) if count > 1 else [n // 2]
    return [int(frame_indices[p]) for p in positions]


def spotlit(frames: np.ndarray, targets: list[int], objects: list) -> np.ndarray | None:
    """The frames spotlit on the union of the objects' masks at each target frame; None without
    objects or when no object has a mask of the clip's size at any target frame."""
    height, width = frames.shape[1:3]
    union = np.zeros((len(targets), height, width), bool)
    for obj in objects:
        at = {int(f): i for i, f in enumerate(obj.frame_indices)}
        for row, t in enumerate(targets):
            if t in at:
                mask = decode_mask(obj.masks[at[t]])
                if mask.shape == (height, width):
                    union[row] |= mask.astype(bool)
    return spotlight(frames, union) if union.any() else None

