"""Resolving a model reference to a local folder, without downloading unless asked.

References:
  tiny:<name>          a tiny random-weight build of a real architecture, made on first use
                       (deterministic from its seed) under the cache folder, then loaded through
                       the same `from_pretrained` path as a real checkpoint;
  /path/to/folder      a local checkpoint folder;
  org/name             a Hugging Face model id, looked up in the local Hugging Face cache only
                       (set allow_download=True, or `--allow-download` on the CLI, to fetch).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

TinyBuilder = Callable[[Path, int], None]  # (output folder, seed) -> writes a save_pretrained folder
_TINY: dict[str, TinyBuilder] = {}


class ModelNotFound(Exception):
    """A model that is not on this machine; the message says how to fetch it."""


def register_tiny(name: str) -> Callable[[TinyBuilder], TinyBuilder]:
    def wrap(builder: TinyBuilder) -> TinyBuilder:
        _TINY[name] = builder
        return builder

    return wrap


def cache_root() -> Path:
    return Path(os.environ.get("VDE_CACHE", Path.home() / ".cache" / "videodata-engine"))


def resolve_model(ref: str, revision: str = "main", seed: int = 0, allow_download: bool = False) -> Path:
    if ref.startswith("tiny:"):
        return _build_tiny(ref.removeprefix("tiny:"), seed)
    local = Path(ref).expanduser()
    if local.is_dir():
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(ref, revision=revision, local_files_only=not allow_download))
    except Exception as err:  # the hub raises several types for "not cached"
        raise ModelNotFound(
            f"model {ref!r} (revision {revision}) is not on this machine; {download_hint(ref, revision)} "
            f"({type(err).__name__})"
        ) from None


def download_hint(ref: str, revision: str = "main") -> str:
    """The exact way to get a missing checkpoint here."""
    rev = "" if revision == "main" else f" --revision {revision}"
    return (f"run `hf download {ref}{rev}` (on a machine without network: run it on a connected one and "
            f"copy the Hugging Face cache here), pass --allow-download, or point the profile at a local folder")


def is_local(ref: str, revision: str = "main") -> bool:
    """Whether `resolve_model` finds the model without the network (a tiny build counts: it is
    made on first use). Cheap: no model is loaded."""
    if ref.startswith("tiny:") or Path(ref).expanduser().is_dir():
        return True
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(ref, revision=revision, local_files_only=True)
        return True
    except Exception:  # noqa: BLE001 - every "not cached" flavour
        return False


def _build_tiny(name: str, seed: int) -> Path:
    _load_tiny_builders()
    if name not in _TINY:
        raise ModelNotFound(f"no tiny model named {name!r}; known: {', '.join(sorted(_TINY)) or 'none'}")
    folder = cache_root() / "tiny" / f"{name}-seed{seed}"
    if (folder / ".complete").exists():
        return folder
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    _TINY[name](tmp, seed)
    (tmp / ".complete").touch()
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _load_tiny_builders() -> None:
    """Import the modules that register tiny builders (they import torch, so only on demand)."""
    import importlib

    for module in ("agents.backends.tiny_vision", "agents.backends.tiny_chat"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
