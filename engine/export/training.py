"""MotionVid-QA training data: SFT conversations and preference pairs for DPO, with the video.

- `sft.json` (LLaVA `conversations`): a JSON list of `{"id", "video", "conversations": [{"from":
  "human", "value": "<video>\\n..."}, {"from": "gpt", "value": ...}], "kind", ...}` for every
  accepted motion question and object question (answered with its letter and option text), and
  every free-form SFT row. Object questions keep their `<region>` placeholders and carry the
  masks in VideoRefer's v1 `annotation` layout, one entry per placeholder.
- `sft-messages.jsonl`: the same conversations in TRL's conversational form (`messages` with
  `role` / `content`, the video as a `{"type": "video"}` content part) and a `video` column.
- `dpo.jsonl`: `{"id", "video", "prompt", "chosen", "rejected", "error_type", ...}` per line, TRL's
  standard preference form; pairs come from every accepted motion question through
  `agents.preference_pairs` (the rejected answer changes one motion fact of the correct one, by a
  word rule or by taking a distractor of that fact; `perturbation` says which).
Answers never cite a caption: sentences that do are dropped from free-form answers.
"""

from __future__ import annotations

import re
from pathlib import Path

from agents.preference_pairs import preference_pair
from engine.export import (
    MOTION_CATEGORY_NAMES,
    OBJECT_CATEGORIES,
    ExportReport,
    ExportView,
    answer_text,
    write_json,
    write_jsonl,
)
from engine.export.motionbench import question_text

MCQ_HINT = "Answer with the option's letter from the given choices directly."
CITES_CAPTION = re.compile(r"\bcaptions?\b", re.I)


def conversation(record_id: str, video: str, human: str, gpt: str, **extra) -> dict:
    return {"id": record_id, "video": video,
            "conversations": [{"from": "human", "value": "<video>\n" + human}, {"from": "gpt", "value": gpt}],
            **extra}


def to_messages(record: dict) -> dict:
    """A LLaVA record as TRL conversational messages (the `<video>` tag becomes a content part)."""
    human, gpt = (turn["value"] for turn in record["conversations"])
    return {"id": record["id"], "video": record["video"], "messages": [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": human.removeprefix("<video>\n")}]},
        {"role": "assistant", "content": [{"type": "text", "text": gpt}]}]}


def without_caption_talk(text: str) -> str:
    """The answer without sentences that cite a caption (the model that learns from it sees a video)."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    return " ".join(s for s in sentences if not CITES_CAPTION.search(s)).strip()


def export_sft(view: ExportView, out: Path) -> ExportReport:
    report = ExportReport("sft")
    records = [r for q in view.mcqs if (r := _mcq_record(view, q, report))]
    for row in view.sft:
        answer = without_caption_talk(row["answer"])
        media = view.clip_media(row["clip_id"]) if row["clip_id"] in view.clips else None
        if media is None:
            report.skip("video_missing", row["sft_id"])
            continue
        if not answer:
            report.skip("answer_only_cites_caption", row["sft_id"])
            continue
        records.append(conversation(row["sft_id"], media.video, row["question"], answer,
                                    kind="free_form", question_id=row["question_id"]))
        report.written["free_form"] += 1
    write_json(out, "sft.json", records, report)
    write_jsonl(out, "sft-messages.jsonl", [to_messages(r) for r in records], report)
    report.written["records"] = len(records)
    if not records:
        report.explain_zero("records", "the dataset has no accepted question and no SFT row")
    return report


def _mcq_record(view: ExportView, q: dict, report: ExportReport) -> dict | None:
    human = question_text(q["question"], q["options"]) + "\n" + MCQ_HINT
    media = view.clip_media(q["clip_id"])
    if media is None:
        report.skip("video_missing", q["question_id"])
        return None
    extra = {"kind": "motion_question", "question_id": q["question_id"], "category": q["category"],
             "source": q["source"], "flags": q["flags"]}
    if q["category"] in OBJECT_CATEGORIES:
        exported = {o["object_id"]: o for o in view.exported_objects()}
        objects = [exported.get(oid) for oid in q["object_ids"]]
        if not objects or None in objects:
            report.skip("question_object_missing", q["question_id"])
            return None
        if human.count("<region>") != len(objects):
            report.skip("region_count_mismatch", q["question_id"])
            return None
        extra.update(kind="object_question", object_ids=q["object_ids"], provenance=[o["provenance"] for o in objects],
                     height=view.clips[q["clip_id"]]["height"],
                     width=view.clips[q["clip_id"]]["width"], annotation=[
                         {media.frame_key(f): {"segmentation": m} for f, m in zip(o["frame_indices"], o["masks"],
                                                                                  strict=True)} for o in objects])
    elif q["category"] not in MOTION_CATEGORY_NAMES:
        report.skip("unknown_category", q["question_id"])
        return None
    report.written["object_questions" if extra["kind"] == "object_question" else "motion_questions"] += 1
    return conversation(q["question_id"], media.video, human, f"{q['answer']}. {answer_text(q)}", **extra)


def export_dpo(view: ExportView, out: Path) -> ExportReport:
    report = ExportReport("dpo")
    records = []
    for q in view.mcqs:
        if q["category"] not in MOTION_CATEGORY_NAMES:
            report.skip("object_question_no_motion_fact")
            continue
        pair = preference_pair(q["category"], q["options"], q["answer"])
        if pair is None:
            report.skip("no_controlled_perturbation", q["question_id"])
            continue
        media = view.clip_media(q["clip_id"])
        if media is None:
            report.skip("video_missing", q["question_id"])
            continue
        chosen, rejected, error_type, how = pair
        records.append({"id": q["question_id"], "video": media.video,
                        "prompt": q["question"], "chosen": chosen, "rejected": rejected, "error_type": error_type,
                        "perturbation": how, "question_id": q["question_id"], "category": q["category"],
                        "source": q["source"]})
        report.written[error_type] += 1
    write_jsonl(out, "dpo.jsonl", records, report)
    report.written["pairs"] = len(records)
    if not records:
        report.explain_zero("pairs", "no accepted motion question whose answer has a direction, order, count, "
                            "speed or object to change" if view.mcqs else "the dataset has no accepted question")
    return report
