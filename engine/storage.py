"""Where a dataset's store files live: a local (or shared POSIX) folder, or an fsspec filesystem.

`open_storage("out/demo")` and `open_storage("file:///data/demo")` give `LocalStorage`: atomic
renames, fsync, exactly what the store always did. `open_storage("s3://bucket/prefix")` (or any other
protocol fsspec knows, `memory://` included) gives `FsspecStorage`. An object store has no atomic
rename, so the store commits differently there (engine/store.py): data files under unique names
first, then one PUT of the commit record (or of the index), which is atomic on its own.

Every path the store hands to a Storage is relative to the dataset root, with `/` separators.
Things that need a local file (the SQLite response cache, video decoding) use `local_root`: for a
remote dataset a per-dataset work folder under `$VDE_CACHE/remote/`, for a local one the root itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from engine.errors import UserError

# protocol -> (the package that implements it, the extra of pyproject.toml that installs it, if any)
EXTRAS = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", None), "gcs": ("gcsfs", None),
          "az": ("adlfs", None), "abfs": ("adlfs", None), "abfss": ("adlfs", None)}


def is_remote(address: str | Path) -> bool:
    text = str(address)
    return "://" in text and not text.startswith("file://")


def open_storage(address: str | Path) -> LocalStorage | FsspecStorage:
    """The storage of a dataset root: a local path, `file://...`, or `<protocol>://...` through fsspec."""
    text = str(address)
    if text.startswith("file://"):
        return LocalStorage(Path(text[len("file://"):]))
    if not is_remote(text):
        return LocalStorage(Path(text))
    protocol, _, rest = text.partition("://")
    return FsspecStorage(_filesystem(protocol), protocol, rest.strip("/"), text.rstrip("/"))


def _filesystem(protocol: str):
    import fsspec

    options = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if protocol in ("s3", "s3a") and endpoint:  # an S3-compatible store (MinIO, Ceph, a local test server)
        options["endpoint_url"] = endpoint
    try:
        return fsspec.filesystem(protocol, **options)
    except ImportError:
        package, extra = EXTRAS.get(protocol, (f"the fsspec implementation of {protocol}://", None))
        hint = f"pip install 'videodata-engine[{extra}]'" if extra else f"install {package}"
        raise StoreError(f"a {protocol}:// dataset root needs {package}, which is not installed: {hint}") from None
    except ValueError:
        raise StoreError(f"{protocol}:// is not a filesystem fsspec knows; use a local path, "
                         "file://, s3:// or another fsspec protocol") from None


class StoreError(UserError):
    """A dataset root that cannot be used; the message is meant for the user."""


def local_root(address: str | Path) -> Path:
    """The local folder for what must be a local file: the root itself, or a remote root's work folder."""
    if not is_remote(address):
        return open_storage(address).root
    cache = Path(os.environ.get("VDE_CACHE", Path.home() / ".cache" / "videodata-engine"))
    text = str(address).rstrip("/")
    return cache / "remote" / hashlib.sha256(text.encode()).hexdigest()[:16]


