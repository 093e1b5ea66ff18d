"""Exports read by each consumer's own loading semantics (tests/consumers/), on a virtual dataset and
on a span manifest, and a round trip: every exported mask decoded on the frame its key names in the
exported media equals the dataset's mask, and that frame is the right source frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.base import Batch
from engine.export import export
from engine.score import load_gold, load_predictions, score
from engine.store import DatasetStore
from schemas import ClipRow, decode_mask
from tests.consumers import motionbench as mb_official
from tests.consumers import trl
from tests.consumers import videorefer as vr
from tests.helpers_exports import SPAN_START_FRAME, build_span_dataset, build_virtual_dataset, frame_code

FORMATS = ("videorefer", "motionbench", "sft", "dpo", "hf")


@pytest.fixture(scope="module")
def virtual(tmp_path_factory):
    root = tmp_path_factory.mktemp("virtual")
    dataset = build_virtual_dataset(root)
    out = root / "export"
    reports = {fmt: export(dataset, fmt, out) for fmt in FORMATS}
    return dataset, out, reports


@pytest.fixture(scope="module")
def span(tmp_path_factory):
    root = tmp_path_factory.mktemp("span")
    dataset = build_span_dataset(root)
    out = {}
    for media in ("link", "none"):
        out[media] = root / f"export-{media}"
        for fmt in FORMATS:
            export(dataset, fmt, out[media], media=media)
    return dataset, out


def exports(virtual, span):
    yield virtual[0], virtual[1], 0
    yield span[0], span[1]["link"], 0
    yield span[0], span[1]["none"], SPAN_START_FRAME


def data_folder(dataset: Path, out: Path, offset: int) -> Path:
    """Where a consumer joins `video` to: the export folder, or the dataset root under --media none."""
    return dataset if offset else out


def read_json(path: Path):
    return json.loads(path.read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def dataset_objects(dataset: Path) -> dict[str, dict]:
    return {o["object_id"]: o for o in DatasetStore(dataset).read_table("objects").to_pylist()}


def dataset_clips(dataset: Path) -> dict[str, dict]:
    return {c["clip_id"]: c for c in DatasetStore(dataset).read_table("clips").to_pylist()}


# ----- no absolute path, media beside the records -----

def test_no_record_names_an_absolute_path_and_every_video_exists(virtual, span):
    for dataset, out, offset in exports(virtual, span):
        folder = data_folder(dataset, out, offset)
        for name in ("videorefer-annotation.json", "sft.json"):
            text = (out / name).read_text()
            assert str(dataset) not in text and "/tmp/" not in text
            for record in read_json(out / name):
                assert not Path(record["video"]).is_absolute() and (folder / record["video"]).is_file()
        for line in read_jsonl(out / "video_info.meta.jsonl") + read_jsonl(out / "dpo.jsonl"):
            video = line.get("video_path") or line["video"]
            assert not Path(video).is_absolute() and (folder / video).is_file()


def test_span_clip_is_cut_to_its_own_frames(span):
    dataset, out = span
    (record,) = [r for r in read_json(out["link"] / "videorefer-annotation.json") if "Question" not in r]
    from agents.video import probe
    assert probe(out["link"] / record["video"]).num_frames == 24


# ----- MotionBench -----

def test_official_motionbench_scorer_runs_on_the_meta_file_and_score_agrees(virtual, span, tmp_path):
    for _dataset, out, _ in exports(virtual, span):
        meta = out / "video_info.meta.jsonl"
        lines = read_jsonl(meta)
        assert all(len(line["qa"]) == 1 and isinstance(line["question_type"], str) for line in lines)
        template = read_json(out / "predictions-template.json")
        assert set(template) == {line["qa"][0]["uid"] for line in lines}
        # an answer file: right, wrong and missing answers, clean letters as the official format has
        answers = {}
        for i, line in enumerate(lines):
            qa = line["qa"][0]
            if i % 3 == 0:
                answers[qa["uid"]] = qa["answer"]
            elif i % 3 == 1:
                answers[qa["uid"]] = "ABCD"[("ABCD".index(qa["answer"]) + 1) % 4]
        answer_file = tmp_path / "answers.json"
        answer_file.write_text(json.dumps(answers))
        official = mb_official.compute_accuracy(str(answer_file), str(meta))
        ours = score(load_gold(meta), load_predictions(answer_file))
        for category, tally in ours.per_category.items():
            if tally.answered:
                assert official[category] == pytest.approx(tally.answered_accuracy)
        assert {k for k in official if k not in ("acc", "answered_acc", "total_qa_num", "total_answered_num",
                                                 "right_num")} == {c for c, t in ours.per_category.items() if t.answered}
        assert official["acc"] == pytest.approx(ours.official["acc"])
        assert official["answered_acc"] == pytest.approx(ours.official["answered_acc"])


def test_official_scorer_crashes_on_several_answered_questions_per_line(virtual, tmp_path):
    """Why the meta file holds one question per line: the per-video file breaks the official scorer."""
    out = virtual[1]
    per_video = out / "motionbench.jsonl"
    line = next(x for x in read_jsonl(per_video) if len(x["qa"]) >= 2)
    single = tmp_path / "one-video.jsonl"
    single.write_text(json.dumps({**line, "question_type": "Camera Motion"}) + "\n")
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({qa["uid"]: qa["answer"] for qa in line["qa"]}))
    with pytest.raises(TypeError):
        mb_official.compute_accuracy(str(answers), str(single))


# ----- VideoRefer -----

def test_videorefer_v1_loader_and_round_trip(virtual, span):
    for dataset, out, offset in exports(virtual, span):
        objects, clips = dataset_objects(dataset), dataset_clips(dataset)
        records = read_json(out / "videorefer-annotation.json")
        assert records
        for record in records:
            loaded = vr.load_v1(record, str(data_folder(dataset, out, offset)))
            assert loaded["regions_match"]
            masks = iter(loaded["masks"])
            for object_id, ann in zip(record["object_ids"], record["annotation"], strict=True):
                for key in ann:
                    check_frame_and_mask(objects[object_id], clips, int(key), offset, next(masks),
                                         loaded["frames"][int(key)], dataset)


def test_videorefer_videollama3_loader_one_region_per_mask(virtual, span):
    for dataset, out, offset in exports(virtual, span):
        objects, clips = dataset_objects(dataset), dataset_clips(dataset)
        records = read_json(out / "videorefer-videollama3.json")
        assert records and all(isinstance(r["video"], list) and len(r["video"]) == 1 for r in records)
        for record in records:
            loaded = vr.load_videollama3(record, str(data_folder(dataset, out, offset)))
            assert loaded["placeholders_left"] == 0 and len(loaded["masks"]) == len(record["object_ids"])
            for object_id, key, mask, frame in zip(record["object_ids"], loaded["mask_frame_keys"], loaded["masks"],
                                                   loaded["frames"], strict=True):
                check_frame_and_mask(objects[object_id], clips, key, offset, mask, frame, dataset)


def test_bench_q_single_mode_finds_every_object_on_frame_idx(virtual, span):
    multi = 0
    for _, out, _ in exports(virtual, span):
        for record in read_json(out / "videorefer-annotation.json"):
            if "Question" in record:
                assert len(vr.bench_q_single(record)) == len(record["object_ids"])
                multi += len(record["object_ids"]) > 1
    assert multi  # the virtual dataset's two-object question


def test_ground_truth_objects_are_marked_as_ground_truth(virtual, span):
    provenance = {p for r in read_json(virtual[1] / "videorefer-annotation.json") for p in r["provenance"]}
    assert provenance == {"ground_truth"}
    span_records = read_json(span[1]["link"] / "videorefer-annotation.json")
    assert {p for r in span_records for p in r["provenance"]} == {"reviewed"}


def check_frame_and_mask(obj: dict, clips: dict, key: int, offset: int, mask: np.ndarray, frame: np.ndarray,
                         dataset: Path) -> None:
    """The exported mask is the dataset's mask of clip frame key - offset (IoU 1.0), and the exported
    frame at `key` is that clip frame."""
    clip_frame = key - offset
    stored = decode_mask(obj["masks"][obj["frame_indices"].index(clip_frame)])
    assert mask.shape == stored.shape and (mask.astype(bool) == stored.astype(bool)).all()
    clip = clips[obj["clip_id"]]
    if clip["start"] is not None:  # frame-coded: the frame shows its own index in the long video
        assert frame_code(frame) == SPAN_START_FRAME + clip_frame
    else:
        expected = Batch(root=dataset).read_frames(ClipRow.model_validate(clip), [clip_frame])[0]
        assert np.array_equal(frame, expected)


# ----- TRL and datasets -----

def test_trl_preference_and_sft_formats(virtual, span):
    for _, out, _ in exports(virtual, span):
        pairs = read_jsonl(out / "dpo.jsonl")
        assert pairs
        for pair in pairs:
            assert trl.preference_type(pair) == "standard" and pair["video"]
            assert pair["chosen"] != pair["rejected"] and pair["error_type"].startswith("wrong_")
            assert "caption" not in pair["chosen"].lower()
        for record in read_json(out / "sft.json"):
            converted = trl.maybe_convert_to_chatml(json.loads(json.dumps(record)))
            assert [m["role"] for m in converted["messages"]] == ["human", "gpt"]  # LLaVA roles, as written
            assert converted["messages"][0]["content"].startswith("<video>\n")
            assert "caption" not in converted["messages"][1]["content"].lower()
        for row in read_jsonl(out / "sft-messages.jsonl"):
            assert trl.sft_roles(row) == ["user", "assistant"] and row["video"]
            assert row["messages"][0]["content"][0] == {"type": "video"}


def test_sft_keeps_every_accepted_question(virtual, span):
    dataset, out, reports = virtual
    questions = DatasetStore(dataset).read_table("mcqs").to_pylist()
    sft_ids = {r["id"] for r in read_json(out / "sft.json")}
    assert {q["question_id"] for q in questions} <= sft_ids
    assert reports["sft"].written["motion_questions"] + reports["sft"].written["object_questions"] == len(questions)
    span_sft = read_json(span[1]["link"] / "sft.json")
    free = [r for r in span_sft if r["kind"] == "free_form"]
    assert [r["conversations"][1]["value"] for r in free] == ["It slides to the right and stops."]


def test_datasets_loads_every_config_with_the_store_types(virtual, span, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    import datasets

    from engine.export.hf import TABLES, table_schema

    for _dataset, out, _ in exports(virtual, span):
        configs = [t for t in TABLES if (out / t).is_dir()]
        assert {"clips", "objects", "captions", "mcqs"} <= set(configs)
        for table in configs:
            loaded = datasets.load_dataset(str(out), table, cache_dir=str(tmp_path / "cache"))["train"]
            expected = datasets.Features.from_arrow_schema(table_schema(table))
            assert loaded.features == expected, table
            assert loaded.num_rows > 0
        for table in set(TABLES) - set(configs):
            assert f"config_name: {table}\n" not in (out / "README.md").read_text()
