"""Rendering virtual scenes with numpy.

`silhouettes` is the single geometry routine: the video paints objects with it, in draw order,
and `render_masks` derives the visible (occlusion-aware) masks from the same silhouettes, so a
mask and the pixels it covers can never disagree. Hard edges, no anti-aliasing: a pixel belongs to
an object exactly when its centre lies inside the shape.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from agents.virtual.scene import COLOURS, EXTENT, SceneSpec


def _star(points: int = 5, outer: float = 1.15, inner: float = 0.48) -> np.ndarray:
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _regular(sides: int, radius: float) -> np.ndarray:
    angles = -np.pi / 2 + np.arange(sides) * 2 * np.pi / sides
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


# Outlines in units of the object's radius, y pointing down (the triangle points up).
POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]]),
    "rectangle": np.array([[-1.05, -0.5], [1.05, -0.5], [1.05, 0.5], [-1.05, 0.5]]),
    "triangle": _regular(3, 1.1),
    "star": _star(),
}
CIRCLE_RADIUS = 0.95
assert all(np.hypot(p[:, 0], p[:, 1]).max() <= EXTENT for p in POLYGONS.values())


def silhouettes(spec: SceneSpec, frame: int) -> np.ndarray:
    """Full (N, H, W) object shapes at one frame, before occlusion."""
    out = np.zeros((len(spec.objects), spec.height, spec.width), dtype=bool)
    t = np.array([float(frame)])
    for obj in spec.objects:
        sx, sy, angle, zoom = (float(v[0]) for v in spec.screen_pose(obj, t))
        scale = obj.radius * zoom
        reach = EXTENT * scale + 1
        x0, x1 = max(0, int(np.floor(sx - reach))), min(spec.width, int(np.ceil(sx + reach)) + 1)
        y0, y1 = max(0, int(np.floor(sy - reach))), min(spec.height, int(np.ceil(sy + reach)) + 1)
        if x0 >= x1 or y0 >= y1:
            continue  # entirely off screen
        dx = (np.arange(x0, x1) + 0.5 - sx)[None, :]
        dy = (np.arange(y0, y1) + 0.5 - sy)[:, None]
        theta = np.radians(angle)
        # Turn pixel offsets back by the object's clockwise angle into its own frame.
        u = (np.cos(theta) * dx + np.sin(theta) * dy) / scale
        v = (-np.sin(theta) * dx + np.cos(theta) * dy) / scale
        if obj.shape == "circle":
            inside = u * u + v * v <= CIRCLE_RADIUS**2
        else:
            inside = _inside_polygon(u, v, POLYGONS[obj.shape])
        out[obj.index, y0:y1, x0:x1] = inside
    return out


def _inside_polygon(u: np.ndarray, v: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd crossing test over a pixel grid, one numpy pass per edge."""
    inside = np.zeros(np.broadcast_shapes(u.shape, v.shape), dtype=bool)
    for (xa, ya), (xb, yb) in zip(polygon, np.roll(polygon, 1, axis=0), strict=True):
        if ya == yb:
            continue  # a horizontal edge is never crossed by a horizontal ray
        straddles = (ya > v) != (yb > v)
        crossing_x = xa + (xb - xa) * (v - ya) / (yb - ya)
        inside ^= straddles & (u < crossing_x)
    return inside


def visible(full: np.ndarray) -> np.ndarray:
    """Remove from each silhouette what objects drawn later cover."""
    out = np.empty_like(full)
    covered = np.zeros(full.shape[1:], dtype=bool)
    for i in range(full.shape[0] - 1, -1, -1):
        out[i] = full[i] & ~covered
        covered |= full[i]
    return out


def render_masks(spec: SceneSpec, frame_indices: Sequence[int]) -> np.ndarray:
    """Exact visible masks, bool (T, N_objects, H, W), for the given frames."""
    for f in frame_indices:
        if not 0 <= int(f) < spec.num_frames:
            raise ValueError(f"frame {f} is outside the scene's {spec.num_frames} frames")
    return np.stack([visible(silhouettes(spec, int(f))) for f in frame_indices]) if len(frame_indices) else (
        np.zeros((0, len(spec.objects), spec.height, spec.width), dtype=bool)
    )


class _Backdrop:
    """The background texture, sampled at the world position of every pixel."""

    def __init__(self, spec: SceneSpec):
        self.spec = spec
        self.px = np.arange(spec.width)[None, :] + 0.5 - spec.width / 2
        self.py = np.arange(spec.height)[:, None] + 0.5 - spec.height / 2
        bg = spec.background
        self.base = np.array(bg.base, dtype=np.float32)
        self.accent = np.array(bg.accent, dtype=np.float32)

    def at(self, frame: int) -> np.ndarray:
        bg = self.spec.background
        cx, cy, zoom = (float(v[0]) for v in self.spec.camera_pose(np.array([float(frame)])))
        wx = self.px / zoom + cx
        wy = self.py / zoom + cy
        checker = ((np.floor(wx / bg.tile) + np.floor(wy / bg.tile)) % 2).astype(np.float32)
        fx, fy = bg.wave_freq
        wave = bg.wave_amp * (np.sin(fx * wx + fy * wy + bg.wave_phase) + 0.5 * np.sin(fy * wx - fx * wy))
        image = self.base + (self.accent - self.base) * checker[..., None] + wave[..., None].astype(np.float32)
        return np.clip(image, 0, 255).astype(np.uint8)


def render_frames(spec: SceneSpec) -> Iterator[np.ndarray]:
    """Every frame of the clip as (H, W, 3) uint8 RGB."""
    backdrop = _Backdrop(spec)
    colours = [np.array(COLOURS[o.colour], dtype=np.uint8) for o in spec.objects]
    for frame in range(spec.num_frames):
        image = backdrop.at(frame)
        for obj, shape in zip(spec.objects, silhouettes(spec, frame), strict=True):
            image[shape] = colours[obj.index]  # draw order: later objects paint over earlier ones
        yield image


def render_video(spec: SceneSpec, path: str | Path) -> None:
    """Write the clip as an H.264 mp4."""
    from agents.video import write_video

    write_video(path, render_frames(spec), fps=spec.fps)
