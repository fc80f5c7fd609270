"""Normalising an extracted benchmark into ``<out>/{train,test}/{blur,sharp}/<unique name>.png``.

Each ``LAYOUTS`` entry lists, per split, ``(unique name, blurry file, sharp file)`` from the archive's own structure
(its docstring gives the structure); :func:`normalise` checks the pair counts against ``dataset.fetch.counts`` and
moves the files into place.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from benchmark.core.sections import FetchConfig
from benchmark.data.errors import FetchError

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


def _layout_gopro(tree: Path, spec: FetchConfig) -> Pairs:
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


def _layout_hide(tree: Path, spec: FetchConfig) -> Pairs:
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


def _layout_realblur(tree: Path, spec: FetchConfig, camera: str) -> Pairs:
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


LAYOUTS: dict[str, Callable[[Path, FetchConfig], Pairs]] = {
    "gopro": _layout_gopro,
    "hide": _layout_hide,
    "realblur_j": lambda tree, spec: _layout_realblur(tree, spec, "J"),
    "realblur_r": lambda tree, spec: _layout_realblur(tree, spec, "R"),
}


def normalise(tree: Path, spec: FetchConfig, out: Path, dataset: str) -> dict[str, int]:
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
