"""build-motionvid-qa: the whole engine, from a source of videos to MCQs, SFT and preference data.

Stages in order: ingest -> ground_truth (virtual scenes) -> template_writer -> analyzer ->
segmentor -> annotator -> reviewer -> refiner -> question_writer -> mcq_filters.
"""

from __future__ import annotations

import argparse

HELP = "Build (or refresh) a MotionVid-QA style dataset from a source of videos."
WRITES_DATASET = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset root folder (created if missing)")
    parser.add_argument("--source", help="virtual:N[:SEED] (default virtual:6), a folder of videos, or a "
                        ".jsonl/.parquet manifest with video_path and optional caption per row")
    parser.add_argument("--config", help="job config YAML (fields of engine.config.JobConfig)")
    parser.add_argument("--profile", help="model profile: tiny (default), videorefer, current, or a folder")
    parser.add_argument("--placement", help="resources per stage: local (default), gpu-cluster, or a YAML file")
    parser.add_argument("--stages", help="comma-separated stages to run (default: all, in pipeline order)")
    parser.add_argument("--shard-size", type=int, help="clips per shard, the unit of commit (default 4)")
    parser.add_argument("--max-shards-in-flight", type=int, help="shards moving through the stages at once (default: the placement's actors x max_in_flight, summed over the stages)")
    parser.add_argument("--executor", choices=["ray", "local"], help="ray (default) or local (one process)")
    parser.add_argument("--ray-address", help="Ray cluster to use (default: RAY_ADDRESS, else start a local one)")
    parser.add_argument("--set", action="append", default=[], metavar="STAGE.FIELD=VALUE",
                        help="override one stage config field, e.g. --set segmentor.box_threshold=0.2")
    parser.add_argument("--allow-download", action="store_true",
                        help="fetch missing Hugging Face checkpoints (at the profile's revision) before the run")
    parser.add_argument("--check", action="store_true",
                        help="list every model of the run, where it would load from, and how to fetch the missing ones")
    parser.add_argument("--dry-run", action="store_true", help="print per stage how many clips would run and why")
    parser.add_argument("--prune", action="store_true", help="remove rows of clips that left the source")
    parser.add_argument("--recompute", action="store_true",
                        help="drop this dataset's tables and rebuild from scratch (needed after a source change)")
    parser.add_argument("--no-retry-failed", action="store_true", help="do not retry retryable rejections")
    parser.add_argument("--wait", action="store_true", help="if another writer holds the dataset, wait for it")
    parser.add_argument("--verify", action="store_true",
                        help="checksum every committed file first (sizes are always checked); damaged ones are recomputed")


def main(args: argparse.Namespace) -> int:
    from engine.build import build, print_summary
    from engine.config import load_job_config, parse_set_flags

    overrides = {
        "source": args.source,
        "profile": args.profile,
        "placement": args.placement,
        "stages": args.stages.split(",") if args.stages else None,
        "shard_size": args.shard_size,
        "max_shards_in_flight": args.max_shards_in_flight,
        "executor": args.executor,
        "ray_address": args.ray_address,
        "allow_download": args.allow_download or None,
    }
    cfg = load_job_config(args.config, overrides)
    for stage, fields in parse_set_flags(args.set).items():
        cfg.stage_config.setdefault(stage, {}).update(fields)
    if args.check:
        return check(cfg)
    summary = build(cfg, args.dataset, dry_run=args.dry_run, prune=args.prune,
                    recompute=args.recompute, retry_failed=not args.no_retry_failed, wait=args.wait,
                    verify_checksums=args.verify)
    if not args.dry_run:
        print_summary(args.dataset, summary)
    return 0


def check(cfg) -> int:
    """A dry start: the table of models, then the commands that fetch the missing ones. Exit 1 if any is missing."""
    from agents.backends.models import describe_api, describe_model, stage_models
    from engine.config import build_stages

    rows = []
    for stage in build_stages(cfg):
        for use in stage_models(stage):
            where = describe_api(use) if use.kind == "api" else describe_model(use)
            rows.append((use.stage, use.role, use.ref, use.revision, where))
    print(f"models of profile {cfg.profile}:")
    widths = [max([len(h)] + [len(str(r[i])) for r in rows]) for i, h in enumerate(("stage", "role", "model", "rev"))]
    print("  " + "  ".join(h.ljust(w) for h, w in zip(("stage", "role", "model", "rev"), widths, strict=True))
          + "  from")
    for *names, where in rows:
        mark = "" if where.present else "MISSING: "
        print("  " + "  ".join(str(n).ljust(w) for n, w in zip(names, widths, strict=True)) + f"  {mark}{where.source}")
    fetch = sorted({where.fetch for *_, where in rows if not where.present and where.fetch})
    if fetch:
        print("fetch the missing ones (or run with --allow-download):")
        for command in fetch:
            print(f"  {command}")
    return 1 if any(not where.present for *_, where in rows) else 0
