"""SAM 3 video through transformers: text prompts in, masklets with object ids and scores out.

SAM 3 (`Sam3VideoModel`) detects every instance of a short noun phrase on each frame and tracks
it through the clip with a SAM 2 style memory, so one model replaces the Grounding DINO ->
SAM / HQ-SAM -> SAM 2 chain. The Analyzer's phrases are its text prompts.

transformers' `Sam3VideoProcessor` needs torchvision, which is absent on CPU machines, so this
module does what it does by hand: frames are resized to the model's square input (1008 px for the
real model) and normalised with mean = std = 0.5; prompts are tokenised with the checkpoint's CLIP
tokenizer padded to 32 tokens; objects hidden by the hot-start heuristics or suppressed on a frame
are left out, and objects of one prompt do not overlap (each pixel goes to the object the tracker
is surest of). Masklets keep SAM 3's low-resolution logits (288 px for the real model) and are
resized to the frame only when needed: full-size masks of every tracked object on every frame
would take gigabytes on HD footage.

`segment_batch` is the Segmentor's per-shard work with this backend: it tracks over the same
frames as the chain (the sampling plan plus `track_fps`, at most `max_track_frames`), read only
through `Batch.read_frames`; rejections keep the Segmentor's reason codes, and rows record the backend in
`prompt_version` (`sam3@<policy hash>`) and the checkpoint in `model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents.backends.vision import _load, pick_device, pick_dtype

PROMPT_TOKENS = 32  # SAM 3's text encoder reads 32 CLIP tokens per prompt
MEAN = STD = 0.5


ABSENT = -10.0  # logit of a pixel (or frame) the object does not hold; sigmoid(-10) ~ 5e-5


@dataclass
class Masklet:
    """One object SAM 3 found and tracked: its mask logits on every frame (ABSENT where not shown)."""

    object_id: int
    phrase_index: int
    score: float  # detection score
    logits: np.ndarray  # (T, h, w) float16 at the model's mask resolution
    presence: np.ndarray  # (T,) tracker probability, 0 where the object has no output
    size: tuple[int, int]  # (H, W) of the frames

    def low_masks(self) -> np.ndarray:
        return self.logits > 0

    def masks(self, chunk: int = 8) -> np.ndarray:
        """(T, H, W) bool at frame size, resized a few frames at a time."""
        import torch

        out = np.zeros((len(self.logits), *self.size), bool)
        for start in range(0, len(self.logits), chunk):
            low = torch.from_numpy(self.logits[start : start + chunk].astype(np.float32)).unsqueeze(1)
            full = torch.nn.functional.interpolate(low, size=self.size, mode="bilinear", align_corners=False)
            out[start : start + chunk] = (full[:, 0] > 0).numpy()
        return out


class Sam3VideoSegmenter:
    name: str
    revision: str

    def __init__(self, path: Path, name: str, revision: str = "main", device: str = "auto", dtype: str = "auto",
                 score_threshold: float = 0.5, new_object_threshold: float = 0.7, max_tracked: int = 10000):
        self.path, self.name, self.revision = Path(path), name, revision
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.score_threshold, self.new_object_threshold = score_threshold, new_object_threshold
        self.max_tracked = max_tracked

    def setup(self) -> None:
        from transformers import AutoConfig, AutoTokenizer, Sam3VideoModel
        from transformers.utils import logging

        # The tracking cap is ours and deliberate: its per-frame "hitting max_num_objects" warning is noise.
        logging.get_logger("transformers.models.sam3_video.modeling_sam3_video").setLevel(logging.ERROR)
        model_type = AutoConfig.from_pretrained(self.path).model_type
        if model_type != "sam3_video":
            raise ValueError(f"{self.name} holds a {model_type!r} model; the sam3 backend needs sam3_video")
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = _load(Sam3VideoModel, self.path, self.device, self.dtype)
        self.model.score_threshold_detection = self.score_threshold
        self.model.new_det_thresh = self.new_object_threshold
        self.model.max_num_objects = self.max_tracked
        self.image_size = int(self.model.config.image_size)

    def segment(self, frames: np.ndarray, phrases: list[str]) -> list[Masklet]:
        import torch
        from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoInferenceSession

        count, height, width = len(frames), frames.shape[1], frames.shape[2]
        session = Sam3VideoInferenceSession(
            video=self._pixel_values(frames), video_height=height, video_width=width,
            inference_device=self.device, inference_state_device=self.device,
            video_storage_device=self.device, dtype=self.dtype,
        )
        prompt_phrase = self._add_prompts(session, phrases)
        per_frame: dict[int, dict[int, np.ndarray]] = {}
        presence: dict[int, dict[int, float]] = {}
        scores: dict[int, float] = {}
        with torch.inference_mode():
            for out in self.model.propagate_in_video_iterator(session, start_frame_idx=0):
                per_frame[out.frame_idx], presence[out.frame_idx] = self._frame_logits(session, out)
                scores.update({int(k): float(v) for k, v in out.obj_id_to_score.items()})
        hidden = set(session.hotstart_removed_obj_ids)
        objects = sorted({o for logits in per_frame.values() for o in logits} - hidden)
        shape = next((m.shape for logits in per_frame.values() for m in logits.values()), (1, 1))
        absent = np.full(shape, ABSENT, np.float16)
        return [
            Masklet(
                object_id=o,
                phrase_index=prompt_phrase[session.obj_id_to_prompt_id[o]],
                score=scores.get(o, 0.0),
                logits=np.stack([per_frame.get(t, {}).get(o, absent) for t in range(count)]),
                presence=np.array([presence.get(t, {}).get(o, 0.0) for t in range(count)], dtype=np.float32),
                size=(height, width),
            )
            for o in objects
        ]

    def _pixel_values(self, frames: np.ndarray):
        """(T, 3, S, S) float: resized to the square input, scaled to [0, 1], normalised by 0.5."""
        import torch

        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255.0)
        video = torch.nn.functional.interpolate(video, size=(self.image_size, self.image_size), mode="bilinear",
                                                align_corners=False, antialias=True)
        return ((video - MEAN) / STD).to(self.device)

    def _add_prompts(self, session, phrases: list[str]) -> dict[int, int]:
        """Each distinct phrase becomes one text prompt; returns prompt id -> first phrase index."""
        prompt_phrase: dict[int, int] = {}
        for index, text in enumerate(phrases):
            prompt_id = session.add_prompt(text)
            if prompt_id in prompt_phrase:
                continue
            prompt_phrase[prompt_id] = index
            encoded = self.tokenizer(text, return_tensors="pt", padding="max_length", max_length=PROMPT_TOKENS,
                                     truncation=True)
            session.prompt_input_ids[prompt_id] = encoded.input_ids.to(self.device)
            session.prompt_attention_masks[prompt_id] = encoded.attention_mask.to(self.device)
        return prompt_phrase

    def _frame_logits(self, session, out) -> tuple[dict[int, np.ndarray], dict[int, float]]:
        """One frame's visible objects as low-resolution logits, without overlaps inside a prompt."""
        import torch

        hidden = set(out.suppressed_obj_ids or ()) | set(session.hotstart_removed_obj_ids)
        ids = [int(o) for o in sorted(out.obj_id_to_mask) if int(o) not in hidden]
        if not ids:
            return {}, {}
        logits = torch.cat([out.obj_id_to_mask[o] for o in ids]).float().cpu()  # (N, h, w)
        probs = torch.tensor([float(out.obj_id_to_tracker_score.get(o, 0.0)) for o in ids])
        logits = _without_overlaps(logits, probs, [session.obj_id_to_prompt_id[o] for o in ids])
        return ({o: m.astype(np.float16) for o, m in zip(ids, logits.numpy(), strict=True) if (m > 0).any()},
                dict(zip(ids, probs.tolist(), strict=True)))


