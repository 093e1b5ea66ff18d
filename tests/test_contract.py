"""The stage contract through the real runner and driver: a stage sees only the tables it
declares, models load before the first batch, and every clip's frames are its own.

The frame-coded video shows each frame's index in its pixels; spies at the model boundary (the
SAM 2 propagator, the chat backend) and at the report's drawing step read back which frames the
Segmentor, the Annotator's visual prompts, the VLM Reviewer and the report previews really got.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from agents.base import Batch, Stage, StageConfig, StageOutput, UndeclaredTable
from agents.ingest import Ingest
from engine.driver import BuildOptions, execute, plan_build
from engine.errors import UserError
from engine.executors import LocalExecutor
from engine.pipeline import Pipeline
from engine.progress import Progress
from engine.store import DatasetStore
from tests.helpers_coded import decode_index, write_coded_video
from tests.helpers_media import write_good_clip
from tests.stages_for_tests import caption_each_clip

FPS = 10
PROFILES = Path(__file__).resolve().parents[1] / "data" / "profiles"


class PeekingCaptioner(Stage):
    """Declares clips, then also looks at objects: the runner must refuse."""

    name = "peeking"
    reads = ("clips",)
    writes = ("captions",)

    def process_batch(self, batch: Batch) -> StageOutput:
        return caption_each_clip(self, batch, str(len(batch.rows("objects"))))


class MissingModelConfig(StageConfig):
    model: str = "org/absent-model"


class NeedsModel(Stage):
    name = "needs_model"
    config_model = MissingModelConfig
    reads = ("clips",)
    writes = ("captions",)
    calls = 0

    def setup(self, ctx) -> None:
        from agents.backends.models import resolve_model

        assert ctx.root.is_dir()
        resolve_model(self.config.model)

    def process_batch(self, batch: Batch) -> StageOutput:
        NeedsModel.calls += 1
        return StageOutput()


def _videos(tmp_path: Path) -> str:
    (tmp_path / "videos").mkdir()
    write_good_clip(tmp_path / "videos" / "a.mp4", seed=1)
    return str(tmp_path / "videos")


def _run(root: Path, source: str, stages: list[Stage]):
    pipeline = Pipeline(stages)
    store = DatasetStore(root, recover=True)
    options = BuildOptions(shard_size=2)
    plan = plan_build(pipeline, store, source, options)
    progress = Progress(pipeline.names, live=False, interval=1e9)
    return execute(pipeline, store, plan, lambda: LocalExecutor(stages, store.root), options, progress)


def test_reading_an_undeclared_table_stops_the_run_naming_stage_and_table(tmp_path):
    with pytest.raises(UndeclaredTable) as caught:
        _run(tmp_path / "ds", _videos(tmp_path), [Ingest(), PeekingCaptioner()])
    assert "stage peeking" in str(caught.value) and "'objects'" in str(caught.value)
    assert not list((tmp_path / "ds").glob("captions/*.parquet"))  # nothing of it was committed


def test_effective_reads_follow_the_config():
    from agents.mcq_filters import McqFilters
    from agents.reviewer import MaskReviewer

    assert "clips" in MaskReviewer({"mode": "vlm"}).inputs()
    assert "clips" not in MaskReviewer({"mode": "llm"}).inputs()
    assert "clips" in McqFilters({"consistency": True}).inputs()
    assert "clips" not in McqFilters({"consistency": False}).inputs()


def test_missing_model_fails_at_start_up_in_one_sentence(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    NeedsModel.calls = 0
    with pytest.raises(UserError) as caught:
        _run(tmp_path / "ds", _videos(tmp_path), [Ingest(), NeedsModel()])
    message = str(caught.value)
    assert message.startswith("stage needs_model cannot start") and "org/absent-model" in message
    assert "hf download org/absent-model" in message and "\n" not in message
    assert NeedsModel.calls == 0


class Spy:
    """Wraps a model object: records what it is given, answers as the real one does."""

    def __init__(self, inner, record):
        self._inner, self._record = inner, record

    def __getattr__(self, name):
        return getattr(self._inner, name)


class PropagatorSpy(Spy):
    def propagate(self, frames, keyframe, masks):
        self._record.append([decode_index(f) for f in frames])
        return self._inner.propagate(frames, keyframe, masks)


class ChatSpy(Spy):
    def chat_batch(self, requests):
        for request in requests:
            system, user = request.messages[0]["content"], request.messages[-1]["content"]
            if isinstance(user, list):
                images = [part["image"] for part in user if part.get("type") == "image"]
                self._record.append((system, [decode_index(image) for image in images]))
        return self._inner.chat_batch(requests)


@pytest.mark.parametrize("curated", [False, True], ids=["manifest_span", "curated_window"])
def test_every_stage_and_the_report_see_the_spans_own_frames(tmp_path, monkeypatch, curated):
    import agents.backends.vision as vision
    import agents.chat_stage as chat_stage
    import engine.report.previews as previews
    import engine.report.report as report
    from agents.chat_stage import load_prompt
    from engine.build import build
    from engine.config import JobConfig
    from engine.report import build_report

    propagated, asked, drawn, previewed = [], [], [], []
    real_propagator, real_chat = vision.load_propagator, chat_stage.make_chat_backend
    real_annotate, real_preview = previews._annotate, report.write_preview
    monkeypatch.setattr(vision, "load_propagator", lambda cfg: PropagatorSpy(real_propagator(cfg), propagated))
    monkeypatch.setattr(chat_stage, "make_chat_backend", lambda cfg, *a, **k: ChatSpy(real_chat(cfg, *a, **k), asked))
    monkeypatch.setattr(report, "write_preview", lambda root, clip, objects, path: previewed.append(clip["clip_id"])
                        or real_preview(root, clip, objects, path))
    monkeypatch.setattr(previews, "_annotate", lambda frame, index, objects: drawn.append(
        (previewed[-1], index, decode_index(frame))) or real_annotate(frame, index, objects))

    # 8 s, a hard cut at 4 s; the manifest takes 2.0-7.0 s, so curation makes windows 2-4 s and 4-7 s
    write_coded_video(tmp_path / "coded.mp4", 80, FPS, cut_at=40)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video_path": str(tmp_path / "coded.mp4"), "start": 2.0, "end": 7.0,
                                    "caption": "A red box slides to the right."}) + "\n")
    frames_dir = tmp_path / "prompt_frames"
    ingest = {"num_samples": 6}
    if curated:
        ingest["curation"] = {"enabled": True, "filters": {"min_motion": None}, "dedup": {"enabled": False}}
    cfg = JobConfig(
        source=str(manifest), profile="tiny", executor="local", shard_size=4,
        stages=["ingest", "analyzer", "segmentor", "annotator", "reviewer"],
        stage_config={
            "ingest": ingest,
            "annotator": {"save_prompt_frames": str(frames_dir)},
            "reviewer": {"mode": "vlm", "chat": {"model": "tiny:qwen2.5-vl"}, "max_side": 320},
        },
    )
    dataset = tmp_path / "ds"
    summary = build(cfg, str(dataset))
    assert summary["tables"]["reviews"] > 0, summary  # the VLM Reviewer gets its clips

    con = DatasetStore(dataset, create=False).duckdb()
    clips = {r[0]: r[1:] for r in con.execute(
        "SELECT clip_id, start, num_frames, frame_indices, duration FROM clips").fetchall()}
    objects = con.execute("SELECT clip_id, object_id, frame_indices FROM objects").fetchall()
    con.close()
    first = {clip_id: round(start * FPS) for clip_id, (start, *_) in clips.items()}
    if curated:
        assert sorted(first.values()) == [20, 40], clips  # two windows, one per shot
    else:
        assert list(first.values()) == [20]

    # Segmentor: it tracks over each clip's own tracking frames, counted from the clip's start
    from types import SimpleNamespace

    from agents.segmentor import SegmentorConfig, tracking_frames

    seg = SegmentorConfig.model_validate(yaml.safe_load((PROFILES / "tiny" / "segmentor.yaml").read_text()))
    plans = sorted([first[c] + i for i in tracking_frames(
        SimpleNamespace(num_frames=n, frame_indices=plan, duration=duration), seg.track_fps, seg.max_track_frames)]
        for c, (_, n, plan, duration) in clips.items())
    assert propagated and sorted(propagated) == plans

    # Annotator: the saved visual-prompt frames show the clip frame their name gives
    saved = list(frames_dir.rglob("*.png"))
    assert saved
    from PIL import Image

    for png in saved:
        number = int(png.stem.rsplit("_", 1)[1])
        assert decode_index(Image.open(png)) == first[png.parent.name] + number, png

    # VLM Reviewer: every frame it was shown is a frame of one object's masklet, counted from the start
    reviewer_system = load_prompt("reviewer.v1").system.split("\n")[0]
    reviewed = [shown for system, shown in asked if system.startswith(reviewer_system)]
    allowed = {first[c] + i for c, _, indices in objects for i in indices}
    assert reviewed and all(set(shown) <= allowed for shown in reviewed)
    spans = [range(first[c], first[c] + n) for c, (_, n, *_) in clips.items()]
    assert all(any(set(shown) <= set(span) for span in spans) for shown in reviewed)

    # report previews: each drawn frame is the clip frame it is labelled with
    build_report(dataset, tmp_path / "site", clips=4)
    assert drawn and set(previewed) == set(clips)
    assert all(shown == first[clip_id] + index for clip_id, index, shown in drawn), drawn


def test_a_span_of_a_variable_frame_rate_video_reads_its_own_frames(tmp_path):
    """Ingest finds a VFR span's frames by frame time; the frame reader must start where it did."""
    import numpy as np

    from agents.video import write_video
    from engine.run import main
    from tests.helpers_coded import coded_frame

    gaps = [0.02 if (i // 6) % 2 else 0.1 for i in range(60)]  # 50 fps and 10 fps stretches
    times = [round(sum(gaps[:i]), 3) for i in range(60)]
    video = tmp_path / "vfr.mp4"
    write_video(video, (coded_frame(i) for i in range(60)), fps=25, times=times)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video_path": str(video), "start": 1.2, "end": 2.2}) + "\n")
    assert main(["build-motionvid-qa", "--dataset", str(tmp_path / "ds"), "--source", str(manifest),
                 "--executor", "local", "--stages", "ingest"]) == 0
    [clip] = DatasetStore(tmp_path / "ds").read_table("clips").to_pylist()
    first = int(np.searchsorted(times, 1.2 - 1e-6))
    assert round(1.2 * clip["fps"]) != first  # the span's mean rate would start elsewhere
    clip_row = type("Clip", (), clip)
    frames = Batch(root=tmp_path / "ds").read_frames(clip_row)
    assert [decode_index(f) for f in frames] == [first + i for i in clip["frame_indices"]]
