"""``python -m benchmark.deblur``: real-size folders tiled and untiled through the real command, scores with ground
truth, 8-bit outputs rounded as the release saves, and every bad input named with nothing half-written."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.core.config import load_config
from benchmark.core.errors import ConfigError
from benchmark.data.decode import read_rgb, to_tensor
from benchmark.data.errors import DatasetError
from benchmark.evaluation.deblur import DeblurError, deblur
from benchmark.scoring.metrics import quantize_uint8, quantize_uint8_floor
from benchmark.scoring.protocol import score
from benchmark.scoring.tiles import tiled_forward
from models import CheckpointError, create_model

REPO = Path(__file__).resolve().parents[1]


def _images(folder: Path, n: int, h: int, w: int, seed: int) -> list[Path]:
    """Smooth textured RGB PNGs (a blurry-looking scene), ``im0.png`` ...; returns their paths."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        coarse = rng.random((h // 16 + 1, w // 16 + 1, 3))
        image = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC))
        noisy = np.clip(image.astype(np.int16) + rng.integers(-6, 7, image.shape), 0, 255).astype(np.uint8)
        paths.append(folder / f"im{i}.png")
        Image.fromarray(noisy).save(paths[-1])
    return paths


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    """nafnet_tiny with seeded random weights, in NAFNet's release format (``{"params": ...}``)."""
    torch.manual_seed(11)
    path = tmp_path / "nafnet_tiny.pth"
    torch.save({"params": create_model("nafnet_tiny").state_dict()}, path)
    return path


def _model(weights: Path) -> torch.nn.Module:
    model = create_model("nafnet_tiny")
    model.load_state_dict(torch.load(weights, weights_only=True)["params"])
    return model.eval()


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.run(
        [sys.executable, "-m", "benchmark.deblur", *args], cwd=REPO, capture_output=True, text=True, env=env
    )


