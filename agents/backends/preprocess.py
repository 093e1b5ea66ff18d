"""Image and mask geometry shared by the vision backends and the Segmentor.

SAM 2's image and video processors need torchvision, which is not usable on CPU machines, so the
SAM 2 input transform lives here (square resize, ImageNet normalisation, batched in torch). Masks
come back from every model on a low-resolution grid that covers the model's input, possibly with
padding; `restore_masks` maps them back onto the frame the way SAM's post-processing does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class GridMasks:
    """Mask logits on a model's output grid.

    The grid covers `input_size` (height, width) pixels of the model's input; the image occupies
    the top-left `content_size` of that input (the rest is padding; equal sizes when the model
    stretches the image to its input, as SAM 2 does).
    """

    logits: np.ndarray  # (..., h, w) float32
    input_size: tuple[int, int]
    content_size: tuple[int, int]


def sam2_pixel_values(frames: np.ndarray, image_size: int, device="cpu", dtype=None):
    """(T, H, W, 3) uint8 RGB -> (T, 3, S, S) normalised tensor, as SAM 2 expects.

    Bilinear with antialiasing, like PIL's bilinear resize used by the transformers processor.
    """
    import torch
    import torch.nn.functional as F

    pixels = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float() / 255.0
    pixels = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    pixels = (pixels - mean) / std
    return pixels.to(dtype) if dtype is not None else pixels


def resize_masks_to_grid(masks: np.ndarray, size: int, device="cpu"):
    """(N, H, W) boolean frame masks -> (N, 1, S, S) float 0/1 masks in a square model input."""
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(masks)).to(device).float()[:, None]
    resized = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (resized >= 0.5).float()


def restore_masks(grid: GridMasks, out_size: tuple[int, int], threshold: float = 0.0) -> np.ndarray:
    """Grid logits (..., h, w) -> boolean masks (..., H, W) on the original frame.

    Upsample to the model input, crop the padding away, resize to the frame, then threshold:
    the order SAM's own post-processing uses, so mask edges land where the model put them.
    """
    import torch
    import torch.nn.functional as F

    logits = torch.from_numpy(np.ascontiguousarray(grid.logits, dtype=np.float32))
    lead = logits.shape[:-2]
    flat = logits.reshape(-1, 1, *logits.shape[-2:])
    if flat.shape[0] == 0:
        return np.zeros((*lead, *out_size), dtype=bool)
    flat = F.interpolate(flat, size=tuple(grid.input_size), mode="bilinear", align_corners=False)
    flat = flat[..., : grid.content_size[0], : grid.content_size[1]]
    flat = F.interpolate(flat, size=tuple(out_size), mode="bilinear", align_corners=False)
    return (flat > threshold).reshape(*lead, *out_size).numpy()


def sharpness(frames: np.ndarray) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian of each frame's luma: higher is sharper."""
    gray = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lap = (
        gray[:, :-2, 1:-1] + gray[:, 2:, 1:-1] + gray[:, 1:-1, :-2] + gray[:, 1:-1, 2:] - 4 * gray[:, 1:-1, 1:-1]
    )
    return lap.reshape(len(frames), -1).var(axis=1)


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) boolean -> (N, 4) xyxy pixel boxes (x1, y1 exclusive); zeros for empty masks."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    rows = masks.any(axis=2)
    cols = masks.any(axis=1)
    for i in range(len(masks)):
        ys, xs = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
        if len(ys):
            boxes[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, H, W) and (M, H, W) boolean masks -> (N, M)."""
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)
