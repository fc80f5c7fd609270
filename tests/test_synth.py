"""The synthblur generator: deterministic, disjoint, really blurred, documented, identified, atomic."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import yaml
from PIL import Image

from benchmark.core.config import load_config
from benchmark.core.errors import ConfigError
from benchmark.core.layout import IDENTITY_RECORD, SYNTH_MANIFEST, Layout
from benchmark.core.schema import build, to_plain
from benchmark.core.sections import PathsConfig, SynthConfig
from benchmark.data.errors import SynthError
from benchmark.data.identity import RECORD, content_hash, read_identity
from benchmark.data.pairs import find_pairs
from benchmark.data.synth import check_scenes, generate_synthblur

REPO = Path(__file__).resolve().parents[1]

# Small enough for a fraction of a second: 4 train + 2 test pairs of 64x64.
SMALL = SynthConfig(
    train_photos=("brick", "camera"),
    test_photos=("chelsea",),
    train_crops_per_photo=2,
    test_crops_per_photo=2,
    size=64,
    max_source_side=256,
)


def _files(root: Path, skip: str | None = None) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() != skip
    }


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.float64) / 255.0


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "synthblur"
    return root, generate_synthblur(root, SMALL)


def test_same_params_give_byte_identical_files(small: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = small
    again = tmp_path / "again" / "synthblur"
    generate_synthblur(again, SMALL)
    # The identity record holds modification times, which differ between two runs; everything else is byte-identical,
    # and so is the content hash it records.
    assert _files(again).keys() == _files(root).keys()
    assert _files(again, skip=RECORD) == _files(root, skip=RECORD)
    records = [json.loads((folder / RECORD).read_text()) for folder in (again, root)]
    assert records[0]["sha256"] == records[1]["sha256"] == content_hash(root)
    assert {k: v[0] for k, v in records[0]["files"].items()} == {k: v[0] for k, v in records[1]["files"].items()}
    other = tmp_path / "other"
    generate_synthblur(other, dataclasses.replace(SMALL, seed=SMALL.seed + 1))
    assert _files(other)["train/blur/brick_0.png"] != _files(root)["train/blur/brick_0.png"]


def test_layout_names_and_image_format(small: tuple[Path, dict]) -> None:
    root, manifest = small
    expected = {
        "train": ["brick_0", "brick_1", "camera_0", "camera_1"],
        "test": ["chelsea_0", "chelsea_1"],
    }
    assert sorted(p.name for p in root.iterdir()) == sorted([IDENTITY_RECORD, SYNTH_MANIFEST, "test", "train"])
    for split, names in expected.items():
        for sub in ("blur", "sharp"):
            assert sorted(p.stem for p in (root / split / sub).iterdir()) == names
        assert [pair.name for pair in find_pairs(root / split, verify=True)] == names
        for name in names:
            with Image.open(root / split / "blur" / f"{name}.png") as image:
                assert (image.format, image.mode, image.size) == ("PNG", "RGB", (64, 64))
    assert manifest["counts"] == {"train": 4, "test": 2}
    # The identity record: the content hash of every image, recorded by the generator.
    identity = read_identity(root, "synthblur")
    assert (identity.dataset, identity.made_by) == ("synthblur", "synth")
    assert identity.sha256 == content_hash(root)
    assert sorted(identity.files) == sorted(
        f"{split}/{sub}/{name}.png" for split, names in expected.items() for sub in ("blur", "sharp") for name in names
    )


def test_train_and_test_photos_are_disjoint(small: tuple[Path, dict]) -> None:
    root, manifest = small
    photos = {
        split: {manifest["images"][f"{split}/{p.name}"]["photo"] for p in (root / split / "blur").iterdir()}
        for split in ("train", "test")
    }
    assert photos == {"train": {"brick", "camera"}, "test": {"chelsea"}}
    defaults = SynthConfig()
    assert not set(defaults.train_photos) & set(defaults.test_photos)
    assert "clock" not in defaults.train_photos + defaults.test_photos  # already motion-blurred
    check_scenes(defaults)  # the defaults pass
    with pytest.raises(SynthError, match="motorcycle_right") as info:
        check_scenes(SynthConfig(train_photos=("motorcycle_left",), test_photos=("motorcycle_right",)))
    assert isinstance(info.value, ConfigError) and info.value.key == "dataset.synth.test_photos"
    with pytest.raises(SynthError, match=r"dataset\.synth\.test_photos: \['camera'\] .*disjoint"):
        check_scenes(SynthConfig(train_photos=("brick", "camera"), test_photos=("camera",)))


def test_generator_refuses_shared_scenes_before_writing_anything(tmp_path: Path) -> None:
    shared = SynthConfig(train_photos=("motorcycle_left",), test_photos=("motorcycle_right",))
    with pytest.raises(SynthError, match=r"dataset\.synth\.test_photos: \['motorcycle_right'\] share a scene"):
        generate_synthblur(tmp_path / "synthblur", shared)
    assert list(tmp_path.iterdir()) == []


def test_blur_really_blurs(small: tuple[Path, dict]) -> None:
    root, _ = small
    psnrs = []
    for pair in find_pairs(root / "train") + find_pairs(root / "test"):
        lq, gt = _read(pair.blur), _read(pair.sharp)
        psnrs.append(10 * np.log10(1.0 / np.mean((lq - gt) ** 2)))
        # Motion blur removes high frequencies: less gradient energy than the sharp frame (noise adds a little).
        gradient = [np.mean(np.diff(x, axis=0) ** 2) + np.mean(np.diff(x, axis=1) ** 2) for x in (lq, gt)]
        assert gradient[0] < 0.8 * gradient[1], pair.name
    assert all(15.0 < p < 40.0 for p in psnrs), psnrs
    assert 20.0 < np.mean(psnrs) < 35.0, psnrs


def test_sharp_is_the_unwarped_middle_frame(tmp_path: Path) -> None:
    # Without downscaling, the middle frame's pose is zero, so the sharp image is an exact crop of the photo.
    params = dataclasses.replace(SMALL, train_photos=("camera",), train_crops_per_photo=1, max_source_side=512)
    manifest = generate_synthblur(tmp_path / "d", params)
    top, left = manifest["images"]["train/camera_0.png"]["crop_top_left"]
    crop = skimage.data.camera()[top : top + 64, left : left + 64]
    with Image.open(tmp_path / "d/train/sharp/camera_0.png") as image:
        sharp = np.asarray(image)
    assert np.array_equal(sharp, np.repeat(crop[:, :, None], 3, axis=2))


def test_synth_json_records_params_versions_and_trajectories(small: tuple[Path, dict]) -> None:
    root, manifest = small
    written = json.loads((root / SYNTH_MANIFEST).read_text())
    assert written == manifest
    assert written["params"] == to_plain(SMALL)
    assert build(SynthConfig, written["params"], "dataset.synth") == SMALL
    assert written["seed"] == SMALL.seed
    assert {"numpy", "scikit-image", "pillow"} <= set(written["versions"])
    assert sorted(written["images"]) == sorted(
        f"{split}/{p.name}" for split in ("train", "test") for p in (root / split / "blur").iterdir()
    )
    for record in written["images"].values():
        assert record["frames"] in SMALL.frames
        trajectory = np.array(record["trajectory_dx_dy_theta"])
        assert trajectory.shape == (record["frames"], 3)
        assert np.all(trajectory[record["frames"] // 2] == 0)  # the sharp target is the middle frame
        assert SMALL.extent_px[0] - 1e-4 <= record["extent_px"] <= SMALL.extent_px[1] + 1e-4


def _main_axis_deg(trajectory: np.ndarray) -> float:
    """The angle of a trajectory's first principal axis, in degrees in (-90, 90] (an axis has no sign)."""
    xy = trajectory[:, :2] - trajectory[:, :2].mean(axis=0)
    vx, vy = np.linalg.svd(xy, full_matrices=False)[2][0]
    angle = np.degrees(np.arctan2(vy, vx))
    return float(angle - 180 if angle > 90 else angle + 180 if angle <= -90 else angle)


