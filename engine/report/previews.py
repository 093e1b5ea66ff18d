"""Animated clip previews: the clip's frames with each object's mask tinted and labelled (WebP)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from schemas import decode_mask

COLOURS = [(255, 64, 64), (64, 160, 255), (80, 220, 100), (255, 200, 40), (200, 90, 255), (255, 140, 60),
           (40, 220, 220), (255, 110, 200)]
MAX_FRAMES = 24
MAX_WIDTH = 320
ALPHA = 0.45


def resolve_video(root: Path, video_path: str) -> Path:
    path = Path(video_path)
    return path if path.is_absolute() else root / path


def preview_frames(clip: dict, max_frames: int = MAX_FRAMES) -> list[int]:
    """Evenly spread frames of the clip's sampling plan, so previews stay small."""
    plan = sorted(set(clip["frame_indices"] or range(clip["num_frames"])))
    if len(plan) <= max_frames:
        return plan
    picks = np.linspace(0, len(plan) - 1, max_frames).round().astype(int)
    return [plan[i] for i in sorted(set(picks))]


def write_preview(root: Path, clip: dict, objects: list[dict], path: Path) -> None:
    """Decode the chosen frames, overlay masks and labels, save an animated WebP.

    Raises agents.video.VideoError (or OSError) when the video cannot be read; the caller records it.
    """

    from agents.video import read_clip_frames

    indices = preview_frames(clip)
    frames = read_clip_frames(resolve_video(root, clip["video_path"]), clip["fps"], clip["num_frames"],
                              clip["frame_indices"], start=clip["start"], indices=indices)
    images = [_annotate(frame, index, objects) for frame, index in zip(frames, indices, strict=True)]
    step = (indices[-1] - indices[0]) / max(len(indices) - 1, 1) if len(indices) > 1 else 1
    duration = int(1000 * max(step, 1) / clip["fps"])
    images[0].save(path, format="WEBP", save_all=True, append_images=images[1:], duration=max(duration, 40),
                   loop=0, quality=70, method=4)


def _annotate(frame: np.ndarray, index: int, objects: list[dict]):
    from PIL import Image, ImageDraw

    canvas = frame.astype(np.float32)
    labels = []
    for k, obj in enumerate(objects):
        mask = _mask_at(obj, index)
        if mask is None or mask.shape != frame.shape[:2] or not mask.any():
            continue
        colour = np.array(COLOURS[k % len(COLOURS)], np.float32)
        canvas[mask] = canvas[mask] * (1 - ALPHA) + colour * ALPHA
        ys, xs = np.nonzero(mask)
        labels.append((int(xs.min()), int(ys.min()), obj["label"], COLOURS[k % len(COLOURS)]))
    image = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    if image.width > MAX_WIDTH:
        scale = MAX_WIDTH / image.width
        image = image.resize((MAX_WIDTH, max(2, round(image.height * scale))), Image.BILINEAR)
        labels = [(round(x * scale), round(y * scale), text, c) for x, y, text, c in labels]
    draw = ImageDraw.Draw(image)
    for x, y, text, colour in labels:
        top = max(0, y - 11)
        box = draw.textbbox((x + 2, top), text)
        draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=(0, 0, 0))
        draw.text((x + 2, top), text, fill=colour)
    return image


def _mask_at(obj: dict, index: int) -> np.ndarray | None:
    try:
        position = obj["frame_indices"].index(index)
    except ValueError:
        return None
    return decode_mask(obj["masks"][position])
