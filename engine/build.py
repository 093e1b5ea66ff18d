"""Building a dataset: config guard, plan, execution on Ray or in-process, summary."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from engine.compact import maintain
from engine.config import JobConfig, RunConfig, build_stages, resolve_run
from engine.dedup import STATE_FILE
from engine.driver import BuildOptions, StopRequest, execute, plan_build, write_run_summary
from engine.errors import NotReady, UserError
from engine.lock import DatasetLocked, WriterLock
from engine.pipeline import Pipeline, Plan
from engine.preflight import check_cluster, check_stages
from engine.progress import Progress
from engine.sources import check_source, describe
from engine.store import COMMITS, MANIFEST, STAGING, TRASH, DatasetStore
from engine.verify import damaged, repair, verify
from schemas import SCHEMA_VERSION, TABLES


def build(cfg: JobConfig, dataset: str, dry_run: bool = False, prune: bool = False,
          recompute: bool = False, retry_failed: bool = True, wait: bool = False,
          verify_checksums: bool = False) -> dict[str, Any]:
    check_source(cfg.source)
    if dry_run:  # a plan only reads: no lock, no recovery
        return _build(cfg, DatasetStore(dataset), True, prune, recompute, retry_failed, verify_checksums)
    DatasetStore(dataset)  # a dataset path that cannot be one fails here, in one sentence
    lock = WriterLock(dataset, cfg.job).acquire(wait)
    try:
        store = DatasetStore(dataset, recover=True)  # recovery is safe: no other writer holds the lock
        return _build(cfg, store, False, prune, recompute, retry_failed, verify_checksums)
    finally:
        lock.release()


def _build(cfg: JobConfig, store: DatasetStore, dry_run: bool, prune: bool, recompute: bool,
           retry_failed: bool, verify_checksums: bool) -> dict[str, Any]:
    # Per-model loading bars from every actor drown the run's own progress view.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if cfg.allow_download:
        os.environ.pop("HF_HUB_OFFLINE", None)
        os.environ["VDE_ALLOW_DOWNLOAD"] = "1"  # read by every model loader of the run, Ray workers included
    else:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run = resolve_run(cfg)  # profile, placement and overrides read once; a bad placement fails here
    stages = build_stages(run)
    if not dry_run:
        check_stages(stages, look_for_models=_models_here(cfg) and not cfg.allow_download)
        check_models(cfg, stages)
    pipeline = Pipeline(stages)
    run_config = resolved_config(run, pipeline)
    previous = store.read_run_config()
    if recompute:
        _clear(store)
    elif previous:
        guard(previous, run_config)
    options = BuildOptions(cfg.shard_size, cfg.max_shards_in_flight, prune, retry_failed, dry_run, StopRequest())
    problems = verify(store, checksums=verify_checksums)
    for problem in problems:
        print(f"{'would repair' if dry_run else 'repairing'}: {problem.sentence()}", file=sys.stderr)
    if problems and not dry_run:
        repair(store, problems)
    plan = plan_build(pipeline, store, cfg.source, options, damaged(problems) if dry_run else None)
    if dry_run:
        print_plan(plan, pipeline)
        return {"dry_run": True, "plan": plan.per_stage, "tasks": sorted(plan.tasks(pipeline.names))}
    store.write_run_config({**run_config, "last_run": previous.get("last_run") if previous else None})
    progress = Progress(pipeline.names)
    executor = _executor_factory(run, stages, store.address, options.stop)
    with stop_signals(options.stop):
        result = execute(pipeline, store, plan, executor, options, progress)
    compacted = maintain(store)
    if compacted:
        result["compacted_parts"] = compacted.parts_written
    models = {s.name: s.config.chat.model for s in stages if hasattr(s.config, "chat")}
    summary = {**result, **progress.summary(models), "tables": table_counts(store)}
    write_run_summary(store, run_config, summary)
    return summary


def check_models(cfg: JobConfig, stages: list) -> None:
    """Every API model answers once (an unknown or retired one stops the run here), and with
    --allow-download the missing checkpoints are fetched now, before any work. On a cluster the
    driver's disk is not the workers': there each actor fetches its own."""
    from agents.backends.models import ModelNotFound, preflight

    try:
        preflight(stages, fetch=cfg.allow_download and _models_here(cfg))
    except ModelNotFound as err:
        raise NotReady(str(err)) from None


def resolved_config(run: RunConfig | JobConfig, pipeline: Pipeline) -> dict[str, Any]:
    run = resolve_run(run)
    cfg, configs = run.job, run.stage_configs
    return {
        "schema_version": SCHEMA_VERSION,
        "job": cfg.job,
        "source": describe(cfg.source),
        "job_config": cfg.model_dump(mode="json"),
        "stages": {
            s.name: {"fingerprint": s.fingerprint(), "version": s.version, "config": s.config.model_dump(mode="json")}
            for s in pipeline.stages
        },
        "profile_files": {name: bool(conf) for name, conf in configs.items()},
    }


def guard(previous: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to mix rows that cannot live in one dataset; stage config changes are refreshes."""
    changes = []
    if previous.get("schema_version") != current["schema_version"]:
        changes.append(f"schema version {previous.get('schema_version')} -> {current['schema_version']}")
    if previous.get("source") != current["source"]:
        changes.append(f"source {_fmt_source(previous.get('source'))} -> {_fmt_source(current['source'])}")
    if previous.get("job") not in (None, current["job"]):
        changes.append(f"job {previous.get('job')} -> {current['job']}")
    if changes:
        raise UserError(
            f"this dataset was built with a different {'; '.join(changes)}; resuming would mix "
            "incompatible rows. Use another --dataset, or pass --recompute to rebuild this one from scratch"
        )


