"""The vision boundary: open-vocabulary detection, box-prompted masks, video mask propagation.

The Segmentor talks to three small interfaces, so any of them can be swapped (transformers, the
official packages in `agents.backends.official`, or a test fake returning exact masks):

  Detector.detect(images, phrases_per_image, box_threshold, text_threshold) -> detections per image
  BoxSegmenter.segment(image, boxes) -> (GridMasks (N, h, w), scores (N,))
  VideoPropagator.propagate(frames, keyframes, masks) -> (GridMasks (T, N, h, w), presence (T, N)); keyframes
    is one frame for all masks or one per mask (each object prompted on its own keyframe)

Masks cross the boundary at the model's own resolution (`GridMasks`); the Segmentor restores them
onto the frame. The default implementations load transformers checkpoints from a folder made by
`agents.backends.models.resolve_model` (tiny build, local folder or Hugging Face cache).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from agents.backends.preprocess import GridMasks, resize_masks_to_grid, sam2_pixel_values

# Grounding DINO's tokenizer ids for the phrase separator and the sequence ends.
_CLS, _SEP, _DOT, _QUESTION = 101, 102, 1012, 1029


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # xyxy, pixels of the image it was found in
    score: float
    phrase_index: int  # into that image's phrase list


class Detector(Protocol):
    name: str
    revision: str

    def detect(
        self,
        images: Sequence[np.ndarray],
        phrases_per_image: Sequence[Sequence[str]],
        box_threshold: float,
        text_threshold: float,
    ) -> list[list[Detection]]: ...


class BoxSegmenter(Protocol):
    name: str
    revision: str

    def segment(self, image: np.ndarray, boxes: np.ndarray) -> tuple[GridMasks, np.ndarray]: ...


class VideoPropagator(Protocol):
    name: str
    revision: str

    def propagate(self, frames: np.ndarray, keyframes: int | Sequence[int],
                  masks: np.ndarray) -> tuple[GridMasks, np.ndarray]: ...


def per_object_keyframes(keyframes: int | Sequence[int], count: int) -> list[int]:
    """One keyframe per object, from one for all or a list."""
    return [int(keyframes)] * count if isinstance(keyframes, (int, np.integer)) else [int(k) for k in keyframes]


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pick_dtype(dtype: str, device: str):
    """`auto` is bfloat16 on a GPU and float32 on a CPU (CPU bf16 kernels are slow or missing)."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def _load(model_class, path: Path, device: str, dtype):
    """from_pretrained with SDPA where the architecture supports it."""
    import torch

    kwargs = {"dtype": dtype}
    if getattr(model_class, "_supports_sdpa", False):
        kwargs["attn_implementation"] = "sdpa"
    # Buffers a checkpoint does not hold are drawn at random on load: draw them from a fixed seed,
    # so a model's outputs never depend on what ran before in this process.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return model_class.from_pretrained(path, **kwargs).to(device).eval()


def clean_phrase(text: str) -> str:
    """Grounding DINO splits its prompt at '.', so a phrase must not contain one."""
    return " ".join(text.replace(".", " ").replace("?", " ").lower().split())


