"""Verified shards: every committed file against the size and SHA-256 in its commit record.

Sizes are cheap (one stat per file) and checked at every build start; checksums read every byte
and run on `verify`, `build --verify` and `audit --strict`. A damaged file is named in one
sentence; repairing marks each (stage, shard) with rows in it as damaged, so the next build
recomputes exactly those and, through the fingerprint chain, their dependants.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from engine.store import DatasetStore, file_sha256, split_location


@dataclass(frozen=True)
class Problem:
    path: str  # relative to the dataset root
    what: str  # missing | truncated ... | altered ...
    shards: tuple[tuple[str, str], ...]  # the (stage, shard)s with rows in the file

    def sentence(self) -> str:
        stages = sorted({stage for stage, _ in self.shards})
        return f"{self.path} is {self.what} ({len(self.shards)} shard(s) of {', '.join(stages)})"


def verify(store: DatasetStore, checksums: bool = False) -> list[Problem]:
    """Every committed file that is missing, of the wrong size, or (with checksums) altered."""
    expected: dict[str, tuple[int | None, str | None]] = {}
    owners: dict[str, list[tuple[str, str]]] = {}
    for stage, shards in store.state().items():
        for shard_id, record in shards.items():
            if record.get("removed"):
                continue
            for table, location in record.get("files", {}).items():
                if not location:
                    continue
                path, span = split_location(location)
                owners.setdefault(path, []).append((stage, shard_id))
                if span is None:
                    expected[path] = (record.get("sizes", {}).get(table), record.get("sha256", {}).get(table))
    for path, info in store.parts().items():
        expected[path] = (info.get("size"), info.get("sha256"))
    problems = []
    listed: dict[str, dict[str, int]] = {}
    for path, owned in sorted(owners.items()):
        size, digest = expected.get(path, (None, None))
        what = _check(store, path, size, digest if checksums else None, listed)
        if what:
            problems.append(Problem(path, what, tuple(sorted(set(owned)))))
    return problems


def _check(store: DatasetStore, path: str, size: int | None, digest: str | None,
           listed: dict[str, dict[str, int]]) -> str | None:
    actual = store.size_of(path, listed)
    if actual is None:
        return "missing"
    if size is not None and actual != size:
        return f"truncated ({actual} of {size} bytes)" if actual < size else f"of the wrong size ({actual}, not {size} bytes)"
    if digest is not None and _sha256(store, path) != digest:
        return "altered (its SHA-256 differs from the commit record)"
    return None


def _sha256(store: DatasetStore, path: str) -> str:
    if not store.remote:
        return file_sha256(store.root / path)
    digest = hashlib.sha256()
    with store.storage.open(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def repair(store: DatasetStore, problems: list[Problem]) -> int:
    """Mark every (stage, shard) with rows in a damaged file; returns how many."""
    marked = set()
    for problem in problems:
        for stage, shard_id in problem.shards:
            if (stage, shard_id) not in marked:
                store.mark_damaged(stage, shard_id, f"{problem.path} {problem.what}")
                marked.add((stage, shard_id))
    return len(marked)


def damaged(problems: list[Problem]) -> set[tuple[str, str]]:
    return {key for problem in problems for key in problem.shards}
