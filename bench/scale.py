"""How the store grows: synthetic datasets shaped like a real run, written through the store's commit path.

For each size N (clips) the benchmark takes the real job's stages and shards for `virtual:N`
(real shard ids, signatures and fingerprint chains), commits synthetic rows for every
(stage, shard) through `DatasetStore.stage_arrow` + `commit` (no models run), then measures:

- files per table and bytes per row, before and after `compact`;
- a full audit (every check in data/audit/) over the store's views;
- a `--dry-run` refresh plan (source grown by 1%);
- a resume start-up (writer lock, crash recovery, size verification, plan);
- a response-cache lookup (the SQLite cache holding 5 answers per clip), and the old
  one-JSON-file-per-answer cache beside it;

then prints each figure's growth exponent between the smallest and largest size and its
extrapolation to 1M clips. `--delta-clips K` also writes the first K clips' shards into Delta
Lake tables (`deltalake`: one append per (stage, shard, table), as a store built on it would
commit), compacts them with `optimize.compact()`, and prints both side by side.

    python bench/scale.py --clips 10000,30000,100000 --delta-clips 2000
    python bench/scale.py --smoke          # tiny sizes, a few seconds (the test runs this)
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.compact import compact  # noqa: E402
from engine.config import JobConfig, build_stages  # noqa: E402
from engine.driver import BuildOptions, plan_build  # noqa: E402
from engine.lock import WriterLock  # noqa: E402
from engine.pipeline import Pipeline, make_shards  # noqa: E402
from engine.sources import iter_source  # noqa: E402
from engine.store import DatasetStore  # noqa: E402
from engine.verify import verify  # noqa: E402
from schemas import TABLES, arrow_schema, encode_masks  # noqa: E402

# rows per clip each stage writes, per table (a demo run of the tiny profile, rounded)
SHAPE = {
    "ingest": {"clips": 1},
    "ground_truth": {"objects": 2, "captions": 1},
    "template_writer": {"mcqs": 6},
    "motion_captioner": {"captions": 1},
    "analyzer": {"phrases": 2},
    "segmentor": {"objects": 2},
    "annotator": {"captions": 2},
    "reviewer": {"reviews": 2},
    "refiner": {"captions": 2},
    "question_writer": {"mcqs": 2, "sft": 2, "preferences": 1},
    "mcq_filters": {"mcq_checks": 8},
}
REJECTIONS_PER_CLIP = 0.25


def _shape(stage) -> dict[str, float]:
    """Rows per clip of a stage; one row per clip in each table it writes if not listed above."""
    return SHAPE.get(stage.name, {table: 1 for table in stage.writes})
LONG_TEXT = {"text", "question", "detail", "caption", "chosen", "rejected", "prompt", "answer_text"}
ANSWERS_PER_CLIP = 5
DEFAULT_SHARD_SIZE = 64  # see report(): 4 clips per shard would be 275K commits at 100K clips


# ----- synthetic rows -----
def _value(kind: pa.DataType, name: str, row: int, clip_id: str, rng: random.Random, rle: dict):
    if name == "clip_id":
        return clip_id
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if name in LONG_TEXT:
            return f"{name} {row} " + "a moving object " * 10
        return f"{name[:6]}{rng.getrandbits(60):016x}"
    if pa.types.is_boolean(kind):
        return bool(row % 2)
    if pa.types.is_integer(kind):
        return row % 97
    if pa.types.is_floating(kind):
        return rng.random()
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        inner = kind.value_type
        if pa.types.is_struct(inner) and {f.name for f in inner} == {"size", "counts"}:
            return [rle] * 8
        if name == "options":
            return [f"option {i}" for i in range(4)]
        return [_value(inner, name, i, clip_id, rng, rle) for i in range(4 if pa.types.is_list(inner) else 8)]
    if pa.types.is_struct(kind):
        return {f.name: _value(f.type, f.name, row, clip_id, rng, rle) for f in kind}
    if pa.types.is_map(kind):
        return []
    return None


_TEMPLATES: dict[tuple[str, int], pa.Table] = {}


def synthetic_table(table: str, clip_ids: list[str], per_clip: float, rng: random.Random, rle: dict) -> pa.Table:
    """Rows of one (stage, shard): a cached template with this shard's clip ids and fresh row ids."""
    count = int(round(len(clip_ids) * per_clip))
    template = _TEMPLATES.get((table, count))
    if template is None:
        template = _TEMPLATES[(table, count)] = _generate(table, clip_ids, per_clip, rng, rle)
    key = TABLES[table].KEY
    field = template.schema.field(key)  # the schema's own field (nullability too), as the engine writes it
    out = template.set_column(template.schema.get_field_index(key), field,
                              pa.array([f"{rng.getrandbits(64):016x}" for _ in range(count)], field.type))
    if "clip_id" in out.schema.names and table != "clips":
        field = out.schema.field("clip_id")
        column = pa.array([clip_ids[i % len(clip_ids)] for i in range(count)], field.type)
        out = out.set_column(out.schema.get_field_index("clip_id"), field, column)
    return out


