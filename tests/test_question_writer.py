"""QuestionWriter against a scripted chat backend: grounding, parsing, object regions, lineage."""

from __future__ import annotations

import json

import pytest

from agents.backends.chat import ChatRequest, ScriptedChatBackend
from agents.question_writer import QuestionWriter, split_tokens
from schemas import McqRow, validate_rows
from tests.helpers_dataset import FOLDER_CAPTION, VIRTUAL_CAPTION, batch_from_store, write_dataset

READS = ("clips", "objects", "captions", "reviews")


def motion_answer(caption: str) -> dict:
    if "ball" in caption:
        return {
            "questions": [
                {"category": "MR", "question": "Which way does the ball roll?", "options": ["right", "left", "up", "down"],
                 "answer": "B", "evidence": "rolls to the left"},
                {"category": "RC", "question": "How many times does the ball bounce?",
                 "options": ["once", "twice", "three times", "four times"], "answer": "B", "evidence": "Bounces  twice."},
                {"category": "CM", "question": "How does the camera move?", "options": ["pans", "zooms", "static",
                 "tilts"], "answer": "A", "evidence": "the camera pans"},  # not asked: no camera here
                {"category": "AO", "question": "What happens first?", "options": ["rolls", "bounces", "Rolls", "stops"],
                 "answer": "A", "evidence": "rolls"},  # options repeat
                {"category": "MO", "question": "What rolls?", "options": ["ball", "cube", "cone"], "answer": "A",
                 "evidence": "red ball"},  # three options
                {"category": "MR", "question": "Does the ball roll?", "options": ["yes", "no", "maybe", "never"],
                 "answer": "A", "evidence": "rolls"},  # a second MR
                {"category": "ZZ", "question": "What is this?", "options": ["a", "b", "c", "d"], "answer": "A",
                 "evidence": "ball"},  # no such category
                {"category": "LM", "question": "Where does the ball end?", "options": ["left", "right", "up", "down"],
                 "answer": "A", "evidence": "ends at the wall"},  # not in the caption
            ],
            "sft": [{"question": "How does the ball move?", "answer": "It rolls left.", "rationale": "The caption says so."}],
            "preferences": [
                {"question": "Describe the motion.", "chosen": "The ball rolls left, then bounces twice.",
                 "rejected": "The ball rolls right, then bounces twice.", "error_type": "wrong_direction"},
                {"question": "Describe it.", "chosen": "Same.", "rejected": "same", "error_type": "wrong_count"},
            ],
        }
    return {"questions": [{"category": "LM", "question": "Where does the dog run?", "options": ["left", "right",
            "forward", "back"], "answer": "B", "evidence": "runs to the right"}], "sft": [], "preferences": []}


def object_answer(prompt: str) -> dict:
    return {"questions": [
        {"category": "basic", "question": "What colour is [1]?", "options": ["red", "blue", "green", "white"],
         "answer": "A", "evidence": "red ball"},
        {"category": "future", "question": "Where will [7] go?", "options": ["a", "b", "c", "d"], "answer": "A",
         "evidence": "red"},
        {"category": "reasoning", "question": "Why does it bounce?", "options": ["x", "y", "z", "w"], "answer": "A",
         "evidence": "red"},
    ]}


def scripted(request: ChatRequest) -> str:
    prompt = request.messages[-1]["content"]
    if "Motion caption" in prompt:
        caption = prompt.split('"""')[1]
        return "```json\n" + json.dumps(motion_answer(caption)) + "\n```"
    return json.dumps(object_answer(prompt))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("ds"))


def run(dataset, answer=scripted, **config):
    backend = ScriptedChatBackend(answer, model="gpt-4o-test", revision="2024-08-06")
    stage = QuestionWriter(config, backend=backend)
    return stage(batch_from_store(dataset.root, READS)), backend


def reasons(out):
    return sorted(r.reason for r in out.rejections)


def test_motion_questions_grounded_in_their_caption(dataset):
    out, _ = run(dataset, object_questions=False)
    mcqs = out.rows["mcqs"]
    by_category = {q.category: q for q in mcqs}
    assert set(by_category) == {"MR", "RC", "LM"}
    assert by_category["MR"].caption_id == dataset.captions["motion_v"].caption_id
    assert by_category["LM"].caption_id == dataset.captions["motion_f"].caption_id
    assert all(len(q.options) == 4 for q in mcqs)
    for q in mcqs:
        caption = VIRTUAL_CAPTION if q.clip_id == dataset.clips["virtual"].clip_id else FOLDER_CAPTION
        assert q.evidence.lower().replace("  ", " ").strip(".") in caption.lower()
        assert q.source == "llm" and q.object_ids == []
    assert reasons(out) == ["category_not_asked", "duplicate_category", "duplicate_options",
                            *["missing_category"] * 5, "ungrounded_answer", "unknown_category", "wrong_option_count"]
    missing = {r.detail.split()[0] for r in out.rejections if r.reason == "missing_category"}
    assert missing == {"LM", "AO", "MO", "MR"}  # virtual: LM, AO, MO; folder: MR, MO
    assert validate_rows("mcqs", mcqs, "t")[1] == []


