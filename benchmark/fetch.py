"""Datasets: ``python -m benchmark.fetch <dataset> [--archive PATH]``, the ``fetch@<dataset>`` stages.

For a downloadable benchmark (``gopro``, ``hide``, ``realblur_j``, ``realblur_r``; the ``fetch:`` block of
``conf/dataset/<name>.yaml`` names its archive, URLs, layout and pair counts) the steps are:

1. **Archive.** ``--archive PATH``, else ``data/external/archives/<archive>`` if placed there by hand (the folder
   ``data.dvc`` tracks), else a download from each URL in turn into that place: resumed with an HTTP ``Range``
   request after an interruption (the partial file is ``<archive>.part``), with a progress bar. A source that answers
   with an HTML page (a Google Drive confirmation page, a login wall) counts as not answering. When no source
   answers, the error lists every URL tried with its failure and the exact place to put the file.
2. **Checksum.** The SHA-256 of the archive must equal the one recorded for its file name in ``checksums.sha256`` at
   the repository root (``sha256sum`` format). No benchmark publishes checksums, so the first verified archive
   records its own (trust on first use: commit the updated file, and every later download anywhere must match). A
   mismatching archive is moved aside to ``<archive>.mismatch-<sha256 prefix>``, never used, and the error says so.
3. **Safe extraction** into a temporary folder beside the target: absolute paths, ``..`` components, links that
   point outside the extraction folder, device files and FIFOs are refused (the archive is named in the error), so
   nothing is ever written outside; a truncated or corrupt archive is an error too, and the temporary folder is
   removed, so no partial dataset is left.
4. **Normalisation** into ``data/<dataset>/{train,test}/{blur,sharp}/<unique name>.png`` (see the ``_layout_*``
   functions), pair counts checked against the config (a wrong count is an error naming the dataset), then one
   rename into place (an existing dataset is replaced only once the new one is complete).

``synthblur`` is generated instead (``benchmark.synth``), so the default pipeline needs no network.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import stat
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml
from tqdm import tqdm

from benchmark import io
from benchmark.config import CONF_DIR, ConfigError, _require, build, project_root

CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A dataset could not be fetched, verified, extracted or normalised; the message says what to do."""


class ChecksumError(FetchError):
    """An archive's SHA-256 differs from the pinned one; the file was moved aside."""


class UnsafeArchiveError(FetchError):
    """An archive member would escape the extraction folder or is not a regular file, folder or inner link."""


@dataclass(frozen=True)
class FetchSpec:
    """The ``fetch:`` block of a dataset config.

    Attributes:
        archive: the archive's file name (also its key in ``checksums.sha256``).
        urls: download sources, tried in order.
        layout: how to normalise the extracted tree: ``gopro``, ``hide``, ``realblur_j`` or ``realblur_r``.
        counts: expected pairs per split, e.g. ``{"train": 2103, "test": 1111}``.
        blur_folder: GoPro only: ``blur`` (what MPRNet, HINet, MIMO-UNet and MSFS-Net train and test on) or
            ``blur_gamma`` (the original DeepDeblur setting).
    """

    archive: str
    urls: tuple[str, ...]
    layout: str
    counts: dict[str, int] = field(default_factory=dict)
    blur_folder: str = "blur"

    def validate(self, prefix: str) -> None:
        _require(bool(self.archive) and "/" not in self.archive, f"{prefix}.archive", "must be a plain file name")
        _require(self.layout in LAYOUTS, f"{prefix}.layout", f"must be one of {', '.join(LAYOUTS)}")
        _require(
            set(self.counts) <= {"train", "test"} and all(v > 0 for v in self.counts.values()),
            f"{prefix}.counts",
            f"must map train/test to positive counts, got {self.counts}",
        )
        _require(self.blur_folder in ("blur", "blur_gamma"), f"{prefix}.blur_folder", "must be blur or blur_gamma")


# --- checksums ------------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


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
        io.write_text(checksums, "\n".join([*lines, f"{digest}  {name}"]) + "\n")
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


# --- download -------------------------------------------------------------------------------------------------


