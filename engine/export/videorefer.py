"""VideoRefer-700K / VideoRefer-Bench records, in both mask layouts its users meet.

`videorefer-annotation.json`: `"annotation": [{"<frame>": {"segmentation": RLE}}, ...]` (the
released 700K layout); `videorefer-masks.json`: `"masks": [{"<frame>": RLE}, ...]` (the later one).
One list entry per `<region>` placeholder, in order. Every record carries `height` and `width` and
is validated before it is written: `<region>` count equals the number of objects, every mask
decodes with pycocotools to the clip's size, frame keys lie inside the clip. An invalid record is
left out and counted in the export report, never written half-right.
"""

from __future__ import annotations

import copy
from pathlib import Path

from pycocotools import mask as mask_utils

from engine.export import LETTERS, OBJECT_CATEGORIES, ExportReport, ExportView, answer_text, write_json

DESCRIBE = "<video>\nPlease give a detailed description of the <region> in the video."
ANSWER_HINT = "Answer with the option's letter from the given choices directly."


def export(view: ExportView, out: Path) -> ExportReport:
    report = ExportReport("videorefer")
    records = describe_records(view, report) + question_records(view, report)
    valid = []
    for record in records:
        problems = validate_record(record, view.clips[record["_clip_id"]])
        if problems:
            report.skip("invalid_record", f"{record['id']}: {problems[0]}")
            continue
        valid.append({k: v for k, v in record.items() if not k.startswith("_")})
    annotation, masks = [], []
    for record in valid:
        regions = record.pop("regions")
        annotation.append({**record, "annotation": [{f: {"segmentation": rle} for f, rle in r.items()} for r in regions]})
        masks.append({**copy.deepcopy(record), "masks": regions})
    for name, payload in (("videorefer-annotation.json", annotation), ("videorefer-masks.json", masks)):
        write_json(out / name, payload)
        report.files.append(str(out / name))
    report.written["records"] = len(valid)
    report.written["questions"] = sum(1 for r in valid if "Question" in r)
    return report


def describe_records(view: ExportView, report: ExportReport) -> list[dict]:
    """One detailed-caption record per accepted object with a caption."""
    records = []
    for obj in view.reviewed_objects():
        caption = view.caption_for_object(obj["object_id"])
        if caption is None:
            report.skip("object_without_caption", obj["object_id"])
            continue
        records.append(base_record(view, obj["object_id"], obj["clip_id"], [obj], DESCRIBE, caption))
    return records


def question_records(view: ExportView, report: ExportReport) -> list[dict]:
    """Bench-Q style records for object-level questions (basic / reasoning / future)."""
    records = []
    for q in view.mcqs:
        if q["category"] not in OBJECT_CATEGORIES:
            continue
        objects = [view.objects.get(oid) for oid in q["object_ids"]]
        if not objects or any(o is None for o in objects):
            report.skip("question_object_missing", q["question_id"])
            continue
        options = [f"({LETTERS[i]}) {o}" for i, o in enumerate(q["options"])]
        human = "<video>\n" + q["question"] + "\n" + "\n".join(options) + "\n" + ANSWER_HINT
        answer = f"({q['answer']}) {answer_text(q)}"
        record = base_record(view, q["question_id"], q["clip_id"], objects, human, answer)
        record.update({"Question": q["question"], "type": q["category"], "options": options, "Answer": answer,
                       "frame_idx": str(objects[0]["frame_indices"][0]), "flags": q["flags"]})
        records.append(record)
    return records


def base_record(view: ExportView, record_id: str, clip_id: str, objects: list[dict], human: str, gpt: str) -> dict:
    clip = view.clips[clip_id]
    record = {
        "id": record_id,
        "video": clip["video_path"],
        "height": clip["height"],
        "width": clip["width"],
        "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}],
        "object_ids": [o["object_id"] for o in objects],
        "regions": [{str(f): m for f, m in zip(o["frame_indices"], o["masks"], strict=True)} for o in objects],
        "_clip_id": clip_id,
    }
    if clip.get("start") is not None:
        record["start"], record["end"] = clip["start"], clip["end"]
    return record


def validate_record(record: dict, clip: dict) -> list[str]:
    """The three points VideoRefer users trip over; an empty list means the record is sound."""
    problems = []
    text = " ".join(turn["value"] for turn in record["conversations"] if turn["from"] == "human")
    if text.count("<region>") != len(record["regions"]):
        problems.append(f"{text.count('<region>')} <region> placeholders but {len(record['regions'])} objects")
    for region in record["regions"]:
        if not region:
            problems.append("an object has no masks")
        for frame, rle in region.items():
            problems += _check_mask(frame, rle, clip)
    return problems


def _check_mask(frame: str, rle: dict | None, clip: dict) -> list[str]:
    if not frame.isdigit() or not 0 <= int(frame) < clip["num_frames"]:
        return [f"frame key {frame!r} outside the clip's {clip['num_frames']} frames"]
    if not rle or not rle.get("counts"):
        return [f"frame {frame}: null mask"]
    try:
        decoded = mask_utils.decode({"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")})
    except (TypeError, ValueError, UnicodeEncodeError) as err:
        return [f"frame {frame}: mask does not decode ({err})"]
    if decoded.shape != (clip["height"], clip["width"]):
        return [f"frame {frame}: mask is {decoded.shape}, clip is {(clip['height'], clip['width'])}"]
    return []