def _without_overlaps(logits, probs, groups: list[int]):
    """Within each prompt, a pixel claimed by several objects stays with the most confident one
    (the others' logits there drop to ABSENT)."""
    import torch

    out = logits.clone()
    claimed = logits > 0
    groups_t = torch.tensor(groups)
    for group in groups_t.unique():
        members = torch.nonzero(groups_t == group).flatten()
        if len(members) < 2:
            continue
        claim = torch.where(claimed[members], probs[members, None, None], torch.tensor(-1.0))
        winner = claim.argmax(dim=0)
        for rank, member in enumerate(members):
            lost = claimed[member] & (winner != rank)
            out[member] = torch.where(lost, torch.tensor(ABSENT), logits[member])
    return out


def load_sam3(cfg) -> Sam3VideoSegmenter:
    """The Segmentor config's SAM 3 video checkpoint, resolved and loaded. Random weights give
    low scores everywhere, so the thresholds come from the config (`box_threshold`). Tracking cost
    grows with every object: a crowded clip tracks at most four times the objects it may keep."""
    from agents.backends.models import loaded_revision, resolve_model

    path = resolve_model(cfg.video_model, cfg.video_model_revision, cfg.seed, cfg.allow_download)
    segmenter = Sam3VideoSegmenter(path, cfg.video_model, loaded_revision(path, cfg.video_model_revision), cfg.device, cfg.dtype,
                                   score_threshold=cfg.box_threshold, new_object_threshold=cfg.box_threshold,
                                   max_tracked=4 * cfg.max_objects_per_clip)
    segmenter.setup()
    return segmenter


