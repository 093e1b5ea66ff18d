"""Sources: what a run ingests, as a lazy stream of `SourceItem`s.

A source is one of
  virtual:N[:SEED]     N procedurally rendered scenes (the default; rendered by the ingest stage)
  DIR                  a folder of videos (searched recursively, sorted)
  FILE.jsonl|.parquet  a manifest: one row per video with `video_path` (local path, file://,
                       http(s):// or s3:// URL) and optional `caption`, `start`, `end`, `split` and
                       free metadata columns

Bad entries never stop the stream: a JSONL line that is not UTF-8 or not JSON, and a file name
that is not UTF-8, become items that ingest turns into rejection rows (`invalid_utf8`,
`invalid_manifest_row`) naming the line or the name, while every good entry still goes in.
A source with no entries at all is a user error (one sentence, non-zero exit).
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
REMOTE_SCHEMES = ("http://", "https://", "s3://")
REJECT = "_reject"  # metadata key of an item that is only a rejection: [reason, detail]


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
    if next(iter_source(spec), None) is None:
        what = "no video files (" + ", ".join(sorted(VIDEO_SUFFIXES)) + ")" if path.is_dir() else "no rows"
        raise UserError(f"source {spec} holds {what}: nothing to ingest")


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
            relative = path.relative_to(root).as_posix()
            if not _is_utf8(relative):
                shown = os.fsencode(relative).decode("utf-8", "backslashreplace")
                yield _rejected(f"file:{shown}", "folder", "invalid_utf8",
                                f"file name {shown} is not UTF-8; rename it to include the video")
                continue
            yield SourceItem(
                source_key=f"file:{relative}",
                video_path=str(path.resolve()),
                source="folder",
                signature=_file_signature(path),
            )


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.walk hands undecodable bytes over as lone surrogates
        return False
    return True


def _rejected(source_key: str, source: str, reason: str, detail: str) -> SourceItem:
    return SourceItem(source_key=source_key, video_path="", source=source, metadata={REJECT: [reason, detail]},
                      signature=f"{reason}:{detail}")


def _manifest_rows(manifest: Path, rows: Iterator[dict]) -> Iterator[SourceItem]:
    for line, row in enumerate(rows, start=1):
        if REJECT in row:
            yield _rejected(f"manifest:{row.get('_line', line)}:<invalid>", "manifest", *row[REJECT])
            continue
        raw = row.get("video_path")
        remote = bool(raw) and str(raw).startswith(REMOTE_SCHEMES)
        path = None if remote or not raw else _local_path(str(raw), manifest.parent)
        start, end = row.get("start"), row.get("end")
        span = f"@{start}-{end}" if start is not None or end is not None else ""
        extras = {k: v for k, v in row.items() if k not in MANIFEST_COLUMNS}
        if row.get("split") is not None:
            extras["split"] = row["split"]
        yield SourceItem(
            source_key=f"manifest:{line}:{raw}{span}" if raw else f"manifest:{line}:<missing>",
            video_path=str(raw) if remote else str(path) if path else "",
            source="manifest",
            caption=row.get("caption") or None,
            start=float(start) if start is not None else None,
            end=float(end) if end is not None else None,
            metadata=extras,
            signature=f"remote:{raw}" if remote else _file_signature(path) if path else "missing",
        )


def _local_path(raw: str, base: Path) -> Path:
    if raw.startswith("file://"):
        return Path(unquote(urlparse(raw).path))
    path = Path(raw).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _read_jsonl(path: Path) -> Iterator[dict]:
    """Rows of a JSONL manifest, read as bytes so that one line that is not UTF-8 costs that line."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                shown = raw[:80].decode("utf-8", "backslashreplace").strip()
                yield {REJECT: ["invalid_utf8", f"line {number} is not UTF-8 (byte {err.start}): {shown}"],
                       "_line": number}
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield {REJECT: ["invalid_manifest_row", f"line {number} is not JSON: {err.msg}"], "_line": number}
                continue
            if not isinstance(row, dict):
                yield {REJECT: ["invalid_manifest_row", f"line {number} is not a JSON object"], "_line": number}
                continue
            yield row


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