class TransformersDetector:
    """Grounding DINO through `GroundingDinoForObjectDetection`.

    Each image's phrases are joined into one prompt ("a. b. c.") and images are run in padded
    batches. A query's box score is its best token probability over all phrases (box threshold);
    it is assigned to the phrase whose tokens score highest on average (text threshold).
    """

    def __init__(self, path: Path, name: str, revision: str = "main", device: str = "auto",
                 dtype: str = "auto", batch_size: int = 8, max_phrases_per_prompt: int = 16):
        self.path, self.name, self.revision = Path(path), name, revision
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.max_phrases_per_prompt = max_phrases_per_prompt

    def setup(self) -> None:
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        self.processor = AutoProcessor.from_pretrained(self.path)
        self.model = _load(GroundingDinoForObjectDetection, self.path, self.device, self.dtype)

    def detect(self, images, phrases_per_image, box_threshold, text_threshold):
        prompts = []  # (image index, first phrase index, phrases)
        for index, phrases in enumerate(phrases_per_image):
            step = self.max_phrases_per_prompt
            for start in range(0, len(phrases), step):
                prompts.append((index, start, [clean_phrase(p) for p in phrases[start : start + step]]))
        results: list[list[Detection]] = [[] for _ in images]
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            found = self._run([images[i] for i, _, _ in chunk], [p for _, _, p in chunk],
                              box_threshold, text_threshold)
            for (index, first, _), detections in zip(chunk, found, strict=True):
                for d in detections:
                    results[index].append(Detection(d.box, d.score, d.phrase_index + first))
        return results

    def _run(self, images, phrase_lists, box_threshold, text_threshold):
        import torch

        texts = [". ".join(p) + "." for p in phrase_lists]
        inputs = self.processor(images=list(images), text=texts, padding=True, return_tensors="pt").to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            out = self.model(**inputs)
        probs = out.logits.float().sigmoid().cpu().numpy()  # (B, Q, max_text_len)
        boxes = out.pred_boxes.float().cpu().numpy()  # (B, Q, 4) cxcywh relative to the image
        ids = inputs["input_ids"].cpu().numpy()
        return [
            _assign(probs[b], boxes[b], phrase_spans(ids[b]), images[b].shape[:2], box_threshold, text_threshold)
            for b in range(len(images))
        ]


def phrase_spans(input_ids: np.ndarray) -> list[tuple[int, int]]:
    """Token ranges of each phrase in a "a. b. c." prompt, split at the '.' tokens."""
    spans, start = [], None
    for position, token in enumerate(input_ids):
        if token == _CLS:
            start = position + 1
        elif token in (_DOT, _QUESTION, _SEP):
            if start is not None and position > start:
                spans.append((start, position))
            start = position + 1 if token != _SEP else None
    return spans


def _assign(probs, boxes, spans, image_size, box_threshold, text_threshold) -> list[Detection]:
    if not spans:
        return []
    height, width = image_size
    per_phrase = np.stack([probs[:, a:b].mean(axis=1) for a, b in spans], axis=1)  # (Q, P)
    box_scores = np.stack([probs[:, a:b].max(axis=1) for a, b in spans], axis=1).max(axis=1)
    phrase = per_phrase.argmax(axis=1)
    detections = []
    for q in np.flatnonzero(box_scores >= box_threshold):
        if per_phrase[q, phrase[q]] < text_threshold:
            continue
        cx, cy, w, h = boxes[q]
        box = (
            float(np.clip((cx - w / 2) * width, 0, width)),
            float(np.clip((cy - h / 2) * height, 0, height)),
            float(np.clip((cx + w / 2) * width, 0, width)),
            float(np.clip((cy + h / 2) * height, 0, height)),
        )
        if box[2] > box[0] and box[3] > box[1]:
            detections.append(Detection(box, float(box_scores[q]), int(phrase[q])))
    return sorted(detections, key=lambda d: -d.score)


class TransformersBoxSegmenter:
    """SAM or HQ-SAM (whichever the checkpoint's config names) prompted with boxes, one mask each."""

    def __init__(self, path: Path, name: str, revision: str = "main", device: str = "auto", dtype: str = "auto"):
        self.path, self.name, self.revision = Path(path), name, revision
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)

    def setup(self) -> None:
        from transformers import AutoConfig, AutoProcessor, SamHQModel, SamModel

        model_type = AutoConfig.from_pretrained(self.path).model_type
        model_class = {"sam": SamModel, "sam_hq": SamHQModel}.get(model_type)
        if model_class is None:
            raise ValueError(f"{self.path} holds a {model_type!r} model; the box segmenter needs sam or sam_hq")
        self.processor = AutoProcessor.from_pretrained(self.path)
        self.model = _load(model_class, self.path, self.device, self.dtype)

    def segment(self, image, boxes):
        import torch

        inputs = self.processor(images=image, input_boxes=[np.asarray(boxes, dtype=np.float32).tolist()],
                                return_tensors="pt")
        content = tuple(int(v) for v in inputs.pop("reshaped_input_sizes")[0])
        inputs.pop("original_sizes")
        inputs = {k: v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)
                  for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(**inputs, multimask_output=False)
        logits = out.pred_masks[0, :, 0].float().cpu().numpy()  # (N, h, w)
        scores = out.iou_scores[0, :, 0].float().cpu().numpy()
        square = tuple(inputs["pixel_values"].shape[-2:])
        return GridMasks(logits, square, content), scores


