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


class ContentScore:
    """PySceneDetect's ContentDetector with its default weights (mean absolute change of hue,
    saturation and value between consecutive frames, no edges), the score computed by OpenCV in
    one pass per frame (`absdiff` + per-channel sums, exact integer sums as PySceneDetect's numpy
    int32 copies give them); cuts come from PySceneDetect's own FlashFilter, as in the detector.
    The numpy copies of each channel were most of the detector's time."""

    def __init__(self, threshold: float, min_scene_len: int):
        from scenedetect.detector import FlashFilter

        self.threshold = threshold
        self.flash = FlashFilter(mode=FlashFilter.Mode.MERGE, length=min_scene_len)
        self.last = None

    def score(self, bgr) -> float:
        import cv2

        hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
        last, self.last = self.last, hsv
        if last is None:
            return 0.0
        pixels = float(hsv.shape[0] * hsv.shape[1])
        hue, sat, lum = cv2.sumElems(cv2.absdiff(hsv, last))[:3]
        return (hue / pixels + sat / pixels + lum / pixels) / 3.0

    def process_frame(self, timecode, bgr) -> list:
        return self.flash.filter(timecode=timecode, above_threshold=self.score(bgr) >= self.threshold)

    def post_process(self, timecode) -> list:
        return []


def detect_shots(path: str | Path, config: SplitConfig, first: int = 0, last: int | None = None,
                 tap: FrameTap | None = None,
                 on_shot: Callable[[Span], None] | None = None) -> tuple[list[Span], int]:
    """Shots of frames [first, last) (default: the whole video) and the number of frames read.

    PySceneDetect's cut logic is fed from our own PyAV loop (frames scaled by PyAV to
    `DETECT_WIDTH` in the same step as the colour conversion, in a thread of their own): its
    SceneManager's reader thread and per-frame bookkeeping cost half again as much as the detector.
    `tap` sees every decoded frame, so the caller needs no second decode; `on_shot` sees each shot
    as soon as a cut closes it (the last shot only in the result)."""
    import av
    from scenedetect import AdaptiveDetector
    from scenedetect.common import FrameTimecode

    if config.detector == "adaptive":
        # Scaled so the two defaults coincide: content 27 <-> adaptive 3.
        detector = AdaptiveDetector(adaptive_threshold=config.threshold / 9.0, min_scene_len=config.min_shot_frames)
    else:
        detector = ContentScore(config.threshold, config.min_shot_frames)
    cuts: list[int] = []
    end = first
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        scale = min(1.0, DETECT_WIDTH / max(stream.codec_context.width, stream.codec_context.height))
        size = dict(width=max(1, round(stream.codec_context.width * scale)),
                    height=max(1, round(stream.codec_context.height * scale)))
        for position, image, rotation in _decode_ahead(container, stream, first, last, size):
            if tap is not None:
                tap(position, image, rotation)
            for cut in detector.process_frame(FrameTimecode(position, fps), image):
                cut = int(cut.frame_num)
                if on_shot is not None and cut > max([first, *cuts]):
                    on_shot(Span(max([first, *cuts]), cut, fps))
                cuts.append(cut)
            end = position + 1
    if end > first:
        cuts += [int(c.frame_num) for c in detector.post_process(FrameTimecode(end - 1, fps))]
    edges = [first, *sorted(c for c in set(cuts) if first < c < end), end]
    shots = [Span(a, b, fps) for a, b in zip(edges, edges[1:], strict=False) if b > a]
    return shots, end


def _decode_ahead(container, stream, first: int, last: int | None, size: dict, depth: int = 16):
    """(position, BGR image, rotation) of frames [first, last), decoded and scaled by a thread of
    their own so that decoding overlaps with the detector and the caller's tap (PyAV and OpenCV
    release the GIL). A truncated file ends the frames at the last one that decoded."""
    import queue
    import threading

    import av
    from av.video.reformatter import VideoReformatter

    frames: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    failure: list[BaseException] = []
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                frames.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        # One reformatter for the whole video: `frame.to_ndarray(width=...)` builds a new scaler per
        # frame, which cost more than decoding the frame.
        reformatter = VideoReformatter()
        try:
            for position, frame in enumerate(container.decode(stream)):
                if position < first:
                    continue
                if last is not None and position >= last:
                    break
                image = reformatter.reformat(frame, format="bgr24", **size).to_ndarray()
                if not put((position, image, int(frame.rotation or 0))):
                    return
        except av.error.FFmpegError:
            pass
        except BaseException as err:  # raised again in the caller's thread
            failure.append(err)
        finally:
            put(done)

    thread = threading.Thread(target=produce, name="decode-ahead", daemon=True)
    thread.start()
    try:
        while (item := frames.get()) is not done:
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        thread.join()


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
