"""Virtual scenes: determinism, variety, geometry, masks against the decoded video, captions."""

from __future__ import annotations

import numpy as np
import pytest

from agents.video import probe, read_frames
from agents.virtual.captions import motion_caption, scene_description
from agents.virtual.render import render_masks, render_video, silhouettes
from agents.virtual.scene import (
    COLOURS,
    DIRECTIONS,
    Action,
    Background,
    Camera,
    SceneObject,
    SceneSpec,
    sample_scene,
    scene_from_metadata,
)

BACKGROUND = Background(base=(120, 118, 112), accent=(150, 148, 140), tile=24, wave_freq=(0.03, 0.04),
                        wave_phase=0.0, wave_amp=10)


def scene(objects: list[SceneObject], camera: Camera | None = None, num_frames: int = 12) -> SceneSpec:
    return SceneSpec(seed=0, index=0, width=320, height=240, fps=8, num_frames=num_frames,
                     background=BACKGROUND, camera=camera or Camera(), objects=objects)


def thing(index, shape, colour, x, y, actions=(), radius=20.0) -> SceneObject:
    return SceneObject(index=index, shape=shape, colour=colour, size="medium", radius=radius, x=x, y=y,
                       actions=list(actions))


def test_same_seed_same_scene_and_same_mask_bytes():
    a, b = sample_scene(7, 3, fps=8, seconds=2), sample_scene(7, 3, fps=8, seconds=2)
    assert a.model_dump(mode="json") == b.model_dump(mode="json")
    frames = [0, 5, 15]
    assert render_masks(a, frames).tobytes() == render_masks(b, frames).tobytes()
    assert sample_scene(8, 3).model_dump() != a.model_dump()
    assert sample_scene(7, 4).model_dump() != a.model_dump()


def test_spec_round_trips_through_json():
    spec = sample_scene(1, 2)
    again = SceneSpec.model_validate(spec.model_dump(mode="json"))
    assert again == spec
    import json

    assert scene_from_metadata(json.dumps({"virtual": spec.model_dump(mode="json")})) == spec
    for bad in (None, "", "{not json", '{"other": 1}', '{"virtual": {"width": 3}}'):
        with pytest.raises(ValueError):
            scene_from_metadata(bad)


def test_indices_cover_every_motion_kind():
    specs = [sample_scene(0, i) for i in range(24)]
    seen: set[str] = set()
    for spec in specs:
        assert 2 <= len(spec.objects) <= 4
        assert len({o.label for o in spec.objects}) == len(spec.objects)
        keys = [a.key for o in spec.objects for a in o.actions]
        assert len(keys) == len(set(keys)), "two objects share an action"
        for obj in spec.objects:
            seen.update(a.key for a in obj.actions)
            if len(obj.actions) >= 2:
                seen.add("sequence")
            if any(a.kind == "spin" for a in obj.actions):
                assert obj.shape != "circle"
        seen.add(f"camera:{spec.camera.motion}")
    expected = {f"move:{d}" for d in DIRECTIONS} | {"spin:clockwise", "spin:counterclockwise", "bounce",
                                                    "sequence", "camera:static", "camera:pan", "camera:zoom"}
    assert expected <= seen, expected - seen
    assert {o.size for s in specs for o in s.objects} == {"small", "medium", "large"}
    assert len({o.shape for s in specs for o in s.objects}) == 5


def test_objects_stay_in_frame_in_most_scenes():
    inside = 0
    for i in range(12):
        spec = sample_scene(0, i, fps=8, seconds=2)
        masks = render_masks(spec, range(spec.num_frames))
        inside += bool(masks.any(axis=(2, 3)).all())
    assert inside >= 10


def test_clockwise_spin_turns_clockwise_on_screen():
    bar = thing(0, "rectangle", "red", 160, 120, [Action(kind="spin", direction="clockwise", turns=1,
                                                        start_frame=0, end_frame=12)], radius=40)
    mask = silhouettes(scene([bar]), 1)[0]  # 30 degrees into the turn
    reach = 0.9 * 40
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    assert mask[int(120 + reach * s), int(160 + reach * c)]  # the right end went down
    assert not mask[int(120 - reach * s), int(160 + reach * c)]


