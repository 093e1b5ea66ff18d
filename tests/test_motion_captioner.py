"""Motion captioner and its consumers with scripted models at the boundary: which clips get a
caption, what the VLM is shown and told, and how the Analyzer and question writer use the caption."""

from __future__ import annotations

import json

import numpy as np

from agents.analyzer import CaptionAnalyzer
from agents.backends.chat import ScriptedChatBackend
from agents.base import Batch
from agents.motion_captioner import MotionCaptioner, motion_caption_id
from agents.question_writer import QuestionWriter
from agents.video import read_frames
from agents.visual_prompts import motion_blur
from schemas import CaptionRow, ClipRow, Lineage, ObjectRow, encode_masks, mask_box, stable_id, validate_rows
from tests.helpers_media import write_good_clip

KNOWN = ("A red square slides to the right across the frame, then stops at the right edge; "
         "it bounces twice while the camera pans right.")


def _clip(root, name, caption=None, camera=None, source="folder", n=24) -> ClipRow:
    write_good_clip(root / f"{name}.mp4", n=n)
    return ClipRow.build(
        Lineage(agent="ingest", model="pyav"), clip_id=stable_id("clip", name), source_key=name,
        video_path=f"{name}.mp4", num_frames=n, fps=12.0, width=96, height=64, duration=n / 12, source=source,
        caption=caption, frame_indices=[0, 8, 16, 23], camera_motion=camera,
    )


def _captioner(answer=KNOWN, **config):
    backend = ScriptedChatBackend(lambda r: json.dumps({"caption": answer}), model="vlm-test", revision="r7")
    return MotionCaptioner({"num_frames": 2, **config}, backend=backend), backend


def _images(request):
    return [p["image"] for p in request.messages[-1]["content"] if p.get("type") == "image"]


def _text(request):
    return next(p["text"] for p in request.messages[-1]["content"] if p.get("type") == "text")


def test_captionless_clips_get_a_motion_caption_from_blurred_consecutive_frames(tmp_path):
    bare = _clip(tmp_path, "bare", camera="pan_right")
    captioned = _clip(tmp_path, "captioned", caption="A red square slides right over a dark wall.")
    stage, backend = _captioner()
    out = stage(Batch(root=tmp_path, tables={"clips": [bare, captioned]}))
    [row] = out.rows["captions"]
    assert (row.clip_id, row.kind, row.object_id, row.source, row.text) == (bare.clip_id, "motion", None,
                                                                            "motion_captioner", KNOWN)
    assert row.caption_id == motion_caption_id(bare.clip_id)
    assert (row.agent, row.model, row.model_revision) == ("motion_captioner", "vlm-test", "r7")
    assert row.prompt_version.startswith("motion_captioner.v1@") and row.prompt_version.endswith("+blur+images")
    assert row.prompt_tokens > 0 and row.completion_tokens > 0
    assert validate_rows("captions", [row], "t")[1] == []
    assert out.counters["skipped_has_caption"] == 1
    [request] = backend.requests
    text = _text(request)
    assert "the camera pans right" in text and "0.0, 1.9 s" in text and "spotlight" not in text
    first, last = (np.asarray(im) for im in _images(request))
    frames = read_frames(tmp_path / "bare.mp4", range(24)).astype(int)
    assert np.array_equal(first, frames[0])  # the first frame has no past to blend
    blurred = motion_blur(frames[16:24], 0.65).astype(int)  # frame 23 and the 7 consecutive frames before it
    assert np.array_equal(last, blurred)
    assert np.abs(last - frames[23]).max() > 50  # the square's trail


def test_always_mode_and_read_failures(tmp_path):
    captioned = _clip(tmp_path, "captioned", caption="A red square slides right over a dark wall.")
    broken = _clip(tmp_path, "broken")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    stage, backend = _captioner(when="always")
    out = stage(Batch(root=tmp_path, tables={"clips": [captioned, broken]}))
    assert [r.clip_id for r in out.rows["captions"]] == [captioned.clip_id]
    assert 'came with this caption: "A red square slides right' in _text(backend.requests[0])
    assert [(r.item_id, r.stage) for r in out.rejections] == [(broken.clip_id, "motion_captioner")]