def _generate(table: str, clip_ids: list[str], per_clip: float, rng: random.Random, rle: dict) -> pa.Table:
    schema = arrow_schema(table)
    count = int(round(len(clip_ids) * per_clip))
    rows = []
    for row in range(count):
        clip_id = clip_ids[row % len(clip_ids)]
        record = {f.name: _value(f.type, f.name, row, clip_id, rng, rle) for f in schema}
        if table == "mcqs":
            record["answer"] = "ABCD"[row % 4]
        rows.append(record)
    return pa.Table.from_pylist(rows, schema=schema)


def _rle() -> dict:
    import numpy as np

    return encode_masks(np.eye(24, 32, dtype=bool)[None])[0].model_dump()


def write_dataset(root: Path, clips: int, shard_size: int = 4, seed: int = 0) -> tuple[Pipeline, str]:
    """Commit every (stage, shard) of virtual:clips with synthetic rows; returns the pipeline and source.

    Like the driver, it folds the loose commit records into the index every 1,000 commits."""
    source = f"virtual:{clips}"
    pipeline = Pipeline(build_stages(JobConfig(source=source)))
    store = DatasetStore(root, recover=True)
    shards, _ = make_shards(store, iter_source(source), shard_size)
    rng = random.Random(seed)
    rle = _rle()
    commits = 0
    for shard in shards:
        clip_ids = [f"{rng.getrandbits(64):016x}" for _ in shard.items]
        chain = pipeline.fingerprints(shard)
        for index, stage in enumerate(pipeline.stages):
            tables = {t: synthetic_table(t, clip_ids, n, rng, rle) for t, n in _shape(stage).items()}
            tables["rejections"] = synthetic_table("rejections", clip_ids, REJECTIONS_PER_CLIP, rng, rle)
            record = {"fingerprint": chain[index], "clip_ids": clip_ids, "retryable": 0, "rejected": 0,
                      "counters": {}, "seconds": 0.0, "committed_at": time.time()}
            if index == 0:
                record["source_keys"] = sorted(i.source_key for i in shard.items)
                record["signature"] = shard.signature
            store.commit(store.stage_arrow(stage.name, shard.shard_id, tables), record)
            commits += 1
            if commits % 1000 == 0:
                store.maybe_fold()
    store.maybe_fold()
    return pipeline, source


# ----- measurements -----
def _timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def files_and_bytes(root: Path) -> tuple[dict[str, int], float]:
    """Parquet files per table, and bytes on disk per committed row (rows counted from the records)."""
    store = DatasetStore(root)
    files = {t: len(store.table_files(t)) for t in TABLES}
    total_bytes = sum(f.stat().st_size for t in TABLES for f in store.table_files(t))
    rows = sum(sum(r.get("rows", {}).values()) for shards in store.state().values() for r in shards.values())
    return files, total_bytes / max(rows, 1)


def audit_seconds(root: Path) -> float:
    from engine.audit import run_audit

    return _timed(lambda: run_audit(root))[0]


def _median_of(runs: int, fn) -> float:
    """The median of `runs` timings: one timing of ~0.1 s (the smallest size) moves a growth
    exponent by more than the goal's margin."""
    return statistics.median(fn() for _ in range(runs))


def plan_seconds(root: Path, pipeline: Pipeline, clips: int, shard_size: int, runs: int = 3) -> float:
    grown = f"virtual:{clips + max(1, clips // 100)}"
    options = BuildOptions(shard_size=shard_size, dry_run=True)
    return _median_of(runs, lambda: _timed(lambda: plan_build(pipeline, DatasetStore(root), grown, options))[0])


