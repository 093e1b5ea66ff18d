"""MotionBench files: the official layout, our richer per-video file, and an answer-file template.

- `video_info.meta.jsonl`: MotionBench's own meta layout with ONE question per line, so its
  official scorer (`motionbench/metrics/compute_accuracy.py`) runs on it unchanged: that scorer
  wraps the line's `question_type` in a list for every answered question (a second answered
  question on a line crashes it) and counts the line's `question_type` string as the category.
  Lines: `{"key", "video_path", "question_type", "video_type", "video_info": {"duration", "fps",
  "resolution"}, "qa": [{"uid", "question", "answer", "start", "end"}]}`, options inside the
  question text ("...\\nA. ...\\nB. ...").
- `motionbench.jsonl`: one line per video with all its questions; each qa carries its own
  `question_type`, `category`, `source` and quality `flags` (read by `engine.run score`, not by the
  official scorer).
- `predictions-template.json`: MotionBench's answer-file format `{uid: letter}`, letters empty.

`video_path` is relative to the export folder (see `engine.export.media`); `start` / `end` are
seconds into that file.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from engine.export import LETTERS, MOTION_CATEGORY_NAMES, ExportReport, ExportView, write_json, write_jsonl

META_FILE = "video_info.meta.jsonl"
PER_VIDEO_FILE = "motionbench.jsonl"
TEMPLATE_FILE = "predictions-template.json"


def question_text(question: str, options: list[str]) -> str:
    return question + "\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))


def export(view: ExportView, out: Path) -> ExportReport:
    report = ExportReport("motionbench")
    by_clip: dict[str, list[dict]] = defaultdict(list)
    for q in view.mcqs:
        if q["category"] in MOTION_CATEGORY_NAMES:
            by_clip[q["clip_id"]].append(q)
        else:
            report.skip("object_question_not_motionbench")
    videos = []
    for clip_id, questions in sorted(by_clip.items()):
        if view.clip_media(clip_id) is None:
            report.skipped["video_missing"] += len(questions)
            continue
        videos.append(video_line(view, clip_id, questions))
    meta = [{**line, "question_type": qa["question_type"], "qa": [official_qa(qa)]}
            for line in videos for qa in line["qa"]]
    write_jsonl(out, META_FILE, meta, report)
    write_jsonl(out, PER_VIDEO_FILE, videos, report)
    write_json(out, TEMPLATE_FILE, {line["qa"][0]["uid"]: "" for line in meta}, report)
    report.written.update(videos=len(videos), questions=len(meta))
    report.written.update(Counter(f"answer_{line['qa'][0]['answer']}" for line in meta))
    if not meta:
        report.explain_zero("questions", "the dataset has no accepted motion question (MR, LM, CM, MO, AO, RC)"
                            if not view.mcqs else "every accepted question is an object question (basic, "
                            "reasoning, future): those go to the videorefer, sft and hf exports")
    return report


def official_qa(qa: dict) -> dict:
    return {k: qa[k] for k in ("uid", "question", "answer", "start", "end")}


def video_line(view: ExportView, clip_id: str, questions: list[dict]) -> dict:
    clip = view.clips[clip_id]
    media = view.clip_media(clip_id)
    start = media.frame_offset / clip["fps"]
    end = start + clip["duration"]
    types = sorted({q["category"] for q in questions})
    return {
        "key": clip_id,
        "video_path": media.video,
        "question_type": [MOTION_CATEGORY_NAMES[t] for t in types],
        "video_type": clip["source"],
        "video_info": {"duration": clip["duration"], "fps": clip["fps"],
                       "resolution": f"{clip['width']}x{clip['height']}"},
        "qa": [
            {"uid": q["question_id"], "question": question_text(q["question"], q["options"]), "answer": q["answer"],
             "start": start, "end": end, "question_type": MOTION_CATEGORY_NAMES[q["category"]],
             "category": q["category"], "source": q["source"], "flags": q["flags"]}
            for q in sorted(questions, key=lambda q: (q["category"], q["question_id"]))
        ],
    }
