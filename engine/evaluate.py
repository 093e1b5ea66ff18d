"""Evaluate what the agents produced on virtual clips against the scenes' ground truth.

Virtual clips (`clips.source == "virtual"`) come with exact objects (`objects.source == "virtual"`)
and template questions (`mcqs.source == "template"`), correct by construction. Three numbers:

- mask IoU: each ground-truth object is matched to the agent object (any other source) of the same
  clip with the same label (case and articles aside) and the highest mean IoU; IoU is averaged over
  the frames both have masks for. An unmatched object scores 0. Reported: mean IoU and the share of
  objects with IoU >= 0.5.
- noun recall: the share of ground-truth labels whose head noun (last word) appears in one of the
  Analyzer's phrases for the clip.
- QA agreement: an LLM-written question agrees when its answer text means the same as the answer of
  a template question of the same clip and category (same text after normalisation, one containing
  the other, or the same count: "twice" = "two" = "2"). Only LLM questions whose clip and category
  have a template question are counted.
- motion captions: the motion captioner's caption of each virtual clip against the exact
  ground-truth motion caption, as word overlap (bag of words after normalisation): recall of the
  truth's words and F1, averaged over the clips that have both.

`compare` evaluates several datasets (say one built with `--profile current`, one with
`--profile videorefer`, both from the same `virtual:N` source) and `format_comparison` puts their
numbers side by side, one column per dataset named by the profile it was built with.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from engine.store import DatasetStore
from schemas import decode_mask

LETTERS = "ABCD"
_COUNTS = {"once": "1", "one": "1", "single": "1", "twice": "2", "two": "2", "thrice": "3", "three": "3",
           "four": "4", "five": "5", "six": "6"}
_FILLER = {"a", "an", "the", "times", "time"}


@dataclass
class Evaluation:
    virtual_clips: int = 0
    objects: int = 0
    matched_objects: int = 0
    mean_iou: float = 0.0
    iou_at_50: float = 0.0
    labels: int = 0
    noun_recall: float = 0.0
    compared_questions: int = 0
    qa_agreement: float = 0.0
    per_object: list[dict] = field(default_factory=list)
    captioned_clips: int = 0
    caption_recall: float = 0.0
    caption_f1: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def words(text: str) -> list[str]:
    tokens = re.sub(r"[^\w\s]", " ", text.lower()).split()
    return [_COUNTS.get(t, t) for t in tokens if t not in _FILLER]


def mask_iou(a: dict, b: dict) -> float:
    ma, mb = decode_mask(a), decode_mask(b)
    if ma.shape != mb.shape:
        return 0.0
    union = np.logical_or(ma, mb).sum()
    return float(np.logical_and(ma, mb).sum() / union) if union else 1.0


def masklet_iou(truth: dict, guess: dict) -> float | None:
    """Mean IoU over the frames both objects have masks for; None if they share no frame."""
    guess_masks = dict(zip(guess["frame_indices"], guess["masks"], strict=True))
    shared = [(m, guess_masks[f]) for f, m in zip(truth["frame_indices"], truth["masks"], strict=True) if f in guess_masks]
    return float(np.mean([mask_iou(a, b) for a, b in shared])) if shared else None


def answers_agree(a: str, b: str) -> bool:
    wa, wb = " ".join(words(a)), " ".join(words(b))
    return bool(wa and wb) and (wa == wb or f" {wa} " in f" {wb} " or f" {wb} " in f" {wa} ")


def evaluate(dataset: str | Path) -> Evaluation:
    store = DatasetStore(dataset, create=False)
    clips = {c["clip_id"] for c in store.read_table("clips").to_pylist() if c["source"] == "virtual"}
    result = Evaluation(virtual_clips=len(clips))
    objects = [o for o in store.read_table("objects").to_pylist() if o["clip_id"] in clips]
    _mask_scores(result, objects)
    _noun_recall(result, objects, [p for p in store.read_table("phrases").to_pylist() if p["clip_id"] in clips])
    _qa_agreement(result, [q for q in store.read_table("mcqs").to_pylist() if q["clip_id"] in clips])
    _caption_overlap(result, [c for c in store.read_table("captions").to_pylist() if c["clip_id"] in clips])
    return result


def _mask_scores(result: Evaluation, objects: list[dict]) -> None:
    truth = [o for o in objects if o["source"] == "virtual"]
    guesses = defaultdict(list)
    for o in objects:
        if o["source"] != "virtual":
            guesses[(o["clip_id"], " ".join(words(o["label"])))].append(o)
    scores = []
    for t in truth:
        candidates = guesses.get((t["clip_id"], " ".join(words(t["label"]))), [])
        ious = [iou for g in candidates if (iou := masklet_iou(t, g)) is not None]
        best = max(ious, default=0.0)
        result.matched_objects += bool(ious)
        scores.append(best)
        result.per_object.append({"clip_id": t["clip_id"], "object_id": t["object_id"], "label": t["label"], "iou": best})
    result.objects = len(truth)
    result.mean_iou = float(np.mean(scores)) if scores else 0.0
    result.iou_at_50 = float(np.mean([s >= 0.5 for s in scores])) if scores else 0.0


def _noun_recall(result: Evaluation, objects: list[dict], phrases: list[dict]) -> None:
    said = defaultdict(set)
    for p in phrases:
        said[p["clip_id"]].update(words(p["text"]))
    labels = {(o["clip_id"], o["label"]) for o in objects if o["source"] == "virtual"}
    hits = [bool(words(label)) and words(label)[-1] in said[clip] for clip, label in labels]
    result.labels = len(hits)
    result.noun_recall = float(np.mean(hits)) if hits else 0.0


def _qa_agreement(result: Evaluation, questions: list[dict]) -> None:
    truth = defaultdict(list)
    for q in questions:
        if q["source"] == "template":
            truth[(q["clip_id"], q["category"])].append(q["options"][LETTERS.index(q["answer"])])
    agree = []
    for q in questions:
        answers = truth.get((q["clip_id"], q["category"])) if q["source"] == "llm" else None
        if answers:
            mine = q["options"][LETTERS.index(q["answer"])]
            agree.append(any(answers_agree(mine, a) for a in answers))
    result.compared_questions = len(agree)
    result.qa_agreement = float(np.mean(agree)) if agree else 0.0


def caption_overlap(truth: str, guess: str) -> tuple[float, float]:
    """(recall of the truth's words, F1) of two captions as bags of normalised words."""
    from collections import Counter

    t, g = Counter(words(truth)), Counter(words(guess))
    common = sum((t & g).values())
    if not common:
        return 0.0, 0.0
    recall, precision = common / sum(t.values()), common / sum(g.values())
    return recall, 2 * recall * precision / (recall + precision)


def _caption_overlap(result: Evaluation, captions: list[dict]) -> None:
    truth = {c["clip_id"]: c["text"] for c in captions if c["source"] == "virtual" and c["kind"] == "motion"}
    scores = [caption_overlap(truth[c["clip_id"]], c["text"]) for c in captions
              if c["source"] == "motion_captioner" and c["kind"] == "motion" and c["clip_id"] in truth]
    result.captioned_clips = len(scores)
    result.caption_recall = float(np.mean([r for r, _ in scores])) if scores else 0.0
    result.caption_f1 = float(np.mean([f for _, f in scores])) if scores else 0.0


def format_evaluation(e: Evaluation) -> str:
    return "\n".join([
        f"virtual clips      {e.virtual_clips}",
        f"mask IoU           {e.mean_iou:.3f} mean over {e.objects} objects ({e.matched_objects} matched by label), "
        f"{e.iou_at_50:.3f} at IoU>=0.5",
        f"noun recall        {e.noun_recall:.3f} over {e.labels} labels",
        f"QA agreement       {e.qa_agreement:.3f} over {e.compared_questions} LLM questions with a template twin",
        f"motion captions    {e.caption_recall:.3f} word recall, {e.caption_f1:.3f} F1 over {e.captioned_clips} clips",
    ])


ROWS = (  # (label, how a value prints)
    ("virtual clips", lambda e: str(e.virtual_clips)),
    ("objects (truth)", lambda e: str(e.objects)),
    ("matched by label", lambda e: str(e.matched_objects)),
    ("mask IoU, mean", lambda e: f"{e.mean_iou:.3f}"),
    ("mask IoU >= 0.5", lambda e: f"{e.iou_at_50:.3f}"),
    ("noun recall", lambda e: f"{e.noun_recall:.3f}"),
    ("labels", lambda e: str(e.labels)),
    ("MCQ agreement", lambda e: f"{e.qa_agreement:.3f}"),
    ("LLM MCQs compared", lambda e: str(e.compared_questions)),
    ("motion caption F1", lambda e: f"{e.caption_f1:.3f}"),
    ("captioned clips", lambda e: str(e.captioned_clips)),
)


def profile_of(dataset: str | Path) -> str:
    """The profile a dataset was last built with (from run.json), else its folder name."""
    config = DatasetStore(dataset, create=False).read_run_config() or {}
    profile = (config.get("job_config") or {}).get("profile")
    return Path(profile).name if profile else Path(dataset).name


def compare(datasets: list[str | Path]) -> list[tuple[str, Evaluation]]:
    """Each dataset's evaluation under a column name: its profile, with the folder when two share one."""
    profiles = [profile_of(d) for d in datasets]
    names = [p if profiles.count(p) == 1 else f"{p} ({Path(d).name})" for p, d in zip(profiles, datasets, strict=True)]
    return [(name, evaluate(d)) for name, d in zip(names, datasets, strict=True)]


def format_comparison(results: list[tuple[str, Evaluation]]) -> str:
    width = max(len(label) for label, _ in ROWS)
    columns = [max(len(name), 8) for name, _ in results]
    lines = [" " * width + "  " + "  ".join(name.rjust(w) for (name, _), w in zip(results, columns, strict=True))]
    for label, show in ROWS:
        cells = [show(e).rjust(w) for (_, e), w in zip(results, columns, strict=True)]
        lines.append(label.ljust(width) + "  " + "  ".join(cells))
    return "\n".join(lines)
