"""The SAM 3 Segmentor backend: a tiny random-weight `Sam3VideoModel` built locally, loaded back
through `from_pretrained`, prompted with the clip's phrases through the real Segmentor."""

from __future__ import annotations

import numpy as np
import pytest

from agents.backends.sam3 import Masklet, masklet_rows
from agents.base import Batch
from agents.segmentor import Segmentor, SegmentorConfig, tracking_frames
from schemas import Lineage, validate_rows
from schemas.masks import decode_mask
from tests.test_segmentor import HEIGHT, WIDTH
from tests.test_segmentor import scene as segmentor_scene
from tests.test_segmentor import tiny_cache as segmentor_cache

scene, tiny_cache = segmentor_scene, segmentor_cache  # the Segmentor tests' rendered clip and model cache

SAM3 = {"backend": "sam3", "video_model": "tiny:sam3-video", "device": "cpu", "dtype": "float32",
        "box_threshold": 0.0, "min_mask_area": 1, "dedup_iou": 0.95, "max_detections_per_phrase": 2,
        "max_objects_per_clip": 4}


def test_sam3_backend_writes_masklets_from_text_prompts(scene, tiny_cache):
    root, clip, phrases, _ = scene
    clip = clip.model_copy(update={"frame_indices": [0, 4, 8, 11]})  # few frames keep it fast
    stage = Segmentor(SAM3)
    out = stage(Batch(root=root, tables={"clips": [clip], "phrases": phrases}))
    rows = out.rows["objects"]
    assert rows, out.rejections
    assert validate_rows("objects", rows, "segmentor")[1] == []
    assert {r.label for r in rows} <= {p.text for p in phrases}
    for row in rows:
        assert row.model == "tiny:sam3-video" and row.prompt_version.startswith("sam3@")
        assert set(row.frame_indices) <= set(tracking_frames(clip, 4.0, 64))  # the plan and a 4 fps grid
        assert all(decode_mask(m).shape == (HEIGHT, WIDTH) for m in row.masks)
        assert 0 <= row.score <= 1
    per_phrase = {}
    for row in rows:
        per_phrase[row.label] = per_phrase.get(row.label, 0) + 1
    assert max(per_phrase.values()) <= 2 and len(rows) <= 4
    again = Segmentor(SAM3)(Batch(root=root, tables={"clips": [clip], "phrases": phrases})).rows["objects"]
    assert [r.model_dump() for r in again] == [r.model_dump() for r in rows]


def test_sam3_default_thresholds_find_nothing_in_random_weights(scene, tiny_cache):
    root, clip, phrases, _ = scene
    out = Segmentor(SAM3 | {"box_threshold": 0.9})(Batch(root=root, tables={"clips": [clip], "phrases": phrases}))
    assert not out.rows["objects"]
    assert [r.reason for r in out.rejections] == ["no_objects_found"]


def test_sam3_rejects_clips_without_phrases_or_frames(scene, tiny_cache, tmp_path):
    root, clip, phrases, _ = scene
    broken = clip.model_copy(update={"clip_id": "clip000000000002", "video_path": str(tmp_path / "gone.mp4")})
    lonely = clip.model_copy(update={"clip_id": "clip000000000003"})
    moved = [p.model_copy(update={"clip_id": broken.clip_id}) for p in phrases]
    out = Segmentor(SAM3)(Batch(root=root, tables={"clips": [broken, lonely], "phrases": moved}))
    reasons = {r.item_id: r.reason for r in out.rejections}
    assert reasons[lonely.clip_id] == "no_phrases"
    assert reasons[broken.clip_id] not in ("no_phrases", "no_objects_found", "segmentation_failed")


def _masklet(object_id, phrase_index, score, box, frames=4):
    """Logits at 10 x 10 for a 20 x 20 clip: every low-resolution pixel is 2 x 2 at frame size."""
    logits = np.full((frames, 10, 10), -10.0, np.float16)
    y0, x0, y1, x1 = box
    logits[:, y0:y1, x0:x1] = 10.0
    logits[1] = -10.0  # absent on one frame
    return Masklet(object_id, phrase_index, score, logits, np.full(frames, 0.5, np.float32), (20, 20))


def test_masklet_rows_keep_the_best_per_phrase_and_drop_duplicates(scene):
    _, clip, phrases, _ = scene
    cfg = SegmentorConfig(backend="sam3", min_mask_area=5, dedup_iou=0.7, max_detections_per_phrase=1,
                          max_objects_per_clip=8)
    masklets = [
        _masklet(0, 0, 0.9, (0, 0, 3, 3)),
        _masklet(1, 0, 0.5, (5, 5, 8, 8)),  # second of phrase 0: over the per-phrase limit
        _masklet(2, 1, 0.8, (0, 0, 3, 3)),  # same region as object 0 under another phrase: duplicate
        _masklet(3, 2, 0.7, (6, 0, 9, 3)),
        _masklet(4, 2, 0.95, (0, 9, 1, 10)),  # one low-resolution pixel: under the minimum area everywhere
    ]
    rows = masklet_rows(cfg, clip, [0, 3, 5, 7], phrases, masklets, Lineage(agent="segmentor", model="m"),
                        "segmentor")
    assert [r.label for r in rows] == [phrases[0].text, phrases[2].text]
    assert rows[0].frame_indices == [0, 5, 7]
    assert rows[0].score == pytest.approx(0.45)
    assert rows[1].boxes[0] == [0.0, 12.0, 6.0, 18.0]


def test_objects_of_one_prompt_do_not_overlap_but_prompts_may():
    import torch

    from agents.backends.sam3 import ABSENT, _without_overlaps

    logits = torch.full((3, 4, 4), -5.0)
    logits[0, :, :3] = 4.0  # object 0 (prompt 0) on columns 0-2
    logits[1, :, 1:] = 3.0  # object 1 (prompt 0, surer) on columns 1-3
    logits[2, :, :] = 2.0  # object 2 (prompt 1) everywhere
    out = _without_overlaps(logits, torch.tensor([0.4, 0.9, 0.1]), [0, 0, 1])
    assert (out[0, :, 0] == 4.0).all() and (out[0, :, 1:3] == ABSENT).all() and (out[0, :, 3] == -5.0).all()
    assert (out[1] == logits[1]).all() and (out[2] == logits[2]).all()
