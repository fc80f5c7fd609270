"""The decode cache: bit-identical items, hits and misses, rebuilding stale or damaged entries, atomic writes."""

from __future__ import annotations

import errno
import mmap
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import benchmark.data.cache as cache_module
import benchmark.data.dataset as dataset_module
from benchmark.data.cache import CacheStats, DecodeCache, build_cache
from benchmark.data.dataset import PairedDataset
from benchmark.data.decode import read_rgb
from benchmark.data.errors import DatasetError
from benchmark.data.pairs import find_pairs
from tests.test_data import _random_rgb, _save, _split

SIZES = {"a": (40, 50), "b": (36, 44), "c": (40, 50)}


@pytest.fixture
def dataset_root(tmp_path: Path) -> Path:
    """A dataset root whose train split has 3 pairs of random 8-bit RGB PNGs (two sizes)."""
    root = tmp_path / "ds"
    _split(root, SIZES)
    return root


def _cached(root: Path, folder: Path, split: str = "train", **kwargs: object) -> PairedDataset:
    """A dataset served by a decode cache: the cache is built first (an explicit call), then passed in; what building
    found and did is ``dataset.cache.stats``."""
    return PairedDataset(root, split, cache=build_cache(find_pairs(root / split), folder, split), **kwargs)


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) of everything under ``folder``, folders included."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def _items(dataset: PairedDataset, epochs: range = range(3)) -> list[dict]:
    items = []
    for epoch in epochs:
        dataset.set_epoch(epoch)
        items.extend(dataset[index] for index in range(len(dataset)))
    return items


def _assert_same_items(first: list[dict], second: list[dict]) -> None:
    assert len(first) == len(second)
    for one, two in zip(first, second, strict=True):
        assert one["name"] == two["name"]
        for key in ("lq", "gt"):
            assert one[key].dtype == two[key].dtype == torch.float32
            assert torch.equal(one[key], two[key])


def _touch_later(path: Path, seconds: float = 10.0) -> None:
    """Moves a file's mtime forward explicitly: filesystem timestamps can be too coarse to see a quick rewrite."""
    mtime_ns = path.stat().st_mtime_ns + int(seconds * 1e9)
    os.utime(path, ns=(mtime_ns, mtime_ns))


@pytest.mark.parametrize(
    ("crop_size", "augment"),
    [(16, "none"), (16, "hflip"), (16, "flips"), (16, "dihedral"), (None, "none"), (None, "flips")],
)
def test_cached_items_are_bit_identical(
    dataset_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crop_size: int | None, augment: str
) -> None:
    kwargs = {"crop_size": crop_size, "augment": augment, "seed": 7}
    plain = PairedDataset(dataset_root, "train", **kwargs)
    cached = _cached(dataset_root, tmp_path / "cache", **kwargs)
    assert isinstance(cached.cache, DecodeCache) and cached.cache.stats.decoded == 6
    reference = _items(plain)

    # What reaches the tensor conversion is a copy of the crop, sharing no memory with the memory map.
    converted: list[tuple[int, ...]] = []
    real_to_tensor = dataset_module.to_tensor

    def spy_to_tensor(image: np.ndarray) -> torch.Tensor:
        base = image
        while base is not None:
            assert not isinstance(base, (np.memmap, mmap.mmap)), "item holds a view of the memory map"
            base = getattr(base, "base", None)
        converted.append(image.shape)
        return real_to_tensor(image)

    monkeypatch.setattr(dataset_module, "to_tensor", spy_to_tensor)
    _assert_same_items(reference, _items(cached))
    assert len(converted) == 2 * len(reference)
    if crop_size is not None:
        assert set(converted) == {(16, 16, 3)}


