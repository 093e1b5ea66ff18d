"""Refiner, called directly: only accepted objects are refined; scripted answers (good and bad),
the OpenAI-compatible backend against the loopback server, and the tiny local model."""

import pytest

from agents.backends.chat import ScriptedChatBackend
from agents.base import Batch
from agents.refiner import CaptionRefiner
from schemas import CaptionRow, Lineage, ReviewRow, stable_id, validate_rows
from tests.fakes.openai_server import FakeOpenAIServer, Reply

CLIP = stable_id("clip", "c")
LINEAGE = Lineage(agent="test", model="m")


@pytest.fixture
def openai_server():
    with FakeOpenAIServer() as server:
        yield server


def _object(name, verdict, kinds=("object_detailed", "object_short")):
    object_id = stable_id("object", name)
    captions = [
        CaptionRow.build(LINEAGE, caption_id=stable_id("caption", object_id, kind), clip_id=CLIP,
                         object_id=object_id, kind=kind, text=f"{name}: a red red square moves right, right.",
                         source="annotator")
        for kind in kinds
    ]
    review = ReviewRow.build(LINEAGE, review_id=stable_id("review", object_id), clip_id=CLIP, object_id=object_id,
                             caption_id=captions[0].caption_id if captions else None, verdict=verdict,
                             score=0.9 if verdict == "accept" else 0.1, reason="r")
    return object_id, captions, review


def _batch(*objects):
    return Batch(root=".", tables={"captions": [c for o in objects for c in o[1]], "reviews": [o[2] for o in objects]})


GOOD = '{"detailed": "A red square moves to the right.", "short": "red square moving right"}'


def test_only_accepted_objects_are_refined():
    kept, dropped = _object("kept", "accept"), _object("dropped", "reject")
    backend = ScriptedChatBackend(lambda r: GOOD, model="gpt-4o")
    out = CaptionRefiner({}, backend=backend)(_batch(kept, dropped))
    rows = out.rows["captions"]
    assert [(r.object_id, r.kind) for r in rows] == [(kept[0], "refined_detailed"), (kept[0], "refined_short")]
    assert rows[0].text == "A red square moves to the right." and rows[0].source == "refiner"
    assert validate_rows("captions", rows, "refiner")[1] == [] and not out.rejections
    prompt = backend.requests[0].messages[-1]["content"]
    assert "kept: a red red square" in prompt and "dropped" not in prompt
    assert len(backend.requests) == 1


def test_bad_answers_and_missing_captions_are_rejected():
    objects = [_object("a", "accept"), _object("b", "accept"), _object("c", "accept", kinds=())]
    answers = iter(["Here is a better caption: A red square.", '{"detailed": "ok", "short": ""}'])
    out = CaptionRefiner({}, backend=ScriptedChatBackend(lambda r: next(answers)))(_batch(*objects))
    assert not out.rows["captions"]
    assert sorted(r.reason for r in out.rejections) == ["no_caption", "parse_failed", "parse_failed"]


def test_short_only_object_is_still_refined():
    obj = _object("s", "accept", kinds=("object_short",))
    out = CaptionRefiner({}, backend=ScriptedChatBackend(lambda r: GOOD))(_batch(obj))
    assert len(out.rows["captions"]) == 2


def test_default_backend_is_openai_and_key_stays_out_of_rows(openai_server, monkeypatch):
    monkeypatch.setenv("VDE_REFINER_KEY", "sk-refiner-secret")
    openai_server.script(Reply(GOOD, prompt_tokens=120, completion_tokens=30))
    config = {"chat": {"backend": "openai", "model": "gpt-4o", "base_url": openai_server.base_url,
                       "api_key_env": "VDE_REFINER_KEY"}}
    stage = CaptionRefiner(config)
    out = stage(_batch(_object("k", "accept")))
    rows = out.rows["captions"]
    assert [r.kind for r in rows] == ["refined_detailed", "refined_short"]
    assert (rows[0].prompt_tokens, rows[0].completion_tokens, rows[1].prompt_tokens) == (120, 30, 0)
    assert rows[0].model == "gpt-4o"
    assert "sk-refiner-secret" not in str([r.to_record() for r in rows]) + str(stage.config.model_dump())
    assert CaptionRefiner({}).config.chat.backend == "openai"


def test_tiny_local_model_refines(tmp_path, monkeypatch):
    monkeypatch.setenv("VDE_CACHE", str(tmp_path))
    config = {"chat": {"backend": "local", "model": "tiny:qwen2", "max_new_tokens": 96}, "max_tokens": 96}
    out = CaptionRefiner(config)(_batch(_object("t", "accept"), _object("u", "accept")))
    assert len(out.rows["captions"]) == 4, out.rejections


def test_fingerprint_ignores_how_the_model_is_reached():
    base = CaptionRefiner({})
    moved = CaptionRefiner({"chat": {"backend": "openai", "model": "gpt-4.1", "base_url": "http://h:1/v1",
                                     "concurrency": 32, "timeout_s": 5, "max_retries": 9}})
    other = CaptionRefiner({"chat": {"backend": "openai", "model": "gpt-4o-mini"}})
    assert base.fingerprint() == moved.fingerprint() != other.fingerprint()
