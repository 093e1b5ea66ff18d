"""Ingest: source items -> clips (probe, content-hash clip_id, frame-sampling plan).

Virtual items are rendered here first (deterministic from seed and index), so rendering runs in
parallel across the ingest actors. Every bad file becomes one rejection row with its own reason.

With `curation.enabled`, folder and manifest videos are curated instead of taken whole
(agents/curation): split into shots and windows, filtered, and near duplicates removed across the
shard, all decoding in a guarded worker process. A curated clip is a (video_path, start, end)
reference whose `num_frames` and `frame_indices` count from `start`, unless `curation.materialize`
writes it as its own file under media/clips/.

Remote manifest paths (`http(s)://`, `s3://`) are read through fsspec into `media/remote/` under
the dataset root (once; the copy is named by a hash of the URL) and ingested from there, the URL kept
in `clips.metadata.remote_url`. Without the package a scheme needs (fsspec; s3fs for s3://) the
item is a `missing_extra` rejection naming it; a fetch that fails is `remote_unreachable`
(retried on the next run). Items the source already found bad (a manifest line that is not UTF-8,
a file name that is not UTF-8) become their rejection rows here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from pydantic import Field

from agents.base import Batch, SourceItem, Stage, StageConfig, StageOutput
from agents.curation.curate import CurationConfig
from agents.video import VideoError, VideoInfo, clip_frame_offset, probe
from schemas import ClipRow, Lineage

INGEST_VERSION = "2"  # 2: camera-motion estimate, rotation and variable frame rate


class IngestConfig(StageConfig):
    num_samples: int = Field(16, ge=2, description="frames in each clip's sampling plan, evenly spaced")
    virtual_width: int = Field(320, ge=64)
    virtual_height: int = Field(240, ge=64)
    virtual_fps: int = Field(12, ge=8, le=30)
    virtual_seconds: float = Field(3.0, gt=0.5, le=30)
    curation: CurationConfig = Field(default_factory=CurationConfig)
    probe_timeout_s: float = Field(
        60.0, gt=0, description="probing a folder or manifest video runs in a guarded process with this deadline"
    )
    camera_motion: bool = Field(
        True, description="estimate pan / tilt / zoom / static for clips curation did not measure (exact for virtual)"
    )


class Ingest(Stage[IngestConfig]):
    name = "ingest"
    config_model = IngestConfig
    probe_entry = "agents.video:probe"  # run in the guarded process; tests swap in a hanging decoder
    camera_entry = "agents.ingest:estimate_camera_motion"
    writes = ("clips",)
    version = INGEST_VERSION

    def setup(self) -> None:
        self._curator = None
        self._guard = None  # started on the first real (non-virtual) video
        if self.config.curation.enabled:
            from agents.curation.curate import Curator

            self._curator = Curator(self.config.curation)

    def teardown(self) -> None:
        if getattr(self, "_curator", None) is not None:
            self._curator.close()
        if getattr(self, "_guard", None) is not None:
            self._guard.close()

    def _probe_guarded(self, path: Path) -> VideoInfo:
        """Probe in a separate process: a hanging or crashing decoder costs a rejection row."""
        from agents.curation.safe_decode import DecodeFailure, GuardedDecoder

        if self._guard is None:
            self._guard = GuardedDecoder(self.config.probe_timeout_s)
        info = self._guard.call(self.probe_entry, str(path))
        if isinstance(info, DecodeFailure):
            raise VideoError(info.reason, info.detail)
        return info

    def process_batch(self, batch: Batch) -> StageOutput:
        self.ensure_setup()
        out = StageOutput()
        lineage = Lineage(agent=self.name, model="pyav", model_revision=_pyav_version())
        curated = []
        for item in sorted(batch.items, key=lambda i: i.source_key):
            if "_reject" in item.metadata:
                out.reject(self.name, item.source_key, *item.metadata["_reject"])
                continue
            try:
                item = self._localise(batch, item)
                if self._curator is not None and item.source != "virtual":
                    curated.extend(self._curate_one(batch, item, out))
                else:
                    out.add("clips", self._ingest_one(batch, item, lineage))
            except VideoError as err:
                out.reject(self.name, item.source_key, err.reason, err.detail)
        if curated:
            self._add_curated(batch, curated, out, lineage)
        _reject_repeated_clips(self.name, out)
        return out

    def _localise(self, batch: Batch, item: SourceItem) -> SourceItem:
        """A remote item as a local copy under media/remote/ (fetched once); others unchanged."""
        if not item.video_path.startswith(REMOTE_SCHEMES):
            return item
        suffix = Path(item.video_path.split("?")[0]).suffix or ".mp4"
        relative = f"media/remote/{_digest(item.video_path.encode())}{suffix}"
        target = batch.resolve(relative)
        if not target.exists():
            fetch_remote(item.video_path, target)
        return replace(item, video_path=relative, metadata={**item.metadata, "remote_url": item.video_path})

    def _curate_one(self, batch: Batch, item: SourceItem, out: StageOutput) -> list:
        if not item.video_path:
            raise VideoError("invalid_manifest_row", f"{item.source_key}: no video_path")
        path = batch.resolve(item.video_path)
        if not path.exists():
            raise VideoError("source_missing", f"{path} does not exist")
        clips, rejections = self._curator.curate(str(path), _file_digest(path, None, None), item.start, item.end)
        for r in rejections:
            out.reject(self.name, _item_in_source(item, r.item_id), r.reason, r.detail, r.clip_id)
        return [(item, clip) for clip in clips]

    def _add_curated(self, batch: Batch, curated: list, out: StageOutput, lineage: Lineage) -> None:
        from agents.curation.curate import drop_near_duplicates

        item_of = {clip.clip_id: item for item, clip in curated}
        kept, duplicates = drop_near_duplicates([clip for _, clip in curated], self.config.curation.dedup)
        for r in duplicates:
            out.reject(self.name, _item_in_source(item_of[r.clip_id], r.item_id), r.reason, r.detail, r.clip_id)
        for clip in kept:
            try:
                out.add("clips", self._curated_row(batch, item_of[clip.clip_id], clip, lineage))
            except VideoError as err:
                out.reject(self.name, clip.clip_id, err.reason, err.detail, clip.clip_id)

    def _curated_row(self, batch: Batch, item: SourceItem, clip, lineage: Lineage) -> ClipRow:
        span, facts = clip.span, clip.facts
        metadata = {**item.metadata, "curation": clip.metadata()}
        video_path, start, end = item.video_path, span.start, span.end
        if self.config.curation.materialize:
            video_path = self._materialize(batch, item, clip)
            metadata["curation"]["source_span"] = [round(start, 3), round(end, 3)]
            start = end = None
        info = VideoInfo(span.num_frames, facts.fps, facts.width, facts.height, span.duration)
        return ClipRow.build(
            lineage,
            clip_id=clip.clip_id,
            source_key=item.source_key,
            video_path=video_path,
            num_frames=span.num_frames,
            fps=facts.fps,
            width=facts.width,
            height=facts.height,
            duration=span.duration,
            start=start,
            end=end,
            source=item.source,
            caption=item.caption,
            frame_indices=sampling_plan(info, self.config.num_samples),
            metadata=json.dumps(metadata, sort_keys=True),
            motion_score=clip.features.motion_score,
            camera_motion=clip.features.camera_motion,
        )

    def _materialize(self, batch: Batch, item: SourceItem, clip) -> str:
        from agents.curation.safe_decode import DecodeFailure

        relative = f"media/clips/{clip.clip_id}.mp4"
        target = batch.resolve(relative)
        if not target.exists():  # clip ids are content hashes: an existing file is this clip
            written = self._curator.materialize(str(batch.resolve(item.video_path)), clip, target)
            if isinstance(written, DecodeFailure):
                raise VideoError(written.reason, written.detail)
        return relative

    def _ingest_one(self, batch: Batch, item: SourceItem, lineage: Lineage) -> ClipRow:
        if not item.video_path:
            raise VideoError("invalid_manifest_row", f"{item.source_key}: no video_path")
        metadata = dict(item.metadata)
        caption = item.caption
        if item.source == "virtual":
            spec = self._render_virtual(batch, item)
            metadata["virtual"] = spec.model_dump(mode="json")
            from agents.virtual.captions import scene_description

            caption = scene_description(spec)
            clip_id = _digest(json.dumps(metadata["virtual"], sort_keys=True).encode())
        path = batch.resolve(item.video_path)
        info = probe(path) if item.source == "virtual" else self._probe_guarded(path)
        camera = virtual_camera(spec) if item.source == "virtual" else None
        if item.source != "virtual":
            clip_id = _file_digest(path, item.start, item.end)
            info = span_info(info, item.start, item.end)
            camera = self._camera_guarded(path, item, info)
            metadata.update(_file_facts(info))
        return ClipRow.build(
            lineage,
            clip_id=clip_id,
            source_key=item.source_key,
            video_path=item.video_path,
            num_frames=info.num_frames,
            fps=info.fps,
            width=info.width,
            height=info.height,
            duration=info.duration,
            start=item.start,
            end=item.end,
            source=item.source,
            caption=caption,
            frame_indices=sampling_plan(info, self.config.num_samples),
            metadata=json.dumps(metadata, sort_keys=True) if metadata else None,
            camera_motion=camera if self.config.camera_motion else None,
        )

    def _camera_guarded(self, path: Path, item: SourceItem, info: VideoInfo) -> str | None:
        """The camera-motion estimate in the guarded process; a failure leaves it unknown (the
        probe already accepted the file, so this is no reason to reject the clip)."""
        if not self.config.camera_motion:
            return None
        from agents.curation.safe_decode import DecodeFailure

        first = clip_frame_offset(path, item.start, info.fps)
        label = self._guard.call(self.camera_entry, str(path), first, info.num_frames, info.fps)
        return None if isinstance(label, DecodeFailure) else label

    def _render_virtual(self, batch: Batch, item: SourceItem):
        from agents.virtual.render import render_video
        from agents.virtual.scene import sample_scene

        cfg = self.config
        spec = sample_scene(
            item.metadata["seed"],
            item.metadata["index"],
            width=cfg.virtual_width,
            height=cfg.virtual_height,
            fps=cfg.virtual_fps,
            seconds=cfg.virtual_seconds,
        )
        path = batch.resolve(item.video_path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp.mp4")
            render_video(spec, tmp)
            tmp.replace(path)
        return spec


REMOTE_SCHEMES = ("http://", "https://", "s3://")
EXTRAS = {"s3": "s3fs", "http": "aiohttp", "https": "aiohttp"}


def fetch_remote(url: str, target: Path) -> None:
    """Copy a remote video to `target` through fsspec; VideoError with a reason on failure."""
    scheme = url.split("://", 1)[0]
    try:
        import fsspec

        fs, remote_path = fsspec.core.url_to_fs(url)
    except ImportError as err:
        needed = "fsspec" if "fsspec" in str(err) else EXTRAS.get(scheme, str(err))
        raise VideoError("missing_extra", f"{url}: reading {scheme}:// needs the {needed} package "
                                          f"(pip install {needed})") from None
    except Exception as err:
        raise VideoError("remote_unreachable", f"{url}: {type(err).__name__}: {err}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    try:
        fs.get_file(remote_path, str(partial))
    except FileNotFoundError:
        partial.unlink(missing_ok=True)
        raise VideoError("source_missing", f"{url} does not exist") from None
    except Exception as err:
        partial.unlink(missing_ok=True)
        raise VideoError("remote_unreachable", f"{url}: {type(err).__name__}: {err}") from None
    partial.replace(target)


def virtual_camera(spec) -> str:
    """A virtual scene's camera in curation's labels: exact, since the renderer moved it."""
    cam = spec.camera
    if cam.motion == "zoom":
        return f"zoom_{cam.direction}"
    if cam.motion == "pan":
        return {"left": "pan_left", "right": "pan_right", "up": "tilt_up", "down": "tilt_down"}[cam.direction]
    return "static"


def estimate_camera_motion(path: str, first_frame: int, num_frames: int, fps: float) -> str:
    """Curation's camera-motion estimate (global flow of a few frame pairs) on one clip; runs in
    the guarded decoder process."""
    from agents.curation.filters import FilterConfig, camera_motion, sample_pairs, to_analysis_grey
    from agents.video import decode_wanted

    config = FilterConfig()
    pairs = sample_pairs(first_frame, first_frame + num_frames, fps, config)
    frames = decode_wanted(path, {i for pair in pairs for i in pair}, to_analysis_grey)
    usable = [(frames[a], frames[b]) for a, b in pairs if a in frames and b in frames and a != b]
    if not usable:
        raise VideoError("decode_error", "no frame pair decodes for the camera-motion estimate")
    gap = max(1, round(config.pair_gap_s * fps)) / fps
    return camera_motion(usable, gap, config.camera_static_speed)[0]


def _file_facts(info: VideoInfo) -> dict:
    """What a real file needed to be read right: recorded in clips.metadata."""
    facts: dict = {}
    if info.rotation:
        facts["rotation"] = info.rotation
    if info.variable_rate:
        facts["variable_frame_rate"] = True
    return facts


def _item_in_source(item: SourceItem, clip_id: str) -> str:
    """A curated span is rejected as `<source key>#<clip id>`: the same footage under two names
    (a copied file) gives one rejection row per source, never two rows with one id."""
    return f"{item.source_key}#{clip_id}" if clip_id else item.source_key


def repeat_item_id(row: ClipRow, clips: list[ClipRow]) -> str:
    """The item of a `duplicate_clip` rejection: the source key, qualified by the clip id when
    the source gave several clips (curated spans), so each repeat is its own rejection row."""
    several = sum(1 for c in clips if c.source_key == row.source_key) > 1
    return f"{row.source_key}#{row.clip_id}" if several else row.source_key


def _reject_repeated_clips(stage: str, out: StageOutput) -> None:
    """The same content listed twice (a copied file, a repeated manifest row) is one clip: the
    first by source key stays, each repeat becomes a `duplicate_clip` rejection naming it."""
    first: dict[str, str] = {}
    kept = []
    clips = out.rows.get("clips", [])
    for row in clips:
        if row.clip_id in first:
            out.reject(stage, repeat_item_id(row, clips), "duplicate_clip",
                       f"same content as {first[row.clip_id]} (clip {row.clip_id})", row.clip_id)
            continue
        first[row.clip_id] = row.source_key
        kept.append(row)
    out.rows["clips"] = kept


def span_info(info: VideoInfo, start: float | None, end: float | None) -> VideoInfo:
    """The probe of a whole video narrowed to a manifest's [start, end) span, in frames (found by
    frame time for variable-frame-rate video)."""
    if start is None and end is None:
        return info
    if info.timestamps is not None:
        times = np.asarray(info.timestamps)
        first = int(np.searchsorted(times, (start or 0.0) - 1e-6))
        last = int(np.searchsorted(times, end - 1e-6)) if end is not None else info.num_frames
    else:
        first = round((start or 0.0) * info.fps)
        last = min(info.num_frames, round(end * info.fps)) if end is not None else info.num_frames
    if last - first < 2:
        raise VideoError("too_few_frames", f"span {start}-{end}s holds {max(0, last - first)} frame(s) of the video")
    if info.timestamps is not None:
        kept = tuple(round(t - info.timestamps[first], 6) for t in info.timestamps[first:last])
        duration = kept[-1] * len(kept) / (len(kept) - 1)
        return replace(info, num_frames=last - first, fps=(last - first) / duration, duration=duration, timestamps=kept)
    return replace(info, num_frames=last - first, duration=(last - first) / info.fps)


def sampling_plan(info: VideoInfo, num_samples: int) -> list[int]:
    """Frame indices evenly spaced in time over the clip, first and last frame included: by index
    for a constant frame rate, by each frame's time for variable-frame-rate video."""
    count = min(num_samples, info.num_frames)
    if count <= 1:
        return [0]
    if info.timestamps is not None:
        times = np.asarray(info.timestamps)
        targets = np.linspace(times[0], times[-1], count)
        nearest = np.clip(np.searchsorted(times, targets), 1, len(times) - 1)
        earlier = np.abs(times[nearest - 1] - targets) <= np.abs(times[nearest] - targets)
        return sorted({int(i) for i in np.where(earlier, nearest - 1, nearest)})
    step = (info.num_frames - 1) / (count - 1)
    return sorted({round(i * step) for i in range(count)})


def _file_digest(path: Path, start: float | None, end: float | None) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    sha.update(f"|{start}|{end}".encode())
    return sha.hexdigest()[:16]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _pyav_version() -> str:
    import av

    return av.__version__