def resume_seconds(root: Path, pipeline: Pipeline, source: str, shard_size: int, runs: int = 3) -> float:
    return _median_of(runs, lambda: _resume_once(root, pipeline, source, shard_size))


def _resume_once(root: Path, pipeline: Pipeline, source: str, shard_size: int) -> float:
    def start():
        lock = WriterLock(root, "bench").acquire()
        try:
            store = DatasetStore(root, recover=True)
            verify(store)
            return plan_build(pipeline, store, source, BuildOptions(shard_size=shard_size))
        finally:
            lock.release()

    seconds, plan = _timed(start)
    assert not plan.work, "a finished dataset must plan no work"
    return seconds


def cache_seconds(root: Path, clips: int, lookups: int = 2000) -> tuple[float, float]:
    """Mean seconds per lookup in the SQLite cache and in one-JSON-file-per-answer (the old layout)."""
    from agents.backends.cache import ResponseCache

    cache = ResponseCache(root / "_cache" / "chat")
    keys = [f"{i:064x}" for i in range(clips * ANSWERS_PER_CLIP)]
    cache.put_many({k: {"text": "{\"answer\": \"A\"}", "prompt_tokens": 10, "completion_tokens": 2} for k in keys})
    sample = random.Random(1).sample(keys, min(lookups, len(keys)))
    sqlite_s = _timed(lambda: [cache.get(k) for k in sample])[0] / len(sample)
    folder = root / "_json_cache"
    for key in sample:  # only the looked-up answers: writing every file is what does not scale
        (folder / key[:2]).mkdir(parents=True, exist_ok=True)
        (folder / key[:2] / f"{key}.json").write_text("{\"text\": \"A\"}")
    json_s = _timed(lambda: [(folder / k[:2] / f"{k}.json").read_text() for k in sample])[0] / len(sample)
    return sqlite_s, json_s


def measure(clips: int, workdir: Path, shard_size: int) -> dict[str, float]:
    root = workdir / f"ds-{clips}"
    write_s, (pipeline, source) = _timed(lambda: write_dataset(root, clips, shard_size))
    files_before, _ = files_and_bytes(root)
    compact_s, _ = _timed(lambda: compact(DatasetStore(root, recover=True), retention_s=0))
    files_after, bytes_per_row = files_and_bytes(root)
    sqlite_s, json_s = cache_seconds(root, clips)
    return {
        "clips": clips,
        "write_s": write_s,
        "commits": math.ceil(clips / shard_size) * len(pipeline.stages),
        "files_before": max(files_before.values()),
        "files_after": max(files_after.values()),
        "files_after_by_table": files_after,
        "bytes_per_row": bytes_per_row,
        "compact_s": compact_s,
        "audit_s": audit_seconds(root),
        "plan_s": plan_seconds(root, pipeline, clips, shard_size),
        "resume_s": resume_seconds(root, pipeline, source, shard_size),
        "cache_lookup_s": sqlite_s,
        "json_cache_lookup_s": json_s,
    }


