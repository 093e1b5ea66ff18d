"""Virtual clips for tests: a rendered scene and the clip row ingest would write for it."""

from __future__ import annotations

import json
from pathlib import Path

from agents.virtual.captions import scene_description
from agents.virtual.render import render_video
from agents.virtual.scene import SceneSpec, sample_scene
from schemas import ClipRow, stable_id


def virtual_clip_row(spec: SceneSpec, video_path: str, step: int = 2) -> ClipRow:
    """The clips row for a scene, sampling every `step`-th frame."""
    return ClipRow(
        clip_id=stable_id("clip", spec.seed, spec.index, json.dumps(spec.model_dump(mode="json"), sort_keys=True)),
        source_key=f"virtual:{spec.seed}:{spec.index}",
        video_path=video_path,
        num_frames=spec.num_frames, fps=spec.fps, width=spec.width, height=spec.height,
        duration=spec.num_frames / spec.fps,
        source="virtual",
        caption=scene_description(spec),
        frame_indices=list(range(0, spec.num_frames, step)),
        metadata=json.dumps({"virtual": spec.model_dump(mode="json")}),
        agent="ingest", model="none",
    )


def make_virtual_clip(
    tmp_path: Path, seed: int, index: int, render: bool = True, spec: SceneSpec | None = None,
    fps: int = 8, seconds: float = 2.0, step: int = 2,
) -> ClipRow:
    """Sample (or take) a scene, render it under tmp_path/videos when asked, and return its row;
    video_path is relative to tmp_path, the dataset root."""
    spec = spec or sample_scene(seed, index, fps=fps, seconds=seconds)
    relative = f"videos/virtual-{spec.seed}-{spec.index}.mp4"
    if render:
        (tmp_path / "videos").mkdir(parents=True, exist_ok=True)
        render_video(spec, tmp_path / relative)
    return virtual_clip_row(spec, relative, step=step)