@pytest.mark.slow
@pytest.mark.parametrize("tile", [None, 256])
def test_a_folder_of_real_size_images_tiled_and_untiled(tmp_path: Path, weights: Path, tile: int | None) -> None:
    """Untiled with ground truth (scored), tiled without (PSNR/SSIM of 720p frames take ~10 s each on 2 CPU cores)."""
    blurry = _images(tmp_path / "blur", 2, 720, 1280, seed=0)
    _images(tmp_path / "sharp", 2, 720, 1280, seed=1)
    out = tmp_path / "out"
    scored = tile is None
    args = ["model=nafnet_tiny", f"checkpoint={weights}", f"input={tmp_path / 'blur'}", f"output={out}"]
    args += [f"gt={tmp_path / 'sharp'}"] if scored else [f"tile={tile}"]
    proc = _run(*args)
    assert proc.returncode == 0, proc.stderr
    assert "outputs rounded to 8 bit, ties to even" in proc.stdout
    model = _model(weights)
    for path in blurry:
        saved = read_rgb(out / path.name)
        assert saved.shape == (720, 1280, 3) and saved.dtype == np.uint8
        lq = to_tensor(read_rgb(path))[None]
        with torch.no_grad():
            pred = model(lq) if tile is None else tiled_forward(model, lq, tile)
        expected = (quantize_uint8(pred[0]) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        assert (saved != expected).mean() < 1e-5  # the same restoration (float noise may move a rare tie)
    assert sorted(p.name for p in out.iterdir()) == ["deblur.json", "im0.png", "im1.png"]  # no temporary files left
    if not scored:
        return
    lines = re.findall(r"(im\d.png) -> .*: psnr ([\d.]+), ssim ([\d.]+)", proc.stdout)
    assert [name for name, _, _ in lines] == ["im0.png", "im1.png"], proc.stdout
    gt = to_tensor(read_rgb(tmp_path / "sharp" / "im0.png"))[None]
    with torch.no_grad():
        first = score(model(to_tensor(read_rgb(blurry[0]))[None]), gt, load_config([]).dataset.protocol)
    assert float(lines[0][1]) == pytest.approx(first["psnr"].item(), abs=1e-4)
    assert float(lines[0][2]) == pytest.approx(first["ssim"].item(), abs=1e-4)
    mean = re.search(r"mean over 2 images \(.*\): psnr ([\d.]+)", proc.stdout)
    assert mean is not None and float(mean.group(1)) == pytest.approx(
        np.mean([float(p) for _, p, _ in lines]), abs=2e-4
    )


def _cfg(tmp_path: Path, weights: Path, *extra: str):
    return load_config(["model=nafnet_tiny", f"checkpoint={weights}", "eval.device=cpu", *extra])


def test_one_file_is_saved_as_the_release_saves(tmp_path: Path) -> None:
    (source,) = _images(tmp_path / "in", 1, 40, 56, seed=2)
    run = load_config(["model=identity", f"input={source}", f"output={tmp_path / 'o.png'}"])
    (result,) = list(deblur(run, progress=False))
    assert result.job.target == tmp_path / "o.png" and result.scores == {}
    np.testing.assert_array_equal(read_rgb(tmp_path / "o.png"), read_rgb(source))  # identity, 8-bit in and out
    # A model whose release saves otherwise writes its outputs that way: DMPHN truncates (torchvision 0.2).
    torch.manual_seed(0)
    dmphn = load_config(["model=dmphn_1_2_4", f"input={source}", f"output={tmp_path / 'd.png'}"])
    weights = tmp_path / "dmphn.pth"
    torch.save(create_model("dmphn_1_2_4").state_dict(), weights)
    dmphn = dataclasses.replace(dmphn, checkpoint=str(weights))
    list(deblur(dmphn, progress=False))
    model = create_model("dmphn_1_2_4")
    model.load_state_dict(torch.load(weights, weights_only=True))
    with torch.no_grad():
        pred = model.eval()(to_tensor(read_rgb(source))[None])[0]
    truncated = (quantize_uint8_floor(pred) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(read_rgb(tmp_path / "d.png"), truncated)
    assert (truncated != (quantize_uint8(pred) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()).any()


def test_missing_and_unreadable_inputs_are_named_and_written_outputs_stay(tmp_path: Path, weights: Path) -> None:
    with pytest.raises(DeblurError, match=r"input .*nope.png does not exist"):
        list(deblur(_cfg(tmp_path, weights, f"input={tmp_path / 'nope.png'}", f"output={tmp_path / 'o'}")))
    folder = tmp_path / "in"
    _images(folder, 1, 32, 48, seed=3)
    (folder / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    out = tmp_path / "out"
    run = _cfg(tmp_path, weights, f"input={folder}", f"output={out}")
    with pytest.raises(DatasetError, match=r"zz_broken.png: not a readable image"):
        list(deblur(run, progress=False))
    assert sorted(p.name for p in out.iterdir()) == ["deblur.json", "im0.png"]  # the image before it, whole
    assert read_rgb(out / "im0.png").shape == (32, 48, 3)


def test_mismatched_ground_truth_wrong_weights_and_overwrites_are_refused(tmp_path: Path, weights: Path) -> None:
    (source,) = _images(tmp_path / "in", 1, 32, 48, seed=4)
    (gt,) = _images(tmp_path / "gt", 1, 32, 40, seed=5)
    run = _cfg(tmp_path, weights, f"input={source}", f"output={tmp_path / 'o.png'}", f"gt={gt}")
    with pytest.raises(DeblurError, match=r"ground truth .*gt/im0.png is 40x32, input .*in/im0.png is 48x32"):
        list(deblur(run, progress=False))
    assert not (tmp_path / "o.png").exists()
    with pytest.raises(DeblurError, match=r"ground truth .*missing.png for .*im0.png does not exist"):
        list(deblur(_cfg(tmp_path, weights, f"input={source}", "output=o.png", f"gt={tmp_path / 'missing.png'}")))
    with pytest.raises(DeblurError, match=r"output .*im0.png would overwrite an input"):
        list(deblur(_cfg(tmp_path, weights, f"input={source}", f"output={source}")))
    torch.save({"model": create_model("mimo_unet_tiny").state_dict()}, tmp_path / "mimo.pkl")
    wrong = load_config(["model=nafnet_tiny", f"checkpoint={tmp_path / 'mimo.pkl'}", f"input={source}", "output=o.png"])
    with pytest.raises(CheckpointError, match=r"mimo.pkl does not fit model 'nafnet_tiny'"):
        list(deblur(wrong, progress=False))
    with pytest.raises(ConfigError, match=r"protocol: model 'nafnet_tiny' declares no release protocol"):
        list(deblur(_cfg(tmp_path, weights, f"input={source}", "output=o.png", "protocol=release")))


def test_the_command_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    proc = _run("model=identity", f"input={tmp_path / 'absent'}", f"output={tmp_path / 'o'}")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: input ") and "does not exist" in proc.stderr