def test_objects_of_the_clip_add_spotlit_frames(tmp_path):
    clip = _clip(tmp_path, "virtual", caption="A red square.", source="virtual")
    masks = np.zeros((4, 64, 96), bool)
    masks[:, 20:36, 10:30] = True
    rles = encode_masks(masks)
    obj = ObjectRow.build(Lineage(agent="ground_truth", model="virtual"), object_id=stable_id("o", 1),
                          clip_id=clip.clip_id, label="red square", frame_indices=clip.frame_indices, masks=rles,
                          boxes=[mask_box(r) for r in rles], score=1.0, source="virtual")
    stage, backend = _captioner()
    out = stage(Batch(root=tmp_path, tables={"clips": [clip], "objects": [obj]}))
    assert out.rows["captions"][0].prompt_version.endswith("+blur+spotlight+images")
    images = _images(backend.requests[0])
    assert len(images) == 4 and "red square" in _text(backend.requests[0])
    lit = np.asarray(images[2]).astype(int)
    assert lit[:5, 50:].max() < 40 and lit[25, 15:25].mean() > 60  # dark outside the box, bright inside


def test_analyzer_and_question_writer_fall_back_to_the_motion_caption(tmp_path):
    bare = _clip(tmp_path, "bare", camera="pan_right")
    row = CaptionRow.build(Lineage(agent="motion_captioner", model="vlm-test"), caption_id=motion_caption_id(bare.clip_id),
                           clip_id=bare.clip_id, object_id=None, kind="motion", text=KNOWN, source="motion_captioner")
    analyzer_backend = ScriptedChatBackend(lambda r: '{"nouns": ["square"], "phrases": ["the red square"]}')
    out = CaptionAnalyzer({}, backend=analyzer_backend)(Batch(root=tmp_path, tables={"clips": [bare], "captions": [row]}))
    assert KNOWN in analyzer_backend.requests[0].messages[-1]["content"]
    assert [p.text for p in out.rows["phrases"]] == ["square", "the red square"]
    assert out.counters["caption_from_motion_caption"] == 1

    def answer(request):
        prompt = request.messages[-1]["content"]
        caption = prompt.split('"""')[1]
        questions = [{"category": c, "question": f"{c} question about the square?", "options": opts, "answer": "A",
                      "evidence": evidence} for c, opts, evidence in (
            ("MR", ["slides", "spins", "shrinks", "vanishes"], "slides to the right"),
            ("LM", ["to the right", "to the left", "upward", "downward"], "to the right across the frame"),
            ("AO", ["slides, then stops", "stops, then slides", "spins, then stops", "slides, then spins"],
             "then stops"),
            ("RC", ["twice", "once", "three times", "four times"], "bounces twice"),
            ("MO", ["the red square", "the blue circle", "the green star", "the wall"], "A red square"),
            ("CM", ["pans right", "pans left", "zooms in", "stays still"], "the camera pans right"),
        ) if c in prompt] if caption == KNOWN else []
        return json.dumps({"questions": questions})

    writer_backend = ScriptedChatBackend(answer)
    batch = Batch(root=tmp_path, tables={"clips": [bare], "captions": [row], "objects": [], "reviews": []})
    out = QuestionWriter({"object_questions": False}, backend=writer_backend)(batch)
    [request] = writer_backend.requests
    prompt = request.messages[-1]["content"]
    assert KNOWN in prompt and "Camera-motion estimate measured on the footage: the camera pans right" in prompt
    for code in ("MR", "LM", "AO", "RC", "MO", "CM"):
        assert f"   {code} " in prompt
    mcqs = out.rows["mcqs"]
    assert sorted(q.category for q in mcqs) == ["AO", "CM", "LM", "MO", "MR", "RC"]
    assert all(len(q.options) == 4 and q.caption_id == row.caption_id for q in mcqs)
    assert not out.rejections


def test_camera_estimate_makes_a_camera_question_required(tmp_path):
    clip = _clip(tmp_path, "still", caption="A red square slides right.", camera="static")
    writer_backend = ScriptedChatBackend(lambda r: json.dumps({"questions": [
        {"category": "MR", "question": "What does the square do?", "options": ["slides", "spins", "jumps", "rolls"],
         "answer": "A", "evidence": "slides right"}]}))
    batch = Batch(root=tmp_path, tables={"clips": [clip], "captions": [], "objects": [], "reviews": []})
    out = QuestionWriter({"object_questions": False}, backend=writer_backend)(batch)
    prompt = writer_backend.requests[0].messages[-1]["content"]
    assert "   CM camera motion" in prompt and "   RC " not in prompt and "   AO " not in prompt
    assert sorted((r.reason, r.detail.split()[0]) for r in out.rejections) == [
        ("missing_category", "CM"), ("missing_category", "LM"), ("missing_category", "MO")]
