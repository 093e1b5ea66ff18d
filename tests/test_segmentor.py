"""The Segmentor called directly: tiny real architectures, and a fake vision boundary that returns
exact masks at the models' resolutions, so resizing, frame bookkeeping and object assignment are
checked against ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from agents.backends.preprocess import GridMasks
from agents.backends.vision import Detection
from agents.base import Batch
from agents.segmentor import Segmentor, SegmentorConfig, choose_keyframe, select_objects
from agents.video import write_video
from schemas import ClipRow, Lineage, PhraseRow, stable_id, validate_rows
from schemas.masks import decode_mask

ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH, FRAMES = 96, 128, 12
# The square leaves the frame to the right during frames 5-7 and comes back from the left.
SQUARE_X = [70, 80, 90, 100, 112, 140, 150, 160, -10, 2, 14, 26]
SAMPLED = [0, 1, 3, 4, 5, 6, 7, 8, 10, 11]  # the clip's sampling plan skips frames 2 and 9


def render_scene(path: Path) -> dict[str, np.ndarray]:
    """A red square and a blue disk moving on a textured background; returns exact masks."""
    rng = np.random.default_rng(7)
    background = (rng.integers(60, 120, (HEIGHT, WIDTH, 1)) + np.zeros((1, 1, 3))).astype(np.uint8)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    masks = {"red square": np.zeros((FRAMES, HEIGHT, WIDTH), bool), "blue disk": np.zeros((FRAMES, HEIGHT, WIDTH), bool)}
    frames = []
    for t in range(FRAMES):
        x = SQUARE_X[t]
        masks["red square"][t] = (xx >= x) & (xx < x + 24) & (yy >= 10) & (yy < 34)
        masks["blue disk"][t] = (xx - (20 + 3 * t)) ** 2 + (yy - 65) ** 2 < 14**2
        frame = background.copy()
        frame[masks["red square"][t]] = (220, 30, 30)
        frame[masks["blue disk"][t]] = (30, 40, 220)
        frames.append(frame)
    write_video(path, frames, fps=12)
    return masks | {"frames": np.stack(frames)}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    truth = render_scene(root / "clip.mp4")
    lineage = Lineage(agent="ingest", model="pyav")
    clip = ClipRow.build(
        lineage, clip_id="clip000000000001", source_key="k", video_path="clip.mp4", num_frames=FRAMES, fps=12.0,
        width=WIDTH, height=HEIGHT, duration=1.0, source="virtual", frame_indices=SAMPLED,
    )
    phrases = [
        PhraseRow.build(Lineage(agent="analyzer", model="x"), phrase_id=stable_id("p", text), clip_id=clip.clip_id,
                        text=text, kind="noun")
        for text in ("red square", "blue disk", "green speck")
    ]
    return root, clip, phrases, truth


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VDE_CACHE", str(tmp_path_factory.mktemp("models")))
        yield


def _batch(root, clip, phrases) -> Batch:
    return Batch(root=root, tables={"clips": [clip], "phrases": phrases})


# --- tiny real architectures -------------------------------------------------------------------

def test_tiny_profile_makes_valid_deterministic_masklets(scene, tiny_cache):
    root, clip, phrases, _ = scene
    clip = clip.model_copy(update={"frame_indices": [0, 4, 8, 11]})  # few frames keep it fast
    config = yaml.safe_load((ROOT / "data/profiles/tiny/segmentor.yaml").read_text())
    first = Segmentor(config)(_batch(root, clip, phrases))
    objects = first.rows["objects"]
    assert objects, first.rejections
    valid, bad = validate_rows("objects", objects, "segmentor")
    assert len(valid) == len(objects) and not bad
    for row in objects:
        assert row.source == "segmentor" and row.agent == "segmentor"
        assert row.model == "tiny:grounding-dino+tiny:sam-hq+tiny:sam2-video"
        assert row.label in {p.text for p in phrases}
        # the plan plus the 4 fps tracking grid (0, 3, 6, 8, 11 over 12 frames)
        assert set(row.frame_indices) <= {0, 3, 4, 6, 8, 11} and row.frame_indices == sorted(row.frame_indices)
        for rle, box in zip(row.masks, row.boxes, strict=True):
            assert rle.size == [HEIGHT, WIDTH]
            assert decode_mask(rle).any()
            assert 0 <= box[0] < box[2] <= WIDTH and 0 <= box[1] < box[3] <= HEIGHT
        assert 0 <= row.score <= 1
    again = Segmentor(config)(_batch(root, clip, phrases)).rows["objects"]
    assert [r.to_record() for r in again] == [r.to_record() for r in objects]


# --- fake vision boundary with exact masks ------------------------------------------------------

def _which_frame(frame: np.ndarray, truth) -> int:
    """Identify a decoded frame by content, so the fake never trusts the caller's bookkeeping."""
    errors = ((truth["frames"].astype(np.float32) - frame.astype(np.float32)) ** 2).mean(axis=(1, 2, 3))
    return int(np.argmin(errors))


