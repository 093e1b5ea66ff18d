"""`python -m engine.run dedup`: near duplicates across the whole dataset, optionally removed for good."""

from __future__ import annotations

import argparse
import json

HELP = "Find near-duplicate clips across the whole dataset; --apply drops them for good (best copy kept)."

DEFAULT_MAX_DISTANCE = 8.0  # the same default as ingest's in-shard dedup


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="the dataset root")
    parser.add_argument("--max-distance", type=float, default=DEFAULT_MAX_DISTANCE, metavar="BITS",
                        help=f"mean pHash Hamming bits that still count as a copy (default {DEFAULT_MAX_DISTANCE:g})")
    parser.add_argument("--apply", action="store_true",
                        help="exclude the copies: prune their rows from every table, now and in later runs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--wait", action="store_true", help="with --apply: if another writer holds the dataset, wait")


def main(args: argparse.Namespace) -> int:
    from engine import dedup
    from engine.errors import UserError
    from engine.store import DatasetStore

    if not 0 <= args.max_distance <= 64:
        raise UserError(f"--max-distance must be between 0 and 64 bits, got {args.max_distance:g}")
    if args.apply:  # a writer: one at a time, and only a lock holder may run crash recovery
        from engine.lock import WriterLock

        DatasetStore(args.dataset, create=False)
        with WriterLock(args.dataset, "dedup --apply").acquire(args.wait):
            store = DatasetStore(args.dataset, create=False, recover=True)
            duplicates = dedup.find_duplicates(store, args.max_distance)
            pruned = dedup.apply(store, duplicates)
    else:
        store = DatasetStore(args.dataset, create=False)
        duplicates, pruned = dedup.find_duplicates(store, args.max_distance), None
    groups = [{"clip_id": d.clip_id, "kept_id": d.kept_id, "distance": d.distance} for d in duplicates]
    if args.json:
        print(json.dumps({"dataset": str(args.dataset), "duplicates": groups, "pruned": pruned}, indent=1))
        return 0
    print(f"{len(groups)} near duplicate(s) in {args.dataset}")
    for group in groups:
        print(f"  drop {group['clip_id']}  keep {group['kept_id']}  distance {group['distance']:g} bits")
    if pruned is not None:
        removed = ", ".join(f"{table} {n}" for table, n in sorted(pruned.items())) or "nothing"
        print(f"applied: rows removed per table: {removed}")
    return 0
