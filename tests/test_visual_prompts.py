"""Visual prompts on a synthetic scene: a white square moving right over a textured background."""

import numpy as np
import pytest

from agents.visual_prompts import blur_windows, contour_overlay, motion_trails, render, spotlight

H, W, T, SIDE = 96, 160, 10, 16


def _scene():
    rng = np.random.default_rng(0)
    background = rng.integers(60, 200, (H, W, 3), dtype=np.uint8)
    frames = np.repeat(background[None], T, axis=0)
    masks = np.zeros((T, H, W), bool)
    for t in range(T):
        x = 10 + 12 * t  # 12 px per frame to the right
        masks[t, 40 : 40 + SIDE, x : x + SIDE] = True
        frames[t][masks[t]] = 255
    return frames, masks


def _background():
    return np.random.default_rng(0).integers(60, 200, (H, W, 3), dtype=np.uint8).astype(float)


def test_spotlight_keeps_the_object_and_darkens_the_rest():
    frames, masks = _scene()
    out = spotlight(frames, masks, pad=20, dim=0.9)
    assert (out[masks] == frames[masks]).all()
    for t in range(T):
        far = np.ones((H, W), bool)
        ys, xs = np.nonzero(masks[t])
        far[max(0, ys.min() - 40) : ys.max() + 40, max(0, xs.min() - 40) : xs.max() + 40] = False
        ratio = out[t][far].astype(float).mean() / frames[t][far].astype(float).mean()
        assert ratio < 0.12  # ~90% toward black
        assert (out[t][far] <= np.ceil(frames[t][far] * 0.1)).all()


def test_spotlight_pads_the_box_and_only_moves_it_when_the_object_leaves():
    frames, masks = _scene()
    still = np.repeat(masks[:1], T, axis=0)
    still[1:, 40:56, 12:28] = True  # wiggles 2 px inside the padded box
    still[1:, 40:56, 10:12] = False
    out = spotlight(frames, still, pad=20)
    lit = (out == frames).all(axis=-1)
    assert lit[0, 20:76, 0:46].all()  # 16 px object + 20 px pad, clipped at the left edge
    assert (lit[1:] == lit[0]).all()  # same region: the object never left it
    moving = spotlight(frames, masks, pad=20)
    assert not ((moving == frames).all(axis=-1)[5] == (moving == frames).all(axis=-1)[0]).all()


def test_motion_trails_show_past_positions_with_decaying_weight():
    frames, masks = _scene()
    out = motion_trails(frames, history=7, decay=0.65).astype(float)
    background = _background()
    t = 8
    excess = [(out[t][masks[t - k] & ~masks[t]] - background[masks[t - k] & ~masks[t]]).mean()
              for k in (1, 2, 3)]
    assert excess[0] > excess[1] > excess[2] > 1.0  # older positions fainter, still visible
    never = np.ones((H, W), bool)
    for k in range(8):
        never &= ~masks[t - k]
    assert np.abs(out[t][never] - background[never]).max() <= 1  # nothing where the object never was
    assert np.array_equal(motion_trails(frames[:1])[0], frames[0])


def test_contour_outlines_the_mask_only():
    frames, masks = _scene()
    out = contour_overlay(frames, masks, color=(255, 0, 0), thickness=1)
    red = (out[..., 0] == 255) & (out[..., 1] == 0) & (out[..., 2] == 0)
    for t in range(T):
        ys, xs = np.nonzero(red[t])
        assert ys.min() == 40 and ys.max() == 40 + SIDE - 1
        assert not red[t][42:52, 12 + 12 * t : 22 + 12 * t].any()  # the inside keeps its pixels


def test_render_rejects_unknown_kinds():
    frames, masks = _scene()
    assert render("spotlight", frames, masks).shape == frames.shape
    with pytest.raises(ValueError):
        render("glow", frames, masks)


def test_trails_blend_consecutive_windows_not_the_sampled_frames():
    frames, masks = _scene()
    windows = blur_windows([0, 3, 9], history=7)
    assert windows == [[0], [0, 1, 2, 3], list(range(2, 10))]  # consecutive, clipped at the first frame
    shown = render("trails", frames[[0, 3, 9]], masks[[0, 3, 9]], [frames[w] for w in windows])
    assert np.array_equal(shown[0], frames[0])
    assert np.array_equal(shown[2], motion_trails(frames[2:10])[-1])  # the trail of the 7 frames before
    weights = 0.65 ** np.arange(4)
    expected = np.tensordot(weights, frames[[3, 2, 1, 0]].astype(np.float32), axes=1) / weights.sum()
    assert np.abs(shown[1].astype(float) - expected).max() <= 1
    with pytest.raises(ValueError, match="consecutive"):
        render("trails", frames, masks)
