"""A folder of result images matched to a test split's pairs: what ``python -m benchmark.evaluate outputs=<folder>``
scores instead of running a model.

Releases publish their deblurred test images in their own layouts (MPRNet's GoPro ``GOPR0384_11_00-000001.png``, a
folder per sequence ``GOPR0384_11_00/000001.png``, RealBlur's ``scene003/blur/blur_1.png``). A :class:`NameMap` rule
(``eval.name_maps``) maps each file's path, relative to the folder and without its suffix, to the name of a test pair
(``benchmark.data.pairs``). The rules of matching:

- every image file under the folder (hidden files and folders skipped; other files, such as ``deblur.json`` or a
  README, ignored) must map to a test pair, and each pair to at most one file: otherwise :class:`OutputsError` names the
  first unmatched files and says how many matched (a wrong rule or the wrong test set);
- a pair without a file is *missing*: an error naming the first ones, unless ``allow_missing`` (the subset is then
  scored, and the record lists the missing names);
- each file must be an 8-bit image of its pair's size. JPEG is refused (lossy: the file is not the restoration the
  method produced, and its score would include the codec's loss); so are 16-bit files (no rule turns them into the 8-bit
  images the protocols score without a rounding the release does not state).

Matching reads the file headers and hashes every matched file (the record's manifest); it decodes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.core.hashing import sha256_bytes, sha256_file
from benchmark.core.sections import NameMap
from benchmark.data.decode import read_header, read_rgb, to_tensor
from benchmark.data.errors import DatasetError
from benchmark.data.identity import image_files
from benchmark.data.pairs import Pair

LOSSY_SUFFIXES = frozenset({".jpg", ".jpeg"})
SHOWN = 5
"""How many names an error lists."""


class OutputsError(DatasetError):
    """A folder of result images that cannot be scored as given; the message names the files and says what to do."""


@dataclass(frozen=True)
class OutputImage:
    """One result image: the file (``relative`` to the folder, POSIX) and the test pair it restores."""

    pair: Pair
    path: Path
    relative: str


@dataclass(frozen=True)
class MatchedOutputs:
    """A folder matched to a test split by one rule.

    Attributes:
        folder: The folder.
        rule: The ``eval.name_maps`` key used.
        images: The matched result images, in the split's pair order (by name).
        missing: Names of the split's pairs without a file, in pair order (empty unless ``allow_missing``).
        manifest: Relative path -> SHA-256 of every matched file.
    """

    folder: Path
    rule: str
    images: tuple[OutputImage, ...]
    missing: tuple[str, ...]
    manifest: dict[str, str]

    @property
    def n_test(self) -> int:
        """Pairs in the test split."""
        return len(self.images) + len(self.missing)

    @property
    def sha256(self) -> str:
        """SHA-256 of the manifest as ``sha256sum`` prints it (``<hex>  <path>`` lines, sorted by path): the folder's
        identity; ``sha256sum -c`` in the folder checks the files against the lines."""
        return sha256_bytes(manifest_text(self.manifest).encode("utf-8"))


def manifest_text(manifest: dict[str, str]) -> str:
    """``<sha256>  <relative path>`` lines sorted by path (``sha256sum``'s format)."""
    return "".join(f"{manifest[path]}  {path}\n" for path in sorted(manifest))


def match_outputs(
    folder: Path, pairs: list[Pair], rule_name: str, rule: NameMap, *, allow_missing: bool
) -> MatchedOutputs:
    """Match the image files of ``folder`` to ``pairs`` (a test split, :func:`benchmark.data.pairs.find_pairs`) by
    ``rule`` (module docstring), check each matched file and hash it.

    Raises:
        OutputsError: a missing or empty folder, JPEG files, files that map to no pair or two files to one pair,
            missing pairs (unless ``allow_missing``), no match at all, a 16-bit or unreadable file, or a size other
            than its pair's; each names the files, how many matched, and what to do.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise OutputsError(f"outputs={folder}: no such folder; give the folder that holds the result images")
    files = image_files(folder)
    if not files:
        raise OutputsError(f"outputs={folder}: no image files under it; give the folder that holds the result images")
    lossy = [f for f in files if Path(f).suffix.lower() in LOSSY_SUFFIXES]
    if lossy:
        raise OutputsError(
            f"outputs={folder}: {len(lossy)} JPEG files ({', '.join(lossy[:SHOWN])}): JPEG is lossy, so a file is not "
            "the restoration the method produced and its score would include the codec's loss; score the release's "
            "PNGs instead"
        )
    by_name = {pair.name: pair for pair in pairs}
    pattern = re.compile(rule.pattern)
    found: dict[str, str] = {}
    unmatched: list[str] = []
    for relative in files:
        hit = pattern.fullmatch(relative[: -len(Path(relative).suffix)])
        name = rule.name.format(**hit.groupdict()) if hit else None
        if name is None or name not in by_name:
            unmatched.append(relative)
        elif name in found:
            raise OutputsError(
                f"outputs={folder}: {found[name]} and {relative} both map to test image {name!r} under name_map "
                f"{rule_name} ({rule.layout}); keep one"
            )
        else:
            found[name] = relative
    _check_matches(folder, rule_name, rule, files, unmatched, len(found), pairs)
    missing = tuple(pair.name for pair in pairs if pair.name not in found)
    if missing and not allow_missing:
        raise OutputsError(
            f"outputs={folder}: {len(missing)} of the {len(pairs)} test images have no result file (first: "
            f"{', '.join(missing[:SHOWN])}); {len(found)} matched under name_map {rule_name} ({rule.layout}). Add "
            "them, or score the images the folder holds with allow_missing=true (the record and tables say so)"
        )
    images = tuple(OutputImage(by_name[n], folder / found[n], found[n]) for n in (p.name for p in pairs) if n in found)
    for image in images:
        _check_file(image)
    return MatchedOutputs(folder, rule_name, images, missing, {i.relative: sha256_file(i.path) for i in images})


def _check_matches(
    folder: Path, rule_name: str, rule: NameMap, files: list[str], unmatched: list[str], matched: int, pairs: list[Pair]
) -> None:
    if not unmatched and matched:
        return
    example = pairs[0].name if pairs else "?"
    raise OutputsError(
        f"outputs={folder}: {len(unmatched)} of {len(files)} image files name no test image under name_map "
        f"{rule_name} ({rule.layout}) (first: {', '.join(unmatched[:SHOWN])}); {matched} matched. Test images are "
        f"named like {example!r}: pick the rule of the folder's layout (name_map=<one of eval.name_maps>), or the "
        "right dataset="
    )


def _check_file(image: OutputImage) -> None:
    """8-bit and the pair's size, from the header."""
    try:
        height, width = read_header(image.path)
    except DatasetError as err:
        raise OutputsError(
            f"{err}. Result images are scored as the 8-bit files the method saved; a conversion would be our "
            "rounding, not the release's"
        ) from None
    if (height, width) != (image.pair.height, image.pair.width):
        raise OutputsError(
            f"{image.path}: {height}x{width} (HxW), but its test image {image.pair.name} is "
            f"{image.pair.height}x{image.pair.width}; a result image must have its input's size (padded or cropped "
            "outputs cannot be scored pixel for pixel)"
        )


class OutputPairs(torch.utils.data.Dataset):
    """The matched result images as a test loader's items: ``{"lq": blurry, "restored": result, "gt": sharp, "name"}``,
    float32 (3, H, W) RGB in [0, 1] (the result exactly its 8-bit values / 255, as ``to_tensor`` reads every image)."""

    def __init__(self, matched: MatchedOutputs) -> None:
        self.images = matched.images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        lq, restored, gt = (read_rgb(p) for p in (image.pair.blur, image.path, image.pair.sharp))
        return {"lq": to_tensor(lq), "restored": to_tensor(restored), "gt": to_tensor(gt), "name": image.pair.name}
