"""Acceptance: `virtual:24` with the tiny profile gives questions in all six MotionBench categories,
every one with four options, and a camera question for every clip (each has a camera estimate).
About eight minutes on two busy cores: the whole tiny pipeline on 24 clips."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.run import main
from engine.store import DatasetStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def test_virtual_scenes_cover_the_six_categories_with_four_options(tmp_path):
    root = tmp_path / "ds"
    code = main(["build-motionvid-qa", "--dataset", str(root), "--source", "virtual:24", "--profile", "tiny",
                 "--executor", "local", "--shard-size", "8"])
    assert code == 0
    store = DatasetStore(root, create=False)
    mcqs = store.read_table("mcqs").to_pylist()
    motion = Counter(q["category"] for q in mcqs if q["category"] in {"MR", "LM", "AO", "RC", "MO", "CM"})
    assert set(motion) == {"MR", "LM", "AO", "RC", "MO", "CM"}, motion
    assert all(len(q["options"]) == 4 and q["answer"] in "ABCD" for q in mcqs)
    clips = store.read_table("clips").to_pylist()
    assert all(c["camera_motion"] for c in clips)  # exact for virtual scenes
    captioned = {c["clip_id"] for c in store.read_table("captions").to_pylist() if c["source"] == "motion_captioner"}
    assert captioned == {c["clip_id"] for c in clips}  # the captioner's benchmark set
    camera_questions = {q["clip_id"] for q in mcqs if q["category"] == "CM"}
    assert camera_questions == {c["clip_id"] for c in clips}
