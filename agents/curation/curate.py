"""Curation of one video: probe, split into clips, measure and filter them, hash them for dedup.

`analyse_video` is the decode-heavy part and runs inside the guarded worker (safe_decode); it
returns plain measurements. `Curator` runs it under the guard and turns measurements into kept
clips and rejections; `drop_near_duplicates` then removes copies among the kept clips.

Cost: the video is decoded once. Shot detection reads it (decoding and scaling in a thread ahead
of the detector), and every frame it reads is kept in grey (`FrameStore`) until a cut closes its
shot; then the frames the shot's clips sample are kept at analysis size and the rest dropped. Only
frames past the store's limits (a very long shot) are decoded a second time, for the sampled
frames alone. bench/ingest.py measures the ratio to a plain decode.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agents.curation.dedup import (
    DedupConfig,
    DedupRecord,
    find_near_duplicates,
    frame_hash,
    hash_positions,
    quality_key,
)
from agents.curation.filters import (
    ClipFeatures,
    FilterConfig,
    check_content,
    check_duration,
    check_video,
    measure,
    sample_pairs,
    shrink_grey,
    to_analysis_grey,
)
from agents.curation.safe_decode import DecodeFailure, GuardedDecoder
from agents.curation.scenes import Span, SplitConfig, cut_windows, detect_shots
from schemas import stable_id

ANALYSE_ENTRY = "agents.curation.curate:analyse_video"
PRELOAD_ENTRY = "agents.curation.curate:load_libraries"
PROBE_ENTRY = "agents.curation.curate:probe_video"
MATERIALIZE_ENTRY = "agents.curation.scenes:materialize"


class CurationConfig(BaseModel):
    """Everything ingest does to real footage; recorded with the stage config in run.json."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(False, description="curate folder and manifest videos (virtual scenes never); off: one clip per item, as given")
    split: SplitConfig = Field(default_factory=SplitConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    materialize: bool = Field(False, description="write each kept clip as its own mp4 (PyAV)")
    probe_timeout_s: float = Field(30.0, gt=0)
    decode_timeout_s: float = Field(60.0, gt=0, description="per video, plus decode_s_per_minute")
    decode_s_per_minute: float = Field(30.0, ge=0, description="extra seconds per minute of video")


@dataclass(frozen=True)
class VideoFacts:
    width: int
    height: int
    fps: float
    num_frames: int


@dataclass
class ClipMeasure:
    span: Span
    features: ClipFeatures
    hashes: tuple[str, ...]


@dataclass
class VideoAnalysis:
    facts: VideoFacts
    video_rejection: tuple[str, str] | None = None
    measured: list[ClipMeasure] = field(default_factory=list)
    rejected: list[tuple[Span, str, str]] = field(default_factory=list)


@dataclass
class CuratedClip:
    clip_id: str
    span: Span
    facts: VideoFacts
    features: ClipFeatures
    hashes: tuple[str, ...]

    @property
    def quality(self) -> tuple[float, ...]:
        return quality_key(self.facts.width, self.facts.height, self.span.duration, self.facts.fps)

    def metadata(self) -> dict:
        """What the clip row keeps of curation, under ClipRow.metadata."""
        features = asdict(self.features)
        return {
            "shot_frames": [self.span.start_frame, self.span.end_frame],
            "motion_score": features["motion_score"],
            "camera_motion": features["camera_motion"],
            "camera_flow": features["camera_flow"],
            "letterbox": features["letterbox"],
            "phash": list(self.hashes),
        }


@dataclass(frozen=True)
class Rejection:
    item_id: str  # the clip id, or "" for the whole video (the caller names it)
    reason: str
    detail: str
    clip_id: str | None = None


def clip_id_for(video_hash: str, span: Span) -> str:
    return stable_id("clip", video_hash, round(span.start, 3), round(span.end, 3))


def probe_video(path: str) -> VideoFacts:
    from agents.video import VideoError, probe

    try:
        info = probe(path, count_frames=False)
    except VideoError as err:
        if err.reason != "too_few_frames":
            raise
        info = probe(path, count_frames=True)  # the container does not say; count
    return VideoFacts(info.width, info.height, info.fps, info.num_frames)


def load_libraries() -> None:
    """Import what analysis needs (OpenCV, PySceneDetect, pHash's SciPy DCT: about 0.5 CPU-s),
    once per worker when it starts rather than inside the first video's deadline."""
    import numpy as np
    import scenedetect  # noqa: F401

    frame_hash(np.zeros((8, 8), np.uint8))  # imagehash imports SciPy on its first hash


def analyse_video(path: str, config: dict, start: float | None = None, end: float | None = None) -> VideoAnalysis:
    """Split and measure one video (or its [start, end) seconds). Runs in the guarded worker."""
    from agents.video import VideoError

    cfg = CurationConfig.model_validate(config)
    facts = probe_video(path)
    verdict = check_video(facts.width, facts.height, facts.fps, cfg.filters)
    if verdict:
        return VideoAnalysis(facts, video_rejection=verdict)
    first = round(start * facts.fps) if start else 0
    last = round(end * facts.fps) if end else None
    store = FrameStore()
    if cfg.split.enabled:
        def close_shot(shot: Span) -> None:
            store.close(_needed(_plan([shot], cfg)[1]), shot.end_frame)

        shots, _ = detect_shots(path, cfg.split, first, last, tap=store.add, on_shot=close_shot)
    else:
        shots = [Span(first, last or facts.num_frames, facts.fps)]
    if not shots or shots[-1].end_frame - shots[0].start_frame < 2:
        raise VideoError("too_few_frames", f"fewer than 2 frames in {Path(path).name}")
    analysis = VideoAnalysis(facts)
    analysis.rejected, wanted = _plan(shots, cfg)
    needed = _needed(wanted)
    frames = store.take(needed)
    if needed - frames.keys():
        frames |= _read_grey(path, needed - frames.keys())
    gap = max(1, round(cfg.filters.pair_gap_s * facts.fps)) / facts.fps
    complete = {}
    for span, (pairs, hashed) in wanted.items():
        if any(i not in frames for pair in pairs for i in pair) or any(i not in frames for i in hashed):
            analysis.rejected.append((span, "truncated_video", f"frames of {span.start:.2f}-{span.end:.2f} s do not decode"))
        else:
            complete[span] = (pairs, hashed)

    def measure_clip(item) -> ClipMeasure:
        span, (pairs, hashed) = item
        features = measure([(frames[a], frames[b]) for a, b in pairs], gap, cfg.filters)
        hashes = tuple(frame_hash(frames[i]) for i in hashed) if cfg.dedup.enabled else ()
        return ClipMeasure(span, features, hashes)

    # Two threads: the optical flow (OpenCV) and the hashes release the GIL, so clips overlap.
    with ThreadPoolExecutor(max_workers=2) as pool:
        analysis.measured.extend(pool.map(measure_clip, complete.items()))
    return analysis


Wanted = dict[Span, tuple[list[tuple[int, int]], list[int]]]  # clip -> (frame pairs, hashed frames)


def _plan(shots: list[Span], cfg: CurationConfig) -> tuple[list[tuple[Span, str, str]], Wanted]:
    """The clips of the shots: those the duration filter drops, and the frames each other one samples."""
    rejected, wanted = [], {}
    for span in cut_windows(shots, cfg.split.max_clip_seconds if cfg.split.enabled else None):
        verdict = check_duration(span.duration, cfg.filters)
        if verdict:
            rejected.append((span, *verdict))
        else:
            pairs = sample_pairs(span.start_frame, span.end_frame, span.fps, cfg.filters)
            wanted[span] = (pairs, hash_positions(span.start_frame, span.end_frame, cfg.dedup.hash_frames))
    return rejected, wanted


def _needed(wanted: Wanted) -> set[int]:
    return {i for pairs, hashed in wanted.values() for i in [*(j for pair in pairs for j in pair), *hashed]}


class FrameStore:
    """Grey frames decoded for shot detection. A frame of the shot still open is kept at detection
    size (~37 KB at 256x144, up to `open_limit`); when a cut closes the shot, only the frames its
    clips sample are scaled to analysis size (~14 KB at 160x90, up to `limit`) and the rest dropped:
    scaling every frame cost more than the detector. A frame past a limit is decoded again later."""

    def __init__(self, limit: int = 14_400, open_limit: int = 5_400):
        self.limit, self.open_limit = limit, open_limit
        self.open: dict[int, object] = {}
        self.frames: dict[int, object] = {}

    def add(self, index: int, bgr, rotation: int) -> None:
        if len(self.open) < self.open_limit:
            import cv2

            from agents.video import upright

            self.open[index] = upright(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), rotation)

    def close(self, wanted: set[int], end: int) -> None:
        """The shot before frame `end` is closed: keep the wanted of its frames, drop the others."""
        for index in [i for i in self.open if i < end]:
            grey = self.open.pop(index)
            if index in wanted and len(self.frames) < self.limit:
                self.frames[index] = shrink_grey(grey)

    def take(self, wanted: set[int]) -> dict[int, object]:
        found = {i: self.frames[i] for i in wanted if i in self.frames}
        return found | {i: shrink_grey(self.open[i]) for i in wanted if i in self.open and i not in found}


