"""Reviewer, called directly: llm mode (mask statistics) and vlm mode (outlined frames),
scripted answers including bad ones, and the tiny local models."""

import json

import pytest

from agents.backends.chat import ScriptedChatBackend
from agents.base import Batch
from agents.reviewer import MaskReviewer, mask_statistics
from schemas import CaptionRow, Lineage, stable_id, validate_rows
from tests.fakes.shapes import make_clip


@pytest.fixture
def scene(tmp_path):
    clip, objects = make_clip(tmp_path, colours=((220, 40, 40), (40, 40, 220), (40, 220, 40)), speeds=(8, 4, 0))
    captions = []
    for obj in objects:
        for kind in ("object_detailed", "object_short"):
            captions.append(CaptionRow.build(
                Lineage(agent="annotator", model="m"), caption_id=stable_id("caption", obj.object_id, kind),
                clip_id=obj.clip_id, object_id=obj.object_id, kind=kind, text=f"{kind} of {obj.label}",
                source="annotator",
            ))
    return tmp_path, clip, objects, captions


def _batch(root, clip, objects, captions):
    return Batch(root=root, tables={"clips": [clip], "objects": objects, "captions": captions})


def _by_label(answers):
    def answer(request):
        text = request.messages[-1]["content"]
        text = text if isinstance(text, str) else text[-1]["text"]
        return next(a for label, a in answers.items() if f'"{label}"' in text)
    return answer


def test_mask_statistics_describe_the_masklet(scene):
    _, _, objects, _ = scene
    stats = mask_statistics(objects[0])
    assert stats["frames"] == stats["present"] == 12
    assert stats["area_pct"] == pytest.approx(100 * 20 * 20 / (96 * 128))
    assert stats["first_box"] == [4, 10, 24, 30] and stats["last_box"] == [92, 10, 112, 30]
    assert stats["travel_px"] == 88 and mask_statistics(objects[2])["travel_px"] == 0


def test_verdicts_rows_and_rejections(scene):
    root, clip, objects, captions = scene
    answers = {
        "square 0": '{"verdict": "accept", "score": 0.9, "reason": "matches"}',
        "square 1": '{"verdict": "reject", "score": 0.2, "reason": "caption names the wrong colour"}',
        "square 2": '{"verdict": "accept", "score": 0.3, "reason": "vague"}',
    }
    backend = ScriptedChatBackend(_by_label(answers), model="scripted-llm")
    out = MaskReviewer({"min_score": 0.5}, backend=backend)(_batch(root, clip, objects, captions))
    reviews = {r.object_id: r for r in out.rows["reviews"]}
    assert [reviews[o.object_id].verdict for o in objects] == ["accept", "reject", "reject"]
    assert reviews[objects[2].object_id].reason.startswith("score 0.30 below 0.50")
    assert reviews[objects[0].object_id].caption_id == stable_id("caption", objects[0].object_id, "object_detailed")
    rejected = {r.item_id: r.reason for r in out.rejections}
    assert rejected == {objects[1].object_id: "review_rejected", objects[2].object_id: "review_rejected"}
    assert validate_rows("reviews", out.rows["reviews"], "reviewer")[1] == []
    prompt = backend.requests[0].messages[-1]["content"]
    assert "object_detailed of square 0" in prompt and "centre moved 88 px" in prompt
    assert all(r.prompt_version.endswith("+llm") for r in out.rows["reviews"])


def test_score_rule_accepts_on_score_alone(scene):
    root, clip, objects, captions = scene
    backend = ScriptedChatBackend(lambda r: '{"verdict": "reject", "score": 0.0, "reason": "x"}')
    out = MaskReviewer({"accept_rule": "score", "min_score": 0.0}, backend=backend)(
        _batch(root, clip, objects, captions))
    assert {r.verdict for r in out.rows["reviews"]} == {"accept"} and not out.rejections


def test_bad_answers_and_missing_captions(scene):
    root, clip, objects, captions = scene
    answers = {"square 0": "Looks fine to me.", "square 1": '{"verdict": "yes", "score": 2, "reason": "?"}'}
    backend = ScriptedChatBackend(_by_label(answers))
    no_third = [c for c in captions if c.object_id != objects[2].object_id]
    out = MaskReviewer({}, backend=backend)(_batch(root, clip, objects, no_third))
    assert not out.rows["reviews"]
    assert sorted(r.reason for r in out.rejections) == ["no_caption", "parse_failed", "parse_failed"]


def test_vlm_mode_sends_outlined_frames(scene):
    root, clip, objects, captions = scene
    backend = ScriptedChatBackend(lambda r: '{"verdict": "accept", "score": 0.8, "reason": "ok"}')
    out = MaskReviewer({"mode": "vlm", "num_frames": 2}, backend=backend)(_batch(root, clip, objects, captions))
    assert len(out.rows["reviews"]) == 3
    content = backend.requests[0].messages[-1]["content"]
    assert [p["type"] for p in content] == ["image", "image", "text"]
    assert "mask outline" in content[-1]["text"]


def test_tiny_models_review_in_both_modes(scene, monkeypatch, tmp_path):
    root, clip, objects, captions = scene
    monkeypatch.setenv("VDE_CACHE", str(tmp_path / "cache"))
    llm = {"chat": {"model": "tiny:qwen2", "max_new_tokens": 64}, "max_tokens": 64,
           "accept_rule": "score", "min_score": 0.0}
    out = MaskReviewer(llm)(_batch(root, clip, objects, captions))
    assert len(out.rows["reviews"]) == 3, out.rejections
    vlm = llm | {"chat": {"model": "tiny:qwen2.5-vl", "max_new_tokens": 64}, "mode": "vlm", "num_frames": 2,
                 "max_side": 112}
    out = MaskReviewer(vlm)(_batch(root, clip, objects, captions))
    assert len(out.rows["reviews"]) == 3, out.rejections
    assert json.loads(out.rows["reviews"][0].model_dump_json())["model"] == "tiny:qwen2.5-vl"
