"""Paired datasets: every bad input names its file, colour rules, crops and flips, reproducibility, hold-out."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.data.dataset import PairedDataset
from benchmark.data.decode import read_rgb
from benchmark.data.errors import DatasetError
from benchmark.data.identity import content_hash
from benchmark.data.pairs import Pair, find_pairs, split_train_val


def _random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _save(path: Path, image: np.ndarray | Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(path)
    return path


def _split(root: Path, names: dict[str, tuple[int, int]], split: str = "train") -> Path:
    """Writes a split of random pairs, {name: (height, width)}, and returns the split folder."""
    for i, (name, (height, width)) in enumerate(sorted(names.items())):
        _save(root / split / "blur" / f"{name}.png", _random_rgb(height, width, seed=2 * i))
        _save(root / split / "sharp" / f"{name}.png", _random_rgb(height, width, seed=2 * i + 1))
    return root / split


def _png16(path: Path, array: np.ndarray, color_type: int) -> Path:
    """Writes a 16-bit PNG by hand (Pillow cannot write 16-bit RGB), color_type 0 = grey, 2 = RGB."""
    height, width = array.shape[:2]
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


# --- find_pairs: every bad input is named ---------------------------------------------------------------------


def test_pairs_are_matched_by_name_and_sorted(tmp_path: Path) -> None:
    split = _split(tmp_path, {"b": (8, 10), "a": (8, 10), "c": (12, 6)})
    pairs = find_pairs(split)
    assert [p.name for p in pairs] == ["a", "b", "c"]
    assert pairs[2] == Pair("c", split / "blur" / "c.png", split / "sharp" / "c.png", height=12, width=6)


def test_missing_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nowhere"):
        find_pairs(tmp_path / "nowhere")
    split = _split(tmp_path, {"a": (8, 8)})
    for path in (split / "sharp").iterdir():
        path.unlink()
    (split / "sharp").rmdir()
    with pytest.raises(DatasetError, match=r"sharp: folder not found"):
        find_pairs(split)


def test_empty_folder_is_named(tmp_path: Path) -> None:
    split = _split(tmp_path, {"a": (8, 8)})
    (split / "blur" / "a.png").unlink()
    (split / "blur" / ".DS_Store").write_bytes(b"not data")  # hidden files are ignored, not counted
    with pytest.raises(DatasetError, match=r"blur: folder has no images"):
        find_pairs(split)


@pytest.mark.parametrize("side", ["blur", "sharp"])
def test_file_without_partner_is_named(tmp_path: Path, side: str) -> None:
    split = _split(tmp_path, {"a": (8, 8), "b": (8, 8)})
    _save(split / side / "lonely_7.png", _random_rgb(8, 8))
    with pytest.raises(DatasetError, match=r"lonely_7\.png: no file of the same name") as info:
        find_pairs(split)
    assert str(split / side / "lonely_7.png") in str(info.value)


def test_unexpected_entry_is_named(tmp_path: Path) -> None:
    split = _split(tmp_path, {"a": (8, 8)})
    (split / "blur" / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match=r"notes\.txt: unexpected entry"):
        find_pairs(split)


def test_size_mismatch_is_named_from_headers(tmp_path: Path) -> None:
    split = _split(tmp_path, {"a": (8, 8), "odd": (8, 8)})
    _save(split / "sharp" / "odd.png", _random_rgb(8, 9))
    with pytest.raises(DatasetError, match=r"odd\.png: size 8x8 \(HxW\) differs .*odd\.png \(8x9\)"):
        find_pairs(split)


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage" * 50, b"\x89PNG\r\n\x1a\n"])
def test_not_an_image_is_named(tmp_path: Path, content: bytes) -> None:
    split = _split(tmp_path, {"a": (8, 8), "junk": (8, 8)})
    (split / "blur" / "junk.png").write_bytes(content)
    with pytest.raises(DatasetError, match=r"junk\.png: not a readable image"):
        find_pairs(split)


def test_truncated_image_fails_at_decode_or_with_verify(tmp_path: Path) -> None:
    split = _split(tmp_path, {"a": (64, 64), "cut": (64, 64)})
    path = split / "sharp" / "cut.png"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    # The header is intact, so listing stays cheap and succeeds; decoding names the file.
    dataset = PairedDataset(tmp_path, "train", crop_size=None, augment="none")
    dataset[0]
    with pytest.raises(DatasetError, match=r"cut\.png: cannot decode"):
        dataset[1]
    with pytest.raises(DatasetError, match=r"cut\.png"):
        find_pairs(split, verify=True)
    with pytest.raises(DatasetError, match=r"cut\.png"):
        PairedDataset(tmp_path, "train", crop_size=None, augment="none", verify=True)


def test_bad_checksum_is_caught_by_verify(tmp_path: Path) -> None:
    split = _split(tmp_path, {"a": (16, 16)})
    path = split / "blur" / "a.png"
    data = bytearray(path.read_bytes())
    data[-14] ^= 0xFF  # the last IDAT chunk's CRC (the file ends with it and the 12-byte IEND chunk)
    path.write_bytes(bytes(data))
    read_rgb(path)  # Pillow's decoder does not check chunk CRCs ...
    with pytest.raises(DatasetError, match=r"a\.png: corrupt image"):
        find_pairs(split, verify=True)  # ... verify does


# --- read_rgb: colour rules ----------------------------------------------------------------------------------


def test_rgb_is_read_unchanged(tmp_path: Path) -> None:
    rgb = _random_rgb(5, 7)
    image = read_rgb(_save(tmp_path / "x.png", rgb))
    assert image.dtype == np.uint8 and image.shape == (5, 7, 3)
    assert np.array_equal(image, rgb)


def test_grayscale_is_replicated(tmp_path: Path) -> None:
    gray = _random_rgb(5, 7)[:, :, 0]
    image = read_rgb(_save(tmp_path / "g.png", gray))
    assert np.array_equal(image, np.repeat(gray[:, :, None], 3, axis=2))


def test_palette_is_expanded(tmp_path: Path) -> None:
    rgb = _random_rgb(6, 6) // 64 * 64  # at most 64 colours, so the palette is lossless
    palette = Image.fromarray(rgb).quantize(colors=64, method=Image.Quantize.MAXCOVERAGE)
    path = _save(tmp_path / "p.png", palette)
    with Image.open(path) as image:
        assert image.mode == "P"
    assert np.array_equal(read_rgb(path), np.asarray(palette.convert("RGB")))


def test_opaque_alpha_is_dropped(tmp_path: Path) -> None:
    rgb = _random_rgb(5, 5)
    rgba = np.concatenate([rgb, np.full((5, 5, 1), 255, np.uint8)], axis=2)
    assert np.array_equal(read_rgb(_save(tmp_path / "opaque.png", rgba)), rgb)


def test_transparency_is_rejected(tmp_path: Path) -> None:
    rgba = np.concatenate([_random_rgb(5, 5), np.full((5, 5, 1), 255, np.uint8)], axis=2)
    rgba[2, 3, 3] = 254
    with pytest.raises(DatasetError, match=r"seethrough\.png: image has transparent pixels"):
        read_rgb(_save(tmp_path / "seethrough.png", rgba))
    palette = Image.fromarray(np.zeros((4, 4), np.uint8)).convert("P")
    palette.info["transparency"] = 0
    with pytest.raises(DatasetError, match=r"clear_palette\.png: image has transparent"):
        read_rgb(_save(tmp_path / "clear_palette.png", palette))


def test_16_bit_images_are_rejected(tmp_path: Path) -> None:
    gray16 = np.random.default_rng(0).integers(0, 65536, (6, 6), dtype=np.uint16)
    with pytest.raises(DatasetError, match=r"deep_gray\.png: I;16 image with more than 8 bits"):
        read_rgb(_save(tmp_path / "deep_gray.png", Image.fromarray(gray16)))
    # Pillow opens 48-bit RGB PNGs as 8-bit "RGB": the check must look at the raw mode, not the mode.
    rgb16 = np.random.default_rng(1).integers(0, 65536, (6, 6, 3), dtype=np.uint16)
    path = _png16(tmp_path / "train" / "blur" / "deep_rgb.png", rgb16, color_type=2)
    with pytest.raises(DatasetError, match=r"deep_rgb\.png: RGB image with more than 8 bits"):
        read_rgb(path)
    _save(tmp_path / "train" / "sharp" / "deep_rgb.png", _random_rgb(6, 6))
    with pytest.raises(DatasetError, match=r"deep_rgb\.png"):
        find_pairs(tmp_path / "train")  # caught from the header, without decoding


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"ghost\.png: file not found"):
        read_rgb(tmp_path / "ghost.png")


# --- PairedDataset ------------------------------------------------------------------------------------------


def _coordinate_image(height: int, width: int) -> np.ndarray:
    """RGB image whose pixel (y, x) is (y, x, 7): a crop and its flips can be read back from the values."""
    y, x = np.mgrid[:height, :width]
    return np.stack([y, x, np.full_like(y, 7)], axis=2).astype(np.uint8)


@pytest.fixture
def coordinates(tmp_path: Path) -> Path:
    """A train split of 4 pairs of 40x50 coordinate images with gt identical to lq."""
    for name in ("p0", "p1", "p2", "p3"):
        for side in ("blur", "sharp"):
            _save(tmp_path / "train" / side / f"{name}.png", _coordinate_image(40, 50))
    return tmp_path


def _as_uint8(tensor: torch.Tensor) -> np.ndarray:
    return (tensor * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def test_item_format_and_test_mode_gives_full_images(tmp_path: Path) -> None:
    _split(tmp_path, {"a": (20, 30), "b": (24, 16)}, split="test")
    dataset = PairedDataset(tmp_path, "test", crop_size=None, augment="none")
    assert len(dataset) == 2 and dataset.names == ["a", "b"]
    item = dataset[1]
    assert set(item) == {"lq", "gt", "name"} and item["name"] == "b"
    for key, side in (("lq", "blur"), ("gt", "sharp")):
        tensor = item[key]
        assert tensor.dtype == torch.float32 and tensor.shape == (3, 24, 16)
        assert tensor.min() >= 0.0 and tensor.max() <= 1.0
        assert np.array_equal(_as_uint8(tensor), read_rgb(tmp_path / "test" / side / "b.png"))


def test_crop_is_the_same_window_in_lq_and_gt(coordinates: Path) -> None:
    dataset = PairedDataset(coordinates, "train", crop_size=16, augment="none", seed=3)
    tops_lefts = set()
    for epoch in range(5):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            item = dataset[index]
            lq, gt = _as_uint8(item["lq"]), _as_uint8(item["gt"])
            assert lq.shape == (16, 16, 3) and np.array_equal(lq, gt)
            top, left = int(lq[0, 0, 0]), int(lq[0, 0, 1])
            # Without augment the crop is an unflipped window of the image.
            assert np.array_equal(lq, _coordinate_image(40, 50)[top : top + 16, left : left + 16])
            tops_lefts.add((top, left))
    assert len(tops_lefts) > 10  # crops move around


def test_flips_are_random_and_shared(coordinates: Path) -> None:
    dataset = PairedDataset(coordinates, "train", crop_size=16, augment="flips", seed=0)
    seen = set()
    for epoch in range(8):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            item = dataset[index]
            lq, gt = _as_uint8(item["lq"]), _as_uint8(item["gt"])
            assert np.array_equal(lq, gt)
            rows, cols = lq[:, :, 0].astype(int), lq[:, :, 1].astype(int)
            vflip, hflip = bool(rows[0, 0] > rows[-1, 0]), bool(cols[0, 0] > cols[0, -1])
            unflipped = lq[:: -1 if vflip else 1, :: -1 if hflip else 1]
            top, left = int(unflipped[0, 0, 0]), int(unflipped[0, 0, 1])
            assert np.array_equal(unflipped, _coordinate_image(40, 50)[top : top + 16, left : left + 16])
            seen.add((hflip, vflip))
    assert seen == {(False, False), (False, True), (True, False), (True, True)}


def test_randomness_depends_only_on_seed_epoch_and_index(coordinates: Path) -> None:
    def crops(dataset: PairedDataset, epoch: int, order: list[int]) -> dict[int, torch.Tensor]:
        dataset.set_epoch(epoch)
        return {i: dataset[i]["lq"] for i in order}

    first = PairedDataset(coordinates, "train", crop_size=16, augment="flips", seed=5)
    second = PairedDataset(coordinates, "train", crop_size=16, augment="flips", seed=5)
    reference = crops(first, 2, [0, 1, 2, 3])
    # A fresh instance, another access order, and a detour through other epochs (resuming) change nothing.
    crops(second, 0, [3, 2])
    again = crops(second, 2, [3, 1, 0, 2])
    assert all(torch.equal(reference[i], again[i]) for i in range(4))
    other_epoch = crops(first, 3, [0, 1, 2, 3])
    other_seed = crops(PairedDataset(coordinates, "train", crop_size=16, augment="flips", seed=6), 2, [0, 1, 2, 3])
    assert not all(torch.equal(reference[i], other_epoch[i]) for i in range(4))
    assert not all(torch.equal(reference[i], other_seed[i]) for i in range(4))


def test_worker_count_does_not_change_batches(coordinates: Path) -> None:
    dataset = PairedDataset(coordinates, "train", crop_size=16, augment="flips", seed=1)
    dataset.set_epoch(4)
    batches = [
        torch.cat([batch["lq"] for batch in torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=workers)])
        for workers in (0, 2)
    ]
    assert torch.equal(batches[0], batches[1])


def test_crop_larger_than_image_is_named(tmp_path: Path) -> None:
    _split(tmp_path, {"big": (64, 64), "small_one": (20, 48)})
    with pytest.raises(DatasetError, match=r"small_one\.png: crop_size 32 is larger than the image \(20x48 HxW\)"):
        PairedDataset(tmp_path, "train", crop_size=32, augment="flips")


def test_names_select_a_subset_in_order(tmp_path: Path) -> None:
    _split(tmp_path, {"a": (8, 8), "b": (8, 8), "c": (8, 8)})
    dataset = PairedDataset(tmp_path, "train", crop_size=None, augment="none", names=["c", "a"])
    assert dataset.names == ["c", "a"] and dataset[0]["name"] == "c"
    with pytest.raises(DatasetError, match="'zzz'"):
        PairedDataset(tmp_path, "train", crop_size=None, augment="none", names=["a", "zzz"])


# --- split_train_val and content_hash ----------------------------------------------------------------------


def test_validation_holds_out_the_last_names(tmp_path: Path) -> None:
    pairs = find_pairs(_split(tmp_path, {name: (4, 4) for name in ("b_0", "a_1", "c_1", "a_0", "c_0", "b_1")}))
    assert split_train_val(pairs, 2) == (["a_0", "a_1", "b_0", "b_1"], ["c_0", "c_1"])
    assert split_train_val(list(reversed(pairs)), 2) == (["a_0", "a_1", "b_0", "b_1"], ["c_0", "c_1"])
    assert split_train_val(pairs, 0) == (sorted(p.name for p in pairs), [])
    for bad in (-1, 6, 7):
        with pytest.raises(DatasetError, match=f"val_count={bad}"):
            split_train_val(pairs, bad)


def test_content_hash_tracks_image_bytes_and_names_only(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _split(root, {"a": (8, 8), "b": (8, 8)})
    _split(root, {"t": (8, 8)}, split="test")
    digest = content_hash(root)
    assert len(digest) == 64 and content_hash(root) == digest
    (root / "synth.json").write_text("{}")
    (root / "train" / "blur" / ".DS_Store").write_bytes(b"x")
    assert content_hash(root) == digest  # metadata and hidden files do not count

    copy = tmp_path / "copy"
    _split(copy, {"a": (8, 8), "b": (8, 8)})
    _split(copy, {"t": (8, 8)}, split="test")
    assert content_hash(copy) == digest  # independent of where the dataset lives

    _save(root / "train" / "sharp" / "b.png", _random_rgb(8, 8, seed=99))
    changed = content_hash(root)
    assert changed != digest
    (root / "test" / "blur" / "t.png").rename(root / "test" / "blur" / "u.png")
    assert content_hash(root) != changed
    with pytest.raises(DatasetError, match="missing"):
        content_hash(tmp_path / "missing")


def test_augmentations_draw_what_they_name(coordinates: Path) -> None:
    """hflip only mirrors columns; flips adds vertical flips; dihedral adds transposition (all 8 symmetries)."""
    seen: dict[str, set[tuple[bool, bool, bool]]] = {}
    for mode in ("none", "hflip", "flips", "dihedral"):
        dataset = PairedDataset(coordinates, "train", crop_size=16, augment=mode, seed=0)
        kinds = set()
        for epoch in range(16):
            dataset.set_epoch(epoch)
            for index in range(len(dataset)):
                item = dataset[index]
                lq = _as_uint8(item["lq"])
                assert np.array_equal(lq, _as_uint8(item["gt"]))
                # Image rows hold the source row in channel 0: if it changes along a row, the crop was transposed.
                transposed = bool(lq[0, 0, 0] != lq[0, 1, 0])
                plain = lq.transpose(1, 0, 2) if transposed else lq
                rows, cols = plain[:, :, 0].astype(int), plain[:, :, 1].astype(int)
                vflip, hflip = bool(rows[0, 0] > rows[-1, 0]), bool(cols[0, 0] > cols[0, -1])
                unflipped = plain[:: -1 if vflip else 1, :: -1 if hflip else 1]
                top, left = int(unflipped[0, 0, 0]), int(unflipped[0, 0, 1])
                assert np.array_equal(unflipped, _coordinate_image(40, 50)[top : top + 16, left : left + 16])
                kinds.add((hflip, vflip, transposed))
        seen[mode] = kinds
    assert seen["none"] == {(False, False, False)}
    assert seen["hflip"] == {(False, False, False), (True, False, False)}
    assert seen["flips"] == {(h, v, False) for h in (False, True) for v in (False, True)}
    assert seen["dihedral"] == {(h, v, t) for h in (False, True) for v in (False, True) for t in (False, True)}


def test_unknown_augmentation_and_dihedral_without_crop_are_errors(coordinates: Path) -> None:
    with pytest.raises(DatasetError, match="augment must be one of none, hflip, flips, dihedral"):
        PairedDataset(coordinates, "train", crop_size=16, augment="rot45")
    with pytest.raises(DatasetError, match="needs square crops"):
        PairedDataset(coordinates, "train", crop_size=None, augment="dihedral")