def _read_grey(path: str, wanted: set[int]) -> dict[int, object]:
    """Decode front to back once, converting only the wanted frames; stop after the last."""
    from agents.video import decode_wanted

    return decode_wanted(path, wanted, to_analysis_grey)


class Curator:
    """Runs curation for one stage actor: one guarded worker process, reused across videos."""

    def __init__(self, config: CurationConfig, analyse_entry: str = ANALYSE_ENTRY, probe_entry: str = PROBE_ENTRY):
        self.config = config
        self.analyse_entry = analyse_entry
        self.probe_entry = probe_entry
        self.guard = GuardedDecoder(config.decode_timeout_s, preload=(PRELOAD_ENTRY,))

    def curate(self, path: str, video_hash: str, start: float | None = None, end: float | None = None) -> tuple[list[CuratedClip], list[Rejection]]:
        """Kept clips and rejections of one video; a video-level rejection has item_id ""."""
        facts = self.guard.call(self.probe_entry, str(path), timeout_s=self.config.probe_timeout_s)
        if isinstance(facts, DecodeFailure):
            return [], [Rejection("", facts.reason, facts.detail)]
        minutes = ((end or facts.num_frames / facts.fps) - (start or 0)) / 60
        timeout = self.config.decode_timeout_s + self.config.decode_s_per_minute * max(minutes, 0)
        analysis = self.guard.call(self.analyse_entry, str(path), self.config.model_dump(mode="json"), start, end, timeout_s=timeout)
        if isinstance(analysis, DecodeFailure):
            return [], [Rejection("", analysis.reason, analysis.detail)]
        if analysis.video_rejection:
            return [], [Rejection("", *analysis.video_rejection)]
        rejections = [self._clip_rejection(video_hash, span, reason, detail) for span, reason, detail in analysis.rejected]
        kept = []
        for measured in analysis.measured:
            verdict = check_content(measured.features, self.config.filters)
            if verdict:
                rejections.append(self._clip_rejection(video_hash, measured.span, *verdict))
            else:
                clip_id = clip_id_for(video_hash, measured.span)
                kept.append(CuratedClip(clip_id, measured.span, analysis.facts, measured.features, measured.hashes))
        return kept, rejections

    def materialize(self, path: str, clip: CuratedClip, out_path: str | Path) -> str | DecodeFailure:
        timeout = self.config.decode_timeout_s + self.config.decode_s_per_minute * clip.span.duration / 60
        return self.guard.call(MATERIALIZE_ENTRY, str(path), clip.span, str(out_path), timeout_s=timeout)

    def close(self) -> None:
        self.guard.close()

    def __enter__(self) -> Curator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _clip_rejection(video_hash: str, span: Span, reason: str, detail: str) -> Rejection:
        clip_id = clip_id_for(video_hash, span)
        return Rejection(clip_id, reason, f"{span.start:.2f}-{span.end:.2f} s: {detail}", clip_id)


def drop_near_duplicates(clips: list[CuratedClip], config: DedupConfig) -> tuple[list[CuratedClip], list[Rejection]]:
    """Keep the best copy of each group of near duplicates; the others become rejections."""
    if not config.enabled:
        return clips, []
    records = [DedupRecord(c.clip_id, c.hashes, c.quality) for c in clips if c.hashes]
    duplicates = {d.clip_id: d for d in find_near_duplicates(records, config.max_distance)}
    kept = [c for c in clips if c.clip_id not in duplicates]
    rejections = [
        Rejection(d.clip_id, "near_duplicate", f"copy of {d.kept_id} (mean pHash distance {d.distance} bits)", d.clip_id)
        for d in duplicates.values()
    ]
    return kept, rejections


def metadata_json(extra: dict, clip: CuratedClip) -> str:
    return json.dumps({**extra, "curation": clip.metadata()}, sort_keys=True)
