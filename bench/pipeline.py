"""The engine versus a plain single-process loop, on virtual scenes with instant fake models.

Both do the same work: probe and decode the same pre-rendered clips, run the same stage code
(ingest, ground truth, template questions, analyzer, annotator with its visual prompts, reviewer,
refiner, question writer) with `backend: fake` chat models at the model boundary, and write the
same Parquet tables. Then both again with a simulated API latency, to show the API stages keep
their concurrency full. Rendering the scenes happens once, before either is timed. The engine
runs twice per setting: starting its own local cluster (as `engine.run` does on a machine with no
cluster), and on a cluster already up (as `ray job submit` runs: the actors' start-up is paid,
the cluster's is not; its processes' CPU during the run is counted).

    python bench/pipeline.py --clips 500 [--repeats 3] [--latency 0.05] [--concurrency 16] [--shard-size 16] [--smoke]

The last line printed is one JSON object with `ratio_vs_sequential` (engine throughput over the
loop's, instant models) and `api_concurrency_efficiency` (achieved requests/s of the API-bound
stages (analyzer, reviewer, refiner) while busy, over concurrency / latency, with the simulated
latency; 1.0 means every request slot was always waiting on the API). In the build the API
stages mostly wait on the CPU-bound stages before them and get one shard at a time, so a shard's
reading and writing count as idle slots; `api_concurrency_efficiency_fed` is the same measure in
refreshes of the finished dataset (a changed reviewer, then a changed analyzer in a job that ends
with it), where a stage has all its shards at once: whether the engine keeps the slots busy when
there is work.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STAGES = ["ingest", "ground_truth", "template_writer", "analyzer", "annotator", "reviewer", "refiner",
          "question_writer"]
API_STAGES = ["analyzer", "annotator", "reviewer", "refiner", "question_writer"]


def render_one(args: tuple[str, int]) -> None:
    from agents.virtual.render import render_video
    from agents.virtual.scene import sample_scene

    folder, index = args
    path = Path(folder) / f"scene-0-{index:06d}.mp4"
    if not path.exists():
        render_video(sample_scene(0, index), path)


def render_media(folder: Path, clips: int) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(render_one, [(str(folder), i) for i in range(clips)], chunksize=8))
    return time.perf_counter() - started


def job_config(clips: int, latency: float, concurrency: int, shard_size: int, executor: str,
               changed: tuple[str, ...] = (), stages: list[str] = STAGES):
    """The bench's job; stages in `changed` get another answer budget, which changes their
    fingerprint: a build of that config on a finished dataset is a refresh from the first of them."""
    from engine.config import JobConfig

    chat = {"backend": "fake", "model": "bench", "fake_latency_s": latency, "concurrency": concurrency}
    # No response cache: the fake's answers repeat, and cached replays would hide the latency.
    overrides = {stage: {"chat": chat, "cache": False} for stage in API_STAGES if stage in stages}
    for stage in set(changed) & set(overrides):
        overrides[stage]["max_tokens"] = 300
    # Shards in flight come from the placement (actors x max_in_flight per pool), as in a real run.
    return JobConfig(source=f"virtual:{clips}", stages=stages, shard_size=shard_size, executor=executor,
                     stage_config=overrides)


def cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (all processes: driver, Ray, actors)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class TreeCpu:
    """CPU seconds of this process and every process it started (the local Ray cluster: GCS,
    raylet, actors), so other jobs on a shared machine don't count. The process tree is sampled
    every `interval` seconds while a run is timed: an actor's time is known even after it is
    killed (its parent's "children" times do not reliably hold it)."""

    def __init__(self, interval: float = 0.2):
        import threading

        self.interval, self.seen, self.stop = interval, {}, threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> TreeCpu:
        self.base = self._own()
        self._sample()
        self.before = dict(self.seen)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self._sample()
        self.seconds = self._own() - self.base + sum(v - self.before.get(k, 0.0) for k, v in self.seen.items())

    @staticmethod
    def _own() -> float:
        own = os.times()
        return own.user + own.system

    def _poll(self) -> None:
        while not self.stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        parent, times = {}, {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            pid = int(entry.name)
            parent[pid] = int(fields[1])
            times[(pid, fields[19])] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime; key: start time
        frontier = {os.getpid()}
        while frontier:
            frontier = {pid for pid, ppid in parent.items() if ppid in frontier}
            for key, value in times.items():
                if key[0] in frontier:
                    self.seen[key] = max(value, self.seen.get(key, 0.0))


def timed(run, *args):
    """(wall seconds, CPU seconds of this process tree, busy CPU seconds of the machine, result)."""
    machine, wall = cpu_seconds(), time.perf_counter()
    with TreeCpu() as cpu:
        result = run(*args)
    return time.perf_counter() - wall, cpu.seconds, cpu_seconds() - machine, result


def ray_startup() -> float:
    """Seconds to start a local cluster and get one trivial actor answering (paid once per run)."""
    import ray

    started = time.perf_counter()
    ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level="ERROR")

    @ray.remote
    class Ping:
        def ping(self):
            return 1

    ray.get(Ping.remote().ping.remote())
    elapsed = time.perf_counter() - started
    ray.shutdown()
    return elapsed


def start_cluster(cfg) -> None:
    """The local cluster a build would start, started before the timing: a run on a cluster that
    is already up (as `ray job submit` runs) pays its actors' start-up but not the cluster's."""
    from engine.build import start_ray
    from engine.config import build_stages, resolve_run

    run = resolve_run(cfg)
    start_ray(cfg, build_stages(run), run.groups)


def fresh_dataset(work: Path, name: str, media: Path) -> Path:
    root = work / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "media").mkdir(parents=True)
    os.symlink(media, root / "media" / "virtual")
    return root


