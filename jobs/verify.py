"""`python -m engine.run verify`: check every committed file against its size and SHA-256."""

from __future__ import annotations

import argparse

HELP = "Verify a dataset's committed files (size and SHA-256); --repair marks damaged shards for the next build."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="the dataset root")
    parser.add_argument("--repair", action="store_true",
                        help="mark the damaged (stage, shard)s so the next build recomputes them and their dependants")
    parser.add_argument("--wait", action="store_true", help="with --repair: if another writer holds the dataset, wait")


def main(args: argparse.Namespace) -> int:
    from engine.store import DatasetStore
    from engine.verify import repair, verify

    store = DatasetStore(args.dataset, create=False)
    problems = verify(store, checksums=True)
    for problem in problems:
        print(f"damaged: {problem.sentence()}")
    if not problems:
        print(f"{args.dataset}: every committed file matches its commit record")
        return 0
    if not args.repair:
        print("run again with --repair, then build again, to recompute them")
        return 1
    from engine.lock import WriterLock

    with WriterLock(args.dataset, "verify --repair").acquire(args.wait):
        store = DatasetStore(args.dataset, create=False, recover=True)
        marked = repair(store, verify(store, checksums=True))
    print(f"marked {marked} shard(s) for recomputation; the next build recomputes them and their dependants")
    return 0
