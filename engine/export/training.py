"""MotionVid-QA training data: SFT in LLaVA `conversations` form, preference pairs for DPO.

`sft.json`: a JSON list of `{"id", "video", "conversations": [{"from": "human", "value":
"<video>\\n..."}, {"from": "gpt", "value": ...}]}`, made from the `sft` table and from every kept
multiple-choice question (answered with its letter and option text).
`dpo.jsonl`: one `{"id", "video", "prompt", "chosen", "rejected", "error_type"}` per line.
"""

from __future__ import annotations

from pathlib import Path

from engine.export import ExportReport, ExportView, answer_text, write_json, write_jsonl
from engine.export.motionbench import question_text


def conversation(record_id: str, video: str, human: str, gpt: str) -> dict:
    return {"id": record_id, "video": video,
            "conversations": [{"from": "human", "value": "<video>\n" + human}, {"from": "gpt", "value": gpt}]}


def export_sft(view: ExportView, out: Path) -> ExportReport:
    report = ExportReport("sft")
    records = [conversation(r["sft_id"], view.clips[r["clip_id"]]["video_path"], r["question"], r["answer"])
               for r in view.sft if r["clip_id"] in view.clips]
    report.written["free_form"] = len(records)
    for q in view.mcqs:
        if q["object_ids"]:
            continue  # object questions need region prompts: they go to the videorefer export
        human = question_text(q["question"], q["options"]) + "\nAnswer with the option's letter."
        records.append(conversation(q["question_id"], view.clips[q["clip_id"]]["video_path"], human,
                                    f"{q['answer']}. {answer_text(q)}"))
        report.written["multiple_choice"] += 1
    write_json(out / "sft.json", records)
    report.files.append(str(out / "sft.json"))
    return report


def export_dpo(view: ExportView, out: Path) -> ExportReport:
    report = ExportReport("dpo")
    records = []
    for r in view.preferences:
        if r["clip_id"] not in view.clips:
            report.skip("clip_missing", r["pair_id"])
            continue
        records.append({"id": r["pair_id"], "video": view.clips[r["clip_id"]]["video_path"], "prompt": r["question"],
                        "chosen": r["chosen"], "rejected": r["rejected"], "error_type": r["error_type"]})
    write_jsonl(out / "dpo.jsonl", records)
    report.files.append(str(out / "dpo.jsonl"))
    report.written["pairs"] = len(records)
    return report
