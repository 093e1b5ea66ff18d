"""Curation of real footage: splitting, filters, near-duplicate removal, guarded decoding."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pytest

from agents.base import Batch
from agents.curation.curate import CurationConfig, Curator, analyse_video, clip_id_for, drop_near_duplicates
from agents.curation.dedup import DedupRecord, find_near_duplicates
from agents.curation.filters import camera_motion, check_content, to_analysis_grey
from agents.curation.safe_decode import DecodeFailure, GuardedDecoder
from agents.curation.scenes import ContentScore, Span, SplitConfig, cut_windows, detect_shots
from agents.ingest import Ingest
from agents.video import probe, write_video
from engine.sources import iter_source
from schemas import ClipRow
from tests.helpers_footage import FPS, SEGMENT_FRAMES, render_long_video, render_small_video, texture

SMALL_OK = {"filters": {"min_short_side": 128, "min_duration": 1.0}}


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    folder = tmp_path_factory.mktemp("footage")
    plan = render_long_video(folder / "long.mp4")
    render_small_video(folder / "small.mp4")
    return folder, plan


@pytest.fixture(scope="module")
def curator():
    cur = Curator(CurationConfig.model_validate(SMALL_OK))
    yield cur
    cur.close()


@pytest.fixture(scope="module")
def curated(footage, curator):
    folder, _ = footage
    return curator.curate(str(folder / "long.mp4"), "videohash")


def _shot_kind(plan, span: Span) -> str:
    edges = [0, *plan["cuts"], plan["num_frames"]]
    for kind, a, b in zip(plan["kinds"], edges, edges[1:], strict=False):
        if abs(span.start_frame - a) <= 2 and abs(span.end_frame - b) <= 2:
            return kind
    raise AssertionError(f"{span} matches no rendered shot")


def test_splitter_finds_every_hard_cut_within_two_frames(footage):
    folder, plan = footage
    shots, frames_read = detect_shots(folder / "long.mp4", SplitConfig())
    found = [s.start_frame for s in shots[1:]]
    assert len(found) == len(plan["cuts"])
    assert all(abs(f - c) <= 2 for f, c in zip(found, plan["cuts"], strict=False)), (found, plan["cuts"])
    assert frames_read == plan["num_frames"]


@pytest.mark.parametrize("threshold", [3.0, 10.0, 27.0, 45.0])
def test_content_score_cuts_where_pyscenedetect_content_detector_cuts(footage, threshold):
    import av
    from scenedetect import ContentDetector
    from scenedetect.common import FrameTimecode

    folder, _ = footage
    ours, theirs = ContentScore(threshold, 8), ContentDetector(threshold=threshold, min_scene_len=8)
    ours_cuts, their_cuts = [], []
    with av.open(str(folder / "long.mp4")) as container:
        for index, frame in enumerate(container.decode(video=0)):
            image = frame.to_ndarray(format="bgr24", width=256, height=144)
            ours_cuts += ours.process_frame(FrameTimecode(index, FPS), image)
            their_cuts += theirs.process_frame(FrameTimecode(index, FPS), image)
    assert [c.frame_num for c in ours_cuts] == [c.frame_num for c in their_cuts]
    assert threshold > 27 or their_cuts  # the low thresholds cut


def test_splitter_keeps_to_the_requested_range(footage):
    folder, plan = footage
    shots, _ = detect_shots(folder / "long.mp4", SplitConfig(), first=60, last=150)
    assert shots[0].start_frame == 60 and shots[-1].end_frame == 150
    assert [s.start_frame for s in shots[1:]] == [c for c in plan["cuts"] if 60 < c < 150]


def test_long_shots_become_equal_windows_no_longer_than_the_maximum():
    shots = [Span(0, 24 * 61, 24.0), Span(24 * 61, 24 * 70, 24.0)]
    windows = cut_windows(shots, max_seconds=30.0)
    assert [round(w.duration, 2) for w in windows] == [20.33, 20.33, 20.33, 9.0]
    assert windows[0].start_frame == 0 and windows[-1].end_frame == 24 * 70
    assert all(a.end_frame == b.start_frame for a, b in zip(windows, windows[1:], strict=False))
    assert cut_windows(shots, None) == shots


def test_filters_drop_exactly_the_bad_shots_with_their_reasons(footage, curated):
    _, plan = footage
    kept, rejections = curated
    assert sorted(_shot_kind(plan, c.span) for c in kept) == ["duplicate", "object", "pan"]
    by_kind = {_shot_kind(plan, Span(*_frames(r.detail), FPS)): r.reason for r in rejections}
    assert by_kind == {"static": "static_clip", "letterboxed": "letterboxed", "black": "black_frames", "short": "too_short"}
    assert all(r.clip_id == r.item_id and r.clip_id for r in rejections)


def _frames(detail: str) -> tuple[int, int]:
    start, end = detail.split(" s:")[0].split("-")
    return round(float(start) * FPS), round(float(end) * FPS)


def test_motion_score_and_camera_motion_are_kept_per_clip(footage, curated):
    _, plan = footage
    kinds = {_shot_kind(plan, c.span): c for c in curated[0]}
    assert kinds["pan"].features.camera_motion == "pan_right"  # the scene slides left
    assert kinds["object"].features.camera_motion == "static"
    assert kinds["pan"].features.motion_score > kinds["object"].features.motion_score > 1.0
    meta = kinds["pan"].metadata()
    assert meta["camera_motion"] == "pan_right" and meta["motion_score"] > 10 and len(meta["phash"]) == 5


def test_camera_motion_is_estimated_only_for_clips_the_filters_keep(footage):
    folder, plan = footage
    config = CurationConfig.model_validate(SMALL_OK)
    analysis = analyse_video(str(folder / "long.mp4"), config.model_dump(mode="json"))
    dropped = {_shot_kind(plan, m.span) for m in analysis.measured if check_content(m.features, config.filters)}
    assert dropped == {"static", "letterboxed", "black"}
    for m in analysis.measured:
        assert (m.features.camera_motion is None) == (_shot_kind(plan, m.span) in dropped)


def test_frames_past_the_store_limits_are_decoded_again_with_the_same_results(footage, monkeypatch):
    from agents.curation import curate

    folder, _ = footage
    config = CurationConfig.model_validate(SMALL_OK).model_dump(mode="json")
    stored = analyse_video(str(folder / "long.mp4"), config)

    class SmallStore(curate.FrameStore):
        def __init__(self):
            super().__init__(limit=5, open_limit=10)

    decoded_again: list[int] = []
    read_grey = curate._read_grey
    monkeypatch.setattr(curate, "FrameStore", SmallStore)
    monkeypatch.setattr(curate, "_read_grey", lambda path, wanted: (decoded_again.append(len(wanted)), read_grey(path, wanted))[1])
    small = analyse_video(str(folder / "long.mp4"), config)
    assert decoded_again and small.measured == stored.measured and small.rejected == stored.rejected


def test_duplicate_shot_is_removed_naming_the_copy_it_kept(footage, curated):
    _, plan = footage
    kept, rejections = drop_near_duplicates(curated[0], CurationConfig().dedup)
    assert sorted(_shot_kind(plan, c.span) for c in kept) in (["duplicate", "object"], ["object", "pan"])
    (rejection,) = rejections
    assert rejection.reason == "near_duplicate"
    survivor = next(c for c in kept if _shot_kind(plan, c.span) != "object")
    assert survivor.clip_id in rejection.detail and rejection.item_id != survivor.clip_id


def test_clip_ids_derive_from_video_hash_and_span(footage, curator, curated):
    folder, _ = footage
    again, _ = curator.curate(str(folder / "long.mp4"), "videohash")
    assert [c.clip_id for c in again] == [c.clip_id for c in curated[0]]
    assert all(c.clip_id == clip_id_for("videohash", c.span) for c in again)
    other, _ = curator.curate(str(folder / "long.mp4"), "otherhash")
    assert not {c.clip_id for c in other} & {c.clip_id for c in again}


def test_manifest_span_limits_the_clips(footage, curator):
    folder, plan = footage
    kept, rejections = curator.curate(str(folder / "long.mp4"), "videohash", start=0.0, end=4.0)
    assert sorted(_shot_kind(plan, c.span) for c in kept) == ["object", "pan"] and not rejections


def test_video_level_filters_reject_the_whole_video(footage, tmp_path):
    folder, _ = footage
    low_fps = tmp_path / "slow.mp4"
    write_video(low_fps, [texture(i, 256, 192, (90, 90, 200)) for i in range(12)], fps=4)
    with Curator(CurationConfig.model_validate(SMALL_OK)) as cur:
        assert cur.curate(str(folder / "small.mp4"), "h")[1][0].reason == "too_small"
        assert cur.curate(str(low_fps), "h")[1][0].reason == "low_fps"
        broken = tmp_path / "broken.mp4"
        broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
        (rejection,) = cur.curate(str(broken), "h")[1]
        assert rejection.reason in {"not_a_video", "truncated_video", "decode_error"} and rejection.item_id == ""


def test_camera_motion_tells_zoom_and_tilt_from_pan():
    wall = texture(7, 320, 240, (180, 160, 120))
    zoomed = wall[12:228, 16:304]  # 10% closer: the frame's content grows
    zoom_pair = [(to_analysis_grey(wall), to_analysis_grey(_resize(zoomed, 320, 240)))]
    assert camera_motion(zoom_pair, 0.1, 0.03)[0] == "zoom_in"
    tall = texture(8, 320, 300, (120, 180, 90))
    tilt_pair = [(to_analysis_grey(tall[20:260]), to_analysis_grey(tall[28:268]))]  # content moves up
    assert camera_motion(tilt_pair, 0.1, 0.03)[0] == "tilt_down"
    still = to_analysis_grey(wall)
    assert camera_motion([(still, still)], 0.1, 0.03)[0] == "static"


def _resize(image, width, height):
    import cv2

    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def test_near_duplicates_keep_the_best_quality_copy():
    base = ("f0f0f0f0f0f0f0f0", "0f0f0f0f0f0f0f0f")
    close = ("f0f0f0f0f0f0f0f1", "0f0f0f0f0f0f0f0f")  # one bit away
    far = ("123456789abcdef0", "fedcba9876543210")
    records = [
        DedupRecord("small", base, (240.0, 1e5, 5.0, 24.0)),
        DedupRecord("large", close, (720.0, 1e6, 5.0, 24.0)),
        DedupRecord("longer", base, (240.0, 1e5, 9.0, 24.0)),
        DedupRecord("other", far, (240.0, 1e5, 5.0, 24.0)),
    ]
    found = {d.clip_id: d.kept_id for d in find_near_duplicates(records, max_distance=4)}
    assert found == {"small": "large", "longer": "large"}
    exact = find_near_duplicates(records, max_distance=0)
    assert [(d.clip_id, d.kept_id, d.distance) for d in exact] == [("small", "longer", 0.0)]


def test_materialized_clip_holds_exactly_its_frames(footage, curator, curated, tmp_path):
    folder, _ = footage
    clip = curated[0][0]
    written = curator.materialize(str(folder / "long.mp4"), clip, tmp_path / "clips" / f"{clip.clip_id}.mp4")
    assert not isinstance(written, DecodeFailure)
    info = probe(written)
    assert info.num_frames == clip.span.num_frames and (info.width, info.height) == (256, 192)
    assert not list((tmp_path / "clips").glob("*.partial*"))


def test_hanging_decoder_times_out_and_the_guard_recovers(footage):
    folder, _ = footage
    with GuardedDecoder(timeout_s=1.5) as guard:
        failure = guard.call("tests.helpers_footage:hanging_decoder", "x")
        assert failure == DecodeFailure("decode_timeout", failure.detail) and "1.5 s" in failure.detail
        facts = guard.call("agents.curation.curate:probe_video", str(folder / "long.mp4"), timeout_s=60)
        assert facts.width == 256


def test_crashing_decoder_becomes_a_rejection_and_the_guard_recovers(footage):
    folder, _ = footage
    with GuardedDecoder(timeout_s=20) as guard:
        failure = guard.call("tests.helpers_footage:crashing_decoder", "x")
        assert failure.reason == "decoder_crashed" and "139" in failure.detail
        assert guard.call("agents.curation.curate:probe_video", str(folder / "long.mp4")).fps == FPS


def test_curator_turns_a_hanging_decoder_into_a_rejection_row(footage):
    folder, _ = footage
    config = CurationConfig.model_validate({**SMALL_OK, "decode_timeout_s": 1.0, "decode_s_per_minute": 0})
    with Curator(config, analyse_entry="tests.helpers_footage:hanging_decoder") as cur:
        kept, (rejection,) = cur.curate(str(folder / "long.mp4"), "h")
    assert not kept and rejection.reason == "decode_timeout"



CURATED = {"curation": {"enabled": True, **SMALL_OK}}


@pytest.fixture(scope="module")
def ingest():
    stage = Ingest(CURATED)
    yield stage
    stage.teardown()


def test_ingest_curates_a_folder_of_long_videos(footage, ingest, tmp_path):
    folder, plan = footage
    out = ingest.process_batch(Batch(root=tmp_path, items=list(iter_source(str(folder)))))
    clips = out.rows["clips"]
    assert len(clips) == 2 and {c.camera_motion for c in clips} == {"pan_right", "static"}
    reasons = sorted(r.reason for r in out.rejections)
    assert reasons == ["black_frames", "letterboxed", "near_duplicate", "static_clip", "too_short", "too_small"]
    assert next(r for r in out.rejections if r.reason == "too_small").item_id == "file:small.mp4"
    duplicate = next(r for r in out.rejections if r.reason == "near_duplicate")
    assert any(c.clip_id in duplicate.detail for c in clips)
    for clip in clips:
        assert clip.end - clip.start == pytest.approx(SEGMENT_FRAMES / FPS) and clip.num_frames == SEGMENT_FRAMES
        assert max(clip.frame_indices) == SEGMENT_FRAMES - 1 and clip.motion_score > 1.0
        assert json.loads(clip.metadata)["curation"]["camera_motion"] == clip.camera_motion
    pa.Table.from_pylist([c.to_record() for c in clips], schema=ClipRow.ARROW)  # fits the Arrow schema


def test_ingest_carries_manifest_columns_into_curated_clips(footage, ingest, tmp_path):
    folder, _ = footage
    manifest = tmp_path / "m.jsonl"
    row = {"video_path": f"file://{folder / 'long.mp4'}", "caption": "shots", "start": 0.0, "end": 4.0,
           "split": "train", "licence": "cc-by"}
    manifest.write_text(json.dumps(row) + "\n" + json.dumps({"video_path": "gone.mp4"}) + "\n")
    out = ingest.process_batch(Batch(root=tmp_path, items=list(iter_source(str(manifest)))))
    clips = out.rows["clips"]
    assert [(c.start, c.end) for c in clips] == [(0.0, 2.0), (2.0, 4.0)]
    assert all(c.caption == "shots" and c.source == "manifest" for c in clips)
    meta = json.loads(clips[0].metadata)
    assert meta["split"] == "train" and meta["licence"] == "cc-by" and meta["curation"]["phash"]
    assert [r.reason for r in out.rejections] == ["source_missing"]


def test_ingest_materializes_clip_files_on_request(footage, tmp_path):
    folder, _ = footage
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(folder / "long.mp4", source / "long.mp4")
    stage = Ingest({"curation": {**CURATED["curation"], "materialize": True, "dedup": {"enabled": False}}})
    try:
        out = stage.process_batch(Batch(root=tmp_path / "ds", items=list(iter_source(str(source)))))
    finally:
        stage.teardown()
    clips = out.rows["clips"]
    assert len(clips) == 3
    for clip in clips:
        assert clip.video_path == f"media/clips/{clip.clip_id}.mp4" and clip.start is None
        assert probe(tmp_path / "ds" / clip.video_path).num_frames == clip.num_frames


def test_a_copied_video_in_another_shard_gives_no_repeated_rejection_id(footage, tmp_path):
    """The same footage under two names, in two shards: each rejection row stays its own."""
    import yaml

    from engine.run import main
    from engine.store import DatasetStore

    folder, _ = footage
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(folder / "long.mp4", source / "a.mp4")
    shutil.copy(folder / "long.mp4", source / "b.mp4")
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({"stage_config": {"ingest": CURATED}}))
    assert main(["build-motionvid-qa", "--config", str(config), "--dataset", str(tmp_path / "ds"), "--source",
                 str(source), "--stages", "ingest", "--shard-size", "1", "--executor", "local"]) == 0
    rows = DatasetStore(tmp_path / "ds", create=False).read_table("rejections").to_pylist()
    ids = [r["rejection_id"] for r in rows]
    assert len(ids) == len(set(ids)) and len(ids) > 8
    spans = [r for r in rows if r["reason"] == "static_clip"]
    assert sorted(r["item_id"].split("#")[0] for r in spans) == ["file:a.mp4", "file:b.mp4"]
    assert spans[0]["clip_id"] == spans[1]["clip_id"]  # the same content: the same clip id
