"""Build the static report: `index.html` (audit + plots), `gallery.html` (annotated clips) and one
page per check (its SQL, summary and example rows). Plain files: it opens from file://."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from engine.audit import AuditDatabase, load_checks, run_check, worst
from engine.output_folder import open_output_folder, output_path
from engine.report.plots import render_plots
from engine.report.previews import COLOURS, write_preview
from engine.storage import is_remote
from engine.store import DatasetStore

HERE = Path(__file__).resolve().parent
WRITTEN = ("index.html", "gallery.html", "checks", "plots", "previews", "static")  # everything under --to


def build_report(root: str | Path, out: str | Path, clips: int = 12) -> Path:
    """Write the report for the dataset at `root` into `out`; returns the overview page."""
    address, out = str(root), open_output_folder(out)
    store = DatasetStore(address, create=False) if is_remote(address) else None
    root = store.root if store else Path(root)  # a remote root's clip files are decoded from local copies
    for name in WRITTEN:  # refuse symlinks leading out of `out` before anything is removed or written
        output_path(out, name)
    for folder in ("checks", "plots", "previews", "static"):
        shutil.rmtree(out / folder, ignore_errors=True)
    shutil.copytree(HERE / "static", out / "static")
    db = AuditDatabase(address)
    try:
        results = [run_check(db, check, examples=True) for check in load_checks()]
        plots = render_plots(db, out / "plots")
        cards = _gallery_cards(db, root, out / "previews", clips, store)
        rows = _table_rows(db)
    finally:
        db.close()
    env = _environment()
    context = {"dataset": address if store else str(root.resolve()), "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
               "overall": worst([r.status for r in results]), "results": results}
    _write(out / "index.html", env.get_template("index.html.jinja").render(**context, plots=plots, rows=rows))
    _write(out / "gallery.html", env.get_template("gallery.html.jinja").render(
        **context, cards=cards, filters=_filters(cards)))
    (out / "checks").mkdir(exist_ok=True)
    for result in results:
        _write(out / "checks" / f"{result.name}.html",
               env.get_template("check.html.jinja").render(**context, result=result))
    return out / "index.html"


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["jinja", "html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["cell"] = _cell
    return env


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)[:200]
    return str(value)


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _table_rows(db) -> list[dict]:
    return db.query('SELECT "table", sum(rows) AS rows FROM table_rows GROUP BY ALL ORDER BY "table"').records()


# ----- gallery -----
def _gallery_cards(db, root: Path, folder: Path, limit: int, store: DatasetStore | None = None) -> list[dict]:
    """Up to `limit` clips, those with objects first, each with its annotations and a preview."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = db.query(
        "SELECT clip_id, video_path, start, num_frames, fps, width, height, duration, source, caption, frame_indices "
        "FROM clips ORDER BY clip_id IN (SELECT clip_id FROM objects) DESC, clip_id LIMIT ?", [limit]).records()
    ids = [c["clip_id"] for c in clips]
    if not ids:
        return []
    if store is not None:
        store.sync_media(clips, upload=False)
    objects = _by_clip(db, "SELECT object_id, clip_id, label, frame_indices, masks FROM objects "
                           "WHERE clip_id IN (SELECT unnest(?)) ORDER BY object_id", ids)
    captions = _by_clip(db, "SELECT c.clip_id, c.kind, c.text, o.label, c.agent FROM captions c LEFT JOIN objects o "
                            "USING (object_id) WHERE c.clip_id IN (SELECT unnest(?)) "
                            "ORDER BY o.label NULLS FIRST, c.object_id, c.kind, c.caption_id", ids)
    reviews = _by_clip(db, "SELECT r.clip_id, r.verdict, r.score, r.reason, r.model, o.label FROM reviews r "
                           "LEFT JOIN objects o USING (object_id) WHERE r.clip_id IN (SELECT unnest(?)) "
                           "ORDER BY o.label, r.review_id", ids)
    mcqs = _by_clip(db, "SELECT clip_id, category, question, options, answer FROM mcqs "
                        "WHERE clip_id IN (SELECT unnest(?)) ORDER BY category, question_id", ids)
    return [_card(root, folder, clip, objects.get(clip["clip_id"], []), captions.get(clip["clip_id"], []),
                  reviews.get(clip["clip_id"], []), mcqs.get(clip["clip_id"], [])) for clip in clips]


def _by_clip(db, sql: str, ids: list[str]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for record in db.query(sql, [ids]).records():
        grouped.setdefault(record["clip_id"], []).append(record)
    return grouped


def _card(root, folder, clip, objects, captions, reviews, mcqs) -> dict:
    from agents.video import VideoError

    preview, problem = f"previews/{clip['clip_id']}.webp", None
    try:
        write_preview(root, clip, objects, folder / f"{clip['clip_id']}.webp")
    except (VideoError, OSError, ValueError) as err:
        preview, problem = None, f"no preview: {err}"
    for mcq in mcqs:
        mcq["letters"] = [chr(ord("A") + k) for k in range(len(mcq["options"]))]
    captions = sorted(captions, key=_caption_order)
    if clip.get("caption"):  # the source's own caption (a manifest's, or the rendered scene's description)
        captions.insert(0, {"kind": "source", "text": clip["caption"], "label": None, "agent": clip["source"]})
    return {
        "clip": clip,
        "preview": preview,
        "problem": problem,
        "objects": [{"label": o["label"], "colour": "#{:02x}{:02x}{:02x}".format(*COLOURS[k % len(COLOURS)])}
                    for k, o in enumerate(objects)],
        "captions": captions,
        "reviews": reviews,
        "mcqs": mcqs,
        "categories": sorted({m["category"] for m in mcqs}),
        "labels": sorted({o["label"] for o in objects}),
        "verdicts": sorted({r["verdict"] for r in reviews}) or ["unreviewed"],
    }


_KIND_ORDER = ["clip", "motion", "object_detailed", "object_short", "refined_detailed", "refined_short"]


def _caption_order(caption: dict) -> tuple:
    """Clip-level captions first, then each object's captions from raw to refined."""
    kind = caption["kind"]
    rank = _KIND_ORDER.index(kind) if kind in _KIND_ORDER else len(_KIND_ORDER)
    return (caption["label"] is not None, caption["label"] or "", rank, kind)


def _filters(cards: list[dict]) -> dict[str, list[str]]:
    return {key: sorted({v for card in cards for v in card[key]}) for key in ("categories", "labels", "verdicts")}