def test_sft_and_preferences_with_error_type(dataset):
    out, _ = run(dataset, object_questions=False)
    [sft] = out.rows["sft"]
    assert sft.answer == "It rolls left. The caption says so."
    pairs = {p.question: p for p in out.rows["preferences"]}  # one per grounded question, by rule
    mcqs = {q.question: q for q in out.rows["mcqs"]}
    assert set(pairs) == set(mcqs)
    assert [(p.chosen, p.rejected, p.error_type) for p in (pairs["Which way does the ball roll?"],
            pairs["How many times does the ball bounce?"], pairs["Where does the dog run?"])] == [
        ("Left.", "Right.", "wrong_direction"), ("Twice.", "Three times.", "wrong_count"),
        ("Right.", "Left.", "wrong_direction")]
    assert all(p.question_id == mcqs[p.question].question_id and "caption" not in p.chosen.lower()
               for p in pairs.values())


def test_four_option_letters_follow_the_shard_rotation(dataset):
    out, _ = run(dataset)
    four = sorted((q for q in out.rows["mcqs"] if len(q.options) == 4), key=lambda q: q.question_id)
    for category in {q.category for q in four}:
        letters = [q.answer for q in four if q.category == category]
        start = "ABCD".index(letters[0])
        assert letters == ["ABCD"[(start + i) % 4] for i in range(len(letters))]
    for q in four:  # the model's correct option, wherever it now stands
        assert q.options["ABCD".index(q.answer)] in ("left", "right", "red", "twice")


def test_lineage_and_token_split(dataset):
    out, backend = run(dataset, object_questions=False)
    rows = [r for t in ("mcqs", "sft", "preferences") for r in out.rows[t]]
    assert {(r.agent, r.model, r.model_revision) for r in rows} == {("question_writer", "gpt-4o-test", "2024-08-06")}
    assert {r.prompt_version.split("@")[0] for r in rows} == {"question_writer.motion.v2"}
    virtual_rows = [r for r in rows if r.clip_id == dataset.clips["virtual"].clip_id]
    first_call = backend.chat_batch([backend.requests[0]])[0]  # same request, same scripted answer
    assert sum(r.completion_tokens for r in virtual_rows) == first_call.completion_tokens
    assert split_tokens(10, 3) == [4, 3, 3] and split_tokens(5, 0) == []


def test_object_questions_use_regions_and_skip_rejected_objects(dataset):
    out, backend = run(dataset)
    object_prompts = [r.messages[-1]["content"] for r in backend.requests if "Objects:" in r.messages[-1]["content"]]
    assert object_prompts and not any("blue cube" in p for p in object_prompts)
    assert "shiny red ball" in object_prompts[0]  # the refined caption wins over the raw one
    basic = [q for q in out.rows["mcqs"] if q.category == "basic"]
    ball = next(q for q in basic if q.clip_id == dataset.clips["virtual"].clip_id)
    assert ball.question == "What colour is <region>?"
    assert ball.object_ids == [dataset.objects["seg_ball"].object_id]
    assert ball.caption_id == dataset.captions["ball_ref"].caption_id
    assert "unknown_object" in reasons(out) and "no_object_reference" in reasons(out)


def test_parse_failure_is_a_rejection(dataset):
    out, _ = run(dataset, answer=lambda r: "Sure! Here are some questions: none.")
    assert not out.rows.get("mcqs")
    assert set(reasons(out)) == {"parse_failed"}
    assert out.counters["rejected_parse_failed"] == 4  # two motion captions, two object requests


def test_manifest_caption_fallback_and_missing_caption(dataset):
    batch = batch_from_store(dataset.root, READS)
    batch.tables["captions"] = []
    folder = batch.clips[[c.source for c in batch.clips].index("folder")]
    batch.tables["clips"] = [c.model_copy(update={"caption": FOLDER_CAPTION if c is folder else None})
                             for c in batch.clips]
    out = QuestionWriter({"object_questions": False}, backend=ScriptedChatBackend(scripted))(batch)
    [lm] = out.rows["mcqs"]
    assert lm.caption_id == f"clip:{folder.clip_id}"
    virtual_clip = dataset.clips["virtual"].clip_id
    assert [(r.reason, r.item_id) for r in out.rejections if r.reason != "missing_category"] == [
        ("no_motion_caption", virtual_clip)]


def test_ids_are_deterministic(dataset):
    first, _ = run(dataset)
    second, _ = run(dataset)
    assert [q.question_id for q in first.rows["mcqs"]] == [q.question_id for q in second.rows["mcqs"]]
    assert len({q.question_id for q in first.rows["mcqs"]}) == len(first.rows["mcqs"])
    assert all(isinstance(q, McqRow) for q in first.rows["mcqs"])


def test_prompt_version_changes_with_the_prompt_file(tmp_path, monkeypatch):
    import agents.chat_stage as cs

    (tmp_path / "mine.v1.txt").write_text("You write questions.\n---\nMotion caption: {{ caption }}")
    monkeypatch.setattr(cs, "PROMPTS", tmp_path)
    cs.load_prompt.cache_clear()
    a = cs.load_prompt("mine.v1").version
    (tmp_path / "mine.v1.txt").write_text("You write questions.\n---\nMotion caption, edited: {{ caption }}")
    cs.load_prompt.cache_clear()
    assert a != cs.load_prompt("mine.v1").version and a.startswith("mine.v1@")
    cs.load_prompt.cache_clear()
