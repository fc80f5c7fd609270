"""The dataset identity record: written by the builders, read back with a stat per file, refused once the folder
changed, and re-recorded on purpose with ``rehash=true``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.core.config import load_config
from benchmark.core.layout import Layout
from benchmark.core.sections import PathsConfig
from benchmark.data.errors import DatasetError, FetchError
from benchmark.data.fetch import rehash_dataset
from benchmark.data.identity import FORMAT, RECORD, content_hash, image_files, read_identity, record_identity

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def dataset(tiny_synth: Path, tmp_path: Path) -> Path:
    """A private copy of the session's tiny synthblur (``<tmp>/data/synthblur``), sizes and mtimes kept, so a test
    may change it; the session fixture itself is never touched."""
    root = tmp_path / "data" / "synthblur"
    shutil.copytree(tiny_synth, root)  # copy2: keeps st_mtime_ns, so the copied record still matches
    return root


def _independent_hash(root: Path) -> str:
    """The documented content hash, computed here from scratch: for every image file in sorted relative POSIX path
    order, the path's UTF-8 length (8 bytes, little-endian), the path, then the file's 32-byte SHA-256 digest."""
    paths = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix == ".png" and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    digest = hashlib.sha256()
    for relative in paths:
        encoded = relative.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
        digest.update(hashlib.sha256((root / relative).read_bytes()).digest())
    return digest.hexdigest()


def _images(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))


def test_record_then_read_back(dataset: Path) -> None:
    images = _images(dataset)
    assert len(images) == 2 * (9 + 2)  # 9 train and 2 test pairs
    identity = read_identity(dataset, "synthblur")  # the generator's record, still valid in the copy
    assert (identity.dataset, identity.made_by) == ("synthblur", "synth")
    assert identity.sha256 == _independent_hash(dataset)
    assert sorted(identity.files) == images == image_files(dataset)
    for relative, (size, mtime_ns) in identity.files.items():
        stat = (dataset / relative).stat()
        assert (size, mtime_ns) == (stat.st_size, stat.st_mtime_ns)

    recorded = record_identity(dataset, "synthblur", "rehash")
    assert recorded.sha256 == identity.sha256 and recorded.files == identity.files and recorded.made_by == "rehash"
    assert read_identity(dataset, "synthblur") == recorded
    on_disk = json.loads((dataset / RECORD).read_text())
    assert on_disk == {
        "format": FORMAT,
        "dataset": "synthblur",
        "sha256": identity.sha256,
        "made_by": "rehash",
        "files": {k: list(v) for k, v in identity.files.items()},
    }


def test_content_hash_is_the_documented_sha256(dataset: Path) -> None:
    expected = _independent_hash(dataset)
    assert content_hash(dataset) == expected
    # Not a hash of the bytes alone: renaming a file (same bytes) changes it, and so does one changed pixel.
    blur = dataset / "test" / "blur" / "chelsea_0.png"
    blur.rename(blur.with_name("chelsea_9.png"))
    (dataset / "test" / "sharp" / "chelsea_0.png").rename(dataset / "test" / "sharp" / "chelsea_9.png")
    renamed = content_hash(dataset)
    assert renamed == _independent_hash(dataset) != expected
    path = dataset / "train" / "sharp" / "brick_0.png"
    pixels = np.asarray(Image.open(path)).copy()
    pixels[0, 0, 0] ^= 1
    Image.fromarray(pixels).save(path)
    assert content_hash(dataset) == _independent_hash(dataset) != renamed


def _assert_refused(root: Path, match: str, named: Path) -> None:
    with pytest.raises(DatasetError, match=match) as info:
        read_identity(root, "synthblur")
    message = str(info.value)
    assert str(named) in message
    assert "python -m benchmark.fetch dataset=synthblur rehash=true" in message
    assert "dvc repro fetch@synthblur" in message


def test_touched_file_is_refused(dataset: Path) -> None:
    path = dataset / "train" / "blur" / "camera_1.png"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # same bytes, another mtime
    _assert_refused(dataset, r"camera_1\.png changed \(size or modification time\)", path)


def test_rewritten_file_of_another_size_is_refused(dataset: Path) -> None:
    path = dataset / "test" / "sharp" / "chelsea_1.png"
    stat = path.stat()
    path.write_bytes(path.read_bytes() + b"\0")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the mtime put back: only the size tells
    _assert_refused(dataset, r"chelsea_1\.png changed", path)


def test_removed_file_is_refused(dataset: Path) -> None:
    path = dataset / "train" / "sharp" / "rocket_2.png"
    path.unlink()
    _assert_refused(dataset, r"rocket_2\.png was removed", path)


def test_added_file_is_refused(dataset: Path) -> None:
    path = dataset / "train" / "blur" / "zzz_extra.png"
    shutil.copy2(dataset / "train" / "blur" / "brick_0.png", path)
    _assert_refused(dataset, r"zzz_extra\.png was added", path)
    # Files that are not images (and hidden ones) are not part of the identity.
    path.unlink()
    (dataset / "notes.txt").write_text("hello")
    (dataset / "train" / "blur" / ".DS_Store").write_bytes(b"x")
    assert read_identity(dataset, "synthblur").sha256 == content_hash(dataset)


def test_missing_record_is_refused(dataset: Path) -> None:
    (dataset / RECORD).unlink()
    _assert_refused(dataset, r"identity\.json: no identity record", dataset / RECORD)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "unreadable identity record"),
        ("[1, 2]", "unreadable identity record"),
        ('{"format": "msfs-bench/dataset-identity/1"}', "unreadable identity record"),
        (
            '{"format": "x", "dataset": "synthblur", "sha256": "0", "made_by": "synth", "files": {}}',
            "identity record of another format",
        ),
        (
            '{"format": "msfs-bench/dataset-identity/1", "dataset": "synthblur", "sha256": "0", "made_by": "synth", '
            '"files": {"a.png": [1]}}',
            "unreadable identity record",
        ),
        (
            '{"format": "msfs-bench/dataset-identity/1", "dataset": "synthblur", "sha256": "0", "made_by": "synth", '
            '"files": []}',
            "unreadable identity record",
        ),
    ],
    ids=["garbled", "a list", "keys missing", "other format", "bad file entry", "files a list"],
)
def test_garbled_record_is_refused(dataset: Path, content: str, match: str) -> None:
    (dataset / RECORD).write_text(content)
    _assert_refused(dataset, rf"identity\.json: {match}", dataset / RECORD)


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nowhere: dataset folder not found"):
        read_identity(tmp_path / "nowhere", "synthblur")
    layout = Layout(PathsConfig(data=str(tmp_path / "nowhere")), root=tmp_path)
    with pytest.raises(FetchError, match=r"nowhere/synthblur: no dataset folder to re-hash"):
        rehash_dataset(load_config(["dataset=synthblur"]).dataset, layout)
    assert not (tmp_path / "nowhere").exists()


def test_rehash_command_records_what_the_folder_holds_now(dataset: Path) -> None:
    old = read_identity(dataset, "synthblur")
    path = dataset / "train" / "blur" / "brick_1.png"
    pixels = np.asarray(Image.open(path)).copy()
    pixels[5, 7] = 255 - pixels[5, 7]
    Image.fromarray(pixels).save(path)  # changed on purpose
    with pytest.raises(DatasetError, match=r"brick_1\.png changed"):
        read_identity(dataset, "synthblur")

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark.fetch",
            "dataset=synthblur",
            "rehash=true",
            f"paths.data={dataset.parent}",
            "tracking=none",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    new = read_identity(dataset, "synthblur")  # passes again
    assert new.made_by == "rehash" and new.sha256 == _independent_hash(dataset) != old.sha256
    assert new.files[path.relative_to(dataset).as_posix()] == (path.stat().st_size, path.stat().st_mtime_ns)
    assert f"[fetch] synthblur: recorded sha256 {new.sha256} of {len(new.files)} images" in done.stdout
    # Only the record was written: the images are as they were, none regenerated.
    assert np.array_equal(np.asarray(Image.open(path)), pixels)
    assert sorted(p.name for p in dataset.parent.iterdir()) == ["synthblur"]
