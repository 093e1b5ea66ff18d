"""A Hugging Face dataset folder: one Parquet config per table and a dataset card.

Layout: `<to>/<table>/train-00000-of-00001.parquet` for clips, objects, captions, mcqs, sft and
preferences (the exportable rows only, see `engine.export`), and `<to>/README.md` whose YAML header
declares one config per table. Tables are written with the store's Arrow schema (plus `flags` on
mcqs and `provenance` on objects), so column types never depend on the rows; `clips.video_path`
names the exported media. An empty table gets no config (`datasets` cannot load a split without
rows); the card and the export summary list it with 0 rows. Everything is written to a staging folder
first and then renamed over the previous export, table by table, so a re-export leaves no stale
table behind. Load one table with `datasets.load_dataset("<to>", "mcqs")` or
`datasets.load_dataset("parquet", data_dir="<to>/mcqs")`.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from jinja2 import Template

from engine.export import ExportReport, ExportView
from engine.output_folder import output_path
from schemas.tables import arrow_schema

TABLES = ("clips", "objects", "captions", "mcqs", "sft", "preferences")
EXTRA_FIELDS = {"mcqs": [pa.field("flags", pa.list_(pa.string()))], "objects": [pa.field("provenance", pa.string())]}
STAGING = ".hf-staging"

SHARD = "train-00000-of-00001.parquet"

CARD = Template("""---
license: other
task_categories:
- video-text-to-text
- multiple-choice
configs:
{%- for table in tables %}
- config_name: {{ table }}
  data_files:
  - split: train
    path: {{ table }}/*.parquet
{%- endfor %}
---

# Video annotation dataset

Masklets, object captions, motion multiple-choice questions, SFT and preference data.

## Licence

LICENCE PLACEHOLDER: state the licence of the videos and of the annotations before publishing.

## Contents

| table | rows |
|---|---|
{%- for table, count in counts.items() %}
| {{ table }} | {{ count }} |
{%- endfor %}

## Question categories

| category | questions |
|---|---|
{%- for category, count in categories.items() %}
| {{ category }} | {{ count }} |
{%- endfor %}

Questions that failed a quality check with a `drop` outcome are not included; `flags` lists the
checks a question was flagged by.

## Models used

| agent | model | revision | prompt version |
|---|---|---|---|
{%- for m in models %}
| {{ m.agent }} | {{ m.model }} | {{ m.model_revision }} | {{ m.prompt_version }} |
{%- endfor %}
""")


def export(view: ExportView, out: Path) -> ExportReport:
    report = ExportReport("hf")
    objects = view.exported_objects()
    exported = {o["object_id"] for o in objects}
    tables = {
        "clips": [exported_clip(view, clip_id) for clip_id in sorted(view.clips)],
        "objects": objects,
        "captions": [c for c in view.captions if c["object_id"] is None or c["object_id"] in exported],
        "mcqs": view.mcqs,
        "sft": view.sft,
        "preferences": view.preferences,
    }
    staging = output_path(out, STAGING)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, rows in tables.items():
        report.written[name] = len(rows)
        if not rows:
            report.notes.append(f"{name} 0: the dataset has no exportable {name} row (no config written)")
            continue
        (staging / name).mkdir()
        pq.write_table(pa.Table.from_pylist(rows, schema=table_schema(name)), staging / name / SHARD)
        report.files.append(f"{name}/{SHARD}")
    categories = dict(sorted(Counter(q["category"] for q in view.mcqs).items()))
    card = CARD.render(tables=[t for t, rows in tables.items() if rows], counts={t: len(r) for t, r in tables.items()},
                       categories=categories, models=view.lineage_models())
    (staging / "README.md").write_text(card)
    report.files.append("README.md")
    for name in (*TABLES, "README.md"):
        swap_in(staging / name, output_path(out, name))
    staging.rmdir()
    return report


def exported_clip(view: ExportView, clip_id: str) -> dict:
    """The clip row as exported: `video_path` names the exported file; a span cut into its own file
    no longer has a start or end in it."""
    media = view.clip_media(clip_id)
    if media is None:  # listed in the report's problems; the row stays, naming no file
        return {**view.clips[clip_id], "video_path": ""}
    clip = {**view.clips[clip_id], "video_path": media.video}
    if view.media.mode != "none":
        clip["start"] = clip["end"] = None
    return clip


def table_schema(table: str) -> pa.Schema:
    schema = arrow_schema(table)
    for extra in EXTRA_FIELDS.get(table, []):
        schema = schema.append(extra)
    return schema


def swap_in(new: Path, old: Path) -> None:
    """Replace `old` (a file or a folder, maybe absent) by `new` with renames; with no `new`, remove
    `old` (a table that is empty now must not keep the rows of an earlier export)."""
    if not new.exists():
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old.exists() or old.is_symlink():
            old.unlink()
    elif old.is_dir() and not old.is_symlink():
        retired = old.with_name(old.name + ".old")
        shutil.rmtree(retired, ignore_errors=True)
        old.rename(retired)
        new.rename(old)
        shutil.rmtree(retired)
    else:
        new.replace(old)
