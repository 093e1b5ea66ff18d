"""Vision backends on the official packages, for checkpoints in their formats.

`sam2` (SAM 2 video predictor) and `groundingdino-py` are an optional extra: install them with
`make official` (pip --no-deps; their declared dependencies pull a CUDA torch). Both need
torchvision. On a CPU-only torch the PyPI torchvision cannot load its compiled ops, so
`install_nms_shim()` registers pure-torch `torchvision::nms` / `qnms` first (every process, Ray
workers included). The box segmenter stays the transformers SAM / HQ-SAM: neither package has one.

Model references in the Segmentor config for this backend:
  propagator  a SAM 2 checkpoint `.pt` (its file name picks the bundled config, e.g.
              sam2.1_hiera_large.pt) or `random:<config>` (e.g. random:sam2.1_hiera_t) for
              random weights;
  detector    a folder holding a groundingdino-py `config.py`, `weights.pth` and a `bert/`
              folder (the text encoder, loaded locally instead of from the Hub).

Parity with the transformers backends (tests/test_official_backends.py, run with the extra):
  SAM 2       `convert_sam2` maps every official key to Sam2VideoModel and back (all four 2.1 sizes
              and 2.0 tiny load strictly). sam2.1 hiera-tiny with random weights, converted, run by
              both propagators on 3 frames, 2 mask-prompted objects, keyframe in the middle
              (forward and backward): logits agree to 1.1e-4 at 256 px input (9e-6 at 1024 px), mask
              IoU >= 0.9999 on every frame. Not compared: object presence (the official predictor
              does not return its object scores) and hole filling (the official predictor fills
              holes under 8 px only with its compiled CUDA extension, absent on CPU).
  Grounding   `convert_grounding_dino` maps official keys to GroundingDinoForObjectDetection (one
  DINO        way). SwinT-OGC at full size (Swin-T, 6+6 layers, 900 queries) but with a 1-layer
              32-wide BERT as text encoder, random weights, converted, same 256x320 pixels and
              caption: boxes agree to < 1e-6, token logits to 3.7e-5. Compared at the model
              forward, not through `OfficialDetector.detect` (its 800 px resize makes a CPU test
              too slow); the two backends' image transforms are not compared here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agents.backends.preprocess import GridMasks, sam2_pixel_values
from agents.backends.vision import Detection, _assign, clean_phrase, pick_device, pick_dtype


class OfficialPackageMissing(ImportError):
    """An official package is not installed; the message says how to install it."""


def _require(module: str, package: str):
    import importlib

    install_nms_shim()
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        raise OfficialPackageMissing(
            f"the official backend needs the {package!r} package (and torchvision); install it with "
            f"`make official` or `pip install --no-deps {package}` ({err})"
        ) from None


def install_nms_shim() -> None:
    """Give a CPU-only torch the two torchvision ops torchvision registers fakes for at import.

    Only when torchvision is installed and its compiled ops cannot load; a working torchvision
    (CUDA builds on GPU machines) is left alone.
    """
    import importlib.util

    import torch

    if importlib.util.find_spec("torchvision") is None or hasattr(torch.ops.torchvision, "nms"):
        return
    if torch.cuda.is_available():
        return
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.impl("nms", _nms, "CPU")
    _SHIM.append(library)  # the ops live as long as their Library object


_SHIM: list = []


def _nms(boxes, scores, iou_threshold: float):
    """Greedy non-maximum suppression, as torchvision.ops.nms: indices kept, best first."""
    import torch

    order = scores.argsort(descending=True)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.numel():
        best, rest = order[0], order[1:]
        keep.append(best)
        top_left = torch.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = torch.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = (bottom_right - top_left).clamp(min=0).prod(dim=1)
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou <= iou_threshold]
    return torch.stack(keep) if keep else torch.empty(0, dtype=torch.long)


class OfficialVideoPropagator:
    """SAM 2 video through the official `SAM2VideoPredictor`, same contract as the transformers one."""

    def __init__(self, reference: str, revision: str = "main", device: str = "auto", dtype: str = "auto"):
        self.name, self.revision = reference, revision
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)

    def setup(self) -> None:
        build_sam = _require("sam2.build_sam", "sam2")
        if self.name.startswith("random:"):
            config, checkpoint = self.name.removeprefix("random:"), None
        else:
            checkpoint = Path(self.name)
            if not checkpoint.is_file():
                raise FileNotFoundError(f"SAM 2 checkpoint {checkpoint} does not exist")
            config = checkpoint.stem
        family = "sam2.1" if config.startswith("sam2.1") else "sam2"
        config_file = f"configs/{family}/{_short_config_name(config)}.yaml"
        self.predictor = build_sam.build_sam2_video_predictor(
            config_file, str(checkpoint) if checkpoint else None, device=self.device
        )
        self.image_size = int(self.predictor.image_size)

    def propagate(self, frames, keyframes, masks):
        from unittest import mock

        import sam2.sam2_video_predictor as video_predictor
        import torch

        from agents.backends.vision import per_object_keyframes

        height, width = frames.shape[1:3]
        pixels = sam2_pixel_values(frames, self.image_size, self.device)
        # The predictor only loads videos from files; hand it the frames the Segmentor decoded.
        with mock.patch.object(video_predictor, "load_video_frames", lambda **_: (pixels, height, width)):
            state = self.predictor.init_state(video_path="<decoded frames>")
        autocast = torch.autocast("cuda", dtype=self.dtype) if self.device.startswith("cuda") else _null()
        logits: dict[int, np.ndarray] = {}
        with torch.inference_mode(), autocast:
            keys = per_object_keyframes(keyframes, len(masks))
            for object_id, mask in enumerate(masks):
                self.predictor.add_new_mask(state, keys[object_id], object_id, torch.from_numpy(mask))
            for start, reverse in ((min(keys), False), (max(keys), True)):
                for frame, _, video_masks in self.predictor.propagate_in_video(
                    state, start_frame_idx=start, reverse=reverse
                ):
                    logits[frame] = video_masks[:, 0].float().cpu().numpy()
        stacked = np.stack([logits[t] for t in range(len(frames))])  # (T, N, H, W) at frame size
        presence = (stacked > 0).any(axis=(2, 3)).astype(np.float32)  # the predictor hides its scores
        return GridMasks(stacked, (height, width), (height, width)), presence


def _short_config_name(name: str) -> str:
    """Checkpoint names spell sizes out (sam2.1_hiera_base_plus); the bundled configs abbreviate."""
    for long, short in (("_large", "_l"), ("_base_plus", "_b+"), ("_small", "_s"), ("_tiny", "_t")):
        name = name.replace(long, short)
    return name


class OfficialDetector:
    """Grounding DINO through `groundingdino-py` (IDEA-Research's code), one image at a time."""

    def __init__(self, reference: str, revision: str = "main", device: str = "auto", dtype: str = "auto"):
        self.name, self.revision = reference, revision
        self.device = pick_device(device)

    def setup(self) -> None:
        _require("groundingdino", "groundingdino-py")
        from groundingdino.util.inference import load_model

        _restore_bert_mask_helpers()
        folder = Path(self.name)
        for needed in ("config.py", "weights.pth", "bert"):
            if not (folder / needed).exists():
                raise FileNotFoundError(f"{folder} has no {needed}; see agents/backends/official.py")
        self.model = _load_with_local_bert(load_model, folder, self.device)

    def detect(self, images, phrases_per_image, box_threshold, text_threshold):
        import torch

        results = []
        for image, phrases in zip(images, phrases_per_image, strict=True):
            caption = ". ".join(clean_phrase(p) for p in phrases) + "."
            pixels = _groundingdino_pixels(image).to(self.device)
            with torch.inference_mode():
                out = self.model(pixels[None], captions=[caption])
            ids = self.model.tokenizer(caption)["input_ids"]
            probs = out["pred_logits"][0].sigmoid().float().cpu().numpy()
            boxes = out["pred_boxes"][0].float().cpu().numpy()
            from agents.backends.vision import phrase_spans

            found = _assign(probs, boxes, phrase_spans(np.array(ids)), image.shape[:2], box_threshold,
                            text_threshold)
            results.append([Detection(d.box, d.score, d.phrase_index) for d in found])
        return results


def _groundingdino_pixels(image: np.ndarray):
    """Its own transform: shorter side 800 (longer at most 1333), ImageNet normalisation."""
    import torch
    import torch.nn.functional as F

    height, width = image.shape[:2]
    scale = min(800 / min(height, width), 1333 / max(height, width))
    size = (int(round(height * scale)), int(round(width * scale)))
    pixels = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return (pixels - mean) / std


def _restore_bert_mask_helpers() -> None:
    """groundingdino-py's BERT wrapper calls three `BertModel` mask helpers transformers 5 removed.

    `get_extended_attention_mask` (2-D or 3-D 0/1 mask -> additive mask broadcast over heads),
    `invert_attention_mask` (the same for cross-attention, unused by Grounding DINO's encoder-only
    BERT) and `get_head_mask` (no head masking: one None per layer), as transformers 4 defined them.
    """
    from transformers import BertModel

    def get_extended_attention_mask(self, attention_mask, input_shape=None, device=None, dtype=None):
        import torch

        dtype = dtype if isinstance(dtype, torch.dtype) else self.dtype
        mask = attention_mask[:, None, None, :] if attention_mask.dim() == 2 else attention_mask[:, None, :, :]
        return (1.0 - mask.to(dtype)) * torch.finfo(dtype).min

    def invert_attention_mask(self, attention_mask):
        return get_extended_attention_mask(self, attention_mask)

    def get_head_mask(self, head_mask, num_hidden_layers, is_attention_chunked=False):
        return [None] * num_hidden_layers if head_mask is None else head_mask

    for name, method in (("get_extended_attention_mask", get_extended_attention_mask),
                         ("invert_attention_mask", invert_attention_mask), ("get_head_mask", get_head_mask)):
        if not hasattr(BertModel, name):
            setattr(BertModel, name, method)


def _load_with_local_bert(load_model, folder: Path, device: str):
    """Point the text encoder at the local BERT folder instead of `bert-base-uncased` on the Hub."""
    from groundingdino.util.slconfig import SLConfig

    config = SLConfig.fromfile(str(folder / "config.py"))
    config.text_encoder_type = str(folder / "bert")
    local_config = folder / ".config-local-bert.py"
    config.dump(str(local_config))
    return load_model(str(local_config), str(folder / "weights.pth"), device=device)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def load_detector(cfg) -> OfficialDetector:
    detector = OfficialDetector(cfg.detector, cfg.detector_revision, cfg.device, cfg.dtype)
    detector.setup()
    return detector


def load_segmenter(cfg):
    from agents.backends.vision import load_segmenter as transformers_segmenter

    return transformers_segmenter(cfg)


def load_propagator(cfg) -> OfficialVideoPropagator:
    propagator = OfficialVideoPropagator(cfg.propagator, cfg.propagator_revision, cfg.device, cfg.dtype)
    propagator.setup()
    return propagator
