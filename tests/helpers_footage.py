"""Rendered test footage for the curation tests: segments with known content joined by hard cuts,
and decoders that misbehave, for the decode guard."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from agents.video import write_video

FPS = 24.0
WIDTH, HEIGHT = 256, 192


def texture(seed: int, width: int, height: int, tint: tuple[int, int, int]) -> np.ndarray:
    """A smooth random texture (blocky noise upsampled) in one colour family."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 8 + 2, width // 8 + 2))
    fine = np.kron(coarse, np.ones((8, 8)))[:height, :width]
    base = np.array(tint, dtype=np.float64)
    image = base[None, None, :] * (0.35 + 0.65 * fine[..., None])
    return image.clip(0, 255).astype(np.uint8)


def pan_segment(seed: int, frames: int, tint, speed: int = 3) -> list[np.ndarray]:
    """The camera pans right: a wide texture slides left by `speed` pixels a frame."""
    wide = texture(seed, WIDTH + speed * frames + 8, HEIGHT, tint)
    return [wide[:, i * speed : i * speed + WIDTH].copy() for i in range(frames)]


def object_segment(seed: int, frames: int, tint, box=40) -> list[np.ndarray]:
    """A static camera on a textured wall; a white square crosses the frame."""
    wall = texture(seed, WIDTH, HEIGHT, tint)
    out = []
    for i in range(frames):
        frame = wall.copy()
        x = int(10 + (WIDTH - box - 20) * i / max(frames - 1, 1))
        y = HEIGHT // 2 - box // 2
        frame[y : y + box, x : x + box] = 255
        out.append(frame)
    return out


def static_segment(seed: int, frames: int, tint) -> list[np.ndarray]:
    still = texture(seed, WIDTH, HEIGHT, tint)
    return [still.copy() for _ in range(frames)]


def letterbox(frames: list[np.ndarray], bar: int = 40) -> list[np.ndarray]:
    out = []
    for frame in frames:
        boxed = frame.copy()
        boxed[:bar] = 0
        boxed[-bar:] = 0
        out.append(boxed)
    return out


def black_segment(frames: int) -> list[np.ndarray]:
    return [np.zeros((HEIGHT, WIDTH, 3), np.uint8) for _ in range(frames)]


SEGMENT_FRAMES = 48  # 2 s at 24 fps


def render_long_video(path: Path) -> dict:
    """Six shots joined by hard cuts; returns the plan: cut frames and what each shot is."""
    n = SEGMENT_FRAMES
    pan = pan_segment(1, n, (200, 120, 60))
    shots = [
        ("pan", pan),
        ("object", object_segment(2, n, (60, 140, 220))),
        ("static", static_segment(3, n, (90, 200, 90))),
        ("letterboxed", letterbox(object_segment(4, n, (220, 80, 180)))),
        ("black", black_segment(n)),
        ("duplicate", [f.copy() for f in pan]),
        ("short", object_segment(5, 12, (240, 230, 90))),
    ]
    frames = [f for _, seg in shots for f in seg]
    write_video(path, frames, FPS)
    cuts, position = [], 0
    for _, seg in shots[:-1]:
        position += len(seg)
        cuts.append(position)
    return {"kinds": [k for k, _ in shots], "cuts": cuts, "num_frames": len(frames)}


def render_small_video(path: Path) -> None:
    """A 96x64 video: too small for any sensible minimum resolution."""
    write_video(path, [f[:64, :96] for f in object_segment(9, 24, (100, 100, 200))], FPS)


# Decoders that misbehave, called in the guarded worker process by their dotted name.

def hanging_decoder(*args, **kwargs):
    time.sleep(3600)


def crashing_decoder(*args, **kwargs):
    os._exit(139)  # what a segfault in native decoder code looks like from outside


# Captionless everyday footage for the raw-footage acceptance test: moving shapes on textured walls.
FOOTAGE_SIZE = (128, 96)  # width, height as encoded
FOOTAGE_FRAMES = 24
FOOTAGE_FPS = 12.0


def shapes_segment(seed: int, frames: int, width: int, height: int, pan: int = 0) -> list[np.ndarray]:
    """A red square crossing left to right and a blue bar bouncing up and down, on a texture that
    slides left by `pan` pixels a frame (the camera pans right)."""
    wall = texture(seed, width + pan * frames + 8, height, (120, 160, 110))
    out = []
    for i in range(frames):
        frame = wall[:, i * pan : i * pan + width].copy()
        x = int(6 + (width - 30) * i / max(frames - 1, 1))
        frame[height // 2 - 10 : height // 2 + 10, x : x + 20] = (230, 40, 40)
        y = int(8 + (height // 2 - 16) * abs(((i / 6) % 2) - 1))
        frame[y : y + 12, width - 24 : width - 12] = (40, 60, 230)
        out.append(frame)
    return out


def write_footage_folder(folder: Path) -> dict[str, dict]:
    """Four short captionless videos: a still camera, a pan, one stored sideways with a display
    rotation (decodes upright as 96x128), one with a variable frame rate. Returns name -> facts."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = FOOTAGE_SIZE
    n = FOOTAGE_FRAMES
    write_video(folder / "still.mp4", shapes_segment(11, n, width, height), FOOTAGE_FPS)
    write_video(folder / "pan.mp4", shapes_segment(12, n, width, height, pan=4), FOOTAGE_FPS)
    upright = shapes_segment(13, n, height, width)  # a portrait scene, 96 wide and 128 high
    sideways = [np.ascontiguousarray(np.rot90(f, 1)) for f in upright]  # stored turned a quarter left
    write_video(folder / "rotated.mp4", sideways, FOOTAGE_FPS, rotation=-90)
    gaps = [0.04 if (i // 4) % 2 else 0.14 for i in range(n)]
    times = [round(sum(gaps[:i]), 3) for i in range(n)]
    write_video(folder / "vfr.mp4", shapes_segment(14, n, width, height), FOOTAGE_FPS, times=times)
    return {
        "still.mp4": {"size": (width, height), "camera": "static"},
        "pan.mp4": {"size": (width, height), "camera": "pan_right"},
        "rotated.mp4": {"size": (height, width), "rotation": -90, "first_upright": upright[0]},
        "vfr.mp4": {"size": (width, height), "times": times},
    }
