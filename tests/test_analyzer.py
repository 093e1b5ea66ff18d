"""Analyzer, called directly: scripted answers (realistic, messy, broken) and the tiny local model."""

import json

from agents.analyzer import CaptionAnalyzer
from agents.backends.chat import ScriptedChatBackend
from agents.base import Batch
from schemas import ClipRow, Lineage, PhraseRow, stable_id, validate_rows


def _clip(name, caption):
    return ClipRow.build(
        Lineage(agent="ingest", model="none"), clip_id=stable_id("clip", name), source_key=name,
        video_path=f"{name}.mp4", num_frames=10, fps=5.0, width=64, height=48, duration=2.0,
        source="virtual", caption=caption, frame_indices=[0, 5],
    )


def _run(answers: dict[str, str], clips, **config):
    def answer(request):
        user = request.messages[-1]["content"]
        return next(text for key, text in answers.items() if key in user)

    backend = ScriptedChatBackend(answer, model="scripted-llm", revision="r1")
    stage = CaptionAnalyzer(config, backend=backend)
    return stage, backend, stage(Batch(root=".", tables={"clips": clips}))


def test_realistic_answer_becomes_clean_deduplicated_phrases():
    clip = _clip("a", "A red ball rolls left past a blue cube.")
    answer = '```json\n{"nouns": ["Ball", "cube", "ball "], "phrases": ["the red ball.", "  the  blue cube ", "The red ball"]}\n```'
    stage, backend, out = _run({"red ball": answer}, [clip])
    rows = out.rows["phrases"]
    assert [(r.kind, r.text) for r in rows] == [
        ("noun", "ball"), ("noun", "cube"), ("referring", "the red ball"), ("referring", "the blue cube")
    ]
    assert all(r.clip_id == clip.clip_id and r.agent == "analyzer" and r.model == "scripted-llm" for r in rows)
    assert rows[0].prompt_version.startswith("analyzer.v1@") and rows[0].model_revision == "r1"
    assert rows[0].prompt_tokens > 0 and rows[1].prompt_tokens == 0  # one call, counted once
    assert validate_rows("phrases", rows, "analyzer")[1] == []
    prompt = backend.requests[0].messages[-1]["content"]
    assert "A red ball rolls left past a blue cube." in prompt
    assert backend.requests[0].response_model.__name__ == "AnalyzerAnswer"


def test_ids_are_stable_and_phrases_capped():
    clip = _clip("b", "Many things.")
    answer = json.dumps({"nouns": [f"thing{i}" for i in range(8)], "phrases": ["a very long phrase " * 5]})
    _, _, out = _run({"Many": answer}, [clip], max_phrases=3)
    _, _, again = _run({"Many": answer}, [clip], max_phrases=3)
    assert [r.text for r in out.rows["phrases"]] == ["thing0", "thing1", "thing2"]
    assert [r.phrase_id for r in out.rows["phrases"]] == [r.phrase_id for r in again.rows["phrases"]]


def test_bad_inputs_and_answers_become_rejections():
    clips = [
        _clip("none", None),
        _clip("blank", "   "),
        _clip("prose", "prose answer"),
        _clip("wrong", "wrong shape"),
        _clip("empty", "empty lists"),
        _clip("good", "good one"),
    ]
    answers = {
        "prose answer": "Sure! The objects are a ball and a cube.",
        "wrong shape": '{"nouns": "ball"}',
        "empty lists": '{"nouns": ["", "..."], "phrases": []}',
        "good one": '{"nouns": ["dog"], "phrases": []}',
    }
    _, _, out = _run(answers, clips)
    reasons = {r.item_id: r.reason for r in out.rejections}
    assert reasons == {
        clips[0].clip_id: "no_caption", clips[1].clip_id: "no_caption", clips[2].clip_id: "parse_failed",
        clips[3].clip_id: "parse_failed", clips[4].clip_id: "no_phrases",
    }
    assert [r.text for r in out.rows["phrases"]] == ["dog"]
    assert out.counters["rejected_parse_failed"] == 2


def test_tiny_local_model_produces_valid_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("VDE_CACHE", str(tmp_path))
    stage = CaptionAnalyzer({"chat": {"model": "tiny:qwen2", "max_new_tokens": 128}, "max_tokens": 128})
    clips = [_clip("t1", "A red ball rolls left."), _clip("t2", "Two squares swap places.")]
    out = stage(Batch(root=".", tables={"clips": clips}))
    rows = out.rows["phrases"]
    assert {r.clip_id for r in rows} == {c.clip_id for c in clips}, out.rejections
    assert all(isinstance(r, PhraseRow) and r.model == "tiny:qwen2" for r in rows)
    assert validate_rows("phrases", rows, "analyzer")[1] == []
