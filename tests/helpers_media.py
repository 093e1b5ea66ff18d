"""Small media files for tests: good clips and every kind of bad file ingest must reject."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from agents.video import write_video


def moving_square_frames(n: int = 24, width: int = 96, height: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    frames = []
    for t in range(n):
        frame = background.copy()
        x = 4 + (t * 3) % (width - 20)
        frame[20:36, x : x + 16] = (220, 30, 30)
        frames.append(frame)
    return frames


def write_good_clip(path: Path, n: int = 24, seed: int = 0, fps: int = 12) -> Path:
    write_video(path, moving_square_frames(n, seed=seed), fps=fps)
    return path


def write_bad_files(folder: Path) -> dict[str, str]:
    """Write one file per failure mode; returns file name -> the reason code ingest must give."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero_bytes.mp4").write_bytes(b"")
    (folder / "text_named.mp4").write_text("this is not a video, just text\n" * 20)
    good = write_good_clip(folder / "_full.mp4", n=48)
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    good.unlink()
    write_good_clip(folder / "one_frame.mp4", n=1)
    _write_audio_only(folder / "audio_only.mp4")
    return {
        "zero_bytes.mp4": "empty_file",
        "text_named.mp4": "not_a_video",
        "truncated.mp4": "truncated_video",
        "one_frame.mp4": "too_few_frames",
        "audio_only.mp4": "no_video_stream",
    }


def _write_audio_only(path: Path) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (np.sin(np.linspace(0, 200, 16000)) * 0.3).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        frame.time_base = Fraction(1, 16000)
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
