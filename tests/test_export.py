"""Each exporter's output loaded with its consumer's own library (pycocotools, json, datasets)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from agents.video import write_video
from engine.export import export
from engine.export.videorefer import validate_record
from engine.run import main as cli
from engine.store import DatasetStore
from tests.helpers_dataset import LLM, mcq, write_dataset


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    fx = write_dataset(tmp_path_factory.mktemp("dataset"))
    for clip in fx.clips.values():  # the fixture's rows name videos: write them
        (fx.root / clip.video_path).parent.mkdir(parents=True, exist_ok=True)
        write_video(fx.root / clip.video_path, [np.full((clip.height, clip.width, 3), 16 * i, np.uint8)
                                                for i in range(clip.num_frames)], clip.fps)
    return fx


def decode(rle: dict):
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")})


def test_videorefer_both_variants_decode_to_clip_size(fx, tmp_path):
    report = export(fx.root, "videorefer", tmp_path)
    annotation = json.loads((tmp_path / "videorefer-annotation.json").read_text())
    llama3 = json.loads((tmp_path / "videorefer-videollama3.json").read_text())
    assert [r["id"] for r in annotation] == [r["id"] for r in llama3]
    assert len(annotation) == report.written["records"] == 4  # 2 accepted objects + 2 object questions
    clips = {f"videos/{c.clip_id}.mp4": c for c in fx.clips.values()}
    for a, m in zip(annotation, llama3, strict=True):
        clip = clips[a["video"]]
        assert m["video"] == [a["video"]] and (tmp_path / a["video"]).is_file()
        assert (a["height"], a["width"]) == (m["height"], m["width"]) == (clip.height, clip.width)
        human = a["conversations"][0]["value"]
        assert human.count("<region>") == len(a["annotation"]) == len(m["masks"]) == len(a["object_ids"])
        for region_a, region_m in zip(a["annotation"], m["masks"], strict=True):
            (frame, rle), = region_m.items()  # one keyframe per object, one of the v1 entry's frames
            assert set(region_a) == {str(f) for f in range(clip.num_frames)}
            assert decode(rle).shape == (clip.height, clip.width)
            assert decode(region_a[frame]["segmentation"]).sum() == decode(rle).sum() > 0


def test_videorefer_never_exports_rejected_objects(fx, tmp_path):
    export(fx.root, "videorefer", tmp_path)
    records = json.loads((tmp_path / "videorefer-annotation.json").read_text())
    exported = {oid for r in records for oid in r["object_ids"]}
    assert fx.ids["rejected_object"] not in exported
    assert fx.objects["gt_ball"].object_id not in exported  # ground truth without an object caption
    assert exported == {fx.objects["seg_ball"].object_id, fx.objects["seg_dog"].object_id}
    questions = [r for r in records if "Question" in r]
    assert {q["type"] for q in questions} == {"basic", "future"}
    for q in questions:
        assert q["Answer"] in q["options"] and q["conversations"][1]["value"] == q["Answer"]


def test_videorefer_validation_names_each_known_pain(fx):
    clip = fx.clips["virtual"].to_record()
    good = fx.objects["seg_ball"].masks[0].model_dump()
    small = fx.objects["seg_dog"].masks[0].model_dump()  # 40x64, clip is 32x48

    def record(human, regions):
        return {"conversations": [{"from": "human", "value": human}], "regions": regions}

    assert validate_record(record("<region>", [{0: good}]), clip) == []
    assert "placeholders" in validate_record(record("<region> <region>", [{0: good}]), clip)[0]
    assert "outside" in validate_record(record("<region>", [{8: good}]), clip)[0]
    assert "null mask" in validate_record(record("<region>", [{0: None}]), clip)[0]
    assert "clip is" in validate_record(record("<region>", [{0: small}]), clip)[0]


def test_motionbench_lines_and_predictions_template(fx, tmp_path):
    report = export(fx.root, "motionbench", tmp_path)
    meta = [json.loads(line) for line in (tmp_path / "video_info.meta.jsonl").read_text().splitlines()]
    assert len(meta) == report.written["questions"] and all(len(m["qa"]) == 1 for m in meta)
    assert all(isinstance(m["question_type"], str) for m in meta)
    assert sum(v for k, v in report.written.items() if k.startswith("answer_")) == report.written["questions"]
    lines = [json.loads(line) for line in (tmp_path / "motionbench.jsonl").read_text().splitlines()]
    template = json.loads((tmp_path / "predictions-template.json").read_text())
    qas = {qa["uid"]: qa for line in lines for qa in line["qa"]}
    assert set(template) == set(qas) and all(v == "" for v in template.values())
    assert fx.ids["dropped_question"] not in qas  # blind filter said drop
    assert qas[fx.ids["flagged_question"]]["flags"] == ["length_giveaway"]
    assert not any(q.category in ("basic", "future") for q in fx.mcqs.values() if q.question_id in qas)
    for line in lines:
        assert set(line["video_info"]) == {"duration", "fps", "resolution"}
        for qa in line["qa"]:
            stem, *options = qa["question"].split("\n")
            assert [o[:3] for o in options] == [f"{letter}. " for letter in "ABCD"[: len(options)]]
            assert qa["answer"] in "ABCD"[: len(options)]
    shuffled = qas[fx.ids["shuffled_question"]]  # written shuffled to [up, down, right, left], exported as stored
    assert shuffled["question"].endswith("D. left") and shuffled["answer"] == "D"


def test_sft_and_dpo_records(fx, tmp_path):
    sft_report = export(fx.root, "sft", tmp_path)
    dpo_report = export(fx.root, "dpo", tmp_path)
    sft = json.loads((tmp_path / "sft.json").read_text())
    dpo = [json.loads(line) for line in (tmp_path / "dpo.jsonl").read_text().splitlines()]
    assert sft and all(r["conversations"][0]["value"].startswith("<video>\n") for r in sft)
    assert all([t["from"] for t in r["conversations"]] == ["human", "gpt"] for r in sft)
    assert fx.ids["dropped_question"] not in {r["id"] for r in sft}
    # every kept question: 5 motion (MR x2, RC x2, LM, AO; MO dropped) and 2 object questions
    # (l_cube is about a rejected object), and the free-form row with its caption sentence removed
    assert (sft_report.written["motion_questions"], sft_report.written["object_questions"]) == (6, 2)
    assert sft_report.skipped["mcq_dropped_by_checks"] == 1
    assert [r["conversations"][1]["value"] for r in sft if r["kind"] == "free_form"] == ["left."]
    region = next(r for r in sft if r["kind"] == "object_question" and r["category"] == "basic")
    assert len(region["annotation"]) == region["conversations"][0]["value"].count("<region>") == 1
    assert region["provenance"] == ["reviewed"]
    by_question = {p["question_id"]: p for p in dpo}
    assert fx.ids["dropped_question"] not in by_question
    shuffled = by_question[fx.ids["shuffled_question"]]
    assert (shuffled["chosen"], shuffled["rejected"], shuffled["error_type"]) == ("Left.", "Right.", "wrong_direction")
    assert dpo_report.written["pairs"] == len(dpo) and all(p["video"].startswith("videos/") for p in dpo)


def test_hf_folder_loads_with_datasets(fx, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    import datasets

    out = tmp_path / "hf"
    export(fx.root, "hf", out)
    mcqs = datasets.load_dataset("parquet", data_dir=str(out / "mcqs"), cache_dir=str(tmp_path / "cache"))["train"]
    assert mcqs.num_rows == 8 and fx.ids["dropped_question"] not in mcqs["question_id"]
    objects = datasets.load_dataset(str(out), "objects", cache_dir=str(tmp_path / "cache"))["train"]
    assert fx.ids["rejected_object"] not in objects["object_id"]
    assert decode(objects[0]["masks"][0]).any()
    provenance = dict(zip(objects["object_id"], objects["provenance"], strict=True))
    assert provenance[fx.objects["gt_ball"].object_id] == "ground_truth"
    assert provenance[fx.objects["seg_ball"].object_id] == "reviewed"
    card = (out / "README.md").read_text()
    assert "| mcqs | 8 |" in card and "| MR | 2 |" in card and "LICENCE PLACEHOLDER" in card
    assert "| question_writer | gpt-test | 2024-08-06 |" in card


def test_dataset_wide_dedup_across_shards(fx, tmp_path):
    clip = fx.clips["folder"]
    twin = mcq(clip, "LM", "Where does the dog run after the jump ?", ["To the right", "to the left",
               "towards the camera", "away from the camera"], "A", "llm", LLM.model_copy(update={"prompt_version": "v2"}))
    store = DatasetStore(fx.root)
    store.commit(store.stage_shard("question_writer", "shard_twin", {"mcqs": [twin]}), {})
    try:
        report = export(fx.root, "motionbench", tmp_path)
        assert report.skipped["mcq_duplicate_in_dataset"] == 1
        assert report.written["questions"] == 6
    finally:
        store.remove_shard("question_writer", "shard_twin", ["mcqs"])


def test_cli_export_and_user_errors(fx, tmp_path, capsys):
    assert cli(["export", "--dataset", str(fx.root), "--format", "dpo", "--to", str(tmp_path / "o")]) == 0
    assert "pairs 5" in capsys.readouterr().out
    assert cli(["export", "--dataset", str(tmp_path / "nope"), "--format", "dpo", "--to", str(tmp_path)]) == 2
    assert "no dataset" in capsys.readouterr().err


def test_hf_reexport_leaves_no_stale_table(tmp_path):
    fx = write_dataset(tmp_path / "ds")
    out = tmp_path / "hf"
    export(fx.root, "hf", out, media="none")
    assert (out / "sft" / "train-00000-of-00001.parquet").is_file()
    store = DatasetStore(fx.root)
    store.remove_shard("question_writer", "shard0", ["sft", "preferences"])
    report = export(fx.root, "hf", out, media="none")
    assert not (out / "sft").exists() and not (out / "preferences").exists()
    assert report.written["sft"] == 0 and any(n.startswith("sft 0:") for n in report.notes)
    assert "config_name: sft" not in (out / "README.md").read_text()
    assert {"clips", "objects", "captions"} <= {p.name for p in out.iterdir() if p.is_dir()}


def test_media_modes_link_copy_none(fx, tmp_path):
    sources = {f"videos/{c.clip_id}.mp4": fx.root / c.video_path for c in fx.clips.values()}
    for media in ("link", "copy"):
        report = export(fx.root, "dpo", tmp_path / media, media=media)
        videos = {json.loads(line)["video"] for line in (tmp_path / media / "dpo.jsonl").read_text().splitlines()}
        assert videos and videos <= set(sources)
        for video in videos:
            exported, source = tmp_path / media / video, sources[video]
            assert exported.read_bytes() == source.read_bytes()
            assert exported.samefile(source) == (media == "link")
        assert report.written[f"media_{'linked' if media == 'link' else 'copied'}"] == len(videos)
    export(fx.root, "dpo", tmp_path / "none", media="none")
    assert not (tmp_path / "none" / "videos").exists()
    videos = {json.loads(line)["video"] for line in (tmp_path / "none" / "dpo.jsonl").read_text().splitlines()}
    assert videos <= {c.video_path for c in fx.clips.values()}  # relative to the dataset root


def test_missing_video_leaves_its_records_out_with_a_reason(tmp_path):
    fx = write_dataset(tmp_path / "ds")  # rows name videos that were never written
    report = export(fx.root, "dpo", tmp_path / "out")
    assert report.written["pairs"] == 0 and report.skipped["video_missing"] == 5
    assert any(p.startswith("video_missing: clip") for p in report.problems)
    assert any(n.startswith("pairs 0:") for n in report.notes)


def test_zero_counts_are_explained(tmp_path, capsys):
    dataset = tmp_path / "ds"
    assert cli(["build-motionvid-qa", "--dataset", str(dataset), "--source", "virtual:1", "--stages",
                "ingest,ground_truth,template_writer", "--executor", "local"]) == 0
    capsys.readouterr()
    assert cli(["export", "--dataset", str(dataset), "--format", "videorefer", "--to", str(tmp_path / "vr")]) == 0
    out = capsys.readouterr().out
    assert "questions 0: the dataset has no accepted object question" in out
    assert "left out: object_without_caption" in out
