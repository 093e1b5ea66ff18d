"""Real files as they come: display rotation, variable frame rate, the camera-motion estimate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.base import Batch
from agents.ingest import Ingest
from agents.video import probe, read_frames
from engine.sources import iter_source
from tests.helpers_footage import write_footage_folder


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    folder = tmp_path_factory.mktemp("footage")
    return folder, write_footage_folder(folder)


@pytest.fixture(scope="module")
def clips(footage, tmp_path_factory):
    folder, _ = footage
    out = Ingest().process_batch(Batch(root=tmp_path_factory.mktemp("ds"), items=list(iter_source(str(folder)))))
    assert not out.rejections, out.rejections
    return {c.source_key.removeprefix("file:"): c for c in out.rows["clips"]}


def test_rotated_video_decodes_upright(footage, clips):
    folder, facts = footage
    info = probe(folder / "rotated.mp4")
    assert (info.width, info.height, info.rotation) == (96, 128, -90)
    clip = clips["rotated.mp4"]
    assert (clip.width, clip.height) == (96, 128) and json.loads(clip.metadata)["rotation"] == -90
    frame = read_frames(folder / "rotated.mp4", [0])[0]
    assert frame.shape == (128, 96, 3)
    assert np.abs(frame.astype(int) - facts["rotated.mp4"]["first_upright"]).mean() < 6


def test_variable_frame_rate_is_sampled_by_time(footage, clips):
    _, facts = footage
    times = np.array(facts["vfr.mp4"]["times"])
    clip = clips["vfr.mp4"]
    assert json.loads(clip.metadata)["variable_frame_rate"] is True
    picked = times[clip.frame_indices]
    targets = np.linspace(0, times[-1], len(picked))
    assert np.abs(picked - targets).max() <= 0.14  # each pick is the frame nearest its time
    by_count = times[np.linspace(0, len(times) - 1, len(picked)).round().astype(int)]
    assert np.abs(picked - targets).mean() < np.abs(by_count - targets).mean()
    assert clip.fps == pytest.approx(len(times) / clip.duration)


def test_camera_motion_is_estimated_without_curation(clips):
    assert clips["pan.mp4"].camera_motion == "pan_right"
    assert clips["still.mp4"].camera_motion == "static"
