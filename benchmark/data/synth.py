"""``synthblur``: a small GoPro-like motion-blur dataset generated from scikit-image's bundled photographs.

GoPro (Nah et al., CVPR 2017) makes each blurry image by averaging 7-13 consecutive sharp 240 fps frames of a
hand-held camera, in linear light, and uses the middle frame as the sharp target. This module simulates the same
process on still photographs, so the benchmark has a dataset that needs no download and fits a CPU budget:

1. a camera-shake trajectory: a random walk with momentum (hand shake is smooth at 240 fps), a small in-plane
   rotation, sampled at ``N`` frames, ``N`` odd so a middle frame exists, re-centred on that middle frame and scaled
   so its extent (largest distance between two frame positions) is drawn from ``extent_px``;
2. every frame is the photo warped by that frame's sub-pixel pose (bicubic), sampled straight from the full photo
   into the crop window, whose position keeps every sample away from the photo border (no border artefacts);
3. the frames are averaged in linear light (inverse gamma, mean, gamma), as a sensor integrates light;
4. slight Gaussian sensor noise is added to the blurry image, then both images are quantised to 8-bit PNG.

Train and test come from disjoint source photos (GoPro's train and test scenes are disjoint); the two motorcycle
views are one scene and must stay on the same side. The generator's parameters, the package versions and every
image's trajectory are written to ``<root>/synth.json``; the identity record (``benchmark.data.identity``) beside it.

The ``fetch@synthblur`` stage runs it: ``python -m benchmark.fetch dataset=synthblur`` (its parameters are the
dataset's ``synth:`` section, ``benchmark.core.sections.SynthConfig``).
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import types
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import skimage
import skimage.data
from PIL import Image
from skimage.transform import resize, warp

from benchmark.core import atomic
from benchmark.core.hashing import sha256_bytes
from benchmark.core.layout import SYNTH_MANIFEST
from benchmark.core.schema import to_plain
from benchmark.core.sections import SynthConfig
from benchmark.data.errors import SynthError
from benchmark.data.identity import record_identity

__all__ = ["PHOTOS", "check_scenes", "generate_synthblur"]

# Version of the layout and of synth.json; bump it when the generator's output changes for the same params.
FORMAT_VERSION = 1


def _stereo(index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return skimage.data.stereo_motorcycle()[index]

    return load


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return getattr(skimage.data, name)()

    return load


# Natural photographs bundled in the scikit-image wheel (no pooch download needed). Left out on purpose: ``clock``
# (clock_motion.png is already motion-blurred), ``cat`` (the same file as ``chelsea``), and the synthetic images
# (checkerboard, colorwheel, logo, horse, phantom), whose flat regions and hard edges look nothing like GoPro.
PHOTOS: Mapping[str, Callable[[], np.ndarray]] = types.MappingProxyType(
    {
        "astronaut": _skimage("astronaut"),
        "brick": _skimage("brick"),
        "camera": _skimage("camera"),
        "cell": _skimage("cell"),
        "chelsea": _skimage("chelsea"),
        "coffee": _skimage("coffee"),
        "coins": _skimage("coins"),
        "grass": _skimage("grass"),
        "gravel": _skimage("gravel"),
        "hubble_deep_field": _skimage("hubble_deep_field"),
        "immunohistochemistry": _skimage("immunohistochemistry"),
        "moon": _skimage("moon"),
        "motorcycle_left": _stereo(0),
        "motorcycle_right": _stereo(1),
        "page": _skimage("page"),
        "retina": _skimage("retina"),
        "rocket": _skimage("rocket"),
        "text": _skimage("text"),
    }
)

# Photos of one scene: they must land in the same split, or the test set would contain the training scene.
_SCENES: Mapping[str, str] = types.MappingProxyType({"motorcycle_left": "motorcycle", "motorcycle_right": "motorcycle"})


def check_scenes(params: SynthConfig, key: str = "dataset.synth") -> None:
    """Refuse test photos that show a training scene (the two motorcycle views are one scene).

    Raises:
        SynthError: naming ``<key>.test_photos`` and the shared photos.
    """
    train_scenes = {_SCENES.get(p, p) for p in params.train_photos}
    shared = sorted(p for p in params.test_photos if _SCENES.get(p, p) in train_scenes)
    if shared:
        raise SynthError(
            f"{shared} share a scene with train_photos; train and test must be disjoint", key=f"{key}.test_photos"
        )


def _load_photo(name: str, params: SynthConfig) -> tuple[np.ndarray, str]:
    """Loads a bundled photo as a linear-light scene.

    Returns:
        ``(scene, sha256)``: the scene, float64 (H, W, 3) in [0, 1], linear light, longer side at most
        ``params.max_source_side``; and the sha256 of the photo's decoded uint8 pixels (provenance).
    """
    photo = np.asarray(PHOTOS[name]())
    if photo.dtype != np.uint8:
        raise SynthError(f"photo {name!r} is {photo.dtype}, expected uint8")
    digest = sha256_bytes(photo.tobytes())
    if photo.ndim == 2:
        photo = np.repeat(photo[:, :, None], 3, axis=2)
    photo = photo[:, :, :3]
    scene = (photo.astype(np.float64) / 255.0) ** params.gamma
    height, width = scene.shape[:2]
    if max(height, width) > params.max_source_side:
        scale = params.max_source_side / max(height, width)
        shape = (round(height * scale), round(width * scale), 3)
        # Downscaling in linear light keeps edge contrast physically right (sRGB averaging darkens edges).
        scene = resize(scene, shape, order=1, anti_aliasing=True, mode="reflect")
    return np.ascontiguousarray(scene.clip(0.0, 1.0)), digest


def _trajectory(rng: np.random.Generator, params: SynthConfig) -> np.ndarray:
    """Draws one camera-shake trajectory.

    Returns:
        float64 (N, 3): per frame ``(dx, dy, theta)``: offset in pixels and rotation in radians, relative to the
        middle frame (whose pose is exactly zero, so the sharp target is an unresampled crop).
    """
    count = int(rng.choice(params.frames))
    velocity = rng.standard_normal(2)
    steps = np.empty((count - 1, 2))
    # AR(1) velocity: momentum keeps the direction for a few frames, as a hand's shake is smooth at 240 fps.
    for t in range(count - 1):
        velocity = params.momentum * velocity + math.sqrt(1 - params.momentum**2) * rng.standard_normal(2)
        steps[t] = velocity
    path = np.vstack([np.zeros(2), np.cumsum(steps, axis=0)])
    if params.direction_deg is not None:
        path = _orient(path, math.radians(rng.uniform(*params.direction_deg)))
    diameter = max(float(np.max(np.linalg.norm(path[:, None] - path[None], axis=-1))), 1e-9)
    path *= rng.uniform(*params.extent_px) / diameter
    angle = np.concatenate([[0.0], np.cumsum(rng.standard_normal(count - 1))])
    spread = max(float(np.ptp(angle)), 1e-9)
    angle *= math.radians(rng.uniform(*params.rotation_deg)) / spread
    middle = count // 2
    return np.column_stack([path - path[middle], angle - angle[middle]])


def _orient(path: np.ndarray, angle: float) -> np.ndarray:
    """``path`` (N, 2) of (dx, dy) rotated about its first point so that its main axis (first principal axis of the
    positions) points at ``angle`` radians from the +x axis (image y points down, so positive angles turn clockwise)."""
    centred = path - path.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    turn = angle - math.atan2(vt[0, 1], vt[0, 0])
    cos, sin = math.cos(turn), math.sin(turn)
    return (path - path[0]) @ np.array([[cos, sin], [-sin, cos]])


def _pose_matrix(pose: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """Maps crop pixel (x, y) to scene coordinates: rotation about the crop centre, then offset and crop origin."""
    dx, dy, theta = pose
    cos, sin = math.cos(theta), math.sin(theta)
    centre = (size - 1) / 2.0
    return np.array(
        [
            [cos, -sin, centre - cos * centre + sin * centre + left + dx],
            [sin, cos, centre - sin * centre - cos * centre + top + dy],
            [0.0, 0.0, 1.0],
        ]
    )


def _render(scene: np.ndarray, poses: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """Renders every frame of a trajectory.

    Returns:
        float64 (N, size, size, 3), linear light, in [0, 1] up to bicubic overshoot.
    """
    frames = np.empty((len(poses), size, size, 3))
    for i, pose in enumerate(poses):
        matrix = _pose_matrix(pose, top, left, size)
        for c in range(3):
            # cval=NaN: a sample that reached outside the photo would poison the frame, and is caught below.
            frames[i, :, :, c] = warp(
                scene[:, :, c], matrix, output_shape=(size, size), order=3, mode="constant", cval=np.nan, clip=False
            )
    if not np.isfinite(frames).all():
        raise SynthError("a warped frame sampled outside the photo; the crop margin is too small (generator bug)")
    return frames


def _margin(poses: np.ndarray, size: int) -> int:
    """Pixels between crop window and photo border so every bicubic sample (4x4 support) stays inside the photo."""
    radius = (size - 1) / math.sqrt(2.0)
    reach = np.linalg.norm(poses[:, :2], axis=1) + np.abs(poses[:, 2]) * radius
    return math.ceil(float(reach.max())) + 2


def _luma_std(srgb: np.ndarray) -> float:
    return float((srgb @ np.array([0.299, 0.587, 0.114])).std())


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _make_pair(
    scene: np.ndarray, name: str, rng: np.random.Generator, params: SynthConfig
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Makes one (blur, sharp) pair from a scene.

    Returns:
        ``(blur, sharp, record)``: uint8 (size, size, 3) images and the JSON record of the trajectory.
    """
    size = params.size
    poses = _trajectory(rng, params)
    margin = _margin(poses, size)
    height, width = scene.shape[:2]
    if min(height, width) < size + 2 * margin:
        raise SynthError(
            f"photo {name!r} is {height}x{width} after resizing, too small for a {size}px crop with a "
            f"{margin}px blur margin; lower size or extent_px, or use a larger photo"
        )
    best: tuple[float, int, int] | None = None
    for _ in range(params.crop_attempts):
        top = int(rng.integers(margin, height - size - margin + 1))
        left = int(rng.integers(margin, width - size - margin + 1))
        std = _luma_std(scene[top : top + size, left : left + size] ** (1 / params.gamma))
        if best is None or std > best[0]:
            best = (std, top, left)
        if std >= params.min_crop_std:
            break
    assert best is not None  # crop_attempts >= 1 is validated
    _, top, left = best
    frames = _render(scene, poses, top, left, size)
    # A sensor integrates light: average in linear light, then back to display gamma.
    blur = np.clip(frames.mean(axis=0), 0.0, 1.0) ** (1 / params.gamma)
    sharp = np.clip(frames[len(frames) // 2], 0.0, 1.0) ** (1 / params.gamma)
    # The photos' own noise is blurred away by the averaging, while a real blurry frame carries fresh sensor noise.
    noise_std = float(rng.uniform(*params.noise_std))
    blur = blur + rng.normal(0.0, noise_std, blur.shape)
    record = {
        "photo": name,
        "crop_top_left": [top, left],
        "frames": len(poses),
        "extent_px": round(float(np.max(np.linalg.norm(poses[:, None, :2] - poses[None, :, :2], axis=-1))), 6),
        "rotation_deg": round(math.degrees(float(np.ptp(poses[:, 2]))), 6),
        "noise_std": round(noise_std, 6),
        "trajectory_dx_dy_theta": np.round(poses, 6).tolist(),
    }
    return _to_uint8(blur), _to_uint8(sharp), record


def _write_png(path: Path, image: np.ndarray) -> None:
    # Fixed settings and no metadata chunks (no timestamps), so equal pixels give equal bytes for a given zlib.
    # Level 1: noisy photos barely compress anyway (~10% larger files than level 6), and it is 4-5x faster.
    Image.fromarray(image).save(path, format="PNG", compress_level=1)


def _build(folder: Path, params: SynthConfig) -> dict[str, Any]:
    """Writes the whole dataset into ``folder`` (which exists and is empty) and returns the manifest."""
    images: dict[str, dict[str, Any]] = {}
    photos: dict[str, dict[str, Any]] = {}
    for split, names, crops in (
        ("train", params.train_photos, params.train_crops_per_photo),
        ("test", params.test_photos, params.test_crops_per_photo),
    ):
        for sub in ("blur", "sharp"):
            (folder / split / sub).mkdir(parents=True)
        for name in names:
            scene, digest = _load_photo(name, params)
            photos[name] = {"split": split, "sha256": digest, "scene_hw": list(scene.shape[:2])}
            for k in range(crops):
                rng = np.random.default_rng((params.seed, zlib.crc32(name.encode()), k))
                blur, sharp, record = _make_pair(scene, name, rng, params)
                file_name = f"{name}_{k}.png"
                _write_png(folder / split / "blur" / file_name, blur)
                _write_png(folder / split / "sharp" / file_name, sharp)
                images[f"{split}/{file_name}"] = record
    manifest = {
        "dataset": "synthblur",
        "format_version": FORMAT_VERSION,
        "generator": "benchmark.data.synth",
        "seed": params.seed,
        "params": to_plain(params),
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit-image": skimage.__version__,
            "pillow": PIL.__version__,
            "zlib": zlib.ZLIB_RUNTIME_VERSION,
        },
        "counts": {
            "train": len(params.train_photos) * params.train_crops_per_photo,
            "test": len(params.test_photos) * params.test_crops_per_photo,
        },
        "photos": photos,
        "images": images,
    }
    # No timestamp or timing in the file: the same params must give a byte-identical dataset.
    (folder / SYNTH_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def generate_synthblur(root: Path, params: SynthConfig) -> dict[str, Any]:
    """Generates the dataset under ``root``, replacing what is there, atomically.

    The dataset is built in a temporary sibling folder, its identity recorded, and it is swapped onto ``root`` only
    once complete (``benchmark.core.atomic.replace_dir``), so a killed or failed run leaves either the previous
    ``root`` untouched or no ``root`` at all, never a partial dataset.

    Layout: ``root/{train,test}/{blur,sharp}/<photo>_<k>.png`` (uint8 RGB, ``size`` x ``size``, identical names in
    ``blur/`` and ``sharp/``), ``root/synth.json`` and the identity record (``benchmark.data.identity``).

    Args:
        root: Target folder, e.g. ``data/synthblur``.
        params: Generator parameters.

    Returns:
        The manifest written to ``root/synth.json``: params, seed, package versions, per-image trajectories.

    Raises:
        SynthError: If test photos share a scene with train photos, or a photo is too small for the crop and blur
            margin (``root`` is then left as it was).
    """
    root = Path(root)
    check_scenes(params)
    building = atomic.building_dir(root)
    try:
        manifest = _build(building, params)
        record_identity(building, root.name, "synth")
        atomic.replace_dir(building, root)
    finally:
        if building.exists():
            shutil.rmtree(building)
    return manifest
