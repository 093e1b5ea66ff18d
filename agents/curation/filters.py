"""Curation filters: what makes a clip worth annotating, measured on a few sampled frames.

Video-level checks (resolution, frame rate) need only the probe; clip-level checks (duration,
motion, letterbox, black frames) look at `samples` pairs of frames spread over the clip, each pair
`pair_gap_s` apart. All image measures run on grey frames scaled to `ANALYSIS_WIDTH` pixels wide.

- motion_score: mean absolute grey-level difference (0-255) within the pairs. Near zero for a
  still shot, a few units for subtle motion, tens for fast motion or camera moves.
- camera_motion: the global flow (dense Farneback) fitted as a translation plus a uniform scale
  about the centre, classified as static / pan_left / pan_right / tilt_up / tilt_down / zoom_in /
  zoom_out by whichever term moves the frame edge fastest, in frame widths per second.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

ANALYSIS_WIDTH = 160


class FilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_short_side: int | None = Field(224, ge=1, description="drop videos whose min(h, w) is smaller (MotionBench: 448)")
    min_duration: float | None = Field(2.0, gt=0, description="seconds (MotionBench: 3)")
    max_duration: float | None = Field(60.0, gt=0, description="seconds (MotionBench: 60)")
    min_fps: float | None = Field(10.0, gt=0)
    min_motion: float | None = Field(1.0, ge=0, description="drop clips whose motion_score is lower")
    max_letterbox: float | None = Field(0.2, ge=0, le=1, description="drop clips with more of the frame in bars")
    max_black_fraction: float | None = Field(0.5, ge=0, le=1, description="drop clips with more black samples")
    black_level: int = Field(24, ge=0, le=255, description="grey level under which a row or frame is black")
    camera_motion: bool = Field(True, description="estimate pan / tilt / zoom / static per clip")
    camera_static_speed: float = Field(0.03, ge=0, description="frame widths per second under which the camera is static")
    samples: int = Field(6, ge=2, description="frame pairs measured per clip")
    pair_gap_s: float = Field(0.1, gt=0, description="seconds between the two frames of a pair")


@dataclass(frozen=True)
class ClipFeatures:
    motion_score: float
    letterbox: float  # fraction of the frame area in black bars (median over samples)
    black_fraction: float  # fraction of sampled frames that are black
    camera_motion: str | None = None
    camera_flow: tuple[float, float, float] | None = None  # dx, dy (widths/s), scale rate (1/s)


def sample_pairs(start_frame: int, end_frame: int, fps: float, config: FilterConfig) -> list[tuple[int, int]]:
    """Frame index pairs spread evenly over [start_frame, end_frame)."""
    gap = max(1, round(config.pair_gap_s * fps))
    last_first = max(start_frame, end_frame - 1 - gap)
    firsts = np.linspace(start_frame, last_first, config.samples).round().astype(int)
    return [(int(a), int(min(a + gap, end_frame - 1))) for a in dict.fromkeys(firsts.tolist())]


def to_analysis_grey(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return shrink_grey(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


def shrink_grey(grey: np.ndarray) -> np.ndarray:
    """A grey frame scaled to `ANALYSIS_WIDTH` pixels wide (area averaging)."""
    import cv2

    height, width = grey.shape[:2]
    size = (ANALYSIS_WIDTH, max(2, round(height * ANALYSIS_WIDTH / width)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


def measure(pairs: list[tuple[np.ndarray, np.ndarray]], pair_gap_s: float, config: FilterConfig) -> ClipFeatures:
    """Features of one clip from its (grey, grey) frame pairs; the camera estimate (optical flow,
    the costly part) only for a clip the content filters keep."""
    firsts = [a for a, _ in pairs]
    black = [float(f.mean()) < config.black_level for f in firsts]
    lit = [f for f, is_black in zip(firsts, black, strict=False) if not is_black]
    motion = float(np.mean([np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() for a, b in pairs]))
    letterbox = float(np.median([bar_fraction(f, config.black_level) for f in lit])) if lit else 1.0
    features = ClipFeatures(round(motion, 4), round(letterbox, 4), sum(black) / len(black))
    if config.camera_motion and check_content(features, config) is None:  # a dropped clip needs no flow
        label, flow = camera_motion(pairs, pair_gap_s, config.camera_static_speed)
        features = replace(features, camera_motion=label, camera_flow=flow)
    return features


def bar_fraction(grey: np.ndarray, black_level: int) -> float:
    """Fraction of the frame covered by uniform dark bars at its edges (letterbox or pillarbox)."""
    def run(means: np.ndarray, spreads: np.ndarray) -> int:
        dark = (means < black_level) & (spreads < 6)
        return int(np.argmin(dark)) if not dark.all() else len(dark)

    rows_mean, rows_std = grey.mean(axis=1), grey.std(axis=1)
    cols_mean, cols_std = grey.mean(axis=0), grey.std(axis=0)
    height, width = grey.shape
    rows = run(rows_mean, rows_std) + run(rows_mean[::-1], rows_std[::-1])
    cols = run(cols_mean, cols_std) + run(cols_mean[::-1], cols_std[::-1])
    return min(1.0, rows / height + cols / width)


# The estimate's labels in words (prompts, and the answers of measured camera questions).
CAMERA_WORDS = {
    "static": "the camera stays still", "pan_left": "the camera pans left", "pan_right": "the camera pans right",
    "tilt_up": "the camera tilts up", "tilt_down": "the camera tilts down", "zoom_in": "the camera zooms in",
    "zoom_out": "the camera zooms out",
}


def camera_motion(pairs, pair_gap_s: float, static_speed: float) -> tuple[str, tuple[float, float, float]]:
    """Global motion: flow fitted as u = dx + s*x, v = dy + s*y (x, y centred), in widths/s."""
    import cv2

    fits = []
    for a, b in pairs:
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        height, width = a.shape
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        xs -= (width - 1) / 2
        ys -= (height - 1) / 2
        u, v = flow[..., 0], flow[..., 1]
        scale = float((u * xs + v * ys).sum() / (xs * xs + ys * ys).sum())
        fits.append((float(np.median(u)) / width, float(np.median(v)) / width, scale))
    dx, dy, scale = (float(np.median(c)) / pair_gap_s for c in zip(*fits, strict=False))
    # Compare like with like: a scale rate s moves the frame's side edges by s/2 widths per second.
    speeds = {"pan": abs(dx), "tilt": abs(dy), "zoom": abs(scale) / 2}
    kind = max(speeds, key=speeds.get)
    if speeds[kind] < static_speed:
        label = "static"
    elif kind == "pan":
        label = "pan_right" if dx < 0 else "pan_left"  # the scene slides opposite to the camera
    elif kind == "tilt":
        label = "tilt_down" if dy < 0 else "tilt_up"
    else:
        label = "zoom_in" if scale > 0 else "zoom_out"
    return label, (round(dx, 4), round(dy, 4), round(scale, 4))


def check_video(width: int, height: int, fps: float, config: FilterConfig) -> tuple[str, str] | None:
    """Video-level rejection (reason, detail), or None to keep going."""
    if config.min_short_side and min(width, height) < config.min_short_side:
        return "too_small", f"{width}x{height}: short side under {config.min_short_side}"
    if config.min_fps and fps < config.min_fps:
        return "low_fps", f"{fps:.2f} fps under {config.min_fps}"
    return None


def check_duration(duration: float, config: FilterConfig) -> tuple[str, str] | None:
    if config.min_duration and duration < config.min_duration:
        return "too_short", f"{duration:.2f} s under {config.min_duration} s"
    if config.max_duration and duration > config.max_duration:
        return "too_long", f"{duration:.2f} s over {config.max_duration} s"
    return None


def check_content(features: ClipFeatures, config: FilterConfig) -> tuple[str, str] | None:
    if config.max_black_fraction is not None and features.black_fraction > config.max_black_fraction:
        return "black_frames", f"{features.black_fraction:.0%} of sampled frames are black"
    if config.max_letterbox is not None and features.letterbox > config.max_letterbox:
        return "letterboxed", f"{features.letterbox:.0%} of the frame is black bars"
    if config.min_motion is not None and features.motion_score < config.min_motion:
        return "static_clip", f"motion_score {features.motion_score:.3f} under {config.min_motion}"
    return None