def _to_grid(mask: np.ndarray, resized: tuple[int, int], square: int, grid: int) -> np.ndarray:
    """Exact mask -> logits on a model grid: resize into the input (PIL nearest), pad, block-average."""
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize((resized[1], resized[0]), Image.NEAREST)
    canvas = np.zeros((square, square), np.float32)
    canvas[: resized[0], : resized[1]] = np.asarray(image) / 255.0
    cell = square // grid
    coverage = canvas.reshape(grid, cell, grid, cell).mean(axis=(1, 3))
    return (coverage - 0.5) * 20.0


class FakeDetector:
    name, revision = "fake-dino", "test"

    def __init__(self, truth):
        self.truth = truth

    def detect(self, images, phrases_per_image, box_threshold, text_threshold):
        results = []
        for image, phrases in zip(images, phrases_per_image, strict=True):
            t = _which_frame(image, self.truth)
            found = []
            for index, text in enumerate(phrases):
                if text == "green speck":  # a detection whose mask is below the minimum area
                    found.append(Detection((5.0, 5.0, 7.0, 7.0), 0.9, index))
                    continue
                mask = self.truth[text][t]
                if mask.any():
                    ys, xs = np.nonzero(mask)
                    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
                    found.append(Detection(box, 0.8, index))
                    found.append(Detection((box[0] + 1, box[1], box[2] + 1, box[3]), 0.6, index))  # duplicate
            results.append(found)
        return results


class FakeSegmenter:
    """SAM geometry: longest side resized to 1024, padded bottom-right, 256x256 logits."""

    name, revision = "fake-sam", "test"

    def __init__(self, truth):
        self.truth = truth

    def segment(self, image, boxes):
        t = _which_frame(image, self.truth)
        h, w = image.shape[:2]
        scale = 1024 / max(h, w)
        resized = (int(h * scale + 0.5), int(w * scale + 0.5))
        logits = []
        for box in boxes:
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            if x1 - x0 <= 3:
                exact = np.zeros((h, w), bool)
                exact[y0:y1, x0:x1] = True
            else:  # the ground-truth object whose mask fills the box best
                exact = max((self.truth[k][t] for k in ("red square", "blue disk")),
                            key=lambda m: m[y0:y1, x0:x1].sum())
            logits.append(_to_grid(exact, resized, 1024, 256))
        return GridMasks(np.stack(logits), (1024, 1024), resized), np.full(len(boxes), 0.9, np.float32)