def segment_batch(stage, batch):
    """The Segmentor's shard with SAM 3: per clip, every phrase prompted at once on all tracking frames."""
    from agents.base import StageOutput
    from agents.segmentor import tracking_frames

    out = StageOutput()
    lineage = stage.lineage()
    phrases_by_clip = batch.by_clip("phrases")
    for clip in batch.clips:
        phrases = sorted(phrases_by_clip.get(clip.clip_id, []), key=lambda p: p.phrase_id)
        if not phrases:
            out.reject(stage.name, clip.clip_id, "no_phrases", "no phrases to ground", clip_id=clip.clip_id)
            continue
        indices = tracking_frames(clip, stage.config.track_fps, stage.config.max_track_frames)
        frames = _frames(stage, batch, clip, indices, out)
        if frames is None:
            continue
        try:
            masklets = stage.video_segmenter.segment(frames, [p.text for p in phrases])
            rows = masklet_rows(stage.config, clip, indices, phrases, masklets, lineage, stage.name)
        except Exception as err:  # one bad clip must not sink the shard
            out.reject(stage.name, clip.clip_id, "segmentation_failed", f"{type(err).__name__}: {err}",
                       clip_id=clip.clip_id)
            continue
        if not rows:
            out.reject(stage.name, clip.clip_id, "no_objects_found",
                       f"{len(masklets)} masklet(s) for {len(phrases)} phrase(s), none kept", clip_id=clip.clip_id)
        for row in rows:
            out.add("objects", row)
    return out


def _frames(stage, batch, clip, indices, out):
    from agents.video import VideoError

    try:
        return batch.read_frames(clip, indices)
    except VideoError as err:
        out.reject(stage.name, clip.clip_id, err.reason, err.detail, clip_id=clip.clip_id)
    except Exception as err:
        out.reject(stage.name, clip.clip_id, "decode_error", f"{type(err).__name__}: {err}", clip_id=clip.clip_id)
    return None


def masklet_rows(cfg, clip, indices: list[int], phrases, masklets: list[Masklet], lineage, agent: str) -> list:
    """Masklets (over the clip frames `indices`) -> `objects` rows: frames under the minimum area are absences; at most
    `max_detections_per_phrase` per phrase and `max_objects_per_clip` in all, best first; a
    masklet overlapping a better one by more than `dedup_iou` (over the whole clip) is dropped."""
    from agents.backends.preprocess import mask_boxes
    from agents.segmentor import select_objects
    from schemas import ObjectRow, stable_id
    from schemas.masks import encode_masks

    min_area = max(cfg.min_mask_area, 1)
    per_phrase: dict[int, int] = {}
    ranked = []
    for m in sorted(masklets, key=lambda m: (-m.score, m.object_id)):
        if per_phrase.get(m.phrase_index, 0) < cfg.max_detections_per_phrase and _present(m, min_area).any():
            per_phrase[m.phrase_index] = per_phrase.get(m.phrase_index, 0) + 1
            ranked.append(m)
    if not ranked:
        return []
    # Duplicates are judged on the low-resolution masks: IoU barely depends on the scale.
    volumes = np.stack([m.low_masks().reshape(-1, m.logits.shape[-1]) for m in ranked])  # (N, T*h, w)
    chosen = select_objects(volumes, [m.score for m in ranked], 1, cfg.dedup_iou, cfg.max_objects_per_clip)
    rows, rank_in_phrase = [], {}
    for m in (ranked[i] for i in sorted(chosen)):
        full = m.masks()
        present = np.flatnonzero(full.reshape(len(full), -1).sum(axis=1) >= min_area)
        phrase = phrases[m.phrase_index]
        rank = rank_in_phrase.get(m.phrase_index, 0)
        rank_in_phrase[m.phrase_index] = rank + 1
        masks = full[present]
        score = m.score * float(m.presence[present].mean())
        rows.append(ObjectRow.build(
            lineage,
            object_id=stable_id("object", clip.clip_id, agent, phrase.phrase_id, rank),
            clip_id=clip.clip_id,
            label=phrase.text,
            frame_indices=[int(indices[t]) for t in present],
            masks=encode_masks(masks),
            boxes=[[float(v) for v in box] for box in mask_boxes(masks)],
            score=float(np.clip(score, 0, 1)),
            source=agent,
        ))
    return rows


def _present(masklet: Masklet, min_area: int) -> np.ndarray:
    """Per frame, whether the object covers at least `min_area` pixels at frame size."""
    full = masklet.masks()
    return full.reshape(len(full), -1).sum(axis=1) >= min_area
