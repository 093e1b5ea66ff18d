"""A Hugging Face dataset folder: one Parquet config per table and a dataset card.

Layout: `<to>/<table>/train-00000-of-00001.parquet` for clips, objects, captions, mcqs, sft and
preferences (the exportable rows only, see `engine.export`), and `<to>/README.md` whose YAML header
declares one config per table. Load one table with
`datasets.load_dataset("parquet", data_dir="<to>/mcqs")`, or `datasets.load_dataset("<to>", "mcqs")`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from jinja2 import Template

from engine.export import ExportReport, ExportView

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
    accepted = {o["object_id"] for o in view.reviewed_objects()}
    tables = {
        "clips": list(view.clips.values()),
        "objects": [o for oid, o in sorted(view.objects.items()) if oid in accepted],
        "captions": view.captions,
        "mcqs": view.mcqs,
        "sft": view.sft,
        "preferences": view.preferences,
    }
    counts = {}
    for name, rows in tables.items():
        counts[name] = len(rows)
        if not rows:
            continue
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), folder / SHARD)
        report.files.append(str(folder / SHARD))
    report.written.update(counts)
    categories = dict(sorted(Counter(q["category"] for q in view.mcqs).items()))
    card = CARD.render(tables=[t for t, n in counts.items() if n], counts=counts, categories=categories,
                       models=view.lineage_models())
    (out / "README.md").write_text(card)
    report.files.append(str(out / "README.md"))
    return report