def run_engine(cfg, root: Path) -> tuple[float, dict]:
    from engine.build import build

    started = time.perf_counter()
    summary = build(cfg, str(root))
    return time.perf_counter() - started, summary


def run_sequential(cfg, root: Path) -> float:
    """The plain loop: one process, shard after shard, stage after stage, Parquet per stage."""
    import pyarrow.parquet as pq

    from agents.base import Batch
    from engine.config import build_stages
    from engine.pipeline import make_shards
    from engine.sources import iter_source
    from engine.store import DatasetStore
    from schemas import to_arrow, validate_rows

    started = time.perf_counter()
    stages = build_stages(cfg)
    shards, _ = make_shards(DatasetStore(root), iter_source(cfg.source), cfg.shard_size)
    for number, shard in enumerate(shards):
        tables: dict[str, list] = {}
        for stage in stages:
            batch = Batch(root=root, items=shard.items if stage.name == "ingest" else [],
                          tables={t: list(tables.get(t, [])) for t in stage.inputs()})
            out = stage(batch)
            for table in (*stage.writes, "rejections"):
                rows = out.rejections if table == "rejections" else out.rows.get(table, [])
                valid, _ = validate_rows(table, rows, stage.name)
                tables.setdefault(table, []).extend(valid)
                folder = root / "loop" / table
                folder.mkdir(parents=True, exist_ok=True)
                pq.write_table(to_arrow(table, valid), folder / f"{stage.name}-{number}.parquet")
    return time.perf_counter() - started


def busy_seconds(records: list[dict]) -> float:
    """Wall time during which a stage had at least one shard in work (overlaps counted once):
    each task from when its worker began it, for its own seconds (the wait for the driver to
    commit it is not work)."""
    spans = sorted((r["started_at"], r["started_at"] + r["seconds"]) if "started_at" in r
                   else (r["committed_at"] - r["seconds"], r["committed_at"]) for r in records)
    total, current_start, current_end = 0.0, None, None
    for start, end in spans:
        if current_end is None or start > current_end:
            total += (current_end - current_start) if current_end is not None else 0.0
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    return total + ((current_end - current_start) if current_end is not None else 0.0)