def _fmt_source(source: dict[str, Any] | None) -> str:
    if not source:
        return "?"
    return f"virtual seed {source.get('seed')}" if source.get("kind") == "virtual" else str(source.get("path"))


def _clear(store: DatasetStore) -> None:
    if store.remote:
        for folder in [*TABLES, COMMITS, TRASH, STATE_FILE.parent.as_posix()]:
            store.storage.rmtree(folder)
        store.reload()
        return
    for table in TABLES:
        shutil.rmtree(store.root / table, ignore_errors=True)
    shutil.rmtree(store.root / COMMITS, ignore_errors=True)  # the loose records and the index
    shutil.rmtree(store.root / TRASH, ignore_errors=True)
    shutil.rmtree(store.root / STATE_FILE.parent, ignore_errors=True)  # dedup exclusions: a rebuild starts clean
    store.reload()


def discard_partial_writes(dataset: str | Path) -> None:
    """Remove what a failed run leaves half-written: staging folders whose commit never started
    (no manifest; one with a manifest is finished by the next run) and temporary files of atomic
    writes (`.<name>.<random>.tmp`)."""
    root = Path(dataset)
    if not root.is_dir():
        return
    try:  # another writer holds the dataset: its staging folders are live, not leftovers
        lock = WriterLock(root, "cleanup").acquire()
    except (DatasetLocked, OSError):
        return
    try:
        _discard(root)
    finally:
        lock.release()


def _discard(root: Path) -> None:
    staging = root / STAGING
    if staging.is_dir():
        for txn in staging.iterdir():
            if txn.is_dir() and not (txn / MANIFEST).is_file():
                shutil.rmtree(txn, ignore_errors=True)
        with contextlib.suppress(OSError):
            staging.rmdir()  # only when empty
    for path in root.rglob(".*.tmp"):
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def stop_signals(stop: StopRequest):
    """SIGINT and SIGTERM ask the driver loop to stop (engine.driver); a cluster this run started is
    shut down on the way out, so the process ends with one line, not a native dump."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    _catch(stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if stop.signum is not None and _STARTED_RAY:
            import ray

            ray.shutdown()


def _catch(stop: StopRequest) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)


_STARTED_RAY: list[bool] = []  # set when this process started (or connected to) the cluster it uses


def _executor_factory(run: RunConfig, stages: list, root: str, stop: StopRequest):
    cfg = run.job
    if cfg.executor == "local":
        from engine.executors import LocalExecutor

        return lambda: LocalExecutor(stages, root)

    def make():
        import ray

        from engine.executors import RayExecutor

        groups = run.groups
        started = start_ray(cfg, stages, groups)
        if started:
            _STARTED_RAY.append(True)
            _catch(stop)  # ray.init installs its own SIGTERM handler (sys.exit mid-run)
        try:
            check_cluster(stages, groups, ray.cluster_resources())
        except NotReady:
            if started:
                ray.shutdown()
            raise
        return RayExecutor(stages, root, groups)

    return make


def _models_here(cfg: JobConfig) -> bool:
    """Model files are looked for on this machine only when the stages run on it."""
    return cfg.executor == "local" or not (cfg.ray_address or os.environ.get("RAY_ADDRESS"))


def start_ray(cfg: JobConfig, stages: list, groups: list[list[int]]) -> bool:
    """Connect to the cluster named by --ray-address / RAY_ADDRESS, else start a local one sized
    so every stage actor fits (actors hold their CPUs for life; more logical CPUs than cores is
    fine here, the stages take turns). True when this call connected or started it.

    A cluster started here listens on 127.0.0.1 only, dashboard included: nothing of it is
    reachable from the network (connect to a cluster of your own with --ray-address for more)."""
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS")
    if not address:
        _loopback_only()
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, logging_level="WARNING", log_to_driver=True)
        return True
    # The local cluster's processes inherit this process's environment (API keys, VDE_*, HF_*):
    # no runtime env is needed, and none is given. With one, every actor would start through
    # Ray's setup_worker (a second Python and Ray import, ~0.6 cpu-s per actor), and the prestarted
    # workers (lacking it) would serve no actor.
    repo = str(Path(__file__).resolve().parent.parent)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if repo not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, *paths]))
    needed = sum(max(stages[i].resources.num_cpus for i in g) * max(stages[i].resources.actors for i in g)
                 for g in groups)
    ray.init(
        address="local",
        num_cpus=max(os.cpu_count() or 1, math.ceil(needed)),
        _node_ip_address="127.0.0.1",
        dashboard_host="127.0.0.1",
        include_dashboard=False,
        logging_level="WARNING",
        _system_config=dict(LOCAL_RAY_SYSTEM_CONFIG),  # a copy: Ray adds this session's keys to it
    )
    return True


# Prestarted workers would sit idle (each stage actor starts its own process, sized by its
# resources); metrics and per-task events every second cost an idle actor CPU for no reader here
# (the dashboard is off).
LOCAL_RAY_SYSTEM_CONFIG = {
    "prestart_worker_first_driver": False,
    "enable_metrics_collection": False,
    "task_events_report_interval_ms": 10_000,
}


def _loopback_only() -> None:
    """Ray replaces a node address of 127.0.0.1 by the machine's own unless multi-node clusters
    are off for this process; off, every server of the local cluster binds loopback only."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:  # ray already imported: its constant was read at import
        constants.ENABLE_RAY_CLUSTER = False


