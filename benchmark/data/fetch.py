"""Building a dataset folder: ``python -m benchmark.fetch dataset=<name>``, the ``fetch@<dataset>`` stages.

For a downloadable benchmark (``gopro``, ``hide``, ``realblur_j``, ``realblur_r``; the ``fetch:`` section of
``conf/dataset/<name>.yaml`` names its archive, URLs, layout and pair counts) the steps are:

1. **Archive** (``benchmark.data.download``): ``archive=PATH``, else ``<paths.data>/external/archives/<archive>`` if
   placed there by hand (the folder ``data.dvc`` tracks), else a download from each URL in turn into that place.
2. **Checksum.** The SHA-256 of the archive must equal the one recorded for its file name in ``checksums.sha256`` at
   the repository root (``sha256sum`` format). No benchmark publishes checksums, so the first verified archive
   records its own (trust on first use: commit the updated file, and every later download anywhere must match). A
   mismatching archive is moved aside to ``<archive>.mismatch-<sha256 prefix>``, never used, and the error says so.
3. **Safe extraction** (``benchmark.data.archives``) into a temporary folder beside the target.
4. **Normalisation** (``benchmark.data.layouts``) into ``{train,test}/{blur,sharp}/<unique name>.png``, pair counts
   checked, the identity recorded (``benchmark.data.identity``), then one swap into ``<paths.data>/<name>``
   (``benchmark.core.atomic.replace_dir``: an existing dataset is replaced only once the new one is complete, and
   put back if the swap fails).

A generated dataset (``synth:`` section, ``synthblur``) is made by ``benchmark.data.synth`` instead, so the default
pipeline needs no network. A stage killed mid-way leaves only hidden ``.<name>.building-*`` folders, removed by the
next fetch of that dataset.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmark.core import atomic
from benchmark.core.hashing import sha256_file
from benchmark.core.layout import FETCH_MANIFEST, Layout
from benchmark.core.sections import DatasetConfig, FetchConfig
from benchmark.data.archives import safe_extract
from benchmark.data.download import obtain_archive
from benchmark.data.errors import ChecksumError, FetchError
from benchmark.data.identity import Identity, record_identity
from benchmark.data.layouts import normalise
from benchmark.data.synth import generate_synthblur

# --- checksums ------------------------------------------------------------------------------------------------


def read_checksums(path: Path) -> dict[str, str]:
    """``sha256sum``-format lines ``<hex>  <file name>``; blank lines and ``#`` comments are skipped."""
    if not path.is_file():
        return {}
    pins: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64 or any(c not in "0123456789abcdef" for c in parts[0]):
            raise FetchError(f"{path}:{number}: expected '<64 hex digits>  <archive name>', got {line!r}")
        pins[parts[1].lstrip("*")] = parts[0]
    return pins


def verify_archive(archive: Path, name: str, checksums: Path) -> str:
    """Check ``archive`` against the pin for ``name``; pin it on first use. Returns the SHA-256.

    Raises:
        ChecksumError: the hash differs; the archive has been renamed to ``<archive>.mismatch-<prefix>``.
    """
    digest = sha256_file(archive)
    pins = read_checksums(checksums)
    if name not in pins:
        lines = checksums.read_text().splitlines() if checksums.is_file() else []
        atomic.write_text(checksums, "\n".join([*lines, f"{digest}  {name}"]) + "\n")
        print(
            f"[fetch] {name}: no pinned checksum; recorded sha256 {digest} in {checksums} (trust on first use: "
            "commit it so that every later download must match)",
            file=sys.stderr,
        )
        return digest
    if pins[name] != digest:
        aside = archive.with_name(f"{archive.name}.mismatch-{digest[:12]}")
        os.replace(archive, aside)
        raise ChecksumError(
            f"{name}: sha256 {digest} does not match the pinned {pins[name]} ({checksums}); the file was moved "
            f"aside to {aside} and not used. Download it again (or place the right file at {archive}); if the "
            f"source really changed, inspect it and update {checksums} deliberately."
        )
    return digest



def fetch_archive(
    dataset: str,
    spec: FetchConfig,
    target: Path,
    *,
    placed: Path,
    checksums: Path,
    archive: Path | None = None,
    progress: bool = True,
) -> dict[str, int]:
    """Obtain, verify, extract and normalise ``dataset`` into ``target``; returns the pair counts.

    Everything is built in a hidden temporary folder beside ``target`` and swapped into place at the end: an error at
    any step leaves the previous dataset (if any) untouched and no partial one.
    """
    source = obtain_archive(spec, placed, archive=archive, progress=progress)
    sha = verify_archive(source, spec.archive, checksums)
    work = atomic.building_dir(target)
    try:
        safe_extract(source, work / "extracted")
        built = work / "dataset"
        counts = normalise(work / "extracted", spec, built, dataset)
        manifest = {"dataset": dataset, "archive": spec.archive, "counts": counts, "sha256": sha}
        atomic.write_json(built / FETCH_MANIFEST, manifest)
        record_identity(built, dataset, "fetch")
        atomic.replace_dir(built, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return counts


@dataclass(frozen=True)
class Built:
    """What :func:`build_dataset` made: the folder, its pair counts, and how (``fetch``, ``synth``, ``rehash``)."""

    root: Path
    counts: dict[str, int]
    made_by: str


def build_dataset(
    dataset: DatasetConfig, layout: Layout, *, archive: Path | None = None, progress: bool = True
) -> Built:
    """Make ``<paths.data>/<dataset.name>``: generate it (``synth``) or fetch it (``fetch``), as the module says."""
    target = layout.dataset(dataset.name)
    atomic.remove_stale_builds(target)
    if dataset.synth is not None:
        if archive is not None:
            raise FetchError(f"archive={archive}: {dataset.name} is generated, not fetched; drop archive=")
        manifest = generate_synthblur(target, dataset.synth)
        return Built(target, manifest["counts"], "synth")
    assert dataset.fetch is not None  # DatasetConfig.check: exactly one of fetch and synth
    counts = fetch_archive(
        dataset.name,
        dataset.fetch,
        target,
        placed=layout.archive(dataset.fetch.archive),
        checksums=layout.checksums,
        archive=archive,
        progress=progress,
    )
    return Built(target, counts, "fetch")


def rehash_dataset(dataset: DatasetConfig, layout: Layout) -> Identity:
    """Hash ``<paths.data>/<dataset.name>`` again and record its identity as it is now (see ``identity``)."""
    root = layout.dataset(dataset.name)
    if not root.is_dir():
        raise FetchError(
            f"{root}: no dataset folder to re-hash; fetch it first (python -m benchmark.fetch dataset={dataset.name})"
        )
    return record_identity(root, dataset.name, "rehash")