def api_efficiency(root: Path, latency: float, concurrency: int) -> dict:
    """Per API stage: achieved requests/s while the stage was busy, over concurrency / latency.
    The annotator is reported too, but its time goes mostly to decoding and drawing prompts."""
    from engine.store import DatasetStore

    store = DatasetStore(root)
    requests = {stage: sum(r["counters"].get("chat_calls", 0) for r in store.commits(stage).values())
                for stage in ("analyzer", "reviewer", "refiner", "annotator")}
    out = {}
    for stage, n in requests.items():
        seconds = busy_seconds(list(store.commits(stage).values()))
        achieved = n / seconds if seconds else 0.0
        out[stage] = {"requests": n, "busy_s": round(seconds, 2), "requests_per_s": round(achieved, 1),
                      "efficiency": round(achieved / (concurrency / latency), 3)}
    return out


# (stages whose config a refresh changes, the job's stages, the API stages it measures): a changed
# reviewer re-runs the reviewer, refiner and question writer; then a job that ends at the analyzer,
# with the analyzer changed, re-runs the analyzer alone (in the whole job the annotator, which
# follows it, would run again too and hold the shards in flight).
REFRESHES = ((("reviewer",), STAGES, ("reviewer", "refiner")),
             (("analyzer", "reviewer"), STAGES[: STAGES.index("analyzer") + 1], ("analyzer",)))


def fed_efficiency(args, latency: float, root: Path) -> dict:
    """API stages with their inputs ready: refreshes of a finished dataset (as after a prompt
    change), where a stage has all its shards at once instead of waiting on the stages before
    it. This is whether the engine keeps the request slots busy when there is work."""
    fed = {}
    for changed, stages, measured_stages in REFRESHES:
        cfg = job_config(args.clips, latency, args.concurrency, args.shard_size, "ray", changed, stages)
        run_engine(cfg, root)
        measured = api_efficiency(root, latency, args.concurrency)
        fed.update({stage: measured[stage] for stage in measured_stages})
    return fed


def measure(args, label: str, latency: float, work: Path, media: Path, startup: float) -> dict:
    """One round: the plain loop, the engine starting its own cluster, the engine on a cluster
    already up, one after another."""
    import ray

    seq, seq_cpu, seq_machine, _ = timed(run_sequential, job_config(args.clips, latency, args.concurrency,
                                                                    args.shard_size, "local"),
                                         fresh_dataset(work, f"loop-{label}", media))
    root = fresh_dataset(work, f"engine-{label}", media)
    engine_cfg = job_config(args.clips, latency, args.concurrency, args.shard_size, "ray")
    engine_s, engine_cpu, engine_machine, (_, summary) = timed(run_engine, engine_cfg, root)
    ray.shutdown()
    start_cluster(engine_cfg)
    warm_root = fresh_dataset(work, f"warm-{label}", media)
    warm_s, warm_cpu, _, _ = timed(run_engine, engine_cfg, warm_root)
    fed = fed_efficiency(args, latency, warm_root) if label == "api" else None
    ray.shutdown()
    stage_s = {k: round(v["seconds"], 1) for k, v in summary["stages"].items()}
    without_startup = seq / max(engine_s - startup, 1e-9)
    result = {"sequential_s": round(seq, 2), "engine_s": round(engine_s, 2),
              "ratio": round(seq / engine_s, 3), "ratio_without_startup": round(without_startup, 3),
              "sequential_cpu_s": round(seq_cpu, 1), "engine_cpu_s": round(engine_cpu, 1),
              "cpu_ratio": round(engine_cpu / max(seq_cpu, 1e-9), 3),
              "running_cluster": {"engine_s": round(warm_s, 2), "ratio": round(seq / warm_s, 3),
                                  "engine_cpu_s": round(warm_cpu, 1),
                                  "cpu_ratio": round(warm_cpu / max(seq_cpu, 1e-9), 3)},
              "machine_busy_cpu_s": {"sequential": round(seq_machine, 1), "engine": round(engine_machine, 1)},
              "engine_worker_s_per_stage": stage_s}
    if label == "api":
        result["api_stages"] = api_efficiency(root, latency, args.concurrency)
        result["api_stages_fed"] = fed
        print(f"{'':>8}  API concurrency efficiency in the build: "
              f"{ {k: v['efficiency'] for k, v in result['api_stages'].items()} }; "
              f"with inputs ready (refreshes): { {k: v['efficiency'] for k, v in fed.items()} }", file=sys.stderr)
    print(f"{label:>8}: loop {seq:7.1f}s ({seq_cpu:.0f} cpu-s)  engine {engine_s:7.1f}s ({engine_cpu:.0f} cpu-s,"
          f" {engine_cpu / max(seq_cpu, 1e-9):.2f}x the loop's)  ratio {seq / engine_s:5.2f}"
          f" ({without_startup:.2f} without the {startup:.1f}s start-up)  worker seconds per stage {stage_s}",
          file=sys.stderr)
    print(f"{'':>8}  on a running cluster: engine {warm_s:7.1f}s ({warm_cpu:.0f} cpu-s,"
          f" {warm_cpu / max(seq_cpu, 1e-9):.2f}x the loop's)  ratio {seq / warm_s:5.2f}", file=sys.stderr)
    return result


