"""The dataset identity: a content hash recorded once, when ``fetch``/``synth`` builds the folder, then read back.

Hashing every byte of GoPro on every stage and every DDP rank costs gigabytes of reads per stage. Instead the builder
writes the folder's identity record (``benchmark.core.layout.IDENTITY_RECORD``): the SHA-256 of the image files
(:func:`content_hash`, the MLflow ``dataset_hash`` tag and part of the checkpoint fingerprint) and each image file's
size and modification time. :func:`read_identity` compares those with the folder as it is now (a stat per file, no
reads) and refuses a folder that no longer matches, naming the first file that differs. ``python -m benchmark.fetch
dataset=<name> rehash=true`` hashes the folder again and records what it holds now (after changing files on purpose).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from benchmark.core import atomic
from benchmark.core.hashing import sha256_file
from benchmark.core.layout import IDENTITY_RECORD
from benchmark.data.decode import IMAGE_SUFFIXES
from benchmark.data.errors import DatasetError

FORMAT = "msfs-bench/dataset-identity/1"
RECORD = IDENTITY_RECORD


@dataclass(frozen=True)
class Identity:
    """What :func:`record_identity` wrote.

    Attributes:
        dataset: The dataset's name.
        sha256: Content hash of the image files (:func:`content_hash`).
        files: Relative POSIX path of each image file -> ``(size, mtime_ns)``.
        made_by: ``fetch``, ``synth`` or ``rehash``.
    """

    dataset: str
    sha256: str
    files: dict[str, tuple[int, int]]
    made_by: str


def image_files(root: Path) -> list[str]:
    """The image files under ``root`` (suffix in ``IMAGE_SUFFIXES``, hidden files and folders skipped), as sorted
    relative POSIX paths."""
    return sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file()
        and path.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def content_hash(root: Path) -> str:
    """SHA-256 over every image file under ``root``, in sorted relative-path order, of each relative POSIX path and the
    file's bytes (each field length-prefixed, so boundaries are unambiguous).

    Metadata files such as ``synth.json`` are left out on purpose: they record package versions, which may change
    while the pixels, the only thing training and scoring read, do not.

    Raises:
        DatasetError: If ``root`` is not a folder or holds no image.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found; generate or fetch the dataset first")
    files = image_files(root)
    if not files:
        raise DatasetError(f"{root}: no image files; generate or fetch the dataset first")
    digest = hashlib.sha256()
    for relative in files:
        encoded = relative.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little") + encoded)
        digest.update(bytes.fromhex(sha256_file(root / relative)))
    return digest.hexdigest()


def _stats(root: Path, files: list[str]) -> dict[str, tuple[int, int]]:
    out = {}
    for relative in files:
        stat = (root / relative).stat()
        out[relative] = (stat.st_size, stat.st_mtime_ns)
    return out


def record_identity(root: Path, dataset: str, made_by: str) -> Identity:
    """Hash ``root`` (every byte) and write its identity record; call it on the complete folder, before it is moved
    into place (a rename keeps sizes and modification times)."""
    root = Path(root)
    sha = content_hash(root)
    identity = Identity(dataset, sha, _stats(root, image_files(root)), made_by)
    payload = {
        "format": FORMAT,
        "dataset": dataset,
        "sha256": sha,
        "made_by": made_by,
        "files": {k: list(v) for k, v in identity.files.items()},
    }
    atomic.write_json(root / RECORD, payload)
    return identity


def _fixes(dataset: str) -> str:
    return (
        f"rebuild it (`dvc repro fetch@{dataset}`, or `python -m benchmark.fetch dataset={dataset}`), or, if you "
        f"changed it on purpose, record what it holds now: `python -m benchmark.fetch dataset={dataset} rehash=true`"
    )


def read_identity(root: Path, dataset: str) -> Identity:
    """The identity recorded for ``root``, after checking that every image file still has its recorded size and
    modification time and that no image was added or removed.

    Raises:
        DatasetError: The folder or its record is missing or unreadable, or the folder changed since it was recorded
            (naming the first differing file and the two fixes).
    """
    root = Path(root)
    record = root / RECORD
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found; generate or fetch it first (dvc repro fetch@{dataset})")
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        files = {k: (int(v[0]), int(v[1])) for k, v in data["files"].items()}
        identity = Identity(data["dataset"], data["sha256"], files, data["made_by"])
        ok = data["format"] == FORMAT
    except FileNotFoundError:
        raise DatasetError(
            f"{record}: no identity record (a folder not built by fetch/synth); {_fixes(dataset)}"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise DatasetError(f"{record}: unreadable identity record ({err}); {_fixes(dataset)}") from err
    if not ok:
        raise DatasetError(f"{record}: identity record of another format ({data['format']!r}); {_fixes(dataset)}")
    now = _stats(root, image_files(root))
    for relative in sorted(set(files) | set(now)):
        if relative not in now:
            problem = "was removed"
        elif relative not in files:
            problem = "was added"
        elif now[relative] != files[relative]:
            problem = "changed (size or modification time)"
        else:
            continue
        raise DatasetError(
            f"{root / relative} {problem} since the dataset's identity was recorded in {record}; {_fixes(dataset)}"
        )
    return identity
