"""Exports of a dataset to the formats people train and evaluate on.

Every exporter reads the dataset through `ExportView`, which applies the dataset's own decisions
once, the same way for every format:
- questions with any `drop` outcome in `mcq_checks` are left out; `flag` outcomes travel along;
- options are exported as stored: the question writer balanced the letters when it wrote them;
- questions that repeat another question of the dataset (normalised text, same options) are left
  out here: the `mcq_filters` stage only sees one shard, so this is where dataset-wide dedup ends;
- objects whose review rejected them are never exported, nor captions or questions about them;
  objects a reviewer accepted are exported as `reviewed`, ground-truth objects of virtual scenes
  (exact by construction, never reviewed) as `ground_truth`;
- every path in a record is relative to the export folder (media placed by `engine.export.media`).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.export.media import MEDIA_MODES, ClipMedia, MediaPlacer
from engine.output_folder import open_output_folder, output_path
from engine.store import DatasetStore

GROUND_TRUTH_SOURCE = "virtual"  # objects.source of ground-truth masklets
FORMATS = ("videorefer", "motionbench", "sft", "dpo", "hf")
LETTERS = "ABCD"
MOTION_CATEGORY_NAMES = {
    "MR": "Motion Recognition",
    "LM": "Location-related Motion",
    "CM": "Camera Motion",
    "MO": "Motion-related Objects",
    "AO": "Action Order",
    "RC": "Repetition Count",
}
OBJECT_CATEGORIES = ("basic", "reasoning", "future")


def normalise_text(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s<>]", " ", text.lower())).strip()


def question_key(question: str, options: list[str]) -> str:
    """What makes two questions the same for dedup: normalised text and the set of options."""
    return normalise_text(question) + "|" + "|".join(sorted(normalise_text(o) for o in options))


@dataclass
class ExportReport:
    """What an exporter wrote and what it left out, and why (printed by the CLI, saved as JSON)."""

    format: str
    files: list[str] = field(default_factory=list)
    written: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    problems: list[str] = field(default_factory=list)  # first few invalid records, for the user
    notes: list[str] = field(default_factory=list)  # why a count is zero, what the media mode did

    def explain_zero(self, key: str, why: str) -> None:
        if not self.written.get(key):
            self.written[key] = 0
            self.notes.append(f"{key} 0: {why}")

    def skip(self, reason: str, detail: str = "") -> None:
        self.skipped[reason] += 1
        if detail and len(self.problems) < 20:
            self.problems.append(f"{reason}: {detail}")

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "files": self.files, "written": dict(self.written),
                "skipped": dict(self.skipped), "problems": self.problems, "notes": self.notes}


class ExportView:
    """The exportable part of a dataset, as plain dicts (see the module docstring for the rules)."""

    def __init__(self, root: str | Path, out: str | Path | None = None, media: str = "link"):
        self.store = DatasetStore(root, create=False)
        self.root = self.store.root
        self.media = MediaPlacer(self.root, Path(out) if out is not None else self.root, media)
        self._exported_objects: list[dict] | None = None
        read = lambda t: self.store.read_table(t).to_pylist()  # noqa: E731
        self.clips = {c["clip_id"]: c for c in read("clips")}
        self.store.sync_media(self.clips.values(), upload=False)  # a remote root's clip files, fetched once
        self.rejected_objects = {r["object_id"] for r in read("reviews") if r["verdict"] == "reject"}
        self.objects = {o["object_id"]: o for o in read("objects") if o["object_id"] not in self.rejected_objects}
        self.captions = [c for c in read("captions") if c["object_id"] not in self.rejected_objects]
        self.checks = read("mcq_checks")
        self.report_counts: Counter = Counter()
        self.mcqs = self._exportable_mcqs(read("mcqs"))
        dropped = self.dropped_question_ids
        self.sft = [r for r in read("sft") if r["question_id"] not in dropped]
        self.preferences = [r for r in read("preferences") if r["question_id"] not in dropped]

    def _exportable_mcqs(self, rows: list[dict]) -> list[dict]:
        by_question: dict[str, list[dict]] = defaultdict(list)
        for row in self.checks:
            by_question[row["question_id"]].append(row)
        self.dropped_question_ids: set[str] = set()
        seen: dict[str, str] = {}
        out = []
        for q in sorted(rows, key=lambda r: r["question_id"]):
            checks = by_question.get(q["question_id"], [])
            if any(c["outcome"] == "drop" for c in checks):
                self.dropped_question_ids.add(q["question_id"])
                self.report_counts["mcq_dropped_by_checks"] += 1
                continue
            if any(o in self.rejected_objects for o in q["object_ids"]):
                self.report_counts["mcq_about_rejected_object"] += 1
                continue
            key = q["clip_id"] + "|" + question_key(q["question"], q["options"])
            if key in seen:
                self.dropped_question_ids.add(q["question_id"])
                self.report_counts["mcq_duplicate_in_dataset"] += 1
                continue
            seen[key] = q["question_id"]
            out.append(with_flags(q, checks))
        return out

    def caption_for_object(self, object_id: str) -> str | None:
        """The best caption of an object: refined over raw."""
        ranked = {"refined_detailed": 0, "object_detailed": 1}
        candidates = [c for c in self.captions if c["object_id"] == object_id and c["kind"] in ranked]
        candidates.sort(key=lambda c: (ranked[c["kind"]], c["caption_id"]))
        return candidates[0]["text"] if candidates else None

    def exported_objects(self) -> list[dict]:
        """Objects a reviewer accepted and ground-truth objects, each with its `provenance`."""
        if self._exported_objects is None:
            self._exported_objects = self._find_exported_objects()
        return self._exported_objects

    def _find_exported_objects(self) -> list[dict]:
        accepted = {r["object_id"] for r in self.store.read_table("reviews").to_pylist() if r["verdict"] == "accept"}
        out = []
        for oid, obj in sorted(self.objects.items()):
            if obj["source"] == GROUND_TRUTH_SOURCE:
                out.append({**obj, "provenance": "ground_truth"})
            elif oid in accepted:
                out.append({**obj, "provenance": "reviewed"})
        return out

    def clip_media(self, clip_id: str) -> ClipMedia | None:
        """Where this export's records find the clip's video (placing the file on first use); None
        when the video cannot be read: records of that clip are left out as `video_missing`."""
        return self.media.place(self.clips[clip_id])

    def lineage_models(self) -> list[dict]:
        """Distinct (agent, model, revision, prompt) across every table, for dataset cards."""
        seen = set()
        for table in ("clips", "phrases", "objects", "captions", "reviews", "mcqs", "sft", "preferences", "mcq_checks"):
            arrow = self.store.read_table(table)
            if arrow.num_rows:
                cols = arrow.select(["agent", "model", "model_revision", "prompt_version"]).to_pylist()
                seen.update(tuple(c.values()) for c in cols)
        return [dict(zip(("agent", "model", "model_revision", "prompt_version"), s, strict=True)) for s in sorted(seen)]


def with_flags(question: dict, checks: list[dict]) -> dict:
    """The question as exported: as stored, with the checks that flagged it."""
    return {**question, "flags": sorted({c["check"] for c in checks if c["outcome"] == "flag"})}


def answer_text(question: dict) -> str:
    return question["options"][LETTERS.index(question["answer"])]


def write_json(out: Path, name: str, payload: Any, report: ExportReport | None = None) -> Path:
    """Write `payload` as `out/name` (checked to stay inside `out`), noting the file in `report`."""
    path = output_path(out, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False))
    if report is not None:
        report.files.append(name)
    return path


def write_jsonl(out: Path, name: str, records: list[dict], report: ExportReport | None = None) -> Path:
    path = output_path(out, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    if report is not None:
        report.files.append(name)
    return path


def export(dataset: str | Path, fmt: str, to: str | Path, media: str = "link") -> ExportReport:
    """Export `dataset` as `fmt` into the folder `to` with its media placed by `media`
    (link | copy | none); returns what was written, what was left out and why."""
    from engine.export import hf, motionbench, training, videorefer

    if media not in MEDIA_MODES:
        raise ValueError(f"media must be one of {MEDIA_MODES}")
    writers = {"videorefer": videorefer.export, "motionbench": motionbench.export, "sft": training.export_sft,
               "dpo": training.export_dpo, "hf": hf.export}
    out = open_output_folder(to)
    view = ExportView(dataset, out, media)
    report = writers[fmt](view, out)
    report.skipped.update(view.report_counts)
    media_counts = {k: v for k, v in view.media.counts.items() if v}
    if media_counts:
        report.written.update({f"media_{k}": v for k, v in media_counts.items()})
    for clip_id, why in sorted(view.media.missing.items())[:5]:
        report.problems.append(f"video_missing: clip {clip_id}: {why}")
    if media == "none" and view.media.placed:
        report.notes.append("media none: `video` paths are relative to the dataset root")
    write_json(out, f"export-{fmt}.json", report.to_dict())
    return report
