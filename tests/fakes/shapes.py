"""Small rendered test scenes: coloured squares moving over a plain background, written as H.264
with agents.video.write_video, with exact masks as ObjectRows. Only for the agents' own tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agents.video import write_video
from schemas import ClipRow, Lineage, ObjectRow, encode_masks, mask_box, stable_id

H, W, T, FPS = 96, 128, 12, 6.0
SIDE = 20
LINEAGE = Lineage(agent="test", model="none")


def make_clip(root: Path, name: str = "clip", caption: str | None = "A red square moves right.",
              colours=((220, 40, 40),), speeds=(8,)) -> tuple[ClipRow, list[ObjectRow]]:
    """One clip with one moving square per colour; returns its ClipRow and exact ObjectRows."""
    frames = np.full((T, H, W, 3), 90, np.uint8)
    all_masks = []
    for number, (colour, speed) in enumerate(zip(colours, speeds, strict=False)):
        masks = np.zeros((T, H, W), bool)
        for t in range(T):
            x, y = 4 + speed * t, 10 + 30 * number
            masks[t, y : y + SIDE, x : x + SIDE] = True
            frames[t][masks[t]] = colour
        all_masks.append(masks)
    path = root / f"{name}.mp4"
    write_video(path, frames, FPS)
    clip_id = stable_id("clip", name)
    clip = ClipRow.build(
        LINEAGE, clip_id=clip_id, source_key=name, video_path=path.name, num_frames=T, fps=FPS, width=W,
        height=H, duration=T / FPS, source="virtual", caption=caption, frame_indices=list(range(0, T, 2)),
    )
    objects = [object_row(clip_id, f"square {n}", masks) for n, masks in enumerate(all_masks)]
    return clip, objects


def object_row(clip_id: str, label: str, masks: np.ndarray, frames: list[int] | None = None) -> ObjectRow:
    frames = frames if frames is not None else list(range(len(masks)))
    rles = encode_masks(masks[frames])
    return ObjectRow.build(
        LINEAGE, object_id=stable_id("object", clip_id, label), clip_id=clip_id, label=label,
        frame_indices=frames, masks=rles, boxes=[mask_box(r) for r in rles], score=1.0, source="virtual",
    )