def test_direction_range_orients_every_trajectory_and_keeps_its_extent(tmp_path: Path) -> None:
    params = dataclasses.replace(SMALL, direction_deg=(-20.0, 20.0), momentum=0.9)
    manifest = generate_synthblur(tmp_path / "synthblur", params)
    angles = []
    for record in manifest["images"].values():
        trajectory = np.array(record["trajectory_dx_dy_theta"])
        angles.append(_main_axis_deg(trajectory))
        assert np.all(trajectory[record["frames"] // 2] == 0)
        assert params.extent_px[0] - 1e-4 <= record["extent_px"] <= params.extent_px[1] + 1e-4
    assert all(-20.0 - 1e-3 <= a <= 20.0 + 1e-3 for a in angles), angles
    # Isotropic (the default null) is not so confined: the small set's own trajectories point elsewhere too.
    isotropic = [
        _main_axis_deg(np.array(r["trajectory_dx_dy_theta"]))
        for r in generate_synthblur(tmp_path / "iso", dataclasses.replace(SMALL, momentum=0.9, direction_deg=None))[
            "images"
        ].values()
    ]
    assert max(abs(a) for a in isotropic) > 20.0


def _synth(mapping: dict) -> SynthConfig:
    return build(SynthConfig, mapping, "dataset.synth")


@pytest.mark.parametrize(
    ("mapping", "key", "message"),
    [
        ({"size": 64, "blur_sigma": 2.0}, "dataset.synth.blur_sigma", "unknown key"),
        ({"size": "64"}, "dataset.synth.size", "expected an integer"),
        ({"size": True}, "dataset.synth.size", "expected an integer"),
        ({"extent_px": [1.0, 2.0, 3.0]}, "dataset.synth.extent_px", "expected 2 values"),
        ({"frames": [7, 8]}, "dataset.synth.frames", "odd"),
        ({"extent_px": [9, 3]}, "dataset.synth.extent_px", r"0 <= min <= max, got \[9.0, 3.0\]"),
        ({"train_photos": ["no_such_photo"]}, "dataset.synth.train_photos[0]", "no_such_photo"),
        ({"direction_deg": [30, -30]}, "dataset.synth.direction_deg", "-180 <= min <= max <= 180"),
    ],
)
def test_building_params_rejects_unknown_keys_and_bad_values(mapping: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: .*{message}") as info:
        _synth(mapping)
    assert info.value.key == key


def test_building_params_coerces_and_freezes() -> None:
    params = _synth({"extent_px": [2, 5], "test_photos": ["coffee"]})
    assert params.extent_px == (2.0, 5.0) and params.test_photos == ("coffee",)
    assert all(isinstance(v, float) for v in params.extent_px)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.size = 32  # type: ignore[misc]


def test_config_file_holds_every_default() -> None:
    config = yaml.safe_load((REPO / "conf/dataset/synthblur.yaml").read_text())
    # No root: the folder is <paths.data>/<name>, spelled by the Layout.
    assert config["name"] == "synthblur" and "root" not in config
    assert Layout(PathsConfig(), root=REPO).dataset(config["name"]) == REPO / "data" / "synthblur"
    assert set(config["protocol"]) == {"quantize", "ssim_variant", "align", "crop_border"}
    assert set(config["synth"]) == {f.name for f in dataclasses.fields(SynthConfig)}
    assert _synth(config["synth"]) == SynthConfig()
    assert load_config(["dataset=synthblur"]).dataset.synth == SynthConfig()
    # The hold-out rule takes the last names: with these defaults that is exactly one unseen train photo.
    defaults = SynthConfig()
    assert config["val_count"] == defaults.train_crops_per_photo
    assert sorted(defaults.train_photos)[-1] == "rocket"


def test_failure_midway_leaves_the_target_untouched(tmp_path: Path) -> None:
    # "text" (172x448, 98x256 after resizing) is too small for 100px crops; it comes after the train split and
    # the first test photo have been written, so the failure happens midway through the build.
    failing = dataclasses.replace(SMALL, size=100, test_photos=("chelsea", "text"))
    fresh = tmp_path / "fresh"
    with pytest.raises(SynthError, match="'text'"):
        generate_synthblur(fresh, failing)
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    existing = tmp_path / "existing"
    generate_synthblur(existing, SMALL)
    before = _files(existing)
    with pytest.raises(SynthError, match="'text'"):
        generate_synthblur(existing, failing)
    assert _files(existing) == before
    assert read_identity(existing, "existing").sha256 == content_hash(existing)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]

    # A successful run replaces the old dataset completely (no stale files survive).
    generate_synthblur(existing, dataclasses.replace(SMALL, train_photos=("grass",), train_crops_per_photo=1))
    assert sorted(p.name for p in (existing / "train" / "blur").iterdir()) == ["grass_0.png"]
    assert sorted(read_identity(existing, "existing").files) == [
        "test/blur/chelsea_0.png",
        "test/blur/chelsea_1.png",
        "test/sharp/chelsea_0.png",
        "test/sharp/chelsea_1.png",
        "train/blur/grass_0.png",
        "train/sharp/grass_0.png",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]


def _fetch_cli(*overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmark.fetch", "dataset=synthblur", *overrides, "tracking=none"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_command_line_reads_the_dataset_config(tmp_path: Path) -> None:
    small = [
        "dataset.synth.train_photos=[brick]",
        "dataset.synth.test_photos=[chelsea]",
        "dataset.synth.train_crops_per_photo=1",
        "dataset.synth.test_crops_per_photo=1",
        "dataset.synth.size=64",
        "dataset.synth.max_source_side=256",
    ]
    data = tmp_path / "data"
    done = _fetch_cli(f"paths.data={data}", *small)
    assert done.returncode == 0, done.stderr[-3000:]
    root = data / "synthblur"
    assert f"[fetch] synthblur: 1 train / 1 test pairs in {root}" in done.stdout
    assert sorted(p.name for p in (root / "test" / "sharp").iterdir()) == ["chelsea_0.png"]
    assert sorted(p.name for p in (root / "train" / "blur").iterdir()) == ["brick_0.png"]
    expected = dataclasses.replace(SMALL, train_photos=("brick",), train_crops_per_photo=1, test_crops_per_photo=1)
    assert json.loads((root / SYNTH_MANIFEST).read_text())["params"] == to_plain(expected)
    identity = read_identity(root, "synthblur")
    assert identity.made_by == "synth" and identity.sha256 == content_hash(root) and len(identity.files) == 4
    assert sorted(p.name for p in data.iterdir()) == ["synthblur"]  # no build folder left

    # An unknown key is named, with where it came from; nothing is written.
    bad = _fetch_cli(f"paths.data={tmp_path / 'bad'}", *small, "+dataset.synth.sizes=3")
    assert bad.returncode == 2
    assert "dataset.synth.sizes: unknown key" in bad.stderr and "(from the command line)" in bad.stderr
    assert not (tmp_path / "bad").exists()

    # The scene check runs on the command line's path too.
    shared = _fetch_cli(
        f"paths.data={tmp_path / 'shared'}",
        "dataset.synth.train_photos=[motorcycle_left]",
        "dataset.synth.test_photos=[motorcycle_right]",
    )
    assert shared.returncode == 2
    assert "dataset.synth.test_photos: ['motorcycle_right'] share a scene" in shared.stderr
    assert not (tmp_path / "shared").exists()  # refused before any folder is made
