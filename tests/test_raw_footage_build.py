"""Acceptance: a folder of captionless videos through the real `build-motionvid-qa` with the tiny
profile gives every clip a motion caption, objects and four-option motion questions.

Every stage runs its tiny random-weight model except the question writer, whose questions must be
grounded in the caption (random weights never quote it): it talks to a loopback OpenAI-compatible
server that reads the caption and the asked categories from the prompt and quotes the caption."""

from __future__ import annotations

import json
import re

import pytest

from engine.run import main
from engine.store import DatasetStore
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.helpers_footage import write_footage_folder

pytestmark = pytest.mark.slow


def question_writer_model(body: dict) -> Reply:
    prompt = body["messages"][-1]["content"]
    caption = prompt.split('"""')[1]
    asked = re.findall(r"^ {3}(MR|LM|AO|RC|MO|CM) ", prompt, flags=re.M)
    camera = re.search(r"measured on the footage: (.+)\.$", prompt, flags=re.M)
    # a random-weight caption may hold no word at all: the camera estimate is quotable evidence too
    quoted = next((w for w in caption.split() if re.search(r"\w", w)), camera.group(1) if camera else caption)
    questions = [{"category": c, "question": f"What does the {c} question ask about the video?",
                  "options": [f"{quoted} {c}", "option two", "option three", "option four"], "answer": "A",
                  "evidence": quoted} for c in asked]
    return Reply(json.dumps({"questions": questions}), prompt_tokens=len(prompt.split()), completion_tokens=40)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    facts = write_footage_folder(root / "videos")
    with FakeOpenAIServer(question_writer_model) as server:
        flags = [f"--set=question_writer.chat.{key}={value}" for key, value in {
            "backend": "openai", "model": "fake-gpt", "base_url": server.base_url, "max_retries": 0}.items()]
        code = main(["build-motionvid-qa", "--dataset", str(root / "ds"), "--source", str(root / "videos"),
                     "--profile", "tiny", "--executor", "local", "--set", "question_writer.object_questions=false",
                     *flags])
        calls = [c.body for c in server.calls]
    assert code == 0
    store = DatasetStore(root / "ds", create=False)
    tables = {t: store.read_table(t).to_pylist() for t in ("clips", "captions", "objects", "mcqs", "rejections")}
    return facts, tables, calls


def test_every_clip_gets_a_motion_caption_objects_and_four_option_questions(built):
    facts, tables, calls = built
    clips = {c["source_key"].removeprefix("file:"): c for c in tables["clips"]}
    assert sorted(clips) == sorted(facts)  # the rotated and the variable-rate clips are not rejected
    ids = {c["clip_id"] for c in clips.values()}
    motion = [c for c in tables["captions"] if c["kind"] == "motion" and c["source"] == "motion_captioner"]
    assert {c["clip_id"] for c in motion} == ids
    assert all(c["model"] == "tiny:qwen2.5-vl" and c["prompt_tokens"] > 0 for c in motion)
    assert {o["clip_id"] for o in tables["objects"]} == ids
    mcqs = tables["mcqs"]
    assert {q["clip_id"] for q in mcqs} == ids
    assert all(len(q["options"]) == 4 and q["answer"] in "ABCD" for q in mcqs)
    written = [q for q in mcqs if q["source"] == "llm"]
    assert {q["caption_id"] for q in written} <= {c["caption_id"] for c in motion}
    for clip in clips.values():  # every clip has a camera-motion estimate, so a camera question
        assert {"MR", "MO", "CM"} <= {q["category"] for q in mcqs if q["clip_id"] == clip["clip_id"]}
    assert clips["pan.mp4"]["camera_motion"] == "pan_right"
    assert (clips["rotated.mp4"]["width"], clips["rotated.mp4"]["height"]) == facts["rotated.mp4"]["size"]
    assert all("Camera-motion estimate" in c["messages"][-1]["content"] for c in calls)
    assert not [r for r in tables["rejections"] if r["stage"] == "ingest"]


def test_objects_are_in_upright_coordinates(built):
    facts, tables, _ = built
    clip = next(c for c in tables["clips"] if c["source_key"] == "file:rotated.mp4")
    objects = [o for o in tables["objects"] if o["clip_id"] == clip["clip_id"]]
    assert objects and all(m["size"] == [128, 96] for o in objects for m in o["masks"])


def test_every_clip_gets_a_camera_question_answered_by_its_measured_camera_motion(built):
    """No model needed: the template writer asks how the camera moves and answers with the estimate."""
    from agents.template_writer import CAMERA_ANSWERS

    _, tables, _ = built
    measured = {q["clip_id"]: q for q in tables["mcqs"] if q["model"] == "camera_motion_estimate"}
    assert set(measured) == {c["clip_id"] for c in tables["clips"]}
    for clip in tables["clips"]:
        q = measured[clip["clip_id"]]
        assert q["category"] == "CM" and q["source"] == "template" and len(set(q["options"])) == 4
        assert q["options"]["ABCD".index(q["answer"])] == CAMERA_ANSWERS[clip["camera_motion"]]