def test_layout_and_second_construction_decodes_nothing(
    dataset_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    built = build_cache(find_pairs(dataset_root / "train"), cache, "train")
    assert (built.folder, built.split) == (cache, "train")
    first = PairedDataset(dataset_root, "train", crop_size=16, augment="flips", cache=built)
    for name, (height, width) in SIZES.items():
        for side in ("blur", "sharp"):
            npy = cache / "train" / side / f"{name}.npy"
            array = np.load(npy)
            assert array.dtype == np.uint8 and array.shape == (height, width, 3) and array.flags.c_contiguous
            assert np.array_equal(array, read_rgb(dataset_root / "train" / side / f"{name}.png"))
            assert (cache / "train" / side / f"{name}.json").is_file()
    expected_bytes = sum(p.stat().st_size for p in (cache / "train").rglob("*.npy"))
    assert built.stats == CacheStats(
        entries=6, hits=0, decoded=6, decoded_bytes=expected_bytes, total_bytes=expected_bytes, removed_temps=0
    )
    assert build_cache(find_pairs(dataset_root / "train"), cache, "train").stats == CacheStats(
        entries=6, hits=6, decoded=0, decoded_bytes=0, total_bytes=expected_bytes, removed_temps=0
    )
    before = _listing(cache)
    reference = _items(first)

    # A second construction and its items decode nothing: read_rgb is not needed, and np.load maps the entries.
    def no_decoding(path: Path) -> np.ndarray:
        raise AssertionError(f"decoded {path}")

    loads = []
    real_load = np.load

    def spy_load(*args, **kwargs):
        loads.append(kwargs.get("mmap_mode"))
        return real_load(*args, **kwargs)

    # Both places that decode: the cache builder, and the dataset's uncached path.
    monkeypatch.setattr(cache_module, "read_rgb", no_decoding)
    monkeypatch.setattr(dataset_module, "read_rgb", no_decoding)
    monkeypatch.setattr(np, "load", spy_load)
    second = _cached(dataset_root, cache, crop_size=16, augment="flips")
    assert (second.cache.stats.hits, second.cache.stats.decoded) == (6, 0)
    _assert_same_items(reference, _items(second))
    assert loads and set(loads) == {"r"}
    assert _listing(cache) == before  # nothing rewritten


def test_opening_a_dataset_builds_nothing_and_a_cache_serves_only_its_split(dataset_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    pairs = find_pairs(dataset_root / "train")
    partial = build_cache(pairs[:1], cache, "train")  # only pair "a"
    assert partial.stats.entries == 2 and partial.stats.decoded == 2
    before = _listing(cache)
    dataset = PairedDataset(dataset_root, "train", crop_size=None, augment="none", cache=partial)
    assert _listing(cache) == before  # construction decodes and writes nothing: building is build_cache's job
    # An item whose entry is missing is decoded on demand, bit-identical to the uncached path.
    plain = PairedDataset(dataset_root, "train", crop_size=None, augment="none")
    assert torch.equal(dataset[1]["lq"], plain[1]["lq"]) and torch.equal(dataset[1]["gt"], plain[1]["gt"])
    assert (cache / "train" / "blur" / "b.npy").is_file() and not (cache / "train" / "blur" / "c.npy").exists()

    _split(dataset_root, {"t": (40, 50)}, split="test")
    with pytest.raises(DatasetError, match=r"decode cache of the 'train' split cannot serve 'test'") as info:
        PairedDataset(dataset_root, "test", crop_size=None, augment="none", cache=partial)
    assert str(cache) in str(info.value)


def test_changed_source_is_decoded_again(dataset_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    kwargs = {"crop_size": None, "augment": "none"}
    alive = _cached(dataset_root, cache, **kwargs)
    source = dataset_root / "train" / "blur" / "b.png"
    new_pixels = _random_rgb(*SIZES["b"], seed=123)
    _save(source, new_pixels)
    _touch_later(source)
    # A dataset built before the change reads the new pixels, like the uncached path ...
    assert np.array_equal(_as_uint8(alive[1]["lq"]), new_pixels)
    # ... and a new construction finds the entry current.
    again = _cached(dataset_root, cache, **kwargs)
    assert (again.cache.stats.hits, again.cache.stats.decoded) == (6, 0)
    assert np.array_equal(_as_uint8(again[1]["lq"]), new_pixels)

    # A changed mtime alone (same bytes) is a miss too, and only that entry is decoded.
    _touch_later(dataset_root / "train" / "sharp" / "c.png")
    third = _cached(dataset_root, cache, **kwargs)
    assert (third.cache.stats.hits, third.cache.stats.decoded) == (5, 1)
    _assert_same_items(_items(PairedDataset(dataset_root, "train", crop_size=None, augment="none")), _items(third))


def _as_uint8(tensor: torch.Tensor) -> np.ndarray:
    return (tensor * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _wrong_dtype(path: Path) -> None:
    np.save(path, np.load(path).astype(np.float32))


def _wrong_shape(path: Path) -> None:
    np.save(path, np.zeros((4, 4, 3), np.uint8))


def _header_edited_in_place(path: Path) -> None:
    """Same file, size and mtime, but the header no longer describes uint8 data: only the header check sees it."""
    stat = path.stat()
    content = path.read_bytes()
    assert b"'|u1'" in content[:128]
    with path.open("r+b") as handle:
        handle.write(content[:128].replace(b"'|u1'", b"'<i2'"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _garbage_sidecar(path: Path) -> None:
    path.with_suffix(".json").write_text("{not json")


def _no_sidecar(path: Path) -> None:
    path.with_suffix(".json").unlink()


@pytest.mark.parametrize(
    "damage",
    [_truncate, Path.unlink, _wrong_dtype, _wrong_shape, _header_edited_in_place, _garbage_sidecar, _no_sidecar],
    ids=lambda f: f.__name__,
)
def test_damaged_entry_is_rebuilt_not_an_error(dataset_root: Path, tmp_path: Path, damage) -> None:
    cache = tmp_path / "cache"
    kwargs = {"crop_size": 16, "augment": "dihedral", "seed": 3}
    reference = _items(PairedDataset(dataset_root, "train", **kwargs))
    _cached(dataset_root, cache, **kwargs)
    damage(cache / "train" / "sharp" / "a.npy")
    rebuilt = _cached(dataset_root, cache, **kwargs)
    assert (rebuilt.cache.stats.hits, rebuilt.cache.stats.decoded) == (5, 1)
    _assert_same_items(reference, _items(rebuilt))


def test_entry_damaged_after_construction_is_rebuilt_by_items(dataset_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    kwargs = {"crop_size": 16, "augment": "flips", "seed": 3}
    reference = _items(PairedDataset(dataset_root, "train", **kwargs))
    cached = _cached(dataset_root, cache, **kwargs)
    _truncate(cache / "train" / "blur" / "b.npy")
    (cache / "train" / "sharp" / "c.npy").unlink()
    _assert_same_items(reference, _items(cached))
    assert np.load(cache / "train" / "blur" / "b.npy").shape == (*SIZES["b"], 3)


def test_corrupt_source_raises_naming_the_file(dataset_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cached = _cached(dataset_root, cache, crop_size=None, augment="none")
    path = dataset_root / "train" / "sharp" / "c.png"
    _truncate(path)  # header intact: listing still succeeds, decoding fails
    _touch_later(path)
    with pytest.raises(DatasetError, match=r"c\.png: cannot decode") as info:
        cached[2]  # the entry is stale, so the item decodes the source, as the uncached path would
    assert str(path) in str(info.value)
    with pytest.raises(DatasetError, match=r"c\.png: cannot decode"):
        build_cache(find_pairs(dataset_root / "train"), cache, "train")
    with pytest.raises(DatasetError, match=r"c\.png: cannot decode"):
        PairedDataset(dataset_root, "train", crop_size=None, augment="none")[2]


def test_no_temp_files_and_nothing_written_under_the_dataset(dataset_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    before = _listing(dataset_root)
    blur = cache / "train" / "blur"
    blur.mkdir(parents=True)
    stale, live = blur / ".a.npy.4242.deadbeef.tmp", blur / ".b.npy.4243.cafe0123.tmp"
    stale.write_bytes(b"partial")
    live.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    cached = _cached(dataset_root, cache, crop_size=16, augment="flips")
    _items(cached)
    _touch_later(dataset_root / "train" / "blur" / "a.png")  # a rebuild from an item writes no temp file either
    cached[0]
    assert cached.cache.stats.removed_temps == 1
    assert not stale.exists() and live.exists()  # a recent temp may belong to a live builder: left alone
    live.unlink()
    assert [p for p in cache.rglob("*") if p.name.startswith(".")] == []
    after = _listing(dataset_root)
    after[str(Path("train") / "blur" / "a.png")] = before[str(Path("train") / "blur" / "a.png")]  # the utime above
    assert after == before


@pytest.mark.parametrize("where", [".", "cache", "train/cache"])
def test_cache_inside_the_dataset_is_refused(dataset_root: Path, where: str) -> None:
    before = _listing(dataset_root)
    with pytest.raises(DatasetError, match=r"must live outside the dataset folder .*paths\.cache"):
        build_cache(find_pairs(dataset_root / "train"), dataset_root / where, "train")
    assert _listing(dataset_root) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unwritable_cache_folder_is_named(dataset_root: Path, tmp_path: Path) -> None:
    parent = tmp_path / "readonly"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(DatasetError, match=r"cannot write the decode cache.*paths\.cache.*train\.cache") as info:
            build_cache(find_pairs(dataset_root / "train"), parent / "cache", "train")
        assert str(parent / "cache") in str(info.value)
    finally:
        parent.chmod(0o700)


def test_cache_folder_that_cannot_be_created_is_named(dataset_root: Path, tmp_path: Path) -> None:
    # A regular file in the way fails the same way as a permission error, even for root.
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(DatasetError, match=r"cannot write the decode cache.*paths\.cache") as info:
        build_cache(find_pairs(dataset_root / "train"), blocker / "cache", "train")
    assert str(blocker / "cache") in str(info.value)


def test_failed_write_is_named_and_leaves_no_temp_file(
    dataset_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"

    def disk_full(file, array, **kwargs) -> None:
        file.write(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", disk_full)
    with pytest.raises(DatasetError, match=r"cannot write the decode cache there .*No space left") as info:
        build_cache(find_pairs(dataset_root / "train"), cache, "train")
    assert str(cache / "train") in str(info.value)
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_missing_disk_space_is_refused_up_front(
    dataset_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**6, 10**6 - 100, 100))
    with pytest.raises(DatasetError, match=r"needs .* GB more for 6 images but only .* free; .*paths\.cache"):
        build_cache(find_pairs(dataset_root / "train"), tmp_path / "cache", "train")


def test_dataloader_workers_give_the_same_batches(dataset_root: Path, tmp_path: Path) -> None:
    dataset = _cached(dataset_root, tmp_path / "cache", crop_size=16, augment="dihedral", seed=1)
    plain = PairedDataset(dataset_root, "train", crop_size=16, augment="dihedral", seed=1)
    dataset.set_epoch(2)
    plain.set_epoch(2)
    batches = [
        [batch for batch in torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers)]
        for ds, workers in ((plain, 0), (dataset, 0), (dataset, 2))
    ]
    for other in batches[1:]:
        assert len(other) == len(batches[0])
        for one, two in zip(batches[0], other, strict=True):
            assert one["name"] == two["name"]
            assert torch.equal(one["lq"], two["lq"]) and torch.equal(one["gt"], two["gt"])


def _rebuild_repeatedly(root: Path, cache: Path, rounds: int) -> None:
    """A builder process: forces a rebuild (the source's mtime moves on) and rebuilds, ``rounds`` times."""
    pairs = find_pairs(root / "train")
    for _ in range(rounds):
        mtime_ns = time.time_ns() + os.getpid()  # distinct per process, so every round is a miss for everyone
        os.utime(root / "train" / "blur" / "big.png", ns=(mtime_ns, mtime_ns))
        build_cache(pairs, cache, "train")


def test_concurrent_builders_never_expose_a_partial_file(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _split(root, {"big": (384, 512)})
    cache = tmp_path / "cache"
    expected = read_rgb(root / "train" / "blur" / "big.png")
    build_cache(find_pairs(root / "train"), cache, "train")
    npy = cache / "train" / "blur" / "big.npy"
    context = multiprocessing.get_context("fork")  # cheap to start, and the builders need nothing re-imported
    builders = [context.Process(target=_rebuild_repeatedly, args=(root, cache, 12)) for _ in range(2)]
    for builder in builders:
        builder.start()
    reads = 0
    try:
        # Readers see the old file or the new one, never a partial one, while both builders replace it. (Read, not
        # mapped: a file truncated under a memory map would kill the test with SIGBUS instead of failing it.)
        while any(builder.is_alive() for builder in builders):
            assert np.array_equal(np.load(npy), expected)
            reads += 1
    finally:
        for builder in builders:
            builder.join(timeout=30)
    assert [builder.exitcode for builder in builders] == [0, 0] and reads > 0
    # Whatever order the builders finished in, the next build leaves a consistent cache, then all hits, no temp file.
    pairs = find_pairs(root / "train")
    build_cache(pairs, cache, "train")
    assert build_cache(pairs, cache, "train").stats.decoded == 0
    assert np.array_equal(np.load(npy), expected)
    assert [p for p in cache.rglob("*") if p.name.startswith(".")] == []
