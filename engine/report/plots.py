"""Dataset statistics as PNG figures, one panel per file, in the spirit of MotionBench's statistics
figure: answer letters per option count, video durations, caption lengths, questions per video,
categories and rejection reasons. Every panel aggregates in SQL, so a million rows plot quickly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974"]


def render_plots(db, folder: Path) -> list[dict]:
    """Draw every panel that has data; returns [{name, title, file | None}] in display order."""
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    panels = []
    for name, title, draw in _PANELS:
        records = draw.query(db)
        path = folder / f"{name}.png"
        panels.append({"name": name, "title": title, "file": _save(draw, records, title, path) if records else None})
    return panels


class _Panel:
    def __init__(self, sql: str, draw: Callable, integer_axes: str = "y"):
        self.sql = sql
        self.draw = draw
        self.integer_axes = integer_axes  # axes that count things: ticks on whole numbers only

    def query(self, db) -> list[dict]:
        return db.query(self.sql).records()


def _whole_numbers(ax, axes: str) -> None:
    from matplotlib.ticker import MaxNLocator

    for name in axes:
        getattr(ax, f"{name}axis").set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _save(panel: _Panel, records: list[dict], title: str, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 3.4), dpi=110)
    panel.draw(ax, records)
    _whole_numbers(ax, panel.integer_axes)
    ax.set_title(title, fontsize=11, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def _answers(ax, records):
    counts = sorted({r["options"] for r in records})
    letters = sorted({r["answer"] for r in records})
    bottom = [0] * len(letters)
    for k, n in enumerate(counts):
        values = [next((r["questions"] for r in records if r["options"] == n and r["answer"] == letter), 0)
                  for letter in letters]
        ax.bar(letters, values, bottom=bottom, color=PALETTE[k % len(PALETTE)], label=f"{n} options")
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xlabel("answer")
    ax.set_ylabel("questions")
    ax.legend(frameon=False, fontsize=8)


def _histogram(xlabel: str, ylabel: str):
    def draw(ax, records):
        ax.bar([r["bin"] for r in records], [r["n"] for r in records], width=[r["width"] * 0.9 for r in records],
               align="edge", color=PALETTE[0])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    return draw


def _caption_lengths(ax, records):
    """One box per kind (from quantiles computed in SQL), every caption a jittered dot when few, so
    kinds of the same length never hide behind one another."""
    import numpy as np

    kinds = [r["kind"] for r in records]
    stats = [{"label": f"{r['kind']} ({r['n']})", "whislo": r["lo"], "q1": r["q1"], "med": r["med"], "q3": r["q3"],
              "whishi": r["hi"], "fliers": []} for r in records]
    ax.bxp(stats, orientation="horizontal", showfliers=False, widths=0.6,
           medianprops={"color": PALETTE[1], "linewidth": 2})
    rng = np.random.default_rng(0)
    for k, r in enumerate(records):
        words = r["sample"] or []
        ax.scatter(words, k + 1 + rng.uniform(-0.22, 0.22, len(words)), s=9, alpha=0.55,
                   color=PALETTE[k % len(PALETTE)], linewidths=0, zorder=3)
    ax.set_yticks(range(1, len(kinds) + 1), [s["label"] for s in stats], fontsize=8)
    ax.set_xlabel("words per caption")


def _count_histogram(xlabel: str, ylabel: str):
    """Counts on whole-number bins: one bar per value, or per run of values when the range is wide."""
    def draw(ax, records):
        ax.bar([r["bin"] + (r["width"] - 1) / 2 for r in records], [r["n"] for r in records],
               width=[r["width"] * 0.85 for r in records], color=PALETTE[0])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    return draw


def _bars(xlabel: str, horizontal: bool = False):
    def draw(ax, records):
        names = [str(r["name"]) for r in records]
        values = [r["n"] for r in records]
        colours = [PALETTE[k % len(PALETTE)] for k in range(len(names))]
        if horizontal:
            ax.barh(names[::-1], values[::-1], color=colours[::-1])
            ax.set_xlabel(xlabel)
            ax.tick_params(axis="y", labelsize=8)
        else:
            ax.bar(names, values, color=colours)
            ax.set_ylabel(xlabel)
    return draw


# About 20 bins whatever the range; one unit-wide bin when every value is the same.
_BINNED = """
WITH v AS ({values}), r AS (
    SELECT CASE WHEN max(x) > min(x) THEN min(x) ELSE min(x) - 0.5 END AS lo,
           CASE WHEN max(x) > min(x) THEN (max(x) - min(x)) / 20.0 ELSE 1.0 END AS w FROM v)
SELECT lo + w * least(floor((x - lo) / w), 19) AS bin, any_value(w) AS width, count(*) AS n
FROM v, r GROUP BY ALL ORDER BY bin
"""

# Whole-number bins (at most ~20) for counts.
_INT_BINNED = """
WITH v AS ({values}), r AS (SELECT min(x) AS lo, greatest(1, ceil((max(x) - min(x) + 1) / 20.0)) AS w FROM v)
SELECT lo + w * floor((x - lo) / w) AS bin, any_value(w) AS width, count(*) AS n FROM v, r GROUP BY ALL ORDER BY bin
"""

# Quantiles per caption kind, and up to 300 lengths per kind for the dots.
_CAPTION_WORDS = """
WITH w AS (SELECT kind, len(regexp_split_to_array(trim(text), '\\s+')) AS words FROM captions)
SELECT kind, count(*) AS n, min(words) AS lo, quantile_cont(words, 0.25) AS q1, median(words) AS med,
       quantile_cont(words, 0.75) AS q3, max(words) AS hi, list(words ORDER BY hash(words, n_row))[:300] AS sample
FROM (SELECT *, row_number() OVER () AS n_row FROM w) GROUP BY ALL ORDER BY kind
"""

_PANELS = [
    ("answers", "Answer letters (by number of options)", _Panel(
        "SELECT len(options) AS options, answer, count(*) AS questions FROM mcqs GROUP BY ALL ORDER BY ALL",
        _answers)),
    ("categories", "Questions per category", _Panel(
        "SELECT category AS name, count(*) AS n FROM mcqs GROUP BY ALL ORDER BY n DESC, name", _bars("questions"))),
    ("durations", "Video durations", _Panel(
        _BINNED.format(values="SELECT duration AS x FROM clips"), _histogram("seconds", "clips"))),
    ("caption_lengths", "Annotation lengths per caption kind", _Panel(
        _CAPTION_WORDS, _caption_lengths, integer_axes="x")),
    ("questions_per_video", "Questions per video", _Panel(
        _INT_BINNED.format(values="SELECT count(*) AS x FROM mcqs GROUP BY clip_id"),
        _count_histogram("questions", "videos"), integer_axes="xy")),
    ("rejections", "Rejection reasons", _Panel(
        "SELECT stage || ': ' || reason AS name, count(*) AS n FROM rejections GROUP BY ALL ORDER BY n DESC, name "
        "LIMIT 15", _bars("rejections", horizontal=True), integer_axes="x")),
]