def test_move_directions_match_the_rendered_masks():
    checked = 0
    for i in range(0, 24, 3):  # index % 3 == 0: static camera, so screen motion is scene motion
        spec = sample_scene(0, i)
        assert spec.camera.motion == "static"
        for obj in spec.objects:
            for action in (a for a in obj.actions if a.kind == "move"):
                start = silhouettes(spec, action.start_frame)[obj.index]
                end = silhouettes(spec, action.end_frame)[obj.index]
                shift = np.array(_centroid(end)) - np.array(_centroid(start))
                unit = np.array(DIRECTIONS[action.direction])
                assert shift @ unit / np.linalg.norm(shift) > 0.95, (i, obj.label, action.direction, shift)
                assert np.linalg.norm(shift) == pytest.approx(action.distance, rel=0.1)
                checked += 1
    assert checked >= 4


def test_camera_pan_moves_the_background():
    spec = scene([thing(0, "circle", "red", 160, 120)],
                 camera=Camera(motion="pan", direction="right", amount=48), num_frames=9)
    frames = list(__import__("agents.virtual.render", fromlist=["render_frames"]).render_frames(spec))
    # Panning right by 48 px over 8 frames: frame 8 shows, at x, what frame 0 showed at x + 48.
    assert np.abs(frames[8][:, :200].astype(int) - frames[0][:, 48:248].astype(int)).max() <= 1
    masks = render_masks(spec, [0, 8])
    assert _centroid(masks[1, 0])[0] == pytest.approx(_centroid(masks[0, 0])[0] - 48, abs=1)


def test_occluded_masks_are_disjoint_and_the_top_object_is_whole():
    spec = scene([thing(0, "square", "blue", 150, 120, radius=30), thing(1, "circle", "yellow", 175, 120)])
    full = silhouettes(spec, 0)
    vis = render_masks(spec, [0])[0]
    assert (full[0] & full[1]).sum() > 200, "the scene must overlap for this test"
    assert not (vis[0] & vis[1]).any()
    assert (vis[1] == full[1]).all()
    assert ((vis[0] | vis[1]) == (full[0] | full[1])).all()


def test_masks_cover_the_object_colour_in_the_decoded_video(tmp_path):
    checked = 0
    for index in range(4):
        spec = sample_scene(0, index, fps=8, seconds=2)
        path = tmp_path / f"{index}.mp4"
        render_video(spec, path)
        info = probe(path)
        assert (info.width, info.height, info.num_frames) == (320, 240, spec.num_frames)
        assert info.fps == pytest.approx(8)
        frames_at = [0, 5, 10, 15]
        frames = read_frames(path, frames_at).astype(int)
        masks = render_masks(spec, frames_at)
        for t in range(len(frames_at)):
            for obj in spec.objects:
                mask = masks[t, obj.index]
                near = np.abs(frames[t] - np.array(COLOURS[obj.colour])).max(axis=-1) <= 40
                core = _shrink(mask, 2)
                if core.sum() >= 20:  # H.264 chroma blurs ~2 px at edges; judge the core
                    assert near[core].mean() >= 0.95, (index, t, obj.label)
                    checked += 1
                stray = near & ~_grow(mask, 3)
                assert stray.sum() <= 0.002 * mask.size, (index, t, obj.label, stray.sum())
    assert checked >= 30


def test_motion_caption_reads_the_metadata():
    spec = scene(
        [
            thing(0, "circle", "red", 200, 80, [Action(kind="move", direction="left", distance=60,
                                                       start_frame=0, end_frame=10)]),
            thing(1, "square", "blue", 120, 170, [Action(kind="spin", direction="clockwise", turns=2,
                                                         start_frame=12, end_frame=30)]),
            thing(2, "star", "green", 270, 200),
        ],
        camera=Camera(motion="pan", direction="right", amount=40), num_frames=32,
    )
    assert motion_caption(spec) == (
        "The red circle moves left, then the blue square spins clockwise twice while the camera pans right. "
        "The green star stays still."
    )
    description = scene_description(spec)
    assert "a medium red circle, a medium blue square and a medium green star" in description
    assert description.endswith(motion_caption(spec))


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def _shrink(mask: np.ndarray, k: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(k):
        padded = np.pad(out, 1)
        out = out & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return out


def _grow(mask: np.ndarray, k: int) -> np.ndarray:
    return ~_shrink(~mask, k)
