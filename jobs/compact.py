"""`python -m engine.run compact`: merge a dataset's small shard files into parts of a target size."""

from __future__ import annotations

import argparse

HELP = "Compact a dataset: merge small shard files into a few large Parquet parts (atomic, resumable)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="the dataset root")
    parser.add_argument("--target-mb", type=float, default=128, help="size of a part file (default 128 MB)")
    parser.add_argument("--retention-s", type=float, default=600,
                        help="keep replaced files this long for readers still using them (default 600 s)")
    parser.add_argument("--wait", action="store_true", help="if another writer holds the dataset, wait for it")


def main(args: argparse.Namespace) -> int:
    from engine.compact import compact
    from engine.lock import WriterLock
    from engine.store import DatasetStore

    DatasetStore(args.dataset, create=False)
    with WriterLock(args.dataset, "compact").acquire(args.wait):
        store = DatasetStore(args.dataset, create=False, recover=True)
        summary = compact(store, int(args.target_mb * (1 << 20)), args.retention_s)
    files = ", ".join(f"{t} {n}" for t, n in summary.files_per_table.items() if n)
    print(f"compacted {summary.shards_moved} shard pieces into {summary.parts_written} part(s); "
          f"{summary.files_replaced} file(s) replaced. files per table: {files or 'none'}")
    return 0
