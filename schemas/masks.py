"""COCO compressed RLE, always made and read by pycocotools (never hand-written).

`counts` is stored as a UTF-8 string, `size` as [height, width], exactly what
`pycocotools.mask.decode` accepts once `counts` is turned back into bytes.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils
from pydantic import BaseModel, Field, field_validator


class Rle(BaseModel):
    size: list[int] = Field(min_length=2, max_length=2, description="[height, width]")
    counts: str = Field(min_length=1)

    @field_validator("size")
    @classmethod
    def _positive(cls, size: list[int]) -> list[int]:
        if size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"mask size must be positive, got {size}")
        return size

    def to_coco(self) -> dict:
        return {"size": list(self.size), "counts": self.counts.encode("ascii")}


def encode_masks(masks: np.ndarray) -> list[Rle]:
    """Encode a (N, H, W) boolean stack in one pycocotools call."""
    if masks.ndim != 3:
        raise ValueError(f"expected (N, H, W) masks, got shape {masks.shape}")
    fortran = np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))
    encoded = mask_utils.encode(fortran)
    return [Rle(size=[int(s) for s in e["size"]], counts=e["counts"].decode("ascii")) for e in encoded]


def encode_mask(mask: np.ndarray) -> Rle:
    return encode_masks(mask[None])[0]


def decode_mask(rle: Rle | dict) -> np.ndarray:
    """Decode to a (H, W) boolean array."""
    coco = rle.to_coco() if isinstance(rle, Rle) else _coco_dict(rle)
    return mask_utils.decode(coco).astype(bool)


def mask_area(rle: Rle | dict) -> int:
    coco = rle.to_coco() if isinstance(rle, Rle) else _coco_dict(rle)
    return int(mask_utils.area(coco))


def mask_areas(rles: list[Rle]) -> list[int]:
    """The area of each mask, in pycocotools calls of at most 255 masks (its area() of a list counts
    them in a uint8)."""
    coco = [r.to_coco() for r in rles]
    return [int(a) for k in range(0, len(coco), 255) for a in mask_utils.area(coco[k : k + 255])]


def mask_box(rle: Rle | dict) -> list[float]:
    """Tight xyxy box in pixels; [0, 0, 0, 0] for an empty mask."""
    coco = rle.to_coco() if isinstance(rle, Rle) else _coco_dict(rle)
    x, y, w, h = (float(v) for v in mask_utils.toBbox(coco))
    return [x, y, x + w, y + h]


def _coco_dict(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
