"""A small but complete dataset written through the real store, for tests of downstream code.

Two clips: `virtual` (a red ball rolling left, with ground-truth objects and template questions)
and `folder` (a dog jumping). Objects carry real pycocotools RLE masks; one object is rejected by
its review; one question is dropped and one flagged by the quality checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.store import DatasetStore
from schemas import (
    CaptionRow,
    ClipRow,
    Lineage,
    McqCheckRow,
    McqRow,
    ObjectRow,
    PhraseRow,
    PreferenceRow,
    RejectionRow,
    ReviewRow,
    SftRow,
    encode_masks,
    mask_box,
    stable_id,
)

LLM = Lineage(agent="question_writer", model="gpt-test", model_revision="2024-08-06", prompt_version="qw.v1:abc",
              prompt_tokens=10, completion_tokens=5)
TEMPLATE = Lineage(agent="virtual", model="template", prompt_version="none")
SEGMENTOR = Lineage(agent="segmentor", model="tiny:sam2", model_revision="r1")
ANNOTATOR = Lineage(agent="annotator", model="tiny:qwen2vl", model_revision="r1", prompt_version="ann.v1:1")
REVIEWER = Lineage(agent="reviewer", model="tiny:qwen2", prompt_version="rev.v1:1")

VIRTUAL_CAPTION = "A red ball rolls to the left across the table, then bounces twice."
FOLDER_CAPTION = "A dog jumps over a log and runs to the right."


@dataclass
class Fixture:
    root: Path
    clips: dict[str, ClipRow] = field(default_factory=dict)
    objects: dict[str, ObjectRow] = field(default_factory=dict)
    captions: dict[str, CaptionRow] = field(default_factory=dict)
    mcqs: dict[str, McqRow] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # role -> id, for assertions


def square_masks(height: int, width: int, frames: int, x0: int, dx: int, side: int) -> np.ndarray:
    """A square of `side` pixels moving `dx` per frame: a (frames, H, W) boolean stack."""
    masks = np.zeros((frames, height, width), dtype=bool)
    for t in range(frames):
        x = max(0, min(width - side, x0 + dx * t))
        masks[t, 4 : 4 + side, x : x + side] = True
    return masks


def make_object(clip: ClipRow, label: str, source: str, masks: np.ndarray, lineage: Lineage) -> ObjectRow:
    rles = encode_masks(masks)
    return ObjectRow.build(
        lineage,
        object_id=stable_id("object", clip.clip_id, label, source),
        clip_id=clip.clip_id,
        label=label,
        frame_indices=list(range(len(rles))),
        masks=rles,
        boxes=[mask_box(r) for r in rles],
        score=0.9,
        source=source,
    )


def make_clip(name: str, source: str, height: int, width: int, frames: int, caption: str | None) -> ClipRow:
    return ClipRow.build(
        Lineage(agent="ingest", model="none"),
        clip_id=stable_id("clip", name),
        source_key=name,
        video_path=f"videos/{name}.mp4",
        num_frames=frames,
        fps=8.0,
        width=width,
        height=height,
        duration=frames / 8.0,
        source=source,
        caption=caption,
        frame_indices=list(range(frames)),
    )


def caption_row(clip: ClipRow, kind: str, text: str, source: str, lineage: Lineage, object_id=None) -> CaptionRow:
    return CaptionRow.build(
        lineage,
        caption_id=stable_id("caption", clip.clip_id, object_id, kind, text),
        clip_id=clip.clip_id,
        object_id=object_id,
        kind=kind,
        text=text,
        source=source,
    )


def mcq(clip, category, question, options, answer, source, lineage, caption=None, evidence=None, object_ids=()):
    return McqRow.build(
        lineage,
        question_id=stable_id("mcq", clip.clip_id, category, question, source),
        clip_id=clip.clip_id,
        object_ids=list(object_ids),
        category=category,
        question=question,
        options=options,
        answer=answer,
        source=source,
        caption_id=caption.caption_id if caption else None,
        evidence=evidence,
    )


def check(question: McqRow, name: str, outcome: str, detail: str = "", order=None) -> McqCheckRow:
    return McqCheckRow.build(
        Lineage(agent="mcq_filters", model="gpt-test", prompt_version="f.v1:1"),
        check_id=stable_id("check", question.question_id, name),
        question_id=question.question_id,
        clip_id=question.clip_id,
        check=name,
        outcome=outcome,
        detail=detail,
        order=order,
    )


def write_dataset(root: str | Path) -> Fixture:
    """Write the fixture dataset under `root` through DatasetStore and return what was written."""
    fx = Fixture(root=Path(root))
    virtual = make_clip("virtual_ball", "virtual", 32, 48, 8, VIRTUAL_CAPTION)
    folder = make_clip("folder_dog", "folder", 40, 64, 6, None)
    fx.clips = {"virtual": virtual, "folder": folder}

    gt_ball = make_object(virtual, "red ball", "virtual", square_masks(32, 48, 8, 30, -3, 8), TEMPLATE)
    seg_ball = make_object(virtual, "red ball", "segmentor", square_masks(32, 48, 8, 31, -3, 8), SEGMENTOR)
    seg_cube = make_object(virtual, "blue cube", "segmentor", square_masks(32, 48, 8, 2, 0, 6), SEGMENTOR)
    seg_dog = make_object(folder, "dog", "segmentor", square_masks(40, 64, 6, 5, 6, 12), SEGMENTOR)
    objects = [gt_ball, seg_ball, seg_cube, seg_dog]
    fx.objects = {"gt_ball": gt_ball, "seg_ball": seg_ball, "seg_cube": seg_cube, "seg_dog": seg_dog}

    motion_v = caption_row(virtual, "motion", VIRTUAL_CAPTION, "virtual", TEMPLATE)
    motion_f = caption_row(folder, "motion", FOLDER_CAPTION, "manifest", Lineage(agent="ingest", model="none"))
    ball_cap = caption_row(virtual, "object_detailed", "A small red ball rolling.", "annotator", ANNOTATOR,
                           seg_ball.object_id)
    ball_ref = caption_row(virtual, "refined_detailed", "A shiny red ball rolls left and bounces twice.",
                           "refiner", ANNOTATOR, seg_ball.object_id)
    cube_cap = caption_row(virtual, "object_detailed", "A blue cube sitting still.", "annotator", ANNOTATOR,
                           seg_cube.object_id)
    dog_cap = caption_row(folder, "object_detailed", "A brown dog jumping over a log.", "annotator", ANNOTATOR,
                          seg_dog.object_id)
    captions = [motion_v, motion_f, ball_cap, ball_ref, cube_cap, dog_cap]
    fx.captions = {"motion_v": motion_v, "motion_f": motion_f, "ball_ref": ball_ref, "dog": dog_cap}

    reviews = [
        ReviewRow.build(REVIEWER, review_id=stable_id("review", o.object_id), clip_id=o.clip_id,
                        object_id=o.object_id, caption_id=None, verdict=v, score=s, reason=r)
        for o, v, s, r in [(seg_ball, "accept", 0.9, "ok"), (seg_cube, "reject", 0.2, "mask_leak"),
                           (seg_dog, "accept", 0.8, "ok")]
    ]
    phrases = [
        PhraseRow.build(Lineage(agent="analyzer", model="tiny:qwen2"), phrase_id=stable_id("phrase", virtual.clip_id, t),
                        clip_id=virtual.clip_id, text=t, kind="noun")
        for t in ("red ball", "table")
    ]

    ball_dir = ["left", "right", "up", "down"]
    t_mr = mcq(virtual, "MR", "Which direction does the red ball roll?", ball_dir, "A", "template", TEMPLATE)
    t_rc = mcq(virtual, "RC", "How many times does the ball bounce?", ["one", "two", "three", "four"], "B",
               "template", TEMPLATE)
    # written shuffled: the model answered B of [right, left, up, down]
    l_mr = mcq(virtual, "MR", "In which direction does the red ball roll?", ["up", "down", "right", "left"], "D",
               "llm", LLM, motion_v, "rolls to the left").model_copy(update={"generated_answer": "B"})
    l_rc = mcq(virtual, "RC", "How often does the ball bounce?", ["twice", "once", "three times"], "A", "llm", LLM,
               motion_v, "bounces twice")
    l_basic = mcq(virtual, "basic", "What colour is <region>?", ["red", "blue", "green", "yellow"], "A", "llm", LLM,
                  ball_ref, "red ball", [seg_ball.object_id])
    l_cube = mcq(virtual, "basic", "What shape is <region>?", ["cube", "ball", "cone", "ring"], "A", "llm", LLM,
                 cube_cap, "blue cube", [seg_cube.object_id])
    f_lm = mcq(folder, "LM", "Where does the dog run after the jump?", ["to the left", "to the right", "towards the camera",
               "away from the camera"], "B", "llm", LLM, motion_f, "runs to the right")
    f_mo = mcq(folder, "MO", "What does the dog jump over?", ["a log", "a fence", "a ball", "a chair"], "A", "llm",
               LLM, motion_f, "jumps over a log")
    f_ao = mcq(folder, "AO", "What does the dog do first?", ["runs right", "jumps over a log", "sits", "barks"], "B",
               "llm", LLM, motion_f, "jumps over a log and runs")
    f_future = mcq(folder, "future", "What will <region> most likely do next?", ["keep running", "fly", "swim",
                   "sleep"], "A", "llm", LLM, dog_cap, "jumping", [seg_dog.object_id])
    mcqs = [t_mr, t_rc, l_mr, l_rc, l_basic, l_cube, f_lm, f_mo, f_ao, f_future]
    fx.mcqs = {"t_mr": t_mr, "t_rc": t_rc, "l_mr": l_mr, "l_rc": l_rc, "l_basic": l_basic, "l_cube": l_cube,
               "f_lm": f_lm, "f_mo": f_mo, "f_ao": f_ao, "f_future": f_future}

    checks = [check(q, "options_unique", "pass") for q in mcqs]
    checks += [
        check(f_mo, "blind", "drop", "answered without the video in 3/3 tries"),
        check(f_ao, "length_giveaway", "flag", "answer 2.1x the mean distractor length"),
        check(l_mr, "letter_shuffle", "pass", "B -> D"),
    ]

    sft = [
        SftRow.build(LLM, sft_id=stable_id("sft", q.question_id), clip_id=q.clip_id, question_id=q.question_id,
                     question=q.question, answer=f"{q.options['ABCD'.index(q.answer)]}. Because the caption says so.")
        for q in (l_mr, f_mo)
    ]
    prefs = [
        PreferenceRow.build(LLM, pair_id=stable_id("pair", q.question_id), clip_id=q.clip_id,
                            question_id=q.question_id, question=q.question, chosen=c, rejected=r, error_type=e)
        for q, c, r, e in [(l_mr, "The ball rolls to the left.", "The ball rolls to the right.", "wrong_direction"),
                           (f_mo, "The dog jumps over a log.", "The dog jumps over a fence.", "wrong_object")]
    ]
    rejections = [
        RejectionRow(rejection_id=stable_id("rej", "x"), item_id="broken.mp4", stage="ingest", reason="not_a_video")
    ]
    fx.ids = {"rejected_object": seg_cube.object_id, "dropped_question": f_mo.question_id,
              "flagged_question": f_ao.question_id, "shuffled_question": l_mr.question_id}

    store = DatasetStore(root)
    groups = {
        "ingest": {"clips": [virtual, folder], "rejections": rejections},
        "virtual": {"objects": [gt_ball]},
        "segmentor": {"objects": objects[1:]},
        "analyzer": {"phrases": phrases},
        "annotator": {"captions": captions},
        "reviewer": {"reviews": reviews},
        "question_writer": {"mcqs": mcqs, "sft": sft, "preferences": prefs},
        "mcq_filters": {"mcq_checks": checks},
    }
    for stage, tables in groups.items():
        store.commit(store.stage_shard(stage, "shard0", tables), {"fixture": True})
    return fx


def batch_from_store(root: str | Path, tables: tuple[str, ...]):
    """A stage `Batch` holding every row of `tables` in the dataset at `root` (one shard of everything)."""
    from agents.base import Batch
    from schemas import row_model

    store = DatasetStore(root)
    rows = {t: [row_model(t).model_validate(r) for r in store.read_table(t).to_pylist()] for t in tables}
    return Batch(root=Path(root), tables=rows)
