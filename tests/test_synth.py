"""The synthblur generator: deterministic, disjoint, really blurred, documented, atomic."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import yaml
from PIL import Image

from benchmark.data import find_pairs
from benchmark.synth import SynthError, SynthParams, generate_synthblur, main

REPO = Path(__file__).resolve().parents[1]

# Small enough for a fraction of a second: 4 train + 2 test pairs of 64x64.
SMALL = SynthParams(
    train_photos=("brick", "camera"),
    test_photos=("chelsea",),
    train_crops_per_photo=2,
    test_crops_per_photo=2,
    size=64,
    max_source_side=256,
)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.float64) / 255.0


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "synthblur"
    return root, generate_synthblur(root, SMALL)


def test_same_params_give_byte_identical_files(small: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = small
    again = tmp_path / "again"
    generate_synthblur(again, SMALL)
    assert _files(again) == _files(root)
    other = tmp_path / "other"
    generate_synthblur(other, dataclasses.replace(SMALL, seed=SMALL.seed + 1))
    assert _files(other)["train/blur/brick_0.png"] != _files(root)["train/blur/brick_0.png"]


def test_layout_names_and_image_format(small: tuple[Path, dict]) -> None:
    root, manifest = small
    expected = {
        "train": ["brick_0", "brick_1", "camera_0", "camera_1"],
        "test": ["chelsea_0", "chelsea_1"],
    }
    assert sorted(p.name for p in root.iterdir()) == ["synth.json", "test", "train"]
    for split, names in expected.items():
        for sub in ("blur", "sharp"):
            assert sorted(p.stem for p in (root / split / sub).iterdir()) == names
        assert [pair.name for pair in find_pairs(root / split, verify=True)] == names
        for name in names:
            with Image.open(root / split / "blur" / f"{name}.png") as image:
                assert (image.format, image.mode, image.size) == ("PNG", "RGB", (64, 64))
    assert manifest["counts"] == {"train": 4, "test": 2}


def test_train_and_test_photos_are_disjoint(small: tuple[Path, dict]) -> None:
    root, manifest = small
    photos = {
        split: {manifest["images"][f"{split}/{p.name}"]["photo"] for p in (root / split / "blur").iterdir()}
        for split in ("train", "test")
    }
    assert photos == {"train": {"brick", "camera"}, "test": {"chelsea"}}
    defaults = SynthParams()
    assert not set(defaults.train_photos) & set(defaults.test_photos)
    assert "clock" not in defaults.train_photos + defaults.test_photos  # already motion-blurred
    with pytest.raises(SynthError, match="motorcycle_right"):
        SynthParams(train_photos=("motorcycle_left",), test_photos=("motorcycle_right",))
    with pytest.raises(SynthError, match="disjoint"):
        SynthParams(train_photos=("brick", "camera"), test_photos=("camera",))


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
    written = json.loads((root / "synth.json").read_text())
    assert written == manifest
    assert SynthParams.from_mapping(written["params"]) == SMALL
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


def test_from_mapping_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(SynthError, match=r"synth\.blur_sigma: unknown key"):
        SynthParams.from_mapping({"size": 64, "blur_sigma": 2.0})
    with pytest.raises(SynthError, match=r"synth\.size: expected an integer"):
        SynthParams.from_mapping({"size": "64"})
    with pytest.raises(SynthError, match=r"synth\.size: expected an integer"):
        SynthParams.from_mapping({"size": True})
    with pytest.raises(SynthError, match=r"synth\.extent_px: expected 2 values"):
        SynthParams.from_mapping({"extent_px": [1.0, 2.0, 3.0]})
    with pytest.raises(SynthError, match="odd"):
        SynthParams.from_mapping({"frames": [7, 8]})
    with pytest.raises(SynthError, match="extent_px"):
        SynthParams.from_mapping({"extent_px": [9, 3]})
    with pytest.raises(SynthError, match="no_such_photo"):
        SynthParams.from_mapping({"train_photos": ["no_such_photo"]})
    params = SynthParams.from_mapping({"extent_px": [2, 5], "test_photos": ["coffee"]})
    assert params.extent_px == (2.0, 5.0) and params.test_photos == ("coffee",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.size = 32  # type: ignore[misc]


def test_config_file_holds_every_default() -> None:
    config = yaml.safe_load((REPO / "conf/dataset/synthblur.yaml").read_text())
    assert config["name"] == "synthblur" and config["root"] == "data/synthblur"
    assert set(config["protocol"]) == {"quantize", "ssim_variant", "align", "crop_border"}
    assert set(config["synth"]) == {f.name for f in dataclasses.fields(SynthParams)}
    assert SynthParams.from_mapping(config["synth"]) == SynthParams()
    # The hold-out rule takes the last names: with these defaults that is exactly one unseen train photo.
    defaults = SynthParams()
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]

    # A successful run replaces the old dataset completely (no stale files survive).
    generate_synthblur(existing, dataclasses.replace(SMALL, train_photos=("grass",), train_crops_per_photo=1))
    assert sorted(p.name for p in (existing / "train" / "blur").iterdir()) == ["grass_0.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]


def test_command_line_reads_the_dataset_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "out"
    synth = {**SMALL.to_dict(), "train_photos": ["brick"], "train_crops_per_photo": 1, "test_crops_per_photo": 1}
    config = tmp_path / "synthblur.yaml"
    config.write_text(yaml.safe_dump({"name": "synthblur", "root": str(root), "synth": synth}))
    assert main(["--config", str(config)]) == 0
    assert "1 train + 1 test pairs of 64x64" in capsys.readouterr().out
    assert sorted(p.name for p in (root / "test" / "sharp").iterdir()) == ["chelsea_0.png"]

    config.write_text(yaml.safe_dump({"root": str(tmp_path / "bad"), "synth": {**synth, "sizes": 3}}))
    assert main(["--config", str(config)]) == 2
    assert "synth.sizes: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
