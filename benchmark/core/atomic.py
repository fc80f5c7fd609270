"""Atomic writes: nothing the harness writes is ever left half-written, even by a run killed with SIGKILL.

Files go to a temporary name in the target's folder, are flushed and fsynced, then renamed over the target; the folder
is fsynced too, so the rename survives a power cut. Folders (a fetched dataset, a generated one) are built beside the
target and swapped in with :func:`replace_dir`, which puts the previous folder back if the swap fails.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> os.stat_result:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync it, then rename it to ``path``.

    If ``write`` raises (or the process is interrupted), the temporary file is removed and ``path`` keeps its
    previous content. Returns the written file's status, taken before the rename (which keeps inode, size and
    modification time): it identifies this very file even if another process replaces ``path`` right after.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file what a plain open() would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            written = os.fstat(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return written


def write_bytes(path: Path, data: bytes) -> os.stat_result:
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: Path, text: str) -> os.stat_result:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    """Indented JSON with sorted keys (stable diffs); NaN is allowed because a failed metric may be recorded as one."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


def save_torch(path: Path, obj: Any) -> None:
    """``torch.save`` made atomic."""
    atomic_write(path, lambda f: torch.save(obj, f))


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temporary files (``.<name>.*.tmp``) that writes killed mid-way left in ``folder``."""
    stale = sorted(folder.glob(".*.tmp")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def building_dir(target: Path) -> Path:
    """A fresh hidden folder beside ``target`` (``.<name>.building-*``) to build a replacement of it in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    os.chmod(path, 0o777 & ~_UMASK)  # mkdtemp creates 0700; the folder becomes the dataset, so give it mkdir's mode
    return path


def replace_dir(built: Path, target: Path) -> None:
    """Move the complete folder ``built`` to ``target``, replacing what is there, with rollback.

    A non-empty folder cannot be renamed over, so the old ``target`` is first moved aside (``.<name>.old-*``), then
    ``built`` is renamed into place and the old folder deleted. If the second rename fails, the old folder is put back,
    so ``target`` is always either the old folder or the new one, never missing or partial. ``built`` must be on the
    same file system (use :func:`building_dir`).
    """
    if not (target.exists() or target.is_symlink()):
        os.replace(built, target)
        _fsync_dir(target.parent)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    try:
        os.replace(target, aside / target.name)
    except BaseException:
        aside.rmdir()
        raise
    try:
        os.replace(built, target)
    except BaseException:
        os.replace(aside / target.name, target)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
    shutil.rmtree(aside, ignore_errors=True)


def remove_stale_builds(target: Path) -> list[Path]:
    """Delete the ``.<name>.building-*`` / ``.<name>.old-*`` folders that builds of ``target`` killed mid-way left.

    Only one build of a folder may run at a time (DVC runs a stage once at a time), so any such folder is stale.
    """
    stale = sorted(target.parent.glob(f".{target.name}.building-*")) + sorted(
        target.parent.glob(f".{target.name}.old-*")
    )
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale
