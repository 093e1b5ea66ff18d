"""Visual prompts: how a masklet is shown to a VLM.

- `spotlight` (MotionSight): the frame darkened ~90% toward black, except the union box of the
  tracked objects padded ~20 px, which keeps its original pixels. The box follows the objects
  but is only recomputed when they leave it, so the lit region does not jitter frame to frame.
- `trails` (MotionSight's "motion blur"): each shown frame blended with the ~7 CONSECUTIVE video
  frames before it, with exponentially decaying weights (decay ~0.65), so motion leaves a short
  visible trail (a fraction of a second, not the seconds between sampled frames). The caller reads
  those windows (`blur_windows` says which frames) and passes them as `windows`. MotionSight uses
  it for camera motion; object-level prompts use the spotlight.
- `contour` (VideoRefer style): the mask outline drawn on the frame.

All take (T, H, W, 3) uint8 frames and (T, H, W) boolean masks aligned with them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

PromptKind = Literal["spotlight", "trails", "contour"]


HISTORY = 7
DECAY = 0.65


def render(kind: PromptKind, frames: np.ndarray, masks: np.ndarray, windows: list[np.ndarray] | None = None) -> np.ndarray:
    """`windows` (trails only): for each frame, a (K, H, W, 3) array of the consecutive video frames
    that end with it, oldest first (see `blur_windows`)."""
    if kind == "spotlight":
        return spotlight(frames, masks)
    if kind == "trails":
        if windows is None:
            raise ValueError("the trails prompt needs the consecutive frames before each frame (windows)")
        return np.stack([motion_blur(window) for window in windows])
    if kind == "contour":
        return contour_overlay(frames, masks)
    raise ValueError(f"unknown visual prompt {kind!r}")


def spotlight(frames: np.ndarray, masks: np.ndarray, pad: int = 20, dim: float = 0.9) -> np.ndarray:
    out = (frames.astype(np.float32) * (1.0 - dim)).astype(np.uint8)
    height, width = frames.shape[1:3]
    lit: tuple[int, int, int, int] | None = None
    for t in range(len(frames)):
        box = _box(masks[t])
        if box is None:
            continue  # object absent: keep the last lit region, if any
        if lit is None or not _inside(box, lit):
            x0, y0, x1, y1 = box
            lit = (max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad))
        if lit is not None:
            x0, y0, x1, y1 = lit
            out[t, y0:y1, x0:x1] = frames[t, y0:y1, x0:x1]
    return out


def blur_windows(targets: list[int], history: int = HISTORY, first: int = 0) -> list[list[int]]:
    """For each target frame, the consecutive frame numbers t-history..t (not before `first`)."""
    return [list(range(max(first, t - history), t + 1)) for t in targets]


def motion_blur(window: np.ndarray, decay: float = DECAY) -> np.ndarray:
    """One blurred frame from consecutive frames (oldest first): the newest weighs 1, the one before
    it `decay`, then decay**2, ..., normalised by the weights used."""
    data = window.astype(np.float32)[::-1]  # newest first
    weights = decay ** np.arange(len(data), dtype=np.float32)
    return np.clip(np.tensordot(weights, data, axes=1) / weights.sum() + 0.5, 0, 255).astype(np.uint8)


def motion_trails(frames: np.ndarray, history: int = HISTORY, decay: float = DECAY) -> np.ndarray:
    """Every frame of a run of CONSECUTIVE frames blurred with up to `history` frames before it:
    frame t = sum over k <= history of decay**k * frame[t-k], normalised by the weights used."""
    data = frames.astype(np.float32)
    out = np.empty_like(data)
    for t in range(len(frames)):
        depth = min(history, t)
        weights = decay ** np.arange(depth + 1, dtype=np.float32)
        stack = data[t - depth : t + 1][::-1]  # newest first
        out[t] = np.tensordot(weights, stack, axes=1) / weights.sum()
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def contour_overlay(
    frames: np.ndarray, masks: np.ndarray, color: tuple[int, int, int] = (255, 0, 0), thickness: int = 2
) -> np.ndarray:
    import cv2

    out = frames.copy()
    for t in range(len(frames)):
        contours, _ = cv2.findContours(masks[t].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        frame = np.ascontiguousarray(out[t])
        cv2.drawContours(frame, contours, -1, color, thickness)
        out[t] = frame
    return out


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _inside(box: tuple[int, int, int, int], region: tuple[int, int, int, int]) -> bool:
    return box[0] >= region[0] and box[1] >= region[1] and box[2] <= region[2] and box[3] <= region[3]


def to_image(frame: np.ndarray, max_side: int):
    """A frame as a PIL image, downscaled so its longest side is at most `max_side`."""
    from PIL import Image

    image = Image.fromarray(frame)
    scale = max_side / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    return image