class TransformersVideoPropagator:
    """SAM 2 video, all objects in one session: each object's mask on its keyframe, tracked forward
    from the earliest keyframe and backward from the latest, so every frame is covered."""

    def __init__(self, path: Path, name: str, revision: str = "main", device: str = "auto", dtype: str = "auto"):
        self.path, self.name, self.revision = Path(path), name, revision
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)

    def setup(self) -> None:
        from transformers import Sam2VideoModel

        self.model = _load(Sam2VideoModel, self.path, self.device, self.dtype)
        self.image_size = int(self.model.config.image_size)

    def propagate(self, frames, keyframes, masks):
        import torch
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        keys = per_object_keyframes(keyframes, len(masks))
        count, height, width = len(frames), frames.shape[1], frames.shape[2]
        session = Sam2VideoInferenceSession(
            video=sam2_pixel_values(frames, self.image_size, self.device),
            video_height=height, video_width=width, inference_device=self.device,
            inference_state_device=self.device, video_storage_device=self.device, dtype=self.dtype,
        )
        prompts = resize_masks_to_grid(masks, self.image_size, self.device)
        object_ids = list(range(len(masks)))
        for object_id in object_ids:
            session.add_mask_inputs(session.obj_id_to_idx(object_id), keys[object_id],
                                    prompts[object_id : object_id + 1])
        session.obj_with_new_inputs = list(object_ids)
        logits: dict[int, np.ndarray] = {}
        presence: dict[int, np.ndarray] = {}
        with torch.inference_mode():
            for start, reverse in ((min(keys), False), (max(keys), True)):
                for out in self.model.propagate_in_video_iterator(session, start_frame_idx=start, reverse=reverse):
                    logits[out.frame_idx] = out.pred_masks[:, 0].float().cpu().numpy()
                    presence[out.frame_idx] = out.object_score_logits.float().sigmoid().cpu().numpy().reshape(-1)
        stacked = np.stack([logits[t] for t in range(count)])  # (T, N, h, w)
        square = (self.image_size, self.image_size)
        return GridMasks(stacked, square, square), np.stack([presence[t] for t in range(count)])


def load_detector(cfg) -> TransformersDetector:
    """The Segmentor config's detector, resolved (tiny build, folder or HF cache) and loaded."""
    from agents.backends.models import loaded_revision, resolve_model

    path = resolve_model(cfg.detector, cfg.detector_revision, cfg.seed, cfg.allow_download)
    detector = TransformersDetector(path, cfg.detector, loaded_revision(path, cfg.detector_revision), cfg.device, cfg.dtype,
                                    batch_size=cfg.detector_batch_size)
    detector.setup()
    return detector


def load_segmenter(cfg) -> TransformersBoxSegmenter:
    from agents.backends.models import loaded_revision, resolve_model

    path = resolve_model(cfg.segmenter, cfg.segmenter_revision, cfg.seed, cfg.allow_download)
    segmenter = TransformersBoxSegmenter(path, cfg.segmenter, loaded_revision(path, cfg.segmenter_revision), cfg.device, cfg.dtype)
    segmenter.setup()
    return segmenter


def load_propagator(cfg) -> TransformersVideoPropagator:
    from agents.backends.models import loaded_revision, resolve_model

    path = resolve_model(cfg.propagator, cfg.propagator_revision, cfg.seed, cfg.allow_download)
    propagator = TransformersVideoPropagator(path, cfg.propagator, loaded_revision(path, cfg.propagator_revision), cfg.device, cfg.dtype)
    propagator.setup()
    return propagator
