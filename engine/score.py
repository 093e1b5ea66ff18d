"""Score predictions against a MotionBench-style gold JSONL.

Gold: one JSON object per line with a `qa` list (`uid`, `question` with the options inside,
`answer` letter, optionally a per-question `question_type`), any number of questions per video.
Predictions: a JSON object `{uid: answer text}`. Answers are read by `parse_letter`, which accepts
what models actually write ("The answer is C", "(C)", "C. jumps", "Answer: C", "c") and falls
back to matching the text of exactly one option. An unreadable answer counts as wrong and as
`unparsed`; a uid with no prediction counts as wrong and as `missing`.
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
    correct: int = 0
    unparsed: int = 0
    missing: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "total": self.total, "correct": self.correct,
                "unparsed": self.unparsed, "missing": self.missing}


@dataclass
class Score:
    overall: Tally = field(default_factory=Tally)
    per_category: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    hidden: int = 0  # gold answers "NA": not scored

    def to_dict(self) -> dict:
        return {**self.overall.to_dict(), "hidden": self.hidden,
                "per_category": {k: v.to_dict() for k, v in sorted(self.per_category.items())}}


def score(gold: list[dict], predictions: dict[str, object]) -> Score:
    result = Score()
    for line in gold:
        for qa in line.get("qa", []):
            gold_letter = str(qa.get("answer", "")).strip().upper()
            if gold_letter not in ("A", "B", "C", "D"):
                result.hidden += 1
                continue
            category = qa.get("question_type") or line.get("question_type") or "unknown"
            tallies = (result.overall, result.per_category[category])
            uid = str(qa["uid"])
            letter = parse_letter(predictions.get(uid), options_of(qa.get("question", "")))
            for tally in tallies:
                tally.total += 1
                tally.missing += uid not in predictions
                tally.unparsed += uid in predictions and letter is None
                tally.correct += letter == gold_letter
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


def load_predictions(path: str | Path) -> dict[str, object]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no predictions file at {path}")
    try:
        predictions = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(predictions, dict):
        raise UserError(f"{path} must hold a JSON object {{uid: answer}}, not a {type(predictions).__name__}")
    return {str(k): v for k, v in predictions.items()}


def format_table(result: Score) -> str:
    rows = [("overall", result.overall), *sorted(result.per_category.items())]
    width = max(len(name) for name, _ in rows)
    out = [f"{'category':<{width}}  accuracy  correct/total  unparsed  missing"]
    for name, t in rows:
        out.append(f"{name:<{width}}  {t.accuracy:8.3f}  {t.correct:>7}/{t.total:<5}  {t.unparsed:>8}  {t.missing:>7}")
    if result.hidden:
        out.append(f"({result.hidden} questions with hidden answers not scored)")
    return "\n".join(out)
