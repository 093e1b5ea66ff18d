"""Small real datasets for the audit and report tests: real mp4 clips, real RLE masks, rows
written through the store's stage/commit path.

`healthy_dataset(root)` builds rows on which every check passes; tests then add faulty rows
(flickering masks, duplicate questions, identical preference pairs...) and write again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from agents.video import write_video
from engine.store import DatasetStore
from schemas import (
    CaptionRow,
    ClipRow,
    Lineage,
    McqRow,
    ObjectRow,
    PreferenceRow,
    RejectionRow,
    ReviewRow,
    encode_masks,
    mask_box,
    stable_id,
)

HEIGHT, WIDTH, FRAMES, FPS = 96, 128, 12, 8.0
LINEAGE = Lineage(agent="test", model="gpt-4o-mini", model_revision="2024-07-18", prompt_version="v1",
                  prompt_tokens=1000, completion_tokens=200)
GROUND_TRUTH = Lineage(agent="virtual", model="renderer", model_revision="1", prompt_version="none")
CATEGORIES = ["MR", "LM", "CM", "MO", "AO", "RC"]
COLOURS = [(230, 60, 60), (60, 120, 230), (60, 200, 90), (240, 200, 40)]


@dataclass
class DatasetRows:
    root: Path
    tables: dict[str, list] = field(default_factory=dict)

    def add(self, table: str, row) -> None:
        self.tables.setdefault(table, []).append(row)

    def write(self, stage: str = "test", shard: str = "0") -> None:
        store = DatasetStore(self.root)
        store.commit(store.stage_shard(stage, shard, self.tables), {"note": "test fixture"})

    @property
    def clips(self) -> list[ClipRow]:
        return self.tables.get("clips", [])


def square_masks(x0: int, y0: int, side: int, dx: int, dy: int, frames: int = FRAMES) -> np.ndarray:
    """A square moving by (dx, dy) pixels per frame, as a (T, H, W) boolean stack."""
    masks = np.zeros((frames, HEIGHT, WIDTH), bool)
    for t in range(frames):
        x, y = x0 + dx * t, y0 + dy * t
        masks[t, max(y, 0):max(y + side, 0), max(x, 0):max(x + side, 0)] = True
    return masks


def write_clip_video(path: Path, objects: list[tuple[np.ndarray, tuple[int, int, int]]]) -> None:
    frames = []
    for t in range(FRAMES):
        frame = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
        frame[:, :, 1] = np.linspace(30, 90, WIDTH, dtype=np.uint8)[None, :]
        for masks, colour in objects:
            frame[masks[t]] = colour
        frames.append(frame)
    write_video(path, frames, FPS)


def add_clip(data: DatasetRows, index: int, labels: list[str]) -> ClipRow:
    """One clip with a real mp4 and one moving square per label, a motion caption and object captions."""
    videos = data.root / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    stacks = [square_masks(8 + 30 * k, 10 + 20 * k, 24, 3 - 2 * k, 1 + index % 2) for k in range(len(labels))]
    video = videos / f"clip{index}.mp4"
    write_clip_video(video, [(m, COLOURS[k % len(COLOURS)]) for k, m in enumerate(stacks)])
    clip_id = stable_id("clip", index)
    clip = ClipRow.build(
        GROUND_TRUTH, clip_id=clip_id, source_key=f"virtual:{index}", video_path=f"videos/clip{index}.mp4",
        num_frames=FRAMES, fps=FPS, width=WIDTH, height=HEIGHT, duration=FRAMES / FPS, source="virtual",
        caption=f"Scene {index}: " + ", ".join(f"the {label} moves right" for label in labels),
        frame_indices=list(range(FRAMES)),
    )
    data.add("clips", clip)
    data.add("captions", CaptionRow.build(
        GROUND_TRUTH, caption_id=stable_id("cap", clip_id, "motion"), clip_id=clip_id, kind="motion",
        text=clip.caption, source="virtual"))
    for k, (label, masks) in enumerate(zip(labels, stacks, strict=True)):
        add_object(data, clip_id, label, masks, suffix=str(k))
    return clip


def add_object(data: DatasetRows, clip_id: str, label: str, masks: np.ndarray, suffix: str = "x",
               verdict: str = "accept") -> ObjectRow:
    rles = encode_masks(masks)
    object_id = stable_id("obj", clip_id, label, suffix)
    row = ObjectRow.build(
        GROUND_TRUTH, object_id=object_id, clip_id=clip_id, label=label, frame_indices=list(range(len(masks))),
        masks=rles, boxes=[mask_box(r) for r in rles], score=1.0, source="virtual")
    data.add("objects", row)
    caption_id = stable_id("cap", object_id)
    data.add("captions", CaptionRow.build(
        LINEAGE, caption_id=caption_id, clip_id=clip_id, object_id=object_id, kind="object_detailed",
        text=f"A small {label} that slides steadily across the frame.", source="annotator"))
    data.add("reviews", ReviewRow.build(
        LINEAGE, review_id=stable_id("rev", object_id), clip_id=clip_id, object_id=object_id,
        caption_id=caption_id, verdict=verdict, score=0.9 if verdict == "accept" else 0.2,
        reason="ok" if verdict == "accept" else "mask_misses_object"))
    return row


def add_mcq(data: DatasetRows, clip_id: str, category: str, answer: str, question: str, n: int) -> McqRow:
    row = McqRow.build(
        LINEAGE, question_id=stable_id("q", clip_id, category, n, question), clip_id=clip_id, category=category,
        question=question, options=["left", "right", "up", "down"], answer=answer, source="template")
    data.add("mcqs", row)
    return row


def healthy_dataset(root: Path, clips: int = 4) -> DatasetRows:
    """Rows on which every built-in check passes (and blind_filter is n/a: no mcq_checks table)."""
    data = DatasetRows(Path(root))
    n = 0
    for index in range(clips):
        clip = add_clip(data, index, ["red square", "blue square"])
        for category in CATEGORIES:
            add_mcq(data, clip.clip_id, category, "ABCD"[n % 4], f"Question {category} about clip {index}?", n)
            n += 1
        data.add("preferences", PreferenceRow.build(
            LINEAGE, pair_id=stable_id("pair", clip.clip_id), clip_id=clip.clip_id,
            question="Where does the red square go?", chosen="It moves right.", rejected="It moves left.",
            error_type="wrong_direction"))
    data.add("rejections", RejectionRow(
        rejection_id=stable_id("rej", "broken.mp4"), item_id="broken.mp4", stage="ingest",
        reason="truncated_video", detail="decoding stops after 3 frames"))
    return data


def write_mcq_checks(root: Path, rows: list[dict]) -> None:
    """The mcq_checks table (question_id, clip_id, check, outcome, detail + lineage), written directly."""
    folder = Path(root) / "mcq_checks"
    folder.mkdir(parents=True, exist_ok=True)
    columns = ["question_id", "clip_id", "check", "outcome", "detail", "agent", "model", "model_revision",
               "prompt_version"]
    table = pa.table({c: pa.array([r.get(c, "x") for r in rows], pa.string()) for c in columns})
    pq.write_table(table, folder / "filters-0.parquet")
