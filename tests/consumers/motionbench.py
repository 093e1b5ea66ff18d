"""MotionBench's official scorer, ported from THUDM/MotionBench
`motionbench/metrics/compute_accuracy.py` (same control flow; `jsonlines` read as plain JSON lines).

Its quirks are kept on purpose: the line's `question_type` is wrapped in a list for every answered
question of the line (a second answered question makes it a list of a list: TypeError), answers
are compared as raw strings, and `acc` divides by every question, hidden ("NA") ones included.
"""

from __future__ import annotations

import json
from collections import defaultdict


def compute_accuracy(answer_file: str, video_meta_file: str) -> dict:
    total_qa_num = total_answered_num = right_num = 0
    category_right: dict = defaultdict(float)
    category_total: dict = defaultdict(float)
    category_acc: dict = defaultdict(float)
    with open(answer_file) as f:
        model_answers = json.load(f)
    with open(video_meta_file) as f:
        video_meta = [json.loads(line) for line in f if line.strip()]
    for meta_data in video_meta:
        for qa in meta_data["qa"]:
            uid = str(qa["uid"])
            if uid in model_answers:
                total_answered_num += 1
                model_answer = model_answers[uid]
                meta_data["question_type"] = [meta_data["question_type"]]
                if qa["answer"] == "NA":
                    continue
                for category in meta_data["question_type"]:
                    category_total[category] += 1
                    if model_answer == qa["answer"]:
                        category_right[category] += 1
                if model_answer == qa["answer"]:
                    right_num += 1
            total_qa_num += 1
    for key in category_total:
        category_acc[key] = category_right[key] / category_total[key]
    category_acc.update({"acc": float(right_num) / total_qa_num, "answered_acc": float(right_num) / total_answered_num,
                         "total_qa_num": total_qa_num, "total_answered_num": total_answered_num, "right_num": right_num})
    return category_acc
