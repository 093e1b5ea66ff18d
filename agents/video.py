"""Video I/O with PyAV: probing, decoding chosen frames, writing H.264 mp4.

Real files as they come: a display matrix (phone videos shot in portrait) is honoured, so every
decoded frame is upright and `VideoInfo.width` / `height` are the upright size (masks made from
these frames are in upright coordinates). Variable-frame-rate video is accepted: the probe keeps
each frame's presentation time (`VideoInfo.timestamps`) so that sampling can be decided by time,
not by frame count; `fps` is then the mean rate (frames / duration).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int  # upright: after the display rotation
    height: int
    duration: float
    rotation: int = 0  # degrees counter-clockwise the decoded frames are turned to stand upright
    timestamps: tuple[float, ...] | None = None  # seconds from the first frame, variable-rate video only

    @property
    def variable_rate(self) -> bool:
        return self.timestamps is not None


# Frame intervals that differ by more than this fraction from the median make a video variable-rate.
VFR_TOLERANCE = 0.1


class VideoError(Exception):
    """A file that is not a usable video; `reason` is a rejection code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def probe(path: str | Path, count_frames: bool = True) -> VideoInfo:
    """Open a video and read its size, rate and length; raise VideoError with a reason code.

    With count_frames the stream is demuxed packet by packet (cheap, no decoding), since
    container frame counts are often missing or wrong, and the last packet is decoded so a
    truncated file is caught here rather than in a GPU stage.
    """
    import av

    path = Path(path)
    if not path.exists():
        raise VideoError("source_missing", f"{path} does not exist")
    if path.stat().st_size == 0:
        raise VideoError("empty_file", f"{path.name} is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except av.error.InvalidDataError as err:
        if _looks_like_video(path):
            raise VideoError("truncated_video", f"{path.name} has a video header but cannot be opened (cut short?): {err.strerror}") from None
        raise VideoError("not_a_video", f"{path.name} is not a video container ({err.strerror})") from None
    except av.error.FFmpegError as err:
        raise VideoError("decode_error", f"{path.name}: {err}") from None
    with container:
        if not container.streams.video:
            raise VideoError("no_video_stream", f"{path.name} has no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
        width, height = stream.codec_context.width, stream.codec_context.height
        if count_frames:
            num_frames, rotation, times = _count_decodable(container, stream)
        else:
            num_frames, rotation, times = int(stream.frames or 0), _first_rotation(container, stream), []
    if width <= 0 or height <= 0 or fps <= 0:
        raise VideoError("decode_error", f"{path.name}: no frame size or frame rate in the stream")
    if num_frames < 2:
        raise VideoError("too_few_frames", f"{path.name} has {num_frames} decodable frame(s); need 2")
    if rotation % 180:
        width, height = height, width
    timestamps = variable_timestamps(times)
    if timestamps is not None:
        duration = timestamps[-1] + (timestamps[-1] - timestamps[0]) / (len(timestamps) - 1)
        return VideoInfo(num_frames, num_frames / duration, width, height, duration, rotation, timestamps)
    return VideoInfo(num_frames, fps, width, height, num_frames / fps, rotation)


def variable_timestamps(times: list[float]) -> tuple[float, ...] | None:
    """Frame times from the first frame when the intervals vary (variable frame rate), else None."""
    if len(times) < 3:
        return None
    ordered = np.sort(np.asarray(times, dtype=np.float64))
    gaps = np.diff(ordered)
    median = float(np.median(gaps))
    if median <= 0 or np.all(np.abs(gaps - median) <= VFR_TOLERANCE * median):
        return None
    return tuple(round(float(t - ordered[0]), 6) for t in ordered)


def upright(array: np.ndarray, rotation: int) -> np.ndarray:
    """A decoded frame turned by its display rotation (degrees counter-clockwise)."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(array, turns)) if turns else array


def _first_rotation(container, stream) -> int:
    import av

    try:
        for frame in container.decode(stream):
            return int(frame.rotation or 0)
    except av.error.FFmpegError:
        pass
    return 0


_SIGNATURES = (b"ftyp", b"\x1a\x45\xdf\xa3", b"RIFF", b"\x00\x00\x01\xba", b"OggS")


def _looks_like_video(path: Path) -> bool:
    """A known container signature at the start: the file is a video that got damaged."""
    with open(path, "rb") as handle:
        head = handle.read(12)
    return head[4:8] == b"ftyp" or any(head.startswith(sig) for sig in _SIGNATURES[1:])


def _count_decodable(container, stream) -> tuple[int, int, list[float]]:
    """Decodable frames, the display rotation of the first, and every frame's time in seconds."""
    import av

    count, rotation, times = 0, 0, []
    try:
        for frame in container.decode(stream):
            if count == 0:
                rotation = int(frame.rotation or 0)
            if frame.time is not None:
                times.append(float(frame.time))
            count += 1
            del frame
    except av.error.FFmpegError as err:
        if count == 0:
            raise VideoError("truncated_video", f"no frame decodes: {err}") from None
        raise VideoError("truncated_video", f"decoding stops after {count} frames: {err}") from None
    expected = int(stream.frames or 0)
    if expected and count < expected * 0.9:
        raise VideoError("truncated_video", f"only {count} of {expected} frames decode")
    return count, rotation, times if len(times) == count else []


def read_frames(path: str | Path, indices: Sequence[int]) -> np.ndarray:
    """Decode the frames at file positions `indices` (any order, repeats allowed) as (T, H, W, 3)
    uint8 RGB, upright. Stages read clips through `read_clip_frames` (via `Batch.read_frames`)."""
    wanted = set(int(i) for i in indices)
    if not wanted:
        raise ValueError("no frame indices to read")
    found = decode_wanted(path, wanted)
    missing = sorted(i for i in wanted if i not in found)
    if missing:
        raise VideoError("truncated_video", f"frames {missing[:5]} could not be decoded from {Path(path).name}")
    return np.stack([found[int(i)] for i in indices])


def decode_wanted(path: str | Path, wanted: set[int], convert: Callable[[np.ndarray], Any] | None = None) -> dict[int, Any]:
    """Decode front to back once, keeping (converted) upright RGB arrays of the wanted frames and
    stopping after the last; frames the file cannot give are simply absent from the result."""
    import av

    found: dict[int, Any] = {}
    if not wanted:
        return found
    last = max(wanted)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for position, frame in enumerate(container.decode(stream)):
                if position in wanted:
                    array = upright(frame.to_ndarray(format="rgb24"), int(frame.rotation or 0))
                    found[position] = convert(array) if convert else array
                if position >= last:
                    break
        except av.error.FFmpegError:
            pass
    return found


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, crf: int = 18, rotation: int = 0,
                times: Sequence[float] | None = None) -> None:
    """Write RGB uint8 frames as H.264 (yuv420p) mp4. Width and height must be even. `rotation`
    (degrees counter-clockwise) is stored as the display matrix; `times` (seconds, one per frame)
    makes a variable-frame-rate file."""
    from fractions import Fraction

    import av

    frames = iter(frames)
    first = next(frames)
    height, width = first.shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        if rotation:
            stream.set_display_rotation(rotation)
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for position, array in enumerate(_chain(first, frames)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[position] * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _chain(first, rest):
    yield first
    yield from rest


def clip_frame_offset(path: str | Path, start: float | None, fps: float) -> int:
    """First frame of a clip that is a span of a longer video (0 for a whole file): found by frame
    time in a variable-frame-rate file, as ingest's span was (`agents.ingest.span_info`)."""
    if not start:
        return 0
    times = _variable_frame_times(str(path))
    if times is None:
        return int(round(start * fps))
    return int(np.searchsorted(np.asarray(times), start - 1e-6))


def _variable_frame_times(path: str) -> tuple[float, ...] | None:
    """A variable-frame-rate file's frame times (None for a constant rate or a file not here)."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return _frame_times(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _frame_times(path: str, size: int, mtime_ns: int) -> tuple[float, ...] | None:
    """From the packets' time stamps: demuxed, not decoded."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        times = [float(p.pts * p.time_base) for p in container.demux(stream) if p.pts is not None]
    return variable_timestamps(times)


def read_clip_frames(path: str | Path, fps: float, num_frames: int, frame_indices: Sequence[int], *,
                     start: float | None = None, indices: Sequence[int] | None = None) -> np.ndarray:
    """The one way a stage, the report or an export gets a clip's frames: (T, H, W, 3) uint8
    RGB, upright, by clip-relative index (default: the clip's sampling plan `frame_indices`).

    A clip that is a span of a longer video (`start` set: a manifest span or a curated window)
    counts its frames from `start`; an index outside the clip's `num_frames` is an error rather
    than a frame of the neighbouring footage."""
    wanted = [int(i) for i in (frame_indices if indices is None else indices)]
    outside = [i for i in wanted if not 0 <= i < num_frames]
    if outside:
        raise VideoError("frame_out_of_clip", f"frames {outside[:5]} are outside the clip's {num_frames} frames")
    offset = clip_frame_offset(path, start, fps)
    return read_frames(path, [offset + i for i in wanted])


def clip_frame_times(path: str | Path, fps: float, num_frames: int, indices: Sequence[int], *,
                     start: float | None = None) -> list[float]:
    """Seconds from a clip's first frame to each of its frames at clip-relative `indices`, as
    `read_clip_frames` finds them: by packet time stamps in a variable-frame-rate file (from the
    span's first frame when the clip is a span), by `index / fps` at a constant rate."""
    wanted = [int(i) for i in indices]
    outside = [i for i in wanted if not 0 <= i < num_frames]
    if outside:
        raise VideoError("frame_out_of_clip", f"frames {outside[:5]} are outside the clip's {num_frames} frames")
    times = _variable_frame_times(str(path))
    offset = clip_frame_offset(path, start, fps)
    if times is None or offset + max(wanted, default=0) >= len(times):
        return [i / fps for i in wanted]
    return [round(times[offset + i] - times[offset], 6) for i in wanted]