class LocalStorage:
    """A POSIX folder: atomic renames and fsync."""

    remote = False

    def __init__(self, root: Path):
        self.root = Path(root)
        self.address = str(self.root)

    def url(self, rel: str) -> str:
        return str(self.root / rel)

    def filesystem(self):
        return None  # pyarrow and DuckDB read local paths themselves

    def exists(self, rel: str = "") -> bool:
        return (self.root / rel).exists()

    def is_dir(self, rel: str = "") -> bool:
        return (self.root / rel).is_dir()

    def is_file(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def makedirs(self, rel: str = "") -> None:
        (self.root / rel).mkdir(parents=True, exist_ok=True)

    def size(self, rel: str) -> int | None:
        try:
            return (self.root / rel).stat().st_size
        except FileNotFoundError:
            return None

    def open(self, rel: str, mode: str = "rb"):
        return open(self.root / rel, mode)

    def read_bytes(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def write_bytes(self, rel: str, data: bytes) -> None:
        write_durable(self.root / rel, data)

    def list(self, rel: str = "") -> list[str]:
        """Names in a folder (files and folders); [] when it does not exist."""
        folder = self.root / rel
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def list_files(self, rel: str, suffix: str = "") -> list[tuple[str, int, float]]:
        """(name, size, modified time) of the files directly in a folder."""
        folder = self.root / rel
        out = []
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.name.endswith(suffix) and path.is_file():
                stat = path.stat()
                out.append((path.name, stat.st_size, stat.st_mtime))
        return out

    def delete(self, rel: str) -> None:
        (self.root / rel).unlink(missing_ok=True)

    def rmtree(self, rel: str) -> None:
        shutil.rmtree(self.root / rel, ignore_errors=True)


class FsspecStorage:
    """A filesystem fsspec knows (s3://, gs://, memory://, ...): no rename is relied on; one write of
    one object is atomic (what a reader sees is the old object or the new one, never a part)."""

    remote = True

    def __init__(self, fs: Any, protocol: str, base: str, address: str):
        self.fs, self.protocol, self.base, self.address = fs, protocol, base, address
        self.root = local_root(address)  # the local work folder (cache, decoded media)

    def _path(self, rel: str) -> str:
        return f"{self.base}/{rel}".rstrip("/") if rel else self.base

    def url(self, rel: str) -> str:
        return f"{self.protocol}://{self._path(rel)}"

    def filesystem(self):
        return self.fs

    def exists(self, rel: str = "") -> bool:
        return self.fs.exists(self._path(rel))

    def is_dir(self, rel: str = "") -> bool:
        return self.fs.isdir(self._path(rel))

    def is_file(self, rel: str) -> bool:
        return self.fs.isfile(self._path(rel))

    def makedirs(self, rel: str = "") -> None:
        self.fs.makedirs(self._path(rel), exist_ok=True)  # object stores have no folders: a no-op

    def size(self, rel: str) -> int | None:
        try:
            return int(self.fs.info(self._path(rel))["size"])
        except FileNotFoundError:
            return None

    def open(self, rel: str, mode: str = "rb"):
        return self.fs.open(self._path(rel), mode)

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self._path(rel))

    def write_bytes(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(rel), data)  # one PUT: atomic

    def put_if_absent(self, rel: str, data: bytes) -> bool:
        """Create the object unless it exists (S3 `If-None-Match: *`); False when it existed."""
        try:
            with self.fs.open(self._path(rel), "xb") as handle:
                handle.write(data)
        except FileExistsError:
            return False
        return True

    def list(self, rel: str = "") -> list[str]:
        try:
            entries = self.fs.ls(self._path(rel), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def list_files(self, rel: str, suffix: str = "") -> list[tuple[str, int, float]]:
        try:
            entries = self.fs.ls(self._path(rel), detail=True, refresh=True)
        except FileNotFoundError:
            return []
        out = []
        for entry in entries:
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if entry.get("type") == "file" and name.endswith(suffix):
                out.append((name, int(entry.get("size") or 0), _modified(entry)))
        return sorted(out)

    def delete(self, rel: str) -> None:
        try:
            self.fs.rm_file(self._path(rel))
        except FileNotFoundError:
            pass

    def rmtree(self, rel: str) -> None:
        try:
            self.fs.rm(self._path(rel), recursive=True)
        except FileNotFoundError:
            pass

    def download(self, rel: str, local: Path) -> bool:
        """Copy one object to a local file (atomically); False when it does not exist."""
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            self.fs.get_file(self._path(rel), str(tmp))
        except FileNotFoundError:
            return False
        os.replace(tmp, local)
        return True

    def upload(self, local: Path, rel: str) -> None:
        self.fs.put_file(str(local), self._path(rel))


def _modified(entry: dict[str, Any]) -> float:
    value = entry.get("LastModified") or entry.get("mtime") or entry.get("created") or 0
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def write_durable(path: Path, data: bytes) -> None:
    """Durably and atomically: a temporary file, fsync, rename, fsync of the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no .tmp behind
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
