"""Template MCQs: every answer re-derived here from the scene metadata, with this file's own
vocabulary, never through the question code."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from pydantic import ValidationError

from agents.base import Batch
from agents.ground_truth import GroundTruth
from agents.template_writer import TemplateQuestionWriter
from agents.virtual.scene import SceneObject, SceneSpec
from schemas import stable_id, validate_rows
from tests.helpers_virtual import make_virtual_clip

MOVES = {"left": "moves left", "right": "moves right", "up": "moves up", "down": "moves down",
         "up-left": "moves up and to the left", "up-right": "moves up and to the right",
         "down-left": "moves down and to the left", "down-right": "moves down and to the right"}
HEADINGS = {"left": "to the left", "right": "to the right", "up": "upward", "down": "downward",
            "up-left": "up and to the left", "up-right": "up and to the right",
            "down-left": "down and to the left", "down-right": "down and to the right"}
COUNTS = {1: "once", 2: "twice", 3: "three times", 4: "four times"}


def kind_of(action) -> str:
    return {"move": "moves in a straight line", "bounce": "bounces up and down"}.get(
        action.kind, f"spins {action.direction}")


def name_of(action) -> str:
    return MOVES[action.direction] if action.kind == "move" else kind_of(action)


def camera_answer(spec: SceneSpec) -> str:
    cam = spec.camera
    return "stays still" if cam.motion == "static" else f"{'pans' if cam.motion == 'pan' else 'zooms'} {cam.direction}"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("virtual")
    clips = [make_virtual_clip(root, 0, i, render=False) for i in range(40)]
    objects = GroundTruth().process_batch(Batch(root=root, tables={"clips": clips})).rows["objects"]
    batch = Batch(root=root, tables={"clips": clips, "objects": objects})
    return batch, TemplateQuestionWriter({"seed": 0}).process_batch(batch)


def rederive(spec: SceneSpec, clip_id: str, row) -> None:
    """Check one question against the scene; raise AssertionError when it is wrong."""
    by_label = {o.label: o for o in spec.objects}
    answer = row.options["ABCD".index(row.answer)]
    wrong = [o for o in row.options if o != answer]
    ids = lambda *objs: [stable_id("object", clip_id, "virtual", o.index) for o in objs]  # noqa: E731

    if row.category == "CM":
        assert answer == camera_answer(spec) and row.object_ids == []
        return
    if row.category == "LM" and row.question.startswith("At the end"):
        a_label, b_label = re.fullmatch(r"At the end of the video, where is the (.+) relative to the (.+)\?",
                                        row.question).groups()
        a, b = by_label[a_label], by_label[b_label]
        last = spec.num_frames - 1
        (ax,), (ay,), _ = a.pose([last])
        (bx,), (by,), _ = b.pose([last])
        dx, dy = ax - bx, ay - by
        expected = ("to the left of" if dx < 0 else "to the right of") if abs(dx) > abs(dy) else (
            "above" if dy < 0 else "below")
        assert answer == f"{expected} the {b_label}" and row.object_ids == ids(a, b)
        return
    if row.category == "MO":
        phrase = re.fullmatch(r"Which object (.+)\?", row.question).group(1)
        doers = [o for o in spec.objects if any(name_of(a) == phrase for a in o.actions)]
        assert len(doers) == 1, (phrase, doers)
        assert answer == f"the {doers[0].label}" and row.object_ids == ids(doers[0])
        return
    label = re.search(r"the ((?:\w+) (?:circle|square|triangle|star|rectangle))", row.question).group(1)
    obj: SceneObject = by_label[label]
    assert row.object_ids == ids(obj)
    if row.category == "MR":
        kinds = {kind_of(a) for a in obj.actions} or {"stays still"}
        assert answer in kinds and not kinds & set(wrong)
        if obj.actions:
            assert "stays still" not in row.options  # a mover is still before and after it acts
    elif row.category == "LM":
        (move,) = [a for a in obj.actions if a.kind == "move"]
        assert answer == HEADINGS[move.direction] and set(wrong) <= set(HEADINGS.values())
    elif row.category == "AO":
        ordered = sorted(obj.actions, key=lambda a: a.start_frame)
        assert answer == ", then ".join(name_of(a) for a in ordered)
    elif row.category == "RC":
        (bounce,) = [a for a in obj.actions if a.kind == "bounce"]
        assert answer == COUNTS[bounce.count] and set(wrong) <= set(COUNTS.values()) | {"five times", "six times", "seven times"}
    else:
        raise AssertionError(f"unexpected category {row.category}")


def test_every_answer_rederived_from_the_scene(dataset):
    batch, out = dataset
    specs = {c.clip_id: SceneSpec.model_validate(json.loads(c.metadata)["virtual"]) for c in batch.clips}
    rows = out.rows["mcqs"]
    for row in rows:
        rederive(specs[row.clip_id], row.clip_id, row)
    assert set(Counter(r.category for r in rows)) == {"MR", "LM", "CM", "MO", "AO", "RC"}
    assert sum(r.category == "CM" for r in rows) == len(batch.clips)  # always asked


def test_options_never_repeat_and_rows_validate(dataset):
    _, out = dataset
    valid, rejected = validate_rows("mcqs", out.rows["mcqs"], "test")
    assert not rejected and len(valid) == len(out.rows["mcqs"])
    for row in valid:
        assert len({o.strip().lower() for o in row.options}) == len(row.options)
        assert len(row.options) == 4
        assert (row.source, row.agent, row.model) == ("template", "template_writer", "template")
        assert row.model_revision == row.prompt_version
    assert len({r.question_id for r in valid}) == len(valid)


def test_answer_letters_are_balanced(dataset):
    _, out = dataset
    four = [r.answer for r in out.rows["mcqs"] if len(r.options) == 4]
    assert len(four) >= 100
    counts = Counter(four)
    for letter in "ABCD":
        assert 0.15 <= counts[letter] / len(four) <= 0.35, counts


def test_rows_identical_on_a_second_run_and_seed_moves_letters(dataset):
    batch, out = dataset
    again = TemplateQuestionWriter({"seed": 0}).process_batch(batch)
    assert [r.to_record() for r in again.rows["mcqs"]] == [r.to_record() for r in out.rows["mcqs"]]
    reseeded = TemplateQuestionWriter({"seed": 1}).process_batch(batch).rows["mcqs"]
    assert [r.answer for r in reseeded] != [r.answer for r in out.rows["mcqs"]]


def test_categories_config_and_its_validation(dataset):
    batch, _ = dataset
    rows = TemplateQuestionWriter({"categories": ["CM", "RC"]}).process_batch(batch).rows["mcqs"]
    assert {r.category for r in rows} == {"CM", "RC"}
    with pytest.raises(ValidationError):
        TemplateQuestionWriter({"categories": ["basic"]})
    with pytest.raises(ValidationError):
        TemplateQuestionWriter({"seeed": 1})


def test_only_objects_seen_by_the_ground_truth_are_named(tmp_path):
    clip = make_virtual_clip(tmp_path, 0, 4, render=False)
    spec = SceneSpec.model_validate(json.loads(clip.metadata)["virtual"])
    objects = GroundTruth().process_batch(Batch(root=tmp_path, tables={"clips": [clip]})).rows["objects"]
    hidden = spec.objects[0]
    kept = [o for o in objects if o.label != hidden.label]
    rows = TemplateQuestionWriter().process_batch(
        Batch(root=tmp_path, tables={"clips": [clip], "objects": kept})).rows["mcqs"]
    assert rows
    for row in rows:
        assert hidden.label not in row.question and all(hidden.label not in o for o in row.options)


def test_bad_scene_is_rejected_and_other_sources_pass(tmp_path):
    clip = make_virtual_clip(tmp_path, 0, 2, render=False)
    broken = clip.model_copy(update={"clip_id": "e" * 16, "metadata": "not json"})
    folder = clip.model_copy(update={"clip_id": "f" * 16, "source": "folder", "metadata": None})
    out = TemplateQuestionWriter().process_batch(Batch(root=tmp_path, tables={"clips": [broken, folder, clip]}))
    assert [(r.item_id, r.reason, r.stage) for r in out.rejections] == [("e" * 16, "invalid_metadata", "template_writer")]
    assert {r.clip_id for r in out.rows["mcqs"]} == {clip.clip_id}


def _shards(root, count: int, size: int = 4):
    clips = [make_virtual_clip(root, 0, i, render=False, fps=12, seconds=3.0) for i in range(count)]
    for first in range(0, count, size):
        shard = clips[first:first + size]
        objects = GroundTruth().process_batch(Batch(root=root, tables={"clips": shard})).rows["objects"]
        yield TemplateQuestionWriter({"seed": 0}).process_batch(Batch(root=root, tables={"clips": shard,
                                                                                         "objects": objects}))


def test_letters_balanced_by_the_shard_rotation(tmp_path):
    """virtual:24 in shards of 4 (the default): each letter's share of the four-option answers is
    25% +/- 2 points; inside a shard the letters of each category follow the rotation."""
    rows = []
    for out in _shards(tmp_path, 24):
        four = [q for q in out.rows["mcqs"] if len(q.options) == 4]
        for category in {q.category for q in four}:
            letters = [q.answer for q in sorted(four, key=lambda q: q.question_id) if q.category == category]
            start = "ABCD".index(letters[0])
            assert letters == ["ABCD"[(start + i) % 4] for i in range(len(letters))]
        rows += four
    shares = Counter(q.answer for q in rows)
    assert len(rows) >= 40
    assert all(abs(shares[letter] / len(rows) - 0.25) <= 0.02 for letter in "ABCD"), shares


def test_repetition_count_questions_always_have_four_options(tmp_path):
    rc = [q for out in _shards(tmp_path, 80, size=8) for q in out.rows["mcqs"] if q.category == "RC"]
    assert len(rc) > 20 and {len(q.options) for q in rc} == {4}


def test_preference_pairs_from_ground_truth_questions(dataset):
    batch, out = dataset
    questions = {q.question_id: q for q in out.rows["mcqs"]}
    pairs = out.rows["preferences"]
    assert len(pairs) >= len(questions) / 2
    for pair in pairs:
        q = questions[pair.question_id]
        assert pair.chosen.rstrip(".").lower() == q.options["ABCD".index(q.answer)].lower()
        assert pair.rejected != pair.chosen and pair.error_type.startswith("wrong_")
    assert {p.error_type for p in pairs} >= {"wrong_direction", "wrong_object", "wrong_count"}


def test_a_measured_camera_question_has_four_options_and_the_estimate_as_answer():
    from agents.template_writer import CAMERA_ANSWERS, measured_camera_question

    for label, words in CAMERA_ANSWERS.items():
        q = measured_camera_question(label, 0, f"clip-{label}")
        assert q.category == "CM" and len(set(q.options)) == 4 and q.options["ABCD".index(q.answer)] == words
        assert q == measured_camera_question(label, 0, f"clip-{label}")  # deterministic
    assert measured_camera_question(None, 0, "c") is None and measured_camera_question("shaky", 0, "c") is None
