"""Acceptance: `virtual:24` with the tiny profile, through every stage of the real
`build-motionvid-qa`, gives questions in all six MotionBench categories, each at least 10% of the
motion questions (the audit's `motion_categories` check passes), every one with four options, and
a camera question for every clip (each has a camera estimate).

The build runs once for the module, in one process (`--executor local`), on smaller scenes (160x120,
8 sampled frames) with a lighter segmentor (one detection keyframe, two objects, tracking at 2 fps):
the categories come from the scenes and the writers, not from frame size or tracking density."""

from __future__ import annotations

from collections import Counter

import pytest

from engine import audit
from engine.run import main
from engine.store import DatasetStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
MOTION = ("MR", "LM", "AO", "RC", "MO", "CM")
LIGHTER = {"ingest.virtual_width": 160, "ingest.virtual_height": 120, "ingest.num_samples": 8,
           "segmentor.keyframes": 1, "segmentor.max_objects_per_clip": 2, "segmentor.track_fps": 2}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("virtual24") / "ds"
    flags = [f"--set={key}={value}" for key, value in LIGHTER.items()]
    code = main(["build-motionvid-qa", "--dataset", str(root), "--source", "virtual:24", "--profile", "tiny",
                 "--executor", "local", "--shard-size", "8", *flags])
    assert code == 0
    store = DatasetStore(root, create=False)
    return root, {t: store.read_table(t).to_pylist() for t in ("clips", "captions", "mcqs")}


def test_six_categories_each_at_least_a_tenth_and_the_audit_passes(built):
    root, tables = built
    motion = Counter(q["category"] for q in tables["mcqs"] if q["category"] in MOTION)
    total = sum(motion.values())
    assert set(motion) == set(MOTION), motion
    assert all(motion[c] >= 0.1 * total for c in MOTION), motion
    [check] = audit.run_audit(root, audit.load_checks(names=["motion_categories"]))
    assert check.status == "pass", (check.status, check.value, check.note)
    assert check.value == pytest.approx(min(motion.values()) / total)


def test_four_options_and_a_camera_question_per_clip(built):
    _, tables = built
    assert all(len(q["options"]) == 4 and q["answer"] in "ABCD" for q in tables["mcqs"])
    clips = tables["clips"]
    assert all(c["camera_motion"] for c in clips)  # exact for virtual scenes
    camera_questions = {q["clip_id"] for q in tables["mcqs"] if q["category"] == "CM"}
    assert camera_questions == {c["clip_id"] for c in clips}


def test_the_captioner_writes_its_benchmark_set(built):
    _, tables = built
    captioned = {c["clip_id"] for c in tables["captions"] if c["source"] == "motion_captioner"}
    assert captioned == {c["clip_id"] for c in tables["clips"]}
