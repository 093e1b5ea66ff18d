"""Output folders that writers own: `--to` of export and report.

A writer must never write through a symlink that leads out of its folder: a link planted inside
`--to` (or `--to` itself being a link) would let an export overwrite any file the user can write.
`open_output_folder` checks the folder once; `output_path` checks each path before it is written.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import UserError


def open_output_folder(to: str | Path) -> Path:
    """Create `to` (and its parents) and return it; refuse a file or a symlink."""
    folder = Path(to)
    if folder.is_symlink():
        raise UserError(f"--to {folder} is a symlink; give a real folder to write into")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--to {folder} is a file; give a folder to write into")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def output_path(folder: str | Path, relative: str | Path) -> Path:
    """`folder / relative`, after checking that writing there stays inside `folder`: no part of the
    path below `folder` may be a symlink that resolves outside it (the target itself included)."""
    folder = Path(folder)
    root = folder.resolve()
    target = folder / relative
    current = folder
    for part in Path(relative).parts:
        current = current / part
        if current.is_symlink() and not _inside(current.resolve(), root):
            raise UserError(f"refusing to write {target}: {current} is a symlink leading out of {folder}")
    if not _inside(target.parent.resolve(), root):
        raise UserError(f"refusing to write {target}: it lies outside {folder}")
    return target


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def relative_to_folder(path: str | Path, folder: str | Path) -> str:
    """A POSIX path of `path` relative to `folder` (both may be relative to the working directory)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()
