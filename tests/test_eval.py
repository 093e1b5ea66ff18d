"""Evaluation on virtual clips: numbers computed by hand for the fixture dataset."""

from __future__ import annotations

import json

import pytest

from engine.evaluate import answers_agree, evaluate
from engine.run import main as cli
from engine.store import DatasetStore
from tests.helpers_dataset import write_dataset


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("ds"))


def test_mask_iou_matched_by_label(fx):
    result = evaluate(fx.root)
    # ground truth: an 8x8 square; the segmentor's is shifted one pixel: 56 / 72 per frame,
    # except where the square is pinned to the left border (frames 6-7 clamp identically)
    [obj] = result.per_object
    assert obj["object_id"] == fx.objects["gt_ball"].object_id
    assert result.objects == result.matched_objects == 1
    assert 56 / 72 <= result.mean_iou < 1.0 and result.iou_at_50 == 1.0


def test_noun_recall_and_qa_agreement(fx):
    result = evaluate(fx.root)
    assert (result.labels, result.noun_recall) == (1, 1.0)  # "red ball" recalled by the phrase "red ball"
    # LLM MR "left" = template "left"; LLM RC "twice" = template "two"
    assert (result.compared_questions, result.qa_agreement) == (2, 1.0)


def test_only_virtual_clips_count_and_misses_score_zero(tmp_path):
    fx = write_dataset(tmp_path / "ds")
    store = DatasetStore(fx.root)
    store.remove_shard("segmentor", "shard0", ["objects"])
    store.remove_shard("analyzer", "shard0", ["phrases"])
    result = evaluate(fx.root)
    assert (result.mean_iou, result.matched_objects, result.noun_recall) == (0.0, 0, 0.0)


def test_answers_agree():
    assert answers_agree("twice", "two times") and answers_agree("to the left", "left")
    assert not answers_agree("left", "right") and not answers_agree("", "left")


def test_cli(fx, capsys, tmp_path):
    assert cli(["eval", "--dataset", str(fx.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["qa_agreement"] == 1.0
    empty = tmp_path / "empty"
    DatasetStore(empty)
    assert cli(["eval", "--dataset", str(empty)]) == 2
    assert "no virtual clips" in capsys.readouterr().err


def test_profiles_side_by_side(fx, capsys, tmp_path):
    import shutil

    mine, other = tmp_path / "mine", tmp_path / "other"
    for root, profile in ((mine, "tiny"), (other, "current")):
        shutil.copytree(fx.root, root)
        DatasetStore(root).write_run_config({"job_config": {"profile": profile}})
    assert cli(["eval", "--dataset", str(mine), "--dataset", str(other)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["tiny", "current"]
    rows = {line[:20].strip(): line[20:].split() for line in lines[1:]}
    mine = evaluate(fx.root)
    assert rows["mask IoU, mean"] == [f"{mine.mean_iou:.3f}"] * 2
    assert rows["noun recall"] == [f"{mine.noun_recall:.3f}"] * 2
    assert rows["MCQ agreement"] == [f"{mine.qa_agreement:.3f}"] * 2
    assert cli(["eval", "--dataset", str(tmp_path / "mine"), "--dataset", str(other), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"tiny", "current"}


def test_motion_captions_scored_against_the_exact_caption(tmp_path):
    from agents.motion_captioner import motion_caption_id
    from engine.evaluate import caption_overlap
    from schemas import CaptionRow, Lineage

    fx = write_dataset(tmp_path / "ds")
    assert evaluate(fx.root).captioned_clips == 0
    virtual = fx.clips["virtual"]  # truth: "A red ball rolls to the left across the table, then bounces twice."
    guess = CaptionRow.build(Lineage(agent="motion_captioner", model="vlm"), caption_id=motion_caption_id(virtual.clip_id),
                             clip_id=virtual.clip_id, kind="motion", text="A red ball rolls left.",
                             source="motion_captioner")
    store = DatasetStore(fx.root)
    store.commit(store.stage_shard("motion_captioner", "shard0", {"captions": [guess]}), {"fixture": True})
    result = evaluate(fx.root)
    # truth words without filler: red ball rolls to left across table then bounces 2 (10); guess: red ball rolls left
    assert result.captioned_clips == 1
    assert result.caption_recall == pytest.approx(4 / 10)
    assert result.caption_f1 == pytest.approx(2 * 0.4 * 1.0 / 1.4)
    assert caption_overlap("the ball", "a cube") == (0.0, 0.0)
