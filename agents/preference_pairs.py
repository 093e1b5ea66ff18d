"""Preference pairs made from a verified motion question: the chosen answer is the question's
correct option (checked against the caption's evidence, or true by construction for template
questions); the rejected answer changes exactly one motion fact of it, by rule:

- `wrong_direction`: left / right, up / down, clockwise / counterclockwise, zooms in / out, towards / away;
- `wrong_order`: "X, then Y" becomes "Y, then X";
- `wrong_count`: once -> twice, two -> three, ... (one more; one fewer at the top of the scale);
- `wrong_speed`: slowly / quickly, slow / fast;
- `wrong_object`: another object the question offers as an option (motion-related objects).

Each category tries the fact it asks about first. When no rule can change the correct answer's
words, a question about a direction, a count or an object takes its first distractor
(the question offers it as a wrong value of that very fact); `how` says which was done (`rule` or
`distractor`). A motion-recognition or action-order question no rule can change gives no pair. Neither side ever
mentions a caption: both are statements about the video.
"""

from __future__ import annotations

import re

SWAPS = {
    "wrong_direction": [("left", "right"), ("up", "down"), ("upward", "downward"), ("upwards", "downwards"),
                        ("clockwise", "counterclockwise"), ("zooms in", "zooms out"), ("towards", "away from"),
                        ("toward", "away from"), ("forward", "backward"), ("above", "below")],
    "wrong_speed": [("slowly", "quickly"), ("slow", "fast"), ("slower", "faster")],
}
COUNT_WORDS = ["once", "twice", "three times", "four times", "five times", "six times", "seven times"]
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight"]
ORDER = re.compile(r"^(?P<first>.+?),? (?:and )?then (?P<second>.+)$", re.I)
TRIES = {
    "LM": ("wrong_direction", "wrong_speed", "wrong_count"),
    "CM": ("wrong_direction", "wrong_speed"),
    "MR": ("wrong_direction", "wrong_speed", "wrong_count"),
    "AO": ("wrong_order", "wrong_direction"),
    "RC": ("wrong_count",),
    "MO": ("wrong_object",),
}
# categories whose distractors are wrong values of the same fact (an action-order question's
# distractors are often other actions, not the same actions reordered)
DISTRACTOR_FACT = {"LM": "wrong_direction", "CM": "wrong_direction", "RC": "wrong_count", "MO": "wrong_object"}


def preference_pair(category: str, options: list[str], answer: str) -> tuple[str, str, str, str] | None:
    """(chosen, rejected, error_type, how) for a motion question, or None when nothing applies."""
    correct = options["ABCD".index(answer)]
    others = [o for o in options if _norm(o) != _norm(correct)]
    for kind in TRIES.get(category, ()):
        rejected = PERTURB[kind](correct, others)
        if rejected and _differs(kind, correct, rejected):
            return sentence(correct), sentence(rejected), kind, "rule"
    if category in DISTRACTOR_FACT and others:
        return sentence(correct), sentence(sorted(others)[0]), DISTRACTOR_FACT[category], "distractor"
    return None


def _differs(kind: str, correct: str, rejected: str) -> bool:
    if kind == "wrong_order":
        return _norm(rejected) != _norm(correct)
    # "up and down" swapped is "down and up": the same words say the same fact
    return sorted(_norm(rejected).split()) != sorted(_norm(correct).split())


def sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _swap(text: str, kind: str) -> str | None:
    pairs = {a: b for a, b in SWAPS[kind]} | {b: a for a, b in SWAPS[kind]}
    words = sorted(pairs, key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.I)
    swapped = pattern.sub(lambda m: _same_case(m.group(0), pairs[m.group(0).lower()]), text)
    return swapped if swapped != text else None


def _same_case(found: str, replacement: str) -> str:
    return replacement[:1].upper() + replacement[1:] if found[:1].isupper() else replacement


def _order(text: str, _others) -> str | None:
    match = ORDER.match(text.strip())
    return f"{match['second']}, then {match['first']}" if match else None


def _count(text: str, _others) -> str | None:
    for scale in (COUNT_WORDS, NUMBERS):
        for i, word in enumerate(scale):
            if re.search(rf"\b{word}\b", text, re.I):
                other = scale[i + 1] if i + 1 < len(scale) else scale[i - 1]
                return re.sub(rf"\b{word}\b", other, text, count=1, flags=re.I)
    match = re.search(r"\b(\d+)\b", text)
    if match:
        return text[: match.start()] + str(int(match[1]) + 1) + text[match.end():]
    return None


def _object(_text: str, others: list[str]) -> str | None:
    return sorted(others)[0] if others else None


PERTURB = {
    "wrong_direction": lambda text, _others: _swap(text, "wrong_direction"),
    "wrong_speed": lambda text, _others: _swap(text, "wrong_speed"),
    "wrong_order": _order,
    "wrong_count": _count,
    "wrong_object": _object,
}