def table_counts(store: DatasetStore) -> dict[str, int]:
    """Rows per table in its current version (what `SELECT count(*)` over the DuckDB views
    gives), from the Parquet footers: no DuckDB connection, no pandas in the driver. A remote
    root's files are URLs: DuckDB reads those through the store's filesystem."""
    import pyarrow.parquet as pq

    if store.remote:
        con = store.duckdb()
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}
        con.close()
        return counts
    counts = {}
    for table in TABLES:
        version = store.table_version(table)
        rows = sum(pq.ParquetFile(path).metadata.num_rows for path in version.files)
        counts[table] = rows + sum(n for ranges in version.partial.values() for _, n in ranges)
    return counts


def print_plan(plan: Plan, pipeline: Pipeline) -> None:
    print(f"plan: {len(plan.shards)} shards, {len(plan.work)} with work, {len(plan.removed)} to remove")
    for name in pipeline.names:
        reasons = plan.per_stage.get(name, {})
        run = {k: v for k, v in reasons.items() if k != "up_to_date"}
        detail = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in run.items()) or "nothing to do"
        print(f"  {name:<16} {sum(run.values()):>6} clips to run ({detail}); {reasons.get('up_to_date', 0)} up to date")


def print_summary(store_root: str, summary: dict[str, Any]) -> None:
    out = sys.stdout
    tables = summary.get("tables", {})
    print(f"\ndataset: {store_root}  ({summary.get('elapsed_s', 0):.1f}s, {summary.get('commits', 0)} commits)", file=out)
    for table, count in tables.items():
        print(f"  {table:<12} {count:>8} rows", file=out)
    store = DatasetStore(store_root, create=False)
    con = store.duckdb()
    reasons = con.execute(
        "SELECT stage, reason, count(*) n FROM rejections GROUP BY ALL ORDER BY n DESC LIMIT 10"
    ).fetchall()
    con.close()
    if reasons:
        print("rejections:", ", ".join(f"{stage}/{reason} x{n}" for stage, reason, n in reasons), file=out)
    if "clips" in tables and not tables["clips"]:
        print("ingest kept no clip (see the rejections above): the later stages had nothing to do; "
              "fix the source or the ingest filters (--set ingest.curation.filters.FIELD=...) and run again", file=out)
    tokens = summary.get("tokens") or {}
    if tokens.get("calls"):
        spent, replayed = tokens["spent"], tokens["replayed"]
        print(f"tokens: spent {spent['prompt']} prompt + {spent['completion']} completion "
              f"(${tokens['cost_usd']:.4f}); replayed from the response cache {replayed['prompt']} + "
              f"{replayed['completion']} ({tokens['replayed_calls']} of {tokens['calls']} answers, free)", file=out)
    print(
        f"next: python -m engine.run audit --dataset {store_root}   "
        f"(or SQL: python -m engine.run audit --dataset {store_root} --sql 'SELECT * FROM mcqs')",
        file=out,
    )
