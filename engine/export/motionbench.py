"""MotionBench JSONL: one line per video, its questions with the options inside the text.

`motionbench.jsonl` lines: `{"key", "video_path", "question_type", "video_type", "video_info":
{"duration", "fps", "resolution"}, "qa": [{"uid", "question", "answer", "start", "end",
"question_type", "flags"}]}`. MotionBench keys one category per video; ours may hold several, so
each qa also carries its own `question_type` (the video-level one lists them joined by ", ") and the
scorer reads the qa-level one first. `predictions-template.json` is `{uid: ""}` for every question,
the shape MotionBench takes submissions in.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from engine.export import LETTERS, MOTION_CATEGORY_NAMES, ExportReport, ExportView, write_json, write_jsonl


def question_text(question: str, options: list[str]) -> str:
    return question + "\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))


def export(view: ExportView, out: Path) -> ExportReport:
    report = ExportReport("motionbench")
    by_clip: dict[str, list[dict]] = defaultdict(list)
    for q in view.mcqs:
        if q["category"] in MOTION_CATEGORY_NAMES:
            by_clip[q["clip_id"]].append(q)
    lines = [video_line(view.clips[clip_id], questions) for clip_id, questions in sorted(by_clip.items())]
    uids = [qa["uid"] for line in lines for qa in line["qa"]]
    write_jsonl(out / "motionbench.jsonl", lines)
    write_json(out / "predictions-template.json", {uid: "" for uid in uids})
    report.files += [str(out / "motionbench.jsonl"), str(out / "predictions-template.json")]
    report.written.update(videos=len(lines), questions=len(uids))
    # the letter balance as exported (the writer shuffled options as it wrote), for the user to see
    report.written.update(Counter(f"answer_{qa['answer']}" for line in lines for qa in line["qa"]))
    return report


def video_line(clip: dict, questions: list[dict]) -> dict:
    start = clip["start"] if clip.get("start") is not None else 0.0
    end = clip["end"] if clip.get("end") is not None else start + clip["duration"]
    types = sorted({q["category"] for q in questions})
    return {
        "key": clip["clip_id"],
        "video_path": clip["video_path"],
        "question_type": ", ".join(MOTION_CATEGORY_NAMES[t] for t in types),
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
