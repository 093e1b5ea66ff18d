"""Scene splitting: shots from PySceneDetect, long shots cut into windows, optional clip files.

A clip is a reference (video, first frame, end frame); nothing is re-encoded unless the caller
asks for clip files (`materialize`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="split videos into shots; off = one clip per item")
    detector: Literal["content", "adaptive"] = Field("content", description="PySceneDetect detector")
    threshold: float = Field(27.0, gt=0, description="detector threshold (ContentDetector default 27)")
    min_shot_frames: int = Field(8, ge=1, description="no two cuts closer than this")
    max_clip_seconds: float | None = Field(60.0, gt=0, description="longer shots are cut into windows")


@dataclass(frozen=True)
class Span:
    """Frames [start_frame, end_frame) of a video at `fps`."""

    start_frame: int
    end_frame: int
    fps: float

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame

    @property
    def start(self) -> float:
        return self.start_frame / self.fps

    @property
    def end(self) -> float:
        return self.end_frame / self.fps

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


DETECT_WIDTH = 256  # the longer side of the frames the detector sees (PySceneDetect's own default)
FrameTap = Callable[[int, Any, int], None]  # (frame index, BGR array, display rotation)


def detect_shots(path: str | Path, config: SplitConfig, first: int = 0, last: int | None = None,
                 tap: FrameTap | None = None) -> tuple[list[Span], int]:
    """Shots of frames [first, last) (default: the whole video) and the number of frames read.
    `tap` sees every decoded frame on the way to the detector, so the caller needs no second decode."""
    from scenedetect import AdaptiveDetector, ContentDetector, SceneManager

    video = _tapped_stream(path, tap, first)
    fps = float(video.frame_rate)
    if first:
        video.seek(first)
    if config.detector == "adaptive":
        # Scaled so the two defaults coincide: content 27 <-> adaptive 3.
        detector = AdaptiveDetector(adaptive_threshold=config.threshold / 9.0, min_scene_len=config.min_shot_frames)
    else:
        detector = ContentDetector(threshold=config.threshold, min_scene_len=config.min_shot_frames)
    manager = SceneManager()
    manager.auto_downscale, manager.downscale = False, 1  # the stream gives frames at DETECT_WIDTH
    manager.add_detector(detector)
    manager.detect_scenes(video, end_time=last)
    shots = [Span(a.frame_num, b.frame_num, fps) for a, b in manager.get_scene_list(start_in_scene=True)]
    frames_read = shots[-1].end_frame if shots else 0
    return shots, frames_read


def _tapped_stream(path: str | Path, tap: FrameTap | None, first: int):
    """PySceneDetect's PyAV stream, giving the detector frames already scaled to its working size
    (PyAV scales and converts in one step) and handing each one to `tap` as it is read."""
    from scenedetect.backends.pyav import VideoStreamAv

    class TappedStream(VideoStreamAv):
        position_index = first

        @property
        def frame_size(self) -> tuple[int, int]:
            width, height = super().frame_size
            scale = min(1.0, DETECT_WIDTH / max(width, height))
            return max(1, round(width * scale)), max(1, round(height * scale))

        def read(self, decode: bool = True):
            if super().read(decode=False) is False:
                return False
            index, self.position_index = self.position_index, self.position_index + 1
            if not decode and tap is None:
                return True
            width, height = self.frame_size
            frame = self._frame.to_ndarray(format="bgr24", width=width, height=height)
            if tap is not None:
                tap(index, frame, int(self._frame.rotation or 0))
            return frame if decode else True

    return TappedStream(str(path), threading_mode="AUTO")


def cut_windows(shots: list[Span], max_seconds: float | None) -> list[Span]:
    """Cut each shot longer than `max_seconds` into equal windows no longer than it.

    Equal windows rather than fixed ones followed by a remainder: a 61 s shot becomes two
    30.5 s clips, not a 60 s clip and a 1 s scrap the duration filter would throw away.
    """
    if max_seconds is None:
        return list(shots)
    out: list[Span] = []
    for shot in shots:
        pieces = max(1, math.ceil(shot.duration / max_seconds - 1e-9))
        edges = [shot.start_frame + round(i * shot.num_frames / pieces) for i in range(pieces + 1)]
        out.extend(Span(a, b, shot.fps) for a, b in zip(edges, edges[1:], strict=False) if b > a)
    return out


def materialize(path: str | Path, span: Span, out_path: str | Path) -> str:
    """Write frames [span.start_frame, span.end_frame) of `path` as an H.264 clip file."""
    import av

    from agents.video import VideoError, write_video

    def frames():
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for position, frame in enumerate(container.decode(stream)):
                if position >= span.end_frame:
                    return
                if position >= span.start_frame:
                    yield frame.to_ndarray(format="rgb24")

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial.mp4")
    try:
        write_video(partial, frames(), span.fps)
    except StopIteration:
        raise VideoError("truncated_video", f"no frames in {span.start:.2f}-{span.end:.2f} s of {Path(path).name}") from None
    partial.replace(out_path)  # a crash never leaves a half-written clip under the final name
    return str(out_path)
