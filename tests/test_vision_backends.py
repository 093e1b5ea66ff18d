"""The transformers vision backends on tiny builds, and the project's own preprocessing checked
against transformers' processors or an independent PIL reference."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from agents.backends import vision
from agents.backends.models import resolve_model
from agents.backends.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    GridMasks,
    mask_boxes,
    resize_masks_to_grid,
    restore_masks,
    sam2_pixel_values,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VDE_CACHE", str(tmp_path_factory.mktemp("models")))
        yield lambda name, seed=0: resolve_model(f"tiny:{name}", seed=seed)


def _image(h=90, w=140, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- preprocessing against references ------------------------------------------------------------

def test_restore_masks_matches_sam_post_processing(tiny):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny("sam"))
    image = _image(75, 130)
    encoded = processor(images=image, return_tensors="pt")
    logits = torch.randn(1, 3, 32, 32) * 3
    expected = processor.post_process_masks(
        [logits], encoded["original_sizes"], encoded["reshaped_input_sizes"], binarize=True
    )[0].numpy()
    assert expected.shape == (1, 3, 75, 130)
    content = tuple(int(v) for v in encoded["reshaped_input_sizes"][0])
    ours = restore_masks(GridMasks(logits[0].numpy(), (128, 128), content), (75, 130))
    assert ours.shape == (3, 75, 130)
    assert (ours == expected[0]).all()


def test_sam2_pixels_match_a_pil_reference():
    frames = np.stack([_image(90, 140, seed) for seed in range(2)])
    ours = sam2_pixel_values(frames, 64).numpy()
    for frame, got in zip(frames, ours, strict=True):
        resized = np.asarray(Image.fromarray(frame).resize((64, 64), Image.BILINEAR), dtype=np.float32) / 255
        reference = ((resized - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
        assert got.shape == (3, 64, 64)
        assert np.abs(got - reference).mean() < 0.02  # PIL rounds to uint8 on the way
        assert np.abs(got - reference).max() < 0.2


def test_mask_prompts_match_transformers_video_processor():
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession
    from transformers.models.sam2_video.processing_sam2_video import Sam2VideoProcessor

    masks = np.zeros((2, 90, 140), bool)
    masks[0, 10:50, 20:90] = True
    masks[1, 60:88, 100:139] = True
    session = Sam2VideoInferenceSession(video_height=90, video_width=140, dtype=torch.float32)
    # Its mask path needs only `target_size`; the processor itself cannot be built without torchvision.
    Sam2VideoProcessor.process_new_mask_for_video_frame(SimpleNamespace(target_size=64), session, 3, [0, 1],
                                                        list(masks))
    ours = resize_masks_to_grid(masks, 64)
    for index in range(2):
        theirs = session.mask_inputs_per_obj[index][3]
        assert torch.equal(theirs, ours[index : index + 1])


def test_mask_boxes_are_tight_xyxy():
    masks = np.zeros((2, 10, 12), bool)
    masks[0, 2:5, 3:9] = True
    assert mask_boxes(masks).tolist() == [[3, 2, 9, 5], [0, 0, 0, 0]]


# --- Grounding DINO ------------------------------------------------------------------------------

def test_phrase_spans_follow_the_dot_separators(tiny):
    from transformers import AutoProcessor

    tokenizer = AutoProcessor.from_pretrained(tiny("grounding-dino")).tokenizer
    ids = tokenizer("red square. blue disk moving left.").input_ids
    assert ids[0] == 101 and ids[-1] == 102
    spans = vision.phrase_spans(np.array(ids))
    assert [tokenizer.decode(ids[a:b]) for a, b in spans] == ["red square", "blue disk moving left"]


def test_assign_uses_box_and_text_thresholds():
    probs = np.zeros((3, 8), np.float32)
    probs[0, 1:3] = [0.9, 0.8]  # phrase 0, confident
    probs[1, 4:6] = [0.5, 0.05]  # phrase 1: box passes, phrase mean 0.275
    probs[2, 4:6] = [0.2, 0.2]  # below the box threshold
    boxes = np.array([[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.1, 0.1]], np.float32)
    found = vision._assign(probs, boxes, [(1, 3), (4, 6)], (100, 200), box_threshold=0.3, text_threshold=0.25)
    assert [(d.phrase_index, round(d.score, 2)) for d in found] == [(0, 0.9), (1, 0.5)]
    assert found[0].box == pytest.approx((80, 40, 120, 60))
    assert found[1].box == pytest.approx((0, 0, 60, 30))  # clipped to the image
    stricter = vision._assign(probs, boxes, [(1, 3), (4, 6)], (100, 200), box_threshold=0.3, text_threshold=0.3)
    assert [d.phrase_index for d in stricter] == [0]


def test_detector_batches_like_single_images(tiny):
    detector = vision.TransformersDetector(tiny("grounding-dino"), "tiny", device="cpu", batch_size=3)
    detector.setup()
    images = [_image(seed=s) for s in range(3)]
    phrases = [["red square", "blue disk"], ["cat"], ["a small ring. extra", "dog", "star"]]
    batched = detector.detect(images, phrases, 0.0, 0.0)
    detector.batch_size = 1
    single = detector.detect(images, phrases, 0.0, 0.0)
    for found, alone, names, image in zip(batched, single, phrases, images, strict=True):
        assert found and len(found) == len(alone)
        for a, b in zip(found, alone, strict=True):
            assert a.phrase_index == b.phrase_index and a.score == pytest.approx(b.score, abs=1e-4)
            assert a.box == pytest.approx(b.box, abs=1e-2)
        for d in found:
            assert 0 <= d.phrase_index < len(names)
            assert 0 <= d.box[0] < d.box[2] <= image.shape[1] and 0 <= d.box[1] < d.box[3] <= image.shape[0]


# --- SAM / HQ-SAM and SAM 2 ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sam", "sam-hq"])
def test_box_segmenter_returns_one_grid_mask_per_box(tiny, name):
    segmenter = vision.TransformersBoxSegmenter(tiny(name), name, device="cpu")
    segmenter.setup()
    grid, scores = segmenter.segment(_image(90, 140), np.array([[10, 10, 60, 50], [70, 20, 130, 85]], np.float32))
    assert grid.logits.shape == (2, 32, 32) and scores.shape == (2,)
    assert grid.input_size == (128, 128) and grid.content_size == (82, 128)  # 90x140 scaled to 128 wide


def test_box_segmenter_refuses_other_architectures(tiny):
    segmenter = vision.TransformersBoxSegmenter(tiny("sam2-video"), "x", device="cpu")
    with pytest.raises(ValueError, match="sam or sam_hq"):
        segmenter.setup()


@pytest.mark.parametrize("keyframe", [0, 2, 4])
def test_propagator_tracks_both_ways_from_the_keyframe(tiny, keyframe):
    propagator = vision.TransformersVideoPropagator(tiny("sam2-video"), "tiny", device="cpu")
    propagator.setup()
    frames = np.stack([_image(64, 96, s) for s in range(5)])
    masks = np.zeros((2, 64, 96), bool)
    masks[0, 8:40, 8:50] = True
    masks[1, 30:60, 50:90] = True
    grid, presence = propagator.propagate(frames, keyframe, masks)
    assert grid.logits.shape == (5, 2, 32, 32) and presence.shape == (5, 2)
    restored = restore_masks(grid, (64, 96))
    # A mask prompt is SAM 2's output on its own frame: the keyframe comes back as given.
    inter = (restored[keyframe] & masks).sum(axis=(1, 2))
    union = (restored[keyframe] | masks).sum(axis=(1, 2))
    assert (inter / union > 0.85).all()


def test_tiny_builds_are_deterministic_from_the_seed(tiny, tmp_path):
    from safetensors.numpy import load_file

    from agents.backends.tiny_vision import build_sam2_video

    build_sam2_video(tmp_path / "again", 0)
    build_sam2_video(tmp_path / "other", 1)
    first = load_file(tiny("sam2-video") / "model.safetensors")
    again = load_file(tmp_path / "again" / "model.safetensors")
    other = load_file(tmp_path / "other" / "model.safetensors")
    assert first.keys() == again.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert any(not np.array_equal(first[k], other[k]) for k in first)


def test_auto_dtype_is_bf16_on_gpu_and_fp32_on_cpu():
    assert vision.pick_dtype("auto", "cpu") == torch.float32
    assert vision.pick_dtype("auto", "cuda:0") == torch.bfloat16
    assert vision.pick_dtype("float16", "cuda") == torch.float16


def test_benchmark_runs_on_tiny_builds(tiny, tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "vision.py"
    spec = importlib.util.spec_from_file_location("bench_vision", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--tiny", "--frames", "2", "--repeats", "1", "--json", str(tmp_path / "r.json")])
    assert results["tiny"] and json.loads((tmp_path / "r.json").read_text()) == results
    by_objects = {r["objects"]: r for r in results["rows"] if "objects" in r}
    assert set(by_objects) == {1, 5, 10}
    assert all(r["tflops"] > 0 and (r.get("images_per_s") or r.get("frames_per_s")) > 0 for r in results["rows"])
