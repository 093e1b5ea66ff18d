"""Datasets for the export tests, built by the real CLI (ingest, ground truth, template questions),
with the rows later stages would add (object captions, reviews, LLM questions) committed through
the store.

- `build_virtual_dataset`: `virtual:N` scenes; ground-truth objects get captions, and an object
  question about two of them is added.
- `build_span_dataset`: a manifest row whose clip is frames 24-47 of a 60-frame PyAV-written video
  in which every frame encodes its own index (8 black / white stripes, `frame_code` reads them);
  a segmentor object whose mask moves with the frame index, so a mask shown on the wrong frame
  is caught.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from agents.video import write_video
from engine.run import main as cli
from engine.store import DatasetStore
from schemas import ObjectRow, ReviewRow, SftRow, encode_masks, mask_box, stable_id
from tests.helpers_dataset import ANNOTATOR, LLM, REVIEWER, SEGMENTOR, caption_row, mcq

SPAN_FPS, SPAN_FRAMES, SPAN_START_FRAME, SPAN_LENGTH = 12.0, 60, 24, 24
WIDTH, HEIGHT, BITS = 128, 96, 8


def build_virtual_dataset(root: Path, scenes: int = 3) -> Path:
    dataset = root / "virtual_ds"
    assert cli(["build-motionvid-qa", "--dataset", str(dataset), "--source", f"virtual:{scenes}", "--stages",
                "ingest,ground_truth,template_writer", "--executor", "local"]) == 0
    store = DatasetStore(dataset)
    objects = sorted(store.read_table("objects").to_pylist(), key=lambda o: o["object_id"])
    clips = {c["clip_id"]: c for c in store.read_table("clips").to_pylist()}
    captions = [_caption(clips[o["clip_id"]], f"A {o['label']} in a rendered scene.", o["object_id"])
                for o in objects]
    by_clip: dict[str, list[dict]] = {}
    for o in objects:
        by_clip.setdefault(o["clip_id"], []).append(o)
    pair = next(objs[:2] for objs in by_clip.values() if len(objs) >= 2)
    clip = clips[pair[0]["clip_id"]]
    question = mcq(_Clip(clip), "reasoning", "Which is larger, <region> or <region>?",
                   ["the first", "the second", "same size", "neither"], "C", "llm", LLM,
                   object_ids=[o["object_id"] for o in pair])
    store.commit(store.stage_shard("annotator", "extra", {"captions": captions}), {"fixture": True})
    store.commit(store.stage_shard("question_writer", "extra", {"mcqs": [question]}), {"fixture": True})
    return dataset


class _Clip:
    """The attributes `tests.helpers_dataset` row builders read from a clip."""

    def __init__(self, clip: dict):
        self.clip_id = clip["clip_id"]


def _caption(clip: dict, text: str, object_id: str | None):
    return caption_row(_Clip(clip), "object_detailed", text, "annotator", ANNOTATOR, object_id)


def frame_image(index: int) -> np.ndarray:
    frame = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    stripe = WIDTH // BITS
    for bit in range(BITS):
        frame[:16, bit * stripe:(bit + 1) * stripe] = 255 if (index >> bit) & 1 else 0
    return frame


def frame_code(frame: np.ndarray) -> int:
    """The index a frame of the frame-coded video shows (stripe interiors, robust to H.264 blur)."""
    stripe = frame.shape[1] // BITS
    return sum(1 << bit for bit in range(BITS)
               if frame[4:12, bit * stripe + 4:(bit + 1) * stripe - 4].mean() > 128)


def span_masks() -> np.ndarray:
    """(SPAN_LENGTH, H, W) masks: a 16 px square that moves 3 px right per clip frame."""
    masks = np.zeros((SPAN_LENGTH, HEIGHT, WIDTH), bool)
    for f in range(SPAN_LENGTH):
        masks[f, 40:56, 8 + 3 * f: 24 + 3 * f] = True
    return masks


def build_span_dataset(root: Path) -> Path:
    videos = root / "footage"
    videos.mkdir(parents=True)
    write_video(videos / "long.mp4", [frame_image(i) for i in range(SPAN_FRAMES)], SPAN_FPS)
    start, end = SPAN_START_FRAME / SPAN_FPS, (SPAN_START_FRAME + SPAN_LENGTH) / SPAN_FPS
    manifest = videos / "manifest.jsonl"
    manifest.write_text(json.dumps({"video_path": "long.mp4", "start": start, "end": end,
                                    "caption": "A white square slides to the right, then stops."}) + "\n")
    dataset = root / "span_ds"
    assert cli(["build-motionvid-qa", "--dataset", str(dataset), "--source", str(manifest), "--stages", "ingest",
                "--executor", "local"]) == 0
    store = DatasetStore(dataset)
    (clip,) = store.read_table("clips").to_pylist()
    assert clip["num_frames"] == SPAN_LENGTH and Path(clip["video_path"]).is_absolute()
    rles = encode_masks(span_masks())
    square = ObjectRow.build(SEGMENTOR, object_id=stable_id("object", clip["clip_id"], "square"),
                             clip_id=clip["clip_id"], label="white square", frame_indices=list(range(SPAN_LENGTH)),
                             masks=rles, boxes=[mask_box(r) for r in rles], score=0.9, source="segmentor")
    review = ReviewRow.build(REVIEWER, review_id=stable_id("review", square.object_id), clip_id=clip["clip_id"],
                             object_id=square.object_id, caption_id=None, verdict="accept", score=0.9, reason="ok")
    c = _Clip(clip)
    motion = caption_row(c, "motion", "A white square slides to the right, then stops.", "manifest", LLM)
    described = _caption(clip, "A white square sliding to the right.", square.object_id)
    questions = [
        mcq(c, "LM", "Where does the white square slide?", ["to the left", "upward", "to the right", "downward"],
            "C", "llm", LLM, motion, "slides to the right", [square.object_id]),
        mcq(c, "AO", "What does the square do?", ["stops, then slides right", "slides right, then stops",
            "spins, then stops", "bounces, then stops"], "B", "llm", LLM, motion, "slides to the right, then stops"),
        mcq(c, "basic", "What colour is <region>?", ["black", "red", "green", "white"], "D", "llm", LLM,
            described, "white square", [square.object_id]),
    ]
    sft = SftRow.build(LLM, sft_id=stable_id("sft", clip["clip_id"]), clip_id=clip["clip_id"], question_id=None,
                       question="What does the square do?",
                       answer="It slides to the right and stops. According to the caption, it is white.")
    tables = {"objects": [square], "reviews": [review], "captions": [motion, described], "mcqs": questions,
              "sft": [sft]}
    for stage, table in (("segmentor", "objects"), ("reviewer", "reviews"), ("annotator", "captions"),
                         ("question_writer", "mcqs")):
        store.commit(store.stage_shard(stage, "extra", {table: tables[table]}), {"fixture": True})
    store.commit(store.stage_shard("question_writer", "extra_sft", {"sft": [sft]}), {"fixture": True})
    return dataset
