"""Score predictions against a MotionBench-style gold JSONL.

Gold: one JSON object per line with a `qa` list (`uid`, `question` with the options inside,
`answer` letter, optionally a per-question `question_type`), any number of questions per video:
the export's `video_info.meta.jsonl` or `motionbench.jsonl`, or MotionBench's own meta file.
Predictions, in any of these shapes:
- MotionBench's answer file, a JSON object `{uid: letter}` (or `{uid: free text}`);
- a JSON object `{uid: {"answer" | "prediction" | "response" | "output" | "text": ...}}`;
- a JSON list, or a JSONL file, of records `{"uid" | "question_id" | "id": ..., "answer" | ...}`.
Answers are read by `parse_letter`, which accepts what models actually write ("The answer is C",
"(C)", "C. jumps", "Answer: C", "<answer>C</answer>", "c") and falls back to matching the text of
exactly one option. An unreadable answer counts as wrong and as `unparsed`; a uid with no
prediction counts as wrong and as `missing`; predictions for uids the gold file does not hold are
counted as `unknown_ids`.

Per category, `answered_accuracy` (correct / answered) is what MotionBench's official
`compute_accuracy` reports for a category, and `official` holds its `acc` (correct over every
question, hidden ones included) and `answered_acc`; on clean letters the numbers are the same.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import UserError

_BARE = re.compile(r"^[\s\(\[\"'*]*([A-Da-d])[\s\)\]\"'*.:,]*$")
# A letter: uppercase anywhere as a word; lowercase only when punctuation or the end follows it,
# so "the answer is a dog" is not read as A.
_LETTER = r"(?:([A-D])\b|([a-d])(?=[\)\].:,]|\s*$))"
_EXPLICIT = [
    re.compile(r"<answer>\s*[\(\[]?\s*(?:([A-D])\b|([a-d])(?=[\)\].:]|\s*</answer>))"),
    re.compile(r"(?i:answer|option|choice)(?:\s+(?i:is|would be|should be))?\s*[:\-]?\s*[\(\[]?" + _LETTER),
    re.compile(r"^\s*[\(\[]?" + r"([A-Da-d])" + r"[\)\].:]"),
    re.compile(r"[\(\[]([A-Da-d])[\)\]]"),
    re.compile(r"^\s*([B-D])\b"),  # "C jumps"; not A, which is usually the article ("A dog runs")
]
_OPTION_LINE = re.compile(r"^([A-D])[.)]\s*(.+)$")


def parse_letter(text: object, options: dict[str, str] | None = None) -> str | None:
    """The option letter a free-form answer names, or None."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    bare = _BARE.match(text)
    if bare:
        return bare.group(1).upper()
    for pattern in _EXPLICIT:
        match = pattern.search(text)
        if match:
            return next(g for g in match.groups() if g).upper()
    return _match_option_text(text, options or {})


def _match_option_text(text: str, options: dict[str, str]) -> str | None:
    said = _norm(text)
    hits = [letter for letter, option in options.items() if _norm(option) and _norm(option) in said]
    # "left" inside "to the left": an option contained in another matched option does not count
    hits = [h for h in hits if not any(h != o and _norm(options[h]) in _norm(options[o]) for o in hits)]
    return hits[0] if len(hits) == 1 else None


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def options_of(question: str) -> dict[str, str]:
    """The `A. ...` lines of a MotionBench question text."""
    return {m.group(1): m.group(2).strip() for line in question.split("\n") if (m := _OPTION_LINE.match(line.strip()))}


@dataclass
class Tally:
    total: int = 0
    answered: int = 0
    correct: int = 0
    unparsed: int = 0
    missing: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def answered_accuracy(self) -> float:
        return self.correct / self.answered if self.answered else 0.0

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "answered_accuracy": self.answered_accuracy, "total": self.total,
                "answered": self.answered, "correct": self.correct, "unparsed": self.unparsed,
                "missing": self.missing}


@dataclass
class Score:
    overall: Tally = field(default_factory=Tally)
    per_category: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    hidden: int = 0  # gold answers "NA": not scored
    hidden_answered: int = 0
    unknown_ids: list[str] = field(default_factory=list)  # predicted uids the gold file does not hold
    blank: int = 0  # predictions that are empty (an unfilled template): counted as unparsed

    @property
    def official(self) -> dict:
        """MotionBench's `acc` and `answered_acc` (hidden questions count in both denominators)."""
        all_questions = self.overall.total + self.hidden
        answered = self.overall.answered + self.hidden_answered
        return {"acc": self.overall.correct / all_questions if all_questions else 0.0,
                "answered_acc": self.overall.correct / answered if answered else 0.0}

    def to_dict(self) -> dict:
        return {**self.overall.to_dict(), "hidden": self.hidden, "blank": self.blank,
                "unknown_ids": len(self.unknown_ids),
                "unknown_id_examples": self.unknown_ids[:5], "official": self.official,
                "per_category": {k: v.to_dict() for k, v in sorted(self.per_category.items())}}


