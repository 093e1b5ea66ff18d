"""GroundTruth: exact masklets and motion captions of virtual clips, as valid, stable rows."""

from __future__ import annotations

import json

from agents.base import Batch
from agents.ground_truth import GroundTruth
from agents.virtual.captions import motion_caption
from agents.virtual.render import render_masks
from agents.virtual.scene import Action, Background, SceneObject, SceneSpec
from schemas import ClipRow, decode_mask, mask_box, stable_id, validate_rows
from tests.helpers_virtual import make_virtual_clip, virtual_clip_row


def _batch(tmp_path, clips) -> Batch:
    return Batch(root=tmp_path, tables={"clips": clips})


def _folder_clip() -> ClipRow:
    return ClipRow(clip_id="f" * 16, source_key="a.mp4", video_path="a.mp4", num_frames=10, fps=10, width=64,
                   height=48, duration=1.0, source="folder", frame_indices=[0, 5], agent="ingest", model="none")


def test_rows_are_valid_exact_and_stable(tmp_path):
    clips = [make_virtual_clip(tmp_path, 0, i, render=False) for i in range(3)]
    batch = _batch(tmp_path, [*clips, _folder_clip()])
    out = GroundTruth().process_batch(batch)
    assert not out.rejections
    objects, rejected = validate_rows("objects", out.rows["objects"], "test")
    captions, rejected_captions = validate_rows("captions", out.rows["captions"], "test")
    assert not rejected and not rejected_captions
    assert {o.clip_id for o in objects} == {c.clip_id for c in clips}  # the folder clip is passed over
    assert len(captions) == 3

    for clip in clips:
        spec = SceneSpec.model_validate(json.loads(clip.metadata)["virtual"])
        masks = render_masks(spec, clip.frame_indices)
        rows = {o.object_id: o for o in objects if o.clip_id == clip.clip_id}
        for obj in spec.objects:
            row = rows[stable_id("object", clip.clip_id, "virtual", obj.index)]
            assert row.label == obj.label and row.score == 1.0 and row.source == "virtual"
            assert (row.agent, row.model, row.model_revision, row.prompt_version) == (
                "ground_truth", "virtual-renderer", spec.renderer_version, "none")
            for frame, rle, box in zip(row.frame_indices, row.masks, row.boxes, strict=True):
                decoded = decode_mask(rle)
                assert decoded.shape == (clip.height, clip.width) and rle.size == [clip.height, clip.width]
                assert (decoded == masks[clip.frame_indices.index(frame), obj.index]).all()
                assert box == mask_box(rle) and box[2] > box[0]
        caption = next(c for c in captions if c.clip_id == clip.clip_id)
        assert caption.kind == "motion" and caption.object_id is None and caption.text == motion_caption(spec)

    again = GroundTruth().process_batch(_batch(tmp_path, [*clips, _folder_clip()]))
    first = [r.to_record() for t in ("objects", "captions") for r in out.rows[t]]
    second = [r.to_record() for t in ("objects", "captions") for r in again.rows[t]]
    assert first == second


def test_frame_indices_are_the_sampled_frames_where_the_object_is_seen(tmp_path):
    leaving = SceneObject(index=0, shape="square", colour="red", size="medium", radius=20, x=250, y=120,
                          actions=[Action(kind="move", direction="right", distance=160, start_frame=0, end_frame=8)])
    staying = SceneObject(index=1, shape="circle", colour="blue", size="medium", radius=20, x=80, y=120)
    spec = SceneSpec(seed=0, index=99, width=320, height=240, fps=8, num_frames=12,
                     background=Background(base=(120, 120, 120), accent=(90, 90, 90), tile=20,
                                           wave_freq=(0.03, 0.03), wave_phase=0, wave_amp=5),
                     objects=[leaving, staying])
    clip = virtual_clip_row(spec, "videos/none.mp4", step=2)
    out = GroundTruth().process_batch(_batch(tmp_path, [clip]))
    rows = {r.label: r for r in out.rows["objects"]}
    # x = 250 + 20 t: the square's left edge (x - 16) passes 320 between frames 4 and 5.
    assert rows["red square"].frame_indices == [0, 2, 4]
    assert rows["blue circle"].frame_indices == [0, 2, 4, 6, 8, 10]


def test_unreadable_or_mismatched_scenes_are_rejected(tmp_path):
    good = make_virtual_clip(tmp_path, 0, 1, render=False)
    broken = good.model_copy(update={"clip_id": "b" * 16, "metadata": '{"virtual": {"width": "wide"}}'})
    missing = good.model_copy(update={"clip_id": "c" * 16, "metadata": None})
    resized = good.model_copy(update={"clip_id": "d" * 16, "width": 640})
    out = GroundTruth().process_batch(_batch(tmp_path, [broken, missing, resized, good]))
    assert sorted((r.item_id, r.reason, r.stage) for r in out.rejections) == [
        ("b" * 16, "invalid_metadata", "ground_truth"),
        ("c" * 16, "invalid_metadata", "ground_truth"),
        ("d" * 16, "invalid_metadata", "ground_truth"),
    ]
    assert {r.clip_id for r in out.rows["objects"]} == {good.clip_id}


def test_runs_through_the_driver_on_its_declared_tables(tmp_path):
    """The runner hands it only `clips`; it writes objects and captions for every virtual clip."""
    from agents.ingest import Ingest
    from engine.driver import BuildOptions, execute, plan_build
    from engine.executors import LocalExecutor
    from engine.pipeline import Pipeline
    from engine.progress import Progress
    from engine.store import DatasetStore

    stages = [Ingest({"virtual_seconds": 1.0}), GroundTruth()]
    pipeline, store, options = Pipeline(stages), DatasetStore(tmp_path / "ds", recover=True), BuildOptions()
    plan = plan_build(pipeline, store, "virtual:2", options)
    execute(pipeline, store, plan, lambda: LocalExecutor(stages, store.root), options,
            Progress(pipeline.names, live=False, interval=1e9))
    con = store.duckdb()
    counts = con.execute("SELECT (SELECT count(DISTINCT clip_id) FROM objects), "
                         "(SELECT count(*) FROM captions WHERE kind = 'motion')").fetchall()[0]
    con.close()
    assert counts == (2, 2)