class FakePropagator:
    """SAM 2 geometry: the frame stretched to 1024x1024, 256x256 logits, no padding."""

    name, revision = "fake-sam2", "test"

    def __init__(self, truth):
        self.truth = truth
        self.calls = []

    def propagate(self, frames, keyframes, masks):
        times = [_which_frame(f, self.truth) for f in frames]
        keys = [keyframes] * len(masks) if isinstance(keyframes, int) else list(keyframes)
        self.calls.append((times, keys))
        objects = []
        for mask, key in zip(masks, keys, strict=True):  # the ground-truth object the keyframe mask is
            objects.append(max(("red square", "blue disk"),
                               key=lambda k: (self.truth[k][times[key]] & mask).sum()))
        # On its keyframe SAM 2 hands an object back the mask it was prompted with, so that frame's
        # output is the box segmenter's mask after its trip through the Segmentor's resizing.
        logits = np.stack([
            np.stack([
                _to_grid(mask if position == key else self.truth[name][t], (1024, 1024), 1024, 256)
                for name, mask, key in zip(objects, masks, keys, strict=True)
            ])
            for position, t in enumerate(times)
        ])
        presence = np.ones(logits.shape[:2], np.float32)
        return GridMasks(logits, (1024, 1024), (1024, 1024)), presence


def test_fake_boundary_output_matches_ground_truth(scene):
    root, clip, phrases, truth = scene
    propagator = FakePropagator(truth)
    stage = Segmentor(
        {"keyframe": "first", "min_mask_area": 20, "dedup_iou": 0.7},
        detector=FakeDetector(truth), segmenter=FakeSegmenter(truth), propagator=propagator,
    )
    out = stage(_batch(root, clip, phrases))
    assert not out.rejections
    # the tracking frames are the plan's (4 fps adds none here), in order; one session for every
    # candidate, each on its own keyframe: frames 0, 5 and 8 begin the clip's three spans
    [(times, keys)] = propagator.calls
    assert times == SAMPLED and set(keys) == {0, 4, 7}
    assert len(keys) == 5  # square and disk on frames 0 and 8, the disk alone on 5 (the square is out)
    assert out.counters["merged_candidates"] == 3
    by_label = {row.label: row for row in out.rows["objects"]}
    assert set(by_label) == {"red square", "blue disk"}  # duplicate and tiny detections are gone
    assert len(out.rows["objects"]) == 2
    for label, row in by_label.items():
        expected = [t for t in SAMPLED if truth[label][t].sum() >= 20]
        assert row.frame_indices == expected
        for t, rle, box in zip(row.frame_indices, row.masks, row.boxes, strict=True):
            mask, exact = decode_mask(rle), truth[label][t]
            iou = (mask & exact).sum() / (mask | exact).sum()
            assert iou > 0.95, (label, t, iou)
            ys, xs = np.nonzero(mask)
            assert box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert 5 not in by_label["red square"].frame_indices  # left the frame, then came back
    assert {8, 10, 11} <= set(by_label["red square"].frame_indices)
    phrase_id = next(p.phrase_id for p in phrases if p.text == "red square")
    assert by_label["red square"].object_id == stable_id("object", clip.clip_id, "segmentor", phrase_id, 0)


def test_nothing_found_is_a_rejection(scene):
    root, clip, phrases, truth = scene

    class Blind(FakeDetector):
        def detect(self, images, phrases_per_image, box_threshold, text_threshold):
            return [[] for _ in images]

    stage = Segmentor({}, detector=Blind(truth), segmenter=FakeSegmenter(truth), propagator=FakePropagator(truth))
    out = stage(_batch(root, clip, phrases))
    assert not out.rows.get("objects")
    assert [r.reason for r in out.rejections] == ["no_objects_found"]


def test_bad_inputs_become_rejections(scene, tmp_path):
    root, clip, phrases, truth = scene
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    broken = clip.model_copy(update={"clip_id": "clip000000000002", "video_path": str(tmp_path / "broken.mp4")})
    lonely = clip.model_copy(update={"clip_id": "clip000000000003"})
    moved = [p.model_copy(update={"clip_id": broken.clip_id}) for p in phrases]
    stage = Segmentor({}, detector=FakeDetector(truth), segmenter=FakeSegmenter(truth),
                      propagator=FakePropagator(truth))
    out = stage(Batch(root=root, tables={"clips": [broken, lonely], "phrases": moved}))
    reasons = {r.item_id: r.reason for r in out.rejections}
    assert reasons == {broken.clip_id: "decode_error", lonely.clip_id: "no_phrases"}


