"""Sources: what a run ingests, as a lazy stream of `SourceItem`s.

A source is one of
  virtual:N[:SEED]     N procedurally rendered scenes (the default; rendered by the ingest stage)
  DIR                  a folder of videos (searched recursively, sorted)
  FILE.jsonl|.parquet  a manifest: one row per video with `video_path` (local path or file:// URL)
                       and optional `caption`, `start`, `end`, `split` and free metadata columns
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from agents.base import SourceItem
from engine.errors import BadSource, UserError

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts"}
MANIFEST_COLUMNS = {"video_path", "caption", "start", "end", "split"}


def describe(spec: str) -> dict:
    """What identifies a source for the config guard (resolved paths, not raw text)."""
    if spec.startswith("virtual:"):
        _, seed = parse_virtual(spec)
        return {"kind": "virtual", "seed": seed}  # more scenes of the same seed is a refresh
    path = Path(spec).expanduser().resolve()
    kind = "manifest" if path.is_file() else "folder"
    return {"kind": kind, "path": str(path)}


def parse_virtual(spec: str) -> tuple[int, int]:
    parts = spec.split(":")
    try:
        count = int(parts[1])
        seed = int(parts[2]) if len(parts) > 2 else 0
    except (IndexError, ValueError):
        raise UserError(f"cannot read source {spec!r}: write virtual:N or virtual:N:SEED") from None
    if count < 1 or len(parts) > 3:
        raise UserError(f"cannot read source {spec!r}: N must be a positive number of scenes")
    return count, seed


def iter_source(spec: str) -> Iterator[SourceItem]:
    if spec.startswith("virtual:"):
        yield from _virtual(*parse_virtual(spec))
        return
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(f"source {spec} does not exist")
    if path.is_dir():
        yield from _folder(path)
    elif path.suffix in {".jsonl", ".json"}:
        yield from _manifest_rows(path, _read_jsonl(path))
    elif path.suffix == ".parquet":
        yield from _manifest_rows(path, _read_parquet(path))
    else:
        raise UserError(f"source {spec} is neither a folder, a .jsonl / .parquet manifest, nor virtual:N")


def check_source(spec: str) -> None:
    """Fail early, in one sentence, on a source that cannot be read at all."""
    if spec.startswith("virtual:"):
        parse_virtual(spec)
        return
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(f"source {spec} does not exist")
    if path.is_file() and path.suffix not in {".jsonl", ".json", ".parquet"}:
        raise UserError(f"source {spec} is neither a folder, a .jsonl / .parquet manifest, nor virtual:N")


def _virtual(count: int, seed: int) -> Iterator[SourceItem]:
    for index in range(count):
        yield SourceItem(
            source_key=f"virtual:{seed}:{index:06d}",
            video_path=f"media/virtual/scene-{seed}-{index:06d}.mp4",
            source="virtual",
            metadata={"seed": seed, "index": index},
            signature=f"virtual:{seed}:{index}",
        )


def _folder(root: Path) -> Iterator[SourceItem]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                continue
            yield SourceItem(
                source_key=f"file:{path.relative_to(root).as_posix()}",
                video_path=str(path.resolve()),
                source="folder",
                signature=_file_signature(path),
            )


def _manifest_rows(manifest: Path, rows: Iterator[dict]) -> Iterator[SourceItem]:
    for line, row in enumerate(rows, start=1):
        raw = row.get("video_path")
        path = _local_path(str(raw), manifest.parent) if raw else None
        start, end = row.get("start"), row.get("end")
        span = f"@{start}-{end}" if start is not None or end is not None else ""
        extras = {k: v for k, v in row.items() if k not in MANIFEST_COLUMNS}
        if row.get("split") is not None:
            extras["split"] = row["split"]
        yield SourceItem(
            source_key=f"manifest:{line}:{raw}{span}" if raw else f"manifest:{line}:<missing>",
            video_path=str(path) if path else "",
            source="manifest",
            caption=row.get("caption") or None,
            start=float(start) if start is not None else None,
            end=float(end) if end is not None else None,
            metadata=extras,
            signature=_file_signature(path) if path else "missing",
        )


def _local_path(raw: str, base: Path) -> Path:
    if raw.startswith("file://"):
        return Path(unquote(urlparse(raw).path))
    path = Path(raw).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _read_jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as handle:
        try:
            yield from _jsonl_rows(handle)
        except UnicodeDecodeError:
            raise BadSource(f"manifest {path} is not UTF-8 text; write it as JSON lines in UTF-8, "
                            "one object with video_path per line") from None


def _jsonl_rows(handle) -> Iterator[dict]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = {"video_path": None, "_error": f"line {number} is not JSON"}
        yield row if isinstance(row, dict) else {"video_path": None, "_error": f"line {number}"}


def _read_parquet(path: Path) -> Iterator[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
    except pa.ArrowException as err:
        raise BadSource(f"manifest {path} is not a readable Parquet file ({str(err).splitlines()[0][:120]}); "
                        "rewrite it, or give a .jsonl manifest or a folder of videos") from None


def _file_signature(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    return f"{stat.st_size}:{int(stat.st_mtime)}"
