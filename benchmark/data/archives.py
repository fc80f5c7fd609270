"""Safe extraction of .zip and .tar(.gz) archives: every member is checked before anything is written.

Absolute paths, ``..`` components, links that point outside the extraction folder, device files and FIFOs are refused
(the archive is named in the error), so nothing is ever written outside; a truncated or corrupt archive is an error
too, and the extraction folder is removed, so no partial tree is left.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from benchmark.data.errors import FetchError, UnsafeArchiveError

CHUNK = 1 << 20


def _member_path(name: str, archive: Path) -> PurePosixPath:
    """The member's relative path, or UnsafeArchiveError for an absolute path or a ``..`` component."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'; refusing to extract")
    return path


def _inside(link_dir: PurePosixPath, target: str) -> bool:
    """Whether a link at ``link_dir/x`` pointing to ``target`` stays inside the extraction root."""
    if target.startswith("/"):
        return False
    depth = 0
    for part in (*link_dir.parts, *PurePosixPath(target).parts):
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


def _check_tar(tf: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members = tf.getmembers()  # reads the whole index: a truncated archive fails here, before anything is written
    for m in members:
        path = _member_path(m.name, archive)
        if m.isdev() or m.isfifo() or not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device file or FIFO; refusing to extract")
        if m.issym() and not _inside(path.parent, m.linkname):
            raise UnsafeArchiveError(
                f"{archive}: symlink {m.name!r} -> {m.linkname!r} points outside the dataset; refusing to extract"
            )
        if m.islnk() and not _inside(PurePosixPath(), m.linkname):
            raise UnsafeArchiveError(
                f"{archive}: hard link {m.name!r} -> {m.linkname!r} points outside the dataset; refusing to extract"
            )
    return members


def _check_zip(zf: zipfile.ZipFile, archive: Path) -> list[zipfile.ZipInfo]:
    members = zf.infolist()
    for info in members:
        path = _member_path(info.filename, archive)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            target = zf.read(info).decode("utf-8", "replace")
            if not _inside(path.parent, target):
                raise UnsafeArchiveError(
                    f"{archive}: symlink {info.filename!r} -> {target!r} points outside the dataset; refusing"
                )
        elif mode and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a device file or FIFO; refusing")
    return members


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a .zip or .tar(.gz) ``archive`` into ``dest`` (created; must not exist) after checking every member.

    Raises:
        UnsafeArchiveError: a member is absolute, has ``..``, is a link leaving ``dest``, or is a device/FIFO.
        FetchError: the archive is truncated, corrupt or of an unknown format. ``dest`` is removed again.
    """
    dest.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                members = _check_zip(zf, archive)
                for info in members:
                    mode = info.external_attr >> 16
                    target = dest / _member_path(info.filename, archive)
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                    elif stat.S_ISLNK(mode):
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.symlink_to(zf.read(info).decode())
                    else:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with zf.open(info) as src, open(target, "wb") as out:
                            shutil.copyfileobj(src, out, CHUNK)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = _check_tar(tf, archive)
                # The stdlib "data" filter (PEP 706; Python >= 3.10.12 / 3.11.4) repeats the same checks at write
                # time: defence in depth on top of _check_tar.
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(dest, members=members, filter="data")
                else:  # pragma: no cover - older patch releases
                    tf.extractall(dest, members=members)  # members were checked by _check_tar
        else:
            raise FetchError(f"{archive}: neither a zip nor a tar archive (truncated or not an archive?)")
    except UnsafeArchiveError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as err:
        shutil.rmtree(dest, ignore_errors=True)
        raise FetchError(
            f"{archive}: truncated or corrupt archive ({type(err).__name__}: {err}); delete it and download again"
        ) from err
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