def measure_delta(clips: int, workdir: Path) -> dict[str, float]:
    """The same shards as Delta Lake tables: per-commit cost, compaction, a DuckDB count, file count."""
    import duckdb
    from deltalake import DeltaTable, write_deltalake

    source = f"virtual:{clips}"
    pipeline = Pipeline(build_stages(JobConfig(source=source)))
    root = workdir / f"delta-{clips}"
    ours = DatasetStore(workdir / f"ours-{clips}", recover=True)
    shards, _ = make_shards(ours, iter_source(source), 4)
    rng = random.Random(0)
    rle = _rle()
    delta_s = ours_s = 0.0
    commits = 0
    for shard in shards:
        clip_ids = [f"{rng.getrandbits(64):016x}" for _ in shard.items]
        for stage in pipeline.stages:
            tables = {t: synthetic_table(t, clip_ids, n, rng, rle) for t, n in _shape(stage).items()}
            started = time.perf_counter()
            for table, arrow in tables.items():  # one Delta commit per table: no commit spans tables
                tagged = arrow.append_column("_stage", pa.array([stage.name] * arrow.num_rows, pa.string()))
                tagged = tagged.append_column("_shard", pa.array([shard.shard_id] * arrow.num_rows, pa.string()))
                write_deltalake(str(root / table), tagged, mode="append")
            delta_s += time.perf_counter() - started
            started = time.perf_counter()
            ours.commit(ours.stage_arrow(stage.name, shard.shard_id, tables), {"committed_at": time.time()})
            ours_s += time.perf_counter() - started
            commits += 1
    import pyarrow.compute as pc

    captions = DeltaTable(str(root / "captions")).to_pyarrow_table()
    same = pc.and_(pc.equal(captions["_stage"], "annotator"), pc.equal(captions["_shard"], shards[0].shard_id))
    replace_s, _ = _timed(lambda: write_deltalake(  # a refresh of one (stage, shard): a predicate overwrite
        str(root / "captions"), captions.filter(same), mode="overwrite",
        predicate=f"_stage = 'annotator' AND _shard = '{shards[0].shard_id}'"))
    optimize_s = 0.0
    files = {}
    for table_dir in sorted(root.iterdir()):
        seconds, _ = _timed(lambda d=table_dir: DeltaTable(str(d)).optimize.compact())
        optimize_s += seconds
        DeltaTable(str(table_dir)).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
        files[table_dir.name] = len(list(table_dir.glob("*.parquet")))
    con = duckdb.connect()
    con.register("delta_captions", DeltaTable(str(root / "captions")).to_pyarrow_dataset())
    count_s, _ = _timed(lambda: con.execute("SELECT count(*) FROM delta_captions").fetchall())
    compact(ours, retention_s=0)
    ours_con = ours.duckdb()
    ours_count_s, _ = _timed(lambda: ours_con.execute("SELECT count(*) FROM captions").fetchall())
    return {"clips": clips, "commits": commits, "delta_commit_ms": 1000 * delta_s / commits,
            "ours_commit_ms": 1000 * ours_s / commits, "delta_optimize_s": optimize_s,
            "delta_replace_shard_s": replace_s, "delta_files": max(files.values()),
            "delta_log_files": sum(len(list((d / "_delta_log").glob("*.json"))) for d in root.iterdir()),
            "delta_count_s": count_s, "ours_count_s": ours_count_s}


# ----- printing -----
FIGURES = ("files_after", "bytes_per_row", "audit_s", "plan_s", "resume_s", "cache_lookup_s", "write_s", "compact_s")
GOAL_CLIPS = 100_000
GOALS = {"audit_s": 20.0, "plan_s": 10.0, "resume_s": 5.0}  # seconds at 100K clips on 2 cores


def exponent(results: list[dict], key: str) -> float:
    """Least-squares slope of log(figure) over log(clips): 1.0 is linear growth."""
    xs = [math.log(r["clips"]) for r in results]
    ys = [math.log(max(r[key], 1e-9)) for r in results]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def at(results: list[dict], key: str, clips: int) -> tuple[float, bool]:
    """The figure at `clips`: measured when that size ran, else extrapolated from the largest (True)."""
    for r in results:
        if r["clips"] == clips:
            return r[key], False
    large = results[-1]
    k = exponent(results, key) if len(results) > 1 else 1.0
    return large[key] * (clips / large["clips"]) ** k, True


