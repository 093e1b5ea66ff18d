"""The official-package backends (`make official`). Tests needing the packages are skipped where
they are absent; run them with a Python that has sam2 / groundingdino-py and torchvision."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from agents.backends import official
from agents.backends.preprocess import restore_masks

HAS_SAM2 = importlib.util.find_spec("sam2") is not None


def test_nms_matches_a_brute_force_reference():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 50, (40, 2))
    boxes = torch.tensor(np.concatenate([corners, corners + rng.uniform(5, 30, (40, 2))], axis=1), dtype=torch.float32)
    scores = torch.tensor(rng.uniform(size=40), dtype=torch.float32)
    expected = []
    for i in scores.argsort(descending=True).tolist():
        if all(_iou(boxes[i], boxes[j]) <= 0.5 for j in expected):
            expected.append(i)
    assert official._nms(boxes, scores, 0.5).tolist() == expected


def _iou(a, b) -> float:
    w = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
    h = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
    inter = w * h
    area = lambda x: float((x[2] - x[0]) * (x[3] - x[1]))  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.mark.skipif(HAS_SAM2, reason="sam2 is installed here")
def test_missing_package_is_a_clear_error():
    with pytest.raises(official.OfficialPackageMissing, match="sam2.*make official"):
        official.OfficialVideoPropagator("random:sam2.1_hiera_t", device="cpu").setup()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SAM2, reason="the official sam2 package is not installed (make official)")
def test_official_sam2_propagator_keeps_the_contract():
    propagator = official.OfficialVideoPropagator("random:sam2.1_hiera_t", device="cpu")
    propagator.setup()
    frames = np.random.default_rng(0).integers(0, 255, (2, 64, 96, 3), dtype=np.uint8)
    masks = np.zeros((2, 64, 96), bool)
    masks[0, 8:40, 8:50] = True
    masks[1, 30:60, 50:90] = True
    grid, presence = propagator.propagate(frames, 0, masks)
    assert grid.logits.shape == (2, 2, 64, 96) and presence.shape == (2, 2)
    restored = restore_masks(grid, (64, 96))
    inter = (restored[0] & masks).sum(axis=(1, 2))
    union = (restored[0] | masks).sum(axis=(1, 2))
    assert (inter / union > 0.9).all()  # a mask prompt comes back on its own frame, as in transformers
