"""Benchmark: the full audit of a dataset with a million MCQ rows vs a plain DuckDB scan of the
same MCQ files.

    python bench/audit.py [--rows 1000000] [--clips 20000] [--shards 10] [--objects 2000] [--dataset DIR] [--smoke]

The dataset is synthetic and written straight with pyarrow in the contract schema (no row
validation: the point is the audit's speed, not the rows). Both wall and CPU seconds of this
process are printed (DuckDB's threads run in it; on a shared machine the CPU ratio is the steadier
one). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.audit import load_checks, run_audit  # noqa: E402
from schemas import arrow_schema, encode_masks, mask_areas, mask_box  # noqa: E402

CATEGORIES = np.array(["MR", "LM", "CM", "MO", "AO", "RC"])
SUBJECTS = ["red circle", "blue square", "green triangle", "yellow star", "camera", "white ball"]


def table(name: str, columns: dict[str, pa.Array], n: int) -> pa.Table:
    """The table in the contract schema; a nullable column the benchmark does not fill is all nulls,
    so a column added to the contract later never breaks the benchmark."""
    schema = arrow_schema(name)
    missing = [f.name for f in schema if f.name not in columns and not f.nullable]
    if missing:
        raise KeyError(f"bench/audit.py must fill the required {name} columns {missing}")
    return pa.table({f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in schema}, schema=schema)


def lineage(n: int, model: str, rng: np.random.Generator) -> dict[str, pa.Array]:
    return {
        "agent": pa.array(["questions"] * n), "model": pa.array([model] * n),
        "model_revision": pa.array(["main"] * n), "prompt_version": pa.array(["v1"] * n),
        "prompt_tokens": pa.array(rng.integers(200, 800, n)), "completion_tokens": pa.array(rng.integers(20, 120, n)),
    }


def mcq_shard(start: int, n: int, clips: int, rng: np.random.Generator) -> pa.Table:
    ids = np.arange(start, start + n)
    clip = rng.integers(0, clips, n)
    category = CATEGORIES[rng.integers(0, 6, n)]
    subject = rng.integers(0, len(SUBJECTS), n)
    question = [f"In what direction does the {SUBJECTS[s]} move ({c}, {i % 7})?" for s, c, i in zip(subject, category, ids, strict=True)]
    options = pa.ListArray.from_arrays(np.arange(0, 4 * n + 1, 4, dtype=np.int32),
                                       pa.array(np.tile(["left", "right", "up", "down"], n)))
    columns = {
        "question_id": pa.array([f"{i:016x}" for i in ids]),
        "clip_id": pa.array([f"{c:016x}" for c in clip]),
        "object_ids": pa.ListArray.from_arrays(np.zeros(n + 1, np.int32), pa.array([], pa.string())),
        "category": pa.array(category),
        "question": pa.array(question),
        "options": options,
        "answer": pa.array(np.array(list("ABCD"))[rng.integers(0, 4, n)]),
        "source": pa.array(["llm"] * n),
        **lineage(n, "gpt-4o-mini", rng),
    }
    return table("mcqs", columns, n)


def clips_table(clips: int, rng: np.random.Generator) -> pa.Table:
    frames = rng.integers(48, 300, clips)
    columns = {
        "clip_id": pa.array([f"{c:016x}" for c in range(clips)]),
        "source_key": pa.array([f"virtual:{c}" for c in range(clips)]),
        "video_path": pa.array([f"videos/{c}.mp4" for c in range(clips)]),
        "num_frames": pa.array(frames), "fps": pa.array(np.full(clips, 24.0)),
        "width": pa.array(np.full(clips, 320)), "height": pa.array(np.full(clips, 240)),
        "duration": pa.array(frames / 24.0), "start": pa.nulls(clips, pa.float64()), "end": pa.nulls(clips, pa.float64()),
        "source": pa.array(["virtual"] * clips), "caption": pa.nulls(clips, pa.string()),
        "frame_indices": pa.ListArray.from_arrays(np.arange(0, 2 * clips + 1, 2, dtype=np.int32),
                                                  pa.array(np.tile([0, 47], clips).astype(np.int32))),
        "metadata": pa.nulls(clips, pa.string()),
        **lineage(clips, "renderer", rng),
    }
    return table("clips", columns, clips)


def objects_table(objects: int, clips: int, frames: int, rng: np.random.Generator) -> pa.Table:
    """Masklets of a square moving across a 240x320 frame: real COCO RLE, reused across objects."""
    stack = np.zeros((frames, 240, 320), bool)
    for t in range(frames):
        stack[t, 60:120, 10 + 8 * t:70 + 8 * t] = True
    rles = encode_masks(stack)
    masks = [{"size": r.size, "counts": r.counts} for r in rles]
    boxes = [mask_box(r) for r in rles]
    areas = mask_areas(rles)  # what every object row carries (ObjectRow fills it from the masks)
    columns = {
        "object_id": pa.array([f"o{k:015x}" for k in range(objects)]),
        "clip_id": pa.array([f"{c:016x}" for c in rng.integers(0, clips, objects)]),
        "label": pa.array(np.array(SUBJECTS)[rng.integers(0, len(SUBJECTS), objects)]),
        "frame_indices": pa.array([list(range(frames))] * objects, pa.list_(pa.int32())),
        "masks": pa.array([masks] * objects, arrow_schema("objects").field("masks").type),
        "boxes": pa.array([boxes] * objects, arrow_schema("objects").field("boxes").type),
        "score": pa.array(np.ones(objects)), "source": pa.array(["segmentor"] * objects),
        "areas": pa.array([areas] * objects, arrow_schema("objects").field("areas").type),
        **lineage(objects, "sam2-hiera-tiny", rng),
    }
    return table("objects", columns, objects)


def build(root: Path, rows: int, clips: int, shards: int, objects: int = 2000, frames: int = 32) -> float:
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    (root / "mcqs").mkdir(parents=True)
    (root / "clips").mkdir()
    per = -(-rows // shards)
    for k in range(shards):
        n = min(per, rows - k * per)
        pq.write_table(mcq_shard(k * per, n, clips, rng), root / "mcqs" / f"bench-{k:04d}.parquet", compression="zstd")
    pq.write_table(clips_table(clips, rng), root / "clips" / "bench-0000.parquet", compression="zstd")
    (root / "objects").mkdir()
    pq.write_table(objects_table(objects, clips, frames, rng), root / "objects" / "bench-0000.parquet",
                   compression="zstd")
    return time.perf_counter() - started


def plain_scan(root: Path) -> tuple[float, float]:
    """One pass over every MCQ column the audit reads, with nothing else: (wall, CPU) seconds."""
    import duckdb

    con = duckdb.connect()
    glob = str(root / "mcqs" / "*.parquet")
    started, cpu = time.perf_counter(), time.process_time()
    con.execute(
        f"SELECT count(*), count(DISTINCT category), max(answer), sum(len(options)), max(length(question)), "
        f"max(clip_id), max(question_id), max(model), sum(prompt_tokens) FROM read_parquet('{glob}')"
    ).fetchall()
    elapsed = time.perf_counter() - started, time.process_time() - cpu
    con.close()
    return elapsed


def best_of(repeats: int, fn) -> tuple[float, float]:
    """The best wall and the best CPU seconds (DuckDB's threads run in this process) of the repeats."""
    runs = [fn() for _ in range(repeats)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clips", type=int, default=20_000)
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--objects", type=int, default=2000, help="masklets of 32 frames (the mask check's load)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dataset", type=Path, help="where to build it (default: a temporary folder, removed)")
    parser.add_argument("--smoke", action="store_true", help="20,000 rows, one repeat: seconds, for the test suite")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.clips, args.objects, args.repeats = 20_000, 500, 20, 1
    root = args.dataset or Path(tempfile.mkdtemp(prefix="audit-bench-")) / "ds"
    try:
        build_s = build(root, args.rows, args.clips, args.shards, args.objects)
        checks = load_checks()
        scan_s, scan_cpu = best_of(args.repeats, lambda: plain_scan(root))
        audit_times, statuses = [], {}

        def audit_once() -> tuple[float, float]:
            started, cpu = time.perf_counter(), time.process_time()
            results = run_audit(root, checks)
            audit_times.append({r.name: round(r.seconds, 3) for r in results})
            statuses.update({r.name: r.status for r in results})
            return time.perf_counter() - started, time.process_time() - cpu

        audit_s, audit_cpu = best_of(args.repeats, audit_once)
        slowest = sorted(audit_times[-1].items(), key=lambda kv: -kv[1])[:4]
        print(f"built {args.rows} MCQ rows + {args.clips} clips in {build_s:.1f} s")
        print(f"plain DuckDB scan of the MCQ files: {scan_s:.3f} s ({scan_cpu:.3f} CPU-s)")
        print(f"full audit ({len(checks)} checks): {audit_s:.3f} s ({audit_cpu:.3f} CPU-s); slowest: {slowest}")
        masks_s = audit_times[-1].get("mask_quality", 0.0)
        print(f"mask_quality: {args.objects * 32} masks (their areas carried by the rows) in {masks_s:.3f} s")
        print(f"ratio audit / scan: {audit_s / scan_s:.1f}x ({audit_cpu / max(scan_cpu, 1e-9):.1f}x in CPU seconds)")
        print(json.dumps({"rows": args.rows, "clips": args.clips, "checks": len(checks), "build_s": round(build_s, 3),
                          "scan_s": round(scan_s, 4), "audit_s": round(audit_s, 3),
                          "ratio": round(audit_s / scan_s, 2), "scan_cpu_s": round(scan_cpu, 4),
                          "audit_cpu_s": round(audit_cpu, 3), "cpu_ratio": round(audit_cpu / max(scan_cpu, 1e-9), 2),
                          "masks": args.objects * 32, "mask_quality_s": masks_s, "statuses": statuses}))
    finally:
        if args.dataset is None:
            shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
