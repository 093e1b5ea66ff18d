"""Annotator, called directly on a rendered clip with exact masks: scripted VLM and tiny Qwen2.5-VL."""

import numpy as np
import pytest

from agents.annotator import ObjectAnnotator, sample
from agents.backends.chat import ScriptedChatBackend
from agents.base import Batch
from schemas import CaptionRow, validate_rows
from tests.fakes.shapes import make_clip, object_row

GOOD = '{"detailed": "A red square slides steadily to the right.", "short": "red square moving right"}'


@pytest.fixture
def scene(tmp_path):
    clip, objects = make_clip(tmp_path, colours=((220, 40, 40), (40, 40, 220)), speeds=(8, 4))
    return tmp_path, clip, objects


def _batch(root, clip, objects):
    return Batch(root=root, tables={"clips": [clip], "objects": objects})


def test_sample_spreads_frames_and_keeps_ends():
    assert sample(list(range(10, 22)), 4) == [(0, 10), (4, 14), (7, 17), (11, 21)]
    assert sample([3, 5], 4) == [(0, 3), (1, 5)]


def test_each_object_gets_detailed_and_short_captions_with_its_prompt(scene, tmp_path):
    root, clip, objects = scene
    backend = ScriptedChatBackend(lambda request: GOOD, model="scripted-vlm")
    saved = tmp_path / "prompt-frames"
    stage = ObjectAnnotator({"num_frames": 3, "save_prompt_frames": str(saved)}, backend=backend)
    out = stage(_batch(root, clip, objects))
    rows = out.rows["captions"]
    assert out.rejections == []
    assert sorted((r.object_id, r.kind) for r in rows) == sorted(
        (o.object_id, k) for o in objects for k in ("object_detailed", "object_short"))
    assert validate_rows("captions", rows, "annotator")[1] == []
    assert all(r.prompt_version.endswith("+spotlight+images") and r.source == "annotator" for r in rows)
    request = backend.requests[0]
    images = [p["image"] for p in request.messages[-1]["content"] if p["type"] == "image"]
    assert len(images) == 3
    text = request.messages[-1]["content"][-1]["text"]
    assert '"square 0"' in text and "3 moments" in text
    assert "darkened" in request.messages[0]["content"]
    # spotlight: the object's red pixels survive, the far corner is darkened
    first = np.asarray(images[0]).astype(int)
    assert first[15, 10, 0] > 180 and first[90, 120].max() < 20
    assert len(list(saved.rglob("*.png"))) == 6


def test_visual_prompt_kind_changes_fingerprint_and_lineage(scene):
    root, clip, objects = scene
    spot = ObjectAnnotator({}, backend=ScriptedChatBackend(lambda r: GOOD))
    outline = ObjectAnnotator({"visual_prompt": "contour"}, backend=ScriptedChatBackend(lambda r: GOOD))
    assert spot.fingerprint() != outline.fingerprint()
    rows = outline(_batch(root, clip, objects[:1])).rows["captions"]
    assert rows[0].prompt_version.endswith("+contour+images")
    assert rows[0].caption_id == spot(_batch(root, clip, objects[:1])).rows["captions"][0].caption_id


def test_bad_objects_and_answers_are_rejected_not_dropped(scene):
    root, clip, objects = scene
    empty = object_row(clip.clip_id, "ghost", np.zeros((2, 96, 128), bool), frames=[0, 1])
    wrong_size = object_row(clip.clip_id, "tiny", np.ones((2, 8, 8), bool), frames=[0, 1])
    orphan = object_row("someotherclip", "orphan", np.ones((1, 96, 128), bool), frames=[0])
    answers = iter(["I see a square.", '{"detailed": "", "short": "x"}'])
    backend = ScriptedChatBackend(lambda r: next(answers))
    out = ObjectAnnotator({}, backend=backend)(_batch(root, clip, objects + [empty, wrong_size, orphan]))
    reasons = sorted(r.reason for r in out.rejections)
    assert reasons == ["clip_missing", "empty_mask", "mask_size_mismatch", "parse_failed", "parse_failed"]
    assert not out.rows["captions"]


def test_unreadable_video_rejects_its_objects(scene):
    root, clip, objects = scene
    (root / clip.video_path).write_bytes(b"not a video")
    out = ObjectAnnotator({}, backend=ScriptedChatBackend(lambda r: GOOD))(_batch(root, clip, objects))
    assert len(out.rejections) == 2 and not out.rows["captions"]


def test_tiny_vlm_produces_caption_rows(scene, monkeypatch, tmp_path):
    root, clip, objects = scene
    monkeypatch.setenv("VDE_CACHE", str(tmp_path / "cache"))
    config = {"chat": {"model": "tiny:qwen2.5-vl", "max_new_tokens": 96}, "max_tokens": 96,
              "num_frames": 2, "max_side": 112, "visual_prompt": "trails"}
    out = ObjectAnnotator(config)(_batch(root, clip, objects))
    rows = out.rows["captions"]
    assert len(rows) == 4, out.rejections
    assert all(isinstance(r, CaptionRow) and r.model == "tiny:qwen2.5-vl" for r in rows)
    assert rows[0].prompt_tokens > 20 and rows[0].completion_tokens > 0


def test_a_remote_model_gets_each_clips_requests_while_the_next_clip_is_drawn(scene):
    import threading

    from agents.annotator import AnnotatorAnswer
    from agents.base import StageOutput
    from agents.chat_stage import Ask

    answered = threading.Event()

    def answer(request):
        answered.set()
        return "not json" if "second" in str(request.messages) else GOOD

    stage = ObjectAnnotator({"chat": {"backend": "fake", "model": "remote"}},
                            backend=ScriptedChatBackend(answer, model="remote"))
    stage.ensure_setup()
    asks = [Ask(name, "clip", stage.request([{"role": "user", "content": name}], AnnotatorAnswer), name)
            for name in ("first", "second", "third")]
    overlapped = []

    def groups():
        yield asks[:1]
        overlapped.append(answered.wait(10))  # the first group is answered before the next is built
        yield asks[1:]

    out = StageOutput()
    got = stage.ask_as_built(groups(), out)
    assert overlapped == [True]
    assert [a.item_id for a, _ in got] == ["first", "third"]
    assert [r.item_id for r in out.rejections] == ["second"]
    at_once = StageOutput()
    assert [(a.item_id, r.parsed) for a, r in stage.ask(asks, at_once)] == [(a.item_id, r.parsed) for a, r in got]
    assert dict(out.counters) == dict(at_once.counters) and out.counters
