"""The one SHA-256 helper: archives, checkpoints and dataset identities are hashed here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks (archives and checkpoints are gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of in-memory bytes (a decoded image's pixels)."""
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex SHA-256 of ``obj`` as canonical JSON (sorted keys, no spaces): equal data, equal hash."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_weights(path: Path) -> str:
    """Hex SHA-256 of a weights file, or of a folder of per-module files (DMPHN's release): the canonical JSON of
    ``{file name: its SHA-256}`` over the folder's files, so renaming or changing any one changes it."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    return sha256_json({p.name: sha256_file(p) for p in sorted(path.iterdir()) if p.is_file()})