def score(gold: list[dict], predictions: dict[str, object]) -> Score:
    result = Score()
    known: set[str] = set()
    for line in gold:
        for qa in line.get("qa", []):
            uid = str(qa["uid"])
            known.add(uid)
            gold_letter = str(qa.get("answer", "")).strip().upper()
            if gold_letter not in ("A", "B", "C", "D"):
                result.hidden += 1
                result.hidden_answered += uid in predictions
                continue
            category = qa.get("question_type") or line.get("question_type") or "unknown"
            if isinstance(category, list):  # a per-video line lists its categories; the qa has none
                category = ", ".join(category) or "unknown"
            letter = parse_letter(predictions.get(uid), options_of(qa.get("question", "")))
            for tally in (result.overall, result.per_category[category]):
                tally.total += 1
                tally.answered += uid in predictions
                tally.missing += uid not in predictions
                tally.unparsed += uid in predictions and letter is None
                tally.correct += letter == gold_letter
    result.unknown_ids = sorted(uid for uid in predictions if uid not in known)
    result.blank = sum(1 for uid in known if uid in predictions and not str(predictions[uid] or "").strip())
    return result


def load_gold(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no gold file at {path}")
    lines = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{path} line {number} is not JSON ({err.msg})") from None
        if not isinstance(line, dict) or not isinstance(line.get("qa"), list):
            raise UserError(f"{path} line {number} has no `qa` list: not a MotionBench gold file")
        lines.append(line)
    return lines


ID_KEYS = ("uid", "question_id", "id")
ANSWER_KEYS = ("answer", "prediction", "response", "output", "text", "pred")


def load_predictions(path: str | Path) -> dict[str, object]:
    """`{uid: answer text}` from any of the shapes in the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no predictions file at {path}")
    text = path.read_text()
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as err:
        payload = _jsonl_records(path, text, err)
    if isinstance(payload, dict):
        return {str(k): _answer_of(v) for k, v in payload.items()}
    if isinstance(payload, list):
        return dict(_record_answer(path, number, r) for number, r in enumerate(payload, start=1))
    raise UserError(f"{path} must hold a JSON object {{uid: answer}} or a list of records, "
                    f"not a {type(payload).__name__}")


def _jsonl_records(path: Path, text: str, first_error: json.JSONDecodeError) -> list:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise UserError(f"{path} is not JSON ({first_error.msg} at line {first_error.lineno}) "
                            f"nor JSONL (line {number})") from None
    return records


def _answer_of(value: object) -> object:
    if isinstance(value, dict):
        return next((value[k] for k in ANSWER_KEYS if k in value), None)
    return value


def _record_answer(path: Path, number: int, record: object) -> tuple[str, object]:
    uid = next((record[k] for k in ID_KEYS if k in record), None) if isinstance(record, dict) else None
    if uid is None:
        raise UserError(f"{path} record {number} has no uid (one of {', '.join(ID_KEYS)})")
    return str(uid), _answer_of(record)


def format_table(result: Score) -> str:
    rows = [("overall", result.overall), *sorted(result.per_category.items())]
    width = max(len(name) for name, _ in rows)
    out = [f"{'category':<{width}}  accuracy  answered acc  correct/total  unparsed  missing"]
    for name, t in rows:
        out.append(f"{name:<{width}}  {t.accuracy:8.3f}  {t.answered_accuracy:12.3f}  {t.correct:>7}/{t.total:<5}"
                   f"  {t.unparsed:>8}  {t.missing:>7}")
    if result.overall.unparsed:
        blank = f", {result.blank} of them blank" if result.blank else ""
        out.append(f"{result.overall.unparsed} predictions could not be read as an option letter "
                   f"(counted wrong{blank})")
    if result.unknown_ids:
        out.append(f"{len(result.unknown_ids)} predictions are for ids the gold file does not hold (ignored), "
                   f"e.g. {', '.join(result.unknown_ids[:3])}")
    if result.hidden:
        out.append(f"({result.hidden} questions with hidden answers not scored)")
    return "\n".join(out)