def goals(results: list[dict]) -> list[tuple[str, bool, str]]:
    """(goal, met, how it was judged) for each goal of the scale issue."""
    out = []
    for r in results:
        allowed = max(1, r["clips"] // 1000)
        worst = max(r["files_after_by_table"], key=r["files_after_by_table"].get)
        out.append((f"<= 1 file per 1,000 clips per table after compaction at {r['clips']} clips",
                    r["files_after"] <= allowed, f"{r['files_after']} files ({worst}), {allowed} allowed"))
    for key, limit in GOALS.items():
        value, guessed = at(results, key, GOAL_CLIPS)
        how = "extrapolated" if guessed else "measured"
        out.append((f"{key} <= {limit:g} s at {GOAL_CLIPS // 1000}K clips", value <= limit, f"{value:.2f} s {how}"))
    if len(results) > 1:
        for key in FIGURES:
            k = exponent(results, key)
            out.append((f"{key} grows at most linearly", k <= 1.0, f"exponent {k:.2f}"))
    return out


def report(results: list[dict], delta: dict | None, shard_size: int) -> None:
    print(f"shard size {shard_size} clips" + ("" if shard_size == 4 else
          " (the engine's default is 4; larger shards keep the number of commits, and so the time to "
          "write these datasets through the commit path, affordable at 100K clips, as a user building "
          "such a dataset would choose with --shard-size)"))
    print(f"{'clips':>8} {'commits':>8} {'files/table':>12} {'after':>6} {'B/row':>6} {'write s':>8} "
          f"{'compact s':>9} {'audit s':>8} {'plan s':>7} {'resume s':>8} {'cache ms':>8} {'json ms':>8}")
    for r in results:
        print(f"{r['clips']:>8} {r['commits']:>8.0f} {r['files_before']:>12} {r['files_after']:>6} "
              f"{r['bytes_per_row']:>6.0f} {r['write_s']:>8.1f} {r['compact_s']:>9.2f} {r['audit_s']:>8.2f} "
              f"{r['plan_s']:>7.2f} {r['resume_s']:>8.2f} {1000 * r['cache_lookup_s']:>8.3f} "
              f"{1000 * r['json_cache_lookup_s']:>8.3f}")
    if len(results) > 1:
        sizes = ", ".join(str(r["clips"]) for r in results)
        print(f"\ngrowth exponent over {sizes} clips (log-log fit), and 1M clips extrapolated from the largest:")
        for key in FIGURES:
            k = exponent(results, key)
            at_1m = results[-1][key] * (1_000_000 / results[-1]["clips"]) ** k
            print(f"  {key:<16} exponent {k:5.2f}   at 1M: {at_1m:10.3f}")
    print("\ngoals (2 cores):")
    for goal, met, how in goals(results):
        print(f"  {'met    ' if met else 'NOT met'}  {goal}: {how}")
    if delta:
        print(f"\nDelta Lake vs this store, {delta['clips']} clips ({delta['commits']} (stage, shard) commits):")
        print(f"  commit per (stage, shard): delta {delta['delta_commit_ms']:.1f} ms, ours {delta['ours_commit_ms']:.1f} ms "
              f"(ratio {delta['delta_commit_ms'] / delta['ours_commit_ms']:.2f})")
        print(f"  after compaction: delta {delta['delta_files']} files/table + {delta['delta_log_files']} log files; "
              f"optimize {delta['delta_optimize_s']:.2f} s; replace one shard {delta['delta_replace_shard_s']:.3f} s")
        print(f"  DuckDB count(captions): delta {delta['delta_count_s']:.3f} s, ours {delta['ours_count_s']:.3f} s")


def _warm_imports() -> None:
    """Import what the audit imports before timing anything: a process start-up cost, not a cost of
    the dataset's size (timed inside the first size, it bent every growth exponent down)."""
    import duckdb  # noqa: F401
    import pandas  # noqa: F401
    from pycocotools import mask  # noqa: F401

    import engine.audit  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", default="10000,30000,100000", help="comma-separated dataset sizes")
    parser.add_argument("--shard-size", type=int, default=None,
                        help=f"clips per shard (default {DEFAULT_SHARD_SIZE}; 4 with --smoke, as the engine)")
    parser.add_argument("--delta-clips", type=int, default=0, help="also compare Delta Lake on this many clips")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: 16 and 48 clips, Delta on 16")
    parser.add_argument("--keep", help="write the datasets here and keep them (default: a temporary folder)")
    args = parser.parse_args(argv)
    sizes = [16, 48] if args.smoke else [int(c) for c in args.clips.split(",")]
    shard_size = args.shard_size or (4 if args.smoke else DEFAULT_SHARD_SIZE)
    delta_clips = 16 if args.smoke and not args.delta_clips else args.delta_clips
    if delta_clips and importlib.util.find_spec("deltalake") is None:
        print("deltalake is not installed (pip install deltalake): the Delta Lake comparison is skipped")
        delta_clips = 0
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="vde-scale-"))
    _warm_imports()
    started = time.perf_counter()
    try:
        results = []
        for clips in sizes:
            results.append(measure(clips, workdir, shard_size))
            print(f"[{time.perf_counter() - started:7.1f} s] {clips} clips measured", file=sys.stderr, flush=True)
        delta = measure_delta(delta_clips, workdir) if delta_clips else None
        report(results, delta, shard_size)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nwhole benchmark: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
