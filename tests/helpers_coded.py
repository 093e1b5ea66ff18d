"""A frame-coded video: every frame shows its own index, so a test can tell which frame it got.

The top strip holds the index in 8 bits, Manchester-coded: bit b is a pair of blocks, (bright,
dark) for 1 and (dark, bright) for 0. Each bit is read by comparing its own two blocks, so the
code survives H.264, resizing and the visual prompts that darken, tint or outline a frame.
"""

from __future__ import annotations

import numpy as np

WIDTH, HEIGHT, BITS = 320, 240, 8
BLOCK = WIDTH // (2 * BITS)  # 20 px


def coded_frame(index: int, background=(110, 110, 110)) -> np.ndarray:
    frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    frame[:] = background
    for bit in range(BITS):
        one = (index >> (BITS - 1 - bit)) & 1
        left, right = (250, 5) if one else (5, 250)
        x = 2 * bit * BLOCK
        frame[:BLOCK, x : x + BLOCK] = left
        frame[:BLOCK, x + BLOCK : x + 2 * BLOCK] = right
    # something that moves, below the code, for the detectors to look at
    x = 20 + 3 * (index % 60)
    frame[120:170, x : x + 50] = (220, 60, 40)
    return frame


def decode_index(image) -> int:
    """The index a frame shows, at any size (PIL image or (H, W, 3) array)."""
    array = np.asarray(image).astype(float)
    if array.ndim == 3:
        array = array[..., :3].mean(axis=2)
    scale = array.shape[1] / WIDTH
    half = max(1, round(BLOCK * scale / 4))
    centre_y = round(BLOCK * scale / 2)

    def level(block: int) -> float:
        cx = round((block + 0.5) * BLOCK * scale)
        return float(np.median(array[centre_y - half : centre_y + half + 1, cx - half : cx + half + 1]))

    value = 0
    for bit in range(BITS):
        value = (value << 1) | int(level(2 * bit) > level(2 * bit + 1))
    return value


def write_coded_video(path, num_frames: int, fps: float, cut_at: int | None = None) -> None:
    """`cut_at`: from this frame on the background changes colour (a hard cut between two shots)."""
    from agents.video import write_video

    frames = (coded_frame(i, (60, 70, 170) if cut_at is not None and i >= cut_at else (110, 110, 110))
              for i in range(num_frames))
    write_video(path, frames, fps=fps)
