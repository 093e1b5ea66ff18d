"""VideoRefer-700K / VideoRefer-Bench records, in the two layouts its loaders read.

- `videorefer-annotation.json` (the v1 loader, `videorefer/train.py` of DAMO-NLP-SG/VideoRefer):
  `"video": "videos/<clip>.mp4"` and `"annotation": [{"<frame>": {"segmentation": RLE}, ...}, ...]`,
  one entry per object (every frame its masklet covers), one `<region>` per object.
- `videorefer-videollama3.json` (the VideoLLaMA3 loader, `videorefer_videollama3/train.py`):
  `"video": ["videos/<clip>.mp4"]` (a one-item list, relative to the data folder) and
  `"masks": [{"<frame>": RLE}, ...]` with one entry per (object, frame) pair, each consuming one
  `<region>` in order; by default one keyframe per object, so `<region>`s and objects match.

Frame keys are frames of the file `video` names (see `engine.export.media`). Object questions
(basic / reasoning / future) carry Bench-Q fields and a `frame_idx` on which every object of the
question has a mask. Every record has `height`, `width` and `provenance` (per object: `reviewed`
or `ground_truth`) and is validated before it is written: `<region>` count, masks that decode to
the clip's size, frame keys inside the clip. An invalid record is left out and counted.
"""

from __future__ import annotations

from pathlib import Path

from pycocotools import mask as mask_utils

from engine.export import LETTERS, OBJECT_CATEGORIES, ExportReport, ExportView, answer_text, write_json

V1_FILE = "videorefer-annotation.json"
VIDEOLLAMA3_FILE = "videorefer-videollama3.json"
DESCRIBE = "<video>\nPlease give a detailed description of the <region> in the video."
ANSWER_HINT = "Answer with the option's letter from the given choices directly."


def export(view: ExportView, out: Path) -> ExportReport:
    report = ExportReport("videorefer")
    records = describe_records(view, report) + question_records(view, report)
    v1, llama3 = [], []
    for record in records:
        problems = validate_record(record, view.clips[record["_clip_id"]])
        if problems:
            report.skip("invalid_record", f"{record['id']}: {problems[0]}")
            continue
        media = view.clip_media(record["_clip_id"])
        if media is None:
            report.skip("video_missing", record["id"])
            continue
        public = {k: v for k, v in record.items() if not k.startswith("_") and k != "regions"}
        v1.append({**public, "video": media.video,
                   "annotation": [{media.frame_key(f): {"segmentation": rle} for f, rle in region.items()}
                                  for region in record["regions"]]})
        llama3.append({**public, "video": [media.video],
                       "masks": [{media.frame_key(f): region[f]} for f, region in
                                 zip(record["_keyframes"], record["regions"], strict=True)]})
        if "frame_idx" in public:
            v1[-1]["frame_idx"] = llama3[-1]["frame_idx"] = media.frame_key(int(public["frame_idx"]))
    write_json(out, V1_FILE, v1, report)
    write_json(out, VIDEOLLAMA3_FILE, llama3, report)
    report.written["records"] = len(v1)
    report.written["questions"] = sum(1 for r in v1 if "Question" in r)
    _explain_zeros(view, report)
    return report


def _explain_zeros(view: ExportView, report: ExportReport) -> None:
    if not view.exported_objects():
        report.explain_zero("records", "no object is exportable: none was accepted by a review and there is "
                            "no ground truth")
    object_questions = [q for q in view.mcqs if q["category"] in OBJECT_CATEGORIES]
    if not object_questions:
        report.explain_zero("questions", "the dataset has no accepted object question (basic, reasoning, "
                            "future); motion questions go to the motionbench, sft and hf exports")
    else:
        report.explain_zero("questions", "every object question was left out, see `left out`")


def describe_records(view: ExportView, report: ExportReport) -> list[dict]:
    """One detailed-caption record per exported object with a caption."""
    records = []
    for obj in view.exported_objects():
        caption = view.caption_for_object(obj["object_id"])
        if caption is None:
            report.skip("object_without_caption", obj["object_id"])
            continue
        record = base_record(view, obj["object_id"], obj["clip_id"], [obj], DESCRIBE, caption)
        record["_keyframes"] = [keyframe([obj])]
        records.append(record)
    return records


def question_records(view: ExportView, report: ExportReport) -> list[dict]:
    """Bench-Q style records for object-level questions (basic / reasoning / future)."""
    exported = {o["object_id"]: o for o in view.exported_objects()}
    records = []
    for q in view.mcqs:
        if q["category"] not in OBJECT_CATEGORIES:
            continue
        objects = [exported.get(oid) for oid in q["object_ids"]]
        if not objects or any(o is None for o in objects):
            report.skip("question_object_missing", q["question_id"])
            continue
        frame = keyframe(objects)
        if frame is None:
            report.skip("no_frame_with_every_object", q["question_id"])
            continue
        options = [f"({LETTERS[i]}) {o}" for i, o in enumerate(q["options"])]
        human = "<video>\n" + q["question"] + "\n" + "\n".join(options) + "\n" + ANSWER_HINT
        answer = f"({q['answer']}) {answer_text(q)}"
        record = base_record(view, q["question_id"], q["clip_id"], objects, human, answer)
        record.update({"Question": q["question"], "type": q["category"], "options": options, "Answer": answer,
                       "frame_idx": str(frame), "flags": q["flags"], "_keyframes": [frame] * len(objects)})
        records.append(record)
    return records


def keyframe(objects: list[dict]) -> int | None:
    """A clip frame on which every object has a mask: the one whose smallest mask is largest."""
    areas = [{f: _area(m) for f, m in zip(o["frame_indices"], o["masks"], strict=True) if m} for o in objects]
    common = set(areas[0]).intersection(*areas[1:])
    if not common:
        return None
    return max(sorted(common), key=lambda f: min(a[f] for a in areas))


def _area(rle: dict) -> int:
    return int(mask_utils.area({"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}))


def base_record(view: ExportView, record_id: str, clip_id: str, objects: list[dict], human: str, gpt: str) -> dict:
    clip = view.clips[clip_id]
    return {
        "id": record_id,
        "height": clip["height"],
        "width": clip["width"],
        "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}],
        "object_ids": [o["object_id"] for o in objects],
        "provenance": [o["provenance"] for o in objects],
        "regions": [{int(f): m for f, m in zip(o["frame_indices"], o["masks"], strict=True)} for o in objects],
        "_clip_id": clip_id,
    }


def validate_record(record: dict, clip: dict) -> list[str]:
    """The points VideoRefer users trip over; an empty list means the record is sound."""
    problems = []
    text = " ".join(turn["value"] for turn in record["conversations"] if turn["from"] == "human")
    if text.count("<region>") != len(record["regions"]):
        problems.append(f"{text.count('<region>')} <region> placeholders but {len(record['regions'])} objects")
    for region in record["regions"]:
        if not region:
            problems.append("an object has no masks")
        for frame, rle in region.items():
            problems += _check_mask(str(frame), rle, clip)
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