def median_round(rounds: list[dict]) -> dict:
    """The round whose engine ratio is the median, with every ratio replaced by its median over
    the rounds (this machine's speed drifts between runs: one round's ratio is not a figure)."""
    from statistics import median

    chosen = dict(sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2])
    for key in ("ratio", "ratio_without_startup", "cpu_ratio"):
        chosen[key] = round(median(r[key] for r in rounds), 3)
    chosen["running_cluster"] = {**chosen["running_cluster"], **{
        key: round(median(r["running_cluster"][key] for r in rounds), 3) for key in ("ratio", "cpu_ratio")}}
    for key in ("api_stages", "api_stages_fed"):
        if key in chosen:
            chosen[key] = {stage: {**info, "efficiency": round(median(
                r[key][stage]["efficiency"] for r in rounds), 3)} for stage, info in chosen[key].items()}
    chosen["rounds"] = [{"ratio": r["ratio"], "cpu_ratio": r["cpu_ratio"], "sequential_s": r["sequential_s"],
                         "running_cluster_ratio": r["running_cluster"]["ratio"]} for r in rounds]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.05, help="simulated API seconds per request")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight per API actor")
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds of loop, engine and engine on a running cluster, one after another; "
                             "ratios are their medians")
    parser.add_argument("--smoke", action="store_true", help="6 clips in shards of 3: seconds, for the test suite")
    args = parser.parse_args()
    if args.smoke:
        args.clips, args.shard_size, args.latency, args.concurrency, args.repeats = 6, 3, 0.01, 4, 1
    os.environ.setdefault("VDE_CACHE", str(Path(tempfile.gettempdir()) / "vde-bench-cache"))
    work = args.work or Path(tempfile.mkdtemp(prefix="vde-bench-"))
    media = work / "media"
    rendered_s = render_media(media, args.clips)
    print(f"rendered {args.clips} scenes once in {rendered_s:.1f}s (not timed below)", file=sys.stderr)

    results = {}
    startup = ray_startup()
    print(f"ray local cluster + one actor: {startup:.1f}s", file=sys.stderr)
    for label, latency in (("instant", 0.0), ("api", args.latency)):
        rounds = [measure(args, label, latency, work, media, startup) for _ in range(args.repeats)]
        results[label] = median_round(rounds)
    efficiency = [v["efficiency"] for k, v in results["api"]["api_stages"].items() if k != "annotator"]
    fed = results["api"]["api_stages_fed"]
    final = {
        "clips": args.clips,
        "cores": os.cpu_count(),
        "ratio_vs_sequential": results["instant"]["ratio"],
        "ratio_vs_sequential_with_api_latency": results["api"]["ratio"],
        "ratio_without_startup": results["instant"]["ratio_without_startup"],
        "ratio_without_startup_with_api_latency": results["api"]["ratio_without_startup"],
        "cpu_ratio": results["instant"]["cpu_ratio"],
        "cpu_ratio_with_api_latency": results["api"]["cpu_ratio"],
        "running_cluster": {label: results[label]["running_cluster"] for label in results},
        "api_concurrency_efficiency": round(sum(efficiency) / len(efficiency), 3),
        "api_concurrency_efficiency_fed": {stage: info["efficiency"] for stage, info in fed.items()},
        "driver_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ray_startup_s": round(startup, 2),
        "details": results,
    }
    print(json.dumps(final))


if __name__ == "__main__":
    main()
