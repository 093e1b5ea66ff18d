"""Cost of curation: probing + scene splitting + filtering + hashing, against a plain PyAV decode.

Renders a few long videos (hard cuts every few seconds, moving and still shots), curates them on
two cores through the guarded worker, and decodes the same videos front to back with PyAV. Prints
clips per second, frames per second and the ratio; the last line is one JSON object.

    python bench/ingest.py [--videos 3] [--seconds 30] [--width 640] [--height 360] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def render(path: Path, seconds: float, width: int, height: int, fps: float, seed: int) -> None:
    from agents.video import write_video

    rng = np.random.default_rng(seed)
    shot_frames = int(3 * fps)

    def frames():
        for t in range(int(seconds * fps)):
            shot, k = divmod(t, shot_frames)
            if k == 0:
                coarse = rng.random((height // 16 + 2, (width + 2 * shot_frames) // 16 + 2))
                tint = rng.integers(60, 255, 3)
                wall = (np.kron(coarse, np.ones((16, 16)))[..., None] * tint).astype(np.uint8)
            still = shot % 4 == 3
            x = 0 if still else 2 * k
            frame = np.ascontiguousarray(wall[:height, x : x + width])
            if not still:
                frame[height // 3 : height // 3 + 48, (9 * k) % (width - 48) :][:, :48] = 255
            yield frame

    write_video(path, frames(), fps)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (robust to other load on the machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def plain_decode(path: Path) -> int:
    import av

    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--smoke", action="store_true", help="one 4 s 320x180 video: seconds, for the test suite")
    args = parser.parse_args()
    if args.smoke:
        args.videos, args.seconds, args.width, args.height = 1, 4.0, 320, 180
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 2:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])  # the worker inherits it
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    from agents.curation.curate import CurationConfig, Curator, drop_near_duplicates

    with tempfile.TemporaryDirectory() as tmp:
        videos = [Path(tmp) / f"long-{i}.mp4" for i in range(args.videos)]
        for i, path in enumerate(videos):
            render(path, args.seconds, args.width, args.height, args.fps, seed=i)
        config = CurationConfig(enabled=True)
        with Curator(config) as curator:
            started = time.perf_counter()
            curator.guard.call("agents.curation.curate:probe_video", str(videos[0]))  # worker start-up
            startup = time.perf_counter() - started
            worker = curator.guard._proc.pid
            worker_cpu, own_cpu = process_cpu_s(worker), self_cpu_s()
            started = time.perf_counter()
            kept, rejected = [], []
            for path in videos:
                clips, rejections = curator.curate(str(path), path.stem)
                kept += clips
                rejected += rejections
            kept, duplicates = drop_near_duplicates(kept, config.dedup)
            curate_s = time.perf_counter() - started
            curate_cpu = process_cpu_s(worker) - worker_cpu + self_cpu_s() - own_cpu
        started, own_cpu = time.perf_counter(), self_cpu_s()
        frames = sum(plain_decode(path) for path in videos)
        decode_s = time.perf_counter() - started
        decode_cpu = self_cpu_s() - own_cpu
    clips = len(kept) + len(rejected) + len(duplicates)
    reasons: dict[str, int] = {}
    for r in rejected + duplicates:
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
    result = {
        "bench": "ingest_curation",
        "cores": cores,
        "videos": args.videos,
        "resolution": f"{args.width}x{args.height}",
        "frames": frames,
        "clips": clips,
        "kept": len(kept),
        "rejected": reasons,
        "curation_s": round(curate_s, 3),
        "curation_clips_per_s": round(clips / curate_s, 2),
        "curation_frames_per_s": round(frames / curate_s, 1),
        "plain_decode_s": round(decode_s, 3),
        "plain_decode_frames_per_s": round(frames / decode_s, 1),
        "ratio_curation_to_decode": round(curate_s / decode_s, 2),
        "curation_cpu_s": round(curate_cpu, 3),
        "plain_decode_cpu_s": round(decode_cpu, 3),
        "cpu_ratio_curation_to_decode": round(curate_cpu / max(decode_cpu, 1e-9), 2),
        "worker_startup_s": round(startup, 3),
    }
    print(f"curation: {clips} clips in {curate_s:.2f} s ({clips / curate_s:.1f} clips/s, {frames / curate_s:.0f} frames/s)")
    print(f"plain PyAV decode of the same {frames} frames: {decode_s:.2f} s ({frames / decode_s:.0f} frames/s)")
    print(f"curation costs {curate_s / decode_s:.2f}x a plain decode ({curate_cpu / max(decode_cpu, 1e-9):.2f}x in CPU "
          f"seconds: {curate_cpu:.2f} vs {decode_cpu:.2f}); worker start-up {startup:.2f} s once per actor")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