def download(url: str, dest: Path, *, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, resuming ``<dest>.part`` with an HTTP Range request; returns ``dest``.

    The partial file survives an interruption (a dropped connection, a killed process), so calling again continues
    where it stopped. A server that ignores the Range header restarts the file from zero.

    Raises:
        FetchError: the server failed, answered with an HTML page, or the transfer ended short (the ``.part`` file is
            kept for the next attempt).
    """
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "msfs-bench-fetch", **({"Range": f"bytes={have}-"} if have else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the partial file is already complete
            os.replace(part, dest)
            return dest
        raise FetchError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise FetchError(f"{url}: {getattr(err, 'reason', err)}") from err
    with response:
        if "text/html" in response.headers.get("Content-Type", ""):
            raise FetchError(f"{url}: answered with an HTML page, not the archive (a confirmation or login page?)")
        resumed = response.status == 206 and have > 0
        if resumed:
            first = response.headers.get("Content-Range", "").split(" ")[-1].split("-")[0]
            if first != str(have):
                raise FetchError(f"{url}: asked to resume at byte {have}, got Content-Range {first!r}")
        else:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        written = have
        with (
            open(part, "ab" if resumed else "wb") as f,
            tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not progress, leave=False
            ) as bar,
        ):
            try:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:  # a dropped connection: IncompleteRead, reset
                raise FetchError(
                    f"{url}: transfer interrupted at {written} bytes ({err}); run again to resume"
                ) from err
    if total is not None and written != total:
        raise FetchError(f"{url}: transfer ended at {written} of {total} bytes; run again to resume from {part}")
    os.replace(part, dest)
    return dest


def obtain_archive(spec: FetchSpec, archives: Path, *, archive: Path | None = None, progress: bool = True) -> Path:
    """The archive to use: ``archive`` if given, a hand-placed one in ``archives``, else a download there."""
    if archive is not None:
        if not archive.is_file():
            raise FetchError(f"--archive {archive} does not exist")
        return archive
    placed = archives / spec.archive
    if placed.is_file():
        return placed
    failures = []
    for url in spec.urls:
        try:
            return download(url, placed, progress=progress)
        except FetchError as err:
            failures.append(str(err))
    tried = "\n  ".join(failures) if failures else "(no URLs configured)"
    raise FetchError(
        f"{spec.archive}: no source answered. Tried:\n  {tried}\n"
        f"Download it by hand and place it at {placed} (or pass --archive PATH), then run again."
    )


# --- safe extraction ------------------------------------------------------------------------------------------


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


# --- normalisation --------------------------------------------------------------------------------------------

Pairs = dict[str, list[tuple[str, Path, Path]]]
"""split -> [(unique name, blurry file, sharp file)]."""


def _find_root(tree: Path, marker: str) -> Path:
    """The folder under ``tree`` (itself or one level of wrapping folders) that holds ``marker``."""
    for candidate in (tree, *sorted(p for p in tree.iterdir() if p.is_dir())):
        if (candidate / marker).exists():
            return candidate
        for inner in sorted(p for p in candidate.iterdir() if p.is_dir()) if candidate != tree else ():
            if (inner / marker).exists():
                return inner
    raise FetchError(f"{tree}: no {marker!r} found in the archive; is it the right archive?")


def _layout_gopro(tree: Path, spec: FetchSpec) -> Pairs:
    """``GOPRO_Large/{train,test}/<scene>/{blur,blur_gamma,sharp}/<frame>.png`` -> name ``<scene>_<frame>``."""
    root = _find_root(tree, "test")
    pairs: Pairs = {}
    for split in ("train", "test"):
        items = []
        for scene in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            for blur in sorted((scene / spec.blur_folder).glob("*.png")):
                items.append((f"{scene.name}_{blur.stem}", blur, scene / "sharp" / blur.name))
        pairs[split] = items
    return pairs


def _layout_hide(tree: Path, spec: FetchSpec) -> Pairs:
    """``HIDE_dataset/{GT,train,test/<subset>}/<name>.png`` with ``train.txt``/``test.txt`` naming each split."""
    root = _find_root(tree, "test.txt")
    pairs: Pairs = {}
    for split in ("train", "test"):
        listing = root / f"{split}.txt"
        if not listing.is_file():
            raise FetchError(f"{root}: {listing.name} is missing; is it the right archive?")
        blurs = {p.name: p for p in (root / split).rglob("*.png")}
        items = []
        for line in listing.read_text().splitlines():
            if not line.strip():
                continue
            name = PurePosixPath(line.split()[0].replace("\\", "/")).name
            if not name.endswith(".png"):
                name += ".png"
            if name not in blurs:
                raise FetchError(f"{listing}: {name} is listed but not found under {root / split}")
            items.append((PurePosixPath(name).stem, blurs[name], root / "GT" / name))
        pairs[split] = items
    return pairs


def _layout_realblur(tree: Path, spec: FetchSpec, camera: str) -> Pairs:
    """Official lists ``RealBlur_<J|R>_{train,test}_list.txt``: lines ``<gt path> <blur path>`` (GT first)."""
    root = _find_root(tree, f"RealBlur_{camera}_test_list.txt")
    pairs: Pairs = {}
    for split in ("train", "test"):
        listing = root / f"RealBlur_{camera}_{split}_list.txt"
        if not listing.is_file():
            raise FetchError(f"{root}: {listing.name} is missing; is it the right archive?")
        items = []
        for number, line in enumerate(listing.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) < 2:
                raise FetchError(f"{listing}:{number}: expected '<gt path> <blur path>', got {line!r}")
            gt, blur = PurePosixPath(fields[0]), PurePosixPath(fields[1])
            # sceneNNN/blur/blur_K.png -> sceneNNN_blur_K: the name the official evaluation script expects.
            name = f"{blur.parent.parent.name}_{blur.stem}"
            items.append((name, root / blur, root / gt))
        pairs[split] = items
    return pairs


LAYOUTS: dict[str, Callable[[Path, FetchSpec], Pairs]] = {
    "gopro": _layout_gopro,
    "hide": _layout_hide,
    "realblur_j": lambda tree, spec: _layout_realblur(tree, spec, "J"),
    "realblur_r": lambda tree, spec: _layout_realblur(tree, spec, "R"),
}


def normalise(tree: Path, spec: FetchSpec, out: Path, dataset: str) -> dict[str, int]:
    """Move the extracted pairs into ``out/{train,test}/{blur,sharp}/<name>.png``; returns the pair counts."""
    pairs = LAYOUTS[spec.layout](tree, spec)
    counts = {split: len(items) for split, items in pairs.items()}
    for split, expected in spec.counts.items():
        if counts.get(split) != expected:
            raise FetchError(
                f"{dataset}: {counts.get(split, 0)} {split} pairs in the archive, expected {expected} "
                f"(conf/dataset/{dataset}.yaml fetch.counts); is it the right or a complete archive?"
            )
    for split, items in pairs.items():
        names = [n for n, _, _ in items]
        if len(set(names)) != len(names):
            raise FetchError(f"{dataset}: duplicate pair names in the {split} split")
        for side in ("blur", "sharp"):
            (out / split / side).mkdir(parents=True, exist_ok=True)
        for name, blur, sharp in items:
            for side, src in (("blur", blur), ("sharp", sharp)):
                if not src.is_file() or (src.is_symlink() and not src.resolve().is_relative_to(tree.resolve())):
                    raise FetchError(f"{dataset}: {src} is missing from the archive (pair {name!r}, {split})")
                shutil.move(src, out / split / side / f"{name}.png")
    return counts


def fetch_dataset(
    dataset: str,
    spec: FetchSpec,
    *,
    data_root: Path,
    archives: Path,
    checksums: Path,
    archive: Path | None = None,
    progress: bool = True,
) -> dict[str, int]:
    """Obtain, verify, extract and normalise ``dataset`` into ``data_root/<dataset>``; returns the pair counts.

    Everything is built in hidden temporary folders beside the target and renamed into place at the end: an error at
    any step leaves the previous dataset (if any) untouched and no partial one.
    """
    source = obtain_archive(spec, archives, archive=archive, progress=progress)
    verify_archive(source, spec.archive, checksums)
    target = data_root / dataset
    extract_dir = data_root / f".{dataset}.extract-tmp"
    build_dir = data_root / f".{dataset}.building-tmp"
    for stale in (extract_dir, build_dir):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        safe_extract(source, extract_dir)
        counts = normalise(extract_dir, spec, build_dir, dataset)
        io.write_json(
            build_dir / "fetch.json",
            {
                "dataset": dataset,
                "archive": spec.archive,
                "counts": counts,
                "sha256": read_checksums(checksums).get(spec.archive),
            },
        )
        if target.exists():
            old = data_root / f".{dataset}.old-tmp"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(build_dir, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(build_dir, target)
    finally:
        shutil.rmtree(extract_dir, ignore_errors=True)
        shutil.rmtree(build_dir, ignore_errors=True)
    return counts


def load_spec(dataset: str) -> FetchSpec | None:
    """The ``fetch:`` block of ``conf/dataset/<dataset>.yaml`` (None for a generated dataset)."""
    path = CONF_DIR / "dataset" / f"{dataset}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONF_DIR / "dataset").glob("*.yaml"))
        raise ConfigError(f"dataset: no conf/dataset/{dataset}.yaml; known datasets: {', '.join(known)}")
    conf = yaml.safe_load(path.read_text()) or {}
    if "fetch" not in conf:
        return None
    return build(FetchSpec, conf["fetch"], f"{dataset}.fetch")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.fetch", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="a conf/dataset/<name>.yaml name")
    parser.add_argument("--archive", type=Path, default=None, help="use this archive instead of downloading")
    parser.add_argument("--data", type=Path, default=Path("data"), help="data folder (default: data)")
    parser.add_argument("--checksums", type=Path, default=project_root() / "checksums.sha256")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.dataset)
        if spec is None:  # generated, not downloaded
            from benchmark import synth

            return synth.main(["--config", str(CONF_DIR / "dataset" / f"{args.dataset}.yaml")])
        counts = fetch_dataset(
            args.dataset,
            spec,
            data_root=args.data,
            archives=args.data / "external" / "archives",
            checksums=args.checksums,
            archive=args.archive,
        )
    except (ConfigError, FetchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"[fetch] {args.dataset}: {counts.get('train', 0)} train / {counts.get('test', 0)} test pairs in "
        f"{args.data / args.dataset}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
