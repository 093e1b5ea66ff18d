"""The clip files of an export, placed beside its records so the folder moves as it is.

`--media link` (the default) hard-links each clip's video into `<to>/videos/` (a copy where the
export folder is on another file system), `copy` copies it, `none` writes no media and names
each video by its path relative to the dataset root (never by an absolute path of the machine
that built it). A clip that is a span of a longer video is
cut to its own frames (re-encoded with PyAV) under `link` and `copy`, so every frame key of a
record is a frame of the file that its `video` names; under `none` the keys are shifted to count
from the start of the long video instead.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from agents.video import VideoError, clip_frame_offset
from engine.output_folder import output_path, relative_to_folder

MEDIA_MODES = ("link", "copy", "none")
MEDIA_FOLDER = "videos"
CUT_CHUNK = 64  # frames decoded per read while cutting a span


@dataclass(frozen=True)
class ClipMedia:
    """Where an export's records find a clip: `video` (relative to the export folder, or to the
    dataset root under `none`) and the number to add to a clip frame index to name a frame of it."""

    video: str
    frame_offset: int = 0

    def frame_key(self, clip_frame: int) -> str:
        return str(self.frame_offset + int(clip_frame))


class MediaPlacer:
    """Places each clip's file once per export and remembers where it went."""

    def __init__(self, dataset_root: Path, out: Path, mode: str):
        if mode not in MEDIA_MODES:
            raise ValueError(f"media mode must be one of {MEDIA_MODES}, not {mode!r}")
        self.root, self.out, self.mode = Path(dataset_root), Path(out), mode
        self.placed: dict[str, ClipMedia | None] = {}
        self.missing: dict[str, str] = {}  # clip_id -> why its video could not be placed
        self.counts = {"linked": 0, "copied": 0, "cut": 0, "referenced": 0}

    def source_path(self, clip: dict) -> Path:
        path = Path(clip["video_path"])
        return path if path.is_absolute() else self.root / path

    def place(self, clip: dict) -> ClipMedia | None:
        """The clip's media for this export, or None when its video cannot be read (noted in `missing`)."""
        if clip["clip_id"] not in self.placed:
            try:
                self.placed[clip["clip_id"]] = self._place(clip)
            except (OSError, VideoError) as err:
                self.placed[clip["clip_id"]] = None
                self.missing[clip["clip_id"]] = f"{clip['video_path']}: {getattr(err, 'strerror', None) or err}"
        return self.placed[clip["clip_id"]]

    def _place(self, clip: dict) -> ClipMedia:
        source = self.source_path(clip)
        offset = clip_frame_offset(source, clip.get("start"), clip["fps"])
        is_span = clip.get("start") is not None
        if self.mode == "none":  # the media stay where they are: nothing here reads them
            self.counts["referenced"] += 1
            return ClipMedia(relative_to_folder(source, self.root), offset)
        if not source.is_file():
            raise FileNotFoundError(2, "no such file", str(source))
        suffix = ".mp4" if is_span else (source.suffix or ".mp4")
        relative = f"{MEDIA_FOLDER}/{clip['clip_id']}{suffix}"
        target = output_path(self.out, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        if is_span:
            cut_span(self.root, clip, target)
            self.counts["cut"] += 1
        elif self.mode == "link" and _hard_link(source, target):
            self.counts["linked"] += 1
        else:
            shutil.copy2(source, target)
            self.counts["copied"] += 1
        return ClipMedia(relative, 0)


def _hard_link(source: Path, target: Path) -> bool:
    try:
        os.link(source, target)
        return True
    except OSError:  # another file system, or links not allowed: copy instead
        return False


def cut_span(dataset_root: Path, clip: dict, target: Path) -> None:
    """Write the clip's own frames (a span of a longer video) as an H.264 file at the clip's fps."""
    from agents.base import Batch
    from agents.video import write_video
    from schemas import ClipRow

    row = ClipRow.model_validate(clip)
    batch = Batch(root=dataset_root)

    def frames():
        for first in range(0, row.num_frames, CUT_CHUNK):
            yield from batch.read_frames(row, list(range(first, min(first + CUT_CHUNK, row.num_frames))))

    write_video(target, frames(), row.fps)