def test_keyframe_policy_prefers_the_sharpest_frame():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (5, 32, 32, 3)).astype(np.uint8)
    blurred = sharp.copy()
    for i in (0, 1, 3, 4):  # box-blur all but frame 2
        f = blurred[i].astype(np.float32)
        blurred[i] = ((f + np.roll(f, 1, 0) + np.roll(f, 1, 1) + np.roll(f, (1, 1), (0, 1))) / 4).astype(np.uint8)
    assert choose_keyframe(blurred, "sharpest", 5) == 2
    assert choose_keyframe(blurred, "middle", 5) == 2 and choose_keyframe(blurred, "last", 5) == 4


def test_select_objects_drops_tiny_and_duplicate_masks():
    masks = np.zeros((4, 20, 20), bool)
    masks[0, 2:10, 2:10] = True
    masks[1, 2:10, 3:10] = True  # duplicate of 0, scored higher
    masks[2, 12:18, 12:18] = True
    masks[3, 0:1, 0:2] = True  # tiny
    assert select_objects(masks, [0.5, 0.9, 0.4, 0.99], min_area=4, dedup_iou=0.7, limit=8) == [1, 2]
    assert select_objects(masks, [0.5, 0.9, 0.4, 0.99], min_area=4, dedup_iou=0.7, limit=1) == [1]


def test_profiles_are_exactly_the_stage_config():
    for profile in ("tiny", "videorefer", "current"):
        data = yaml.safe_load((ROOT / f"data/profiles/{profile}/segmentor.yaml").read_text())
        SegmentorConfig.model_validate(data)  # extra="forbid": a stray key fails here


def test_tracking_frames_follow_track_fps_capped_by_the_clip():
    from agents.segmentor import tracking_frames

    def clip(num_frames, fps, plan):
        return ClipRow.build(Lineage(agent="ingest", model="pyav"), clip_id="clip000000000009", source_key="k",
                             video_path="v.mp4", num_frames=num_frames, fps=fps, width=8, height=8,
                             duration=num_frames / fps, source="folder", frame_indices=plan)

    ten_seconds = tracking_frames(clip(300, 30.0, [0, 150, 299]), 4.0, 64)
    assert len(ten_seconds) == 41 and {0, 150, 299} <= set(ten_seconds)  # 4 fps over 10 s, plan included
    assert max(np.diff(ten_seconds)) <= 8  # never more than a quarter second apart
    assert len(tracking_frames(clip(1800, 30.0, list(range(0, 1800, 120))), 4.0, 64)) == 64  # a minute: capped
    assert tracking_frames(clip(6, 2.0, [0, 5]), 4.0, 64) == [0, 1, 2, 3, 4, 5]  # capped by the frame count


def test_keyframes_spread_over_the_clip_and_tracks_merge_by_iou():
    from agents.segmentor import choose_keyframes, merge_tracks

    frames = np.zeros((9, 8, 8, 3), np.uint8)
    assert choose_keyframes(frames, "first", 5, 3) == [0, 3, 6]
    assert choose_keyframes(frames, "middle", 5, 3) == [1, 4, 7]
    assert choose_keyframes(frames[:2], "first", 5, 3) == [0, 1]
    a = np.zeros((4, 10, 10), bool)
    a[:, 2:6, 2:6] = True
    b = a.copy()
    b[:, 2:6, 6] = True  # the same object seen from another keyframe: IoU 0.8
    c = np.roll(a, 4, axis=2)  # another object
    assert merge_tracks([a, b, c], 0.5, 8) == [0, 2]
    assert merge_tracks([a, b, c], 0.9, 8) == [0, 1, 2] and merge_tracks([a, b, c], 0.9, 2) == [0, 1]
