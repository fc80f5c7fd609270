"""Scoring folders of result images (``python -m benchmark.evaluate outputs=<folder>``): the releases' layouts matched
to a small GoPro-named and RealBlur-named test split, scored identically to the normal evaluation path, partial folders,
every refusal, ``benchmark.deblur``'s folders, and the record."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.core.config import load_config
from benchmark.core.errors import ConfigError
from benchmark.core.layout import DEBLUR_MANIFEST
from benchmark.core.sections import DatasetConfig, ScoringProtocol
from benchmark.data.dataset import PairedDataset
from benchmark.data.identity import record_identity
from benchmark.data.outputs import OutputsError, manifest_text
from benchmark.evaluation.deblur import DeblurError, deblur
from benchmark.evaluation.outputs import evaluate_outputs
from benchmark.evaluation.records import read_record
from benchmark.evaluation.run import evaluate_run
from benchmark.scoring.loop import score_model
from benchmark.scoring.protocol import QUANTIZERS
from models import create_model

REPO = Path(__file__).resolve().parents[1]
GOPRO = [("GOPR0384_11_00", "000001"), ("GOPR0384_11_00", "000002"), ("GOPR0862_11_00", "000001")]
REALBLUR = [("scene001", "1"), ("scene001", "2"), ("scene002", "1")]
SIZES = [(40, 56), (40, 56), (36, 48)]  # one image of another size: batches of one, as the releases' test sets


def _smooth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    coarse = (rng.random((h // 8 + 1, w // 8 + 1, 3)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))


def _noisy(rng: np.random.Generator, image: np.ndarray, spread: int) -> np.ndarray:
    return np.clip(image.astype(np.int16) + rng.integers(-spread, spread + 1, image.shape), 0, 255).astype(np.uint8)


def _split(root: Path, dataset: str, names: list[str], seed: int) -> dict[str, np.ndarray]:
    """``root/<dataset>/test/{blur,sharp}/<name>.png`` with its identity record; returns the result images: the sharp
    ones with noise (what a method's PNGs would be), by pair name."""
    rng = np.random.default_rng(seed)
    results = {}
    for name, (h, w) in zip(names, SIZES, strict=True):
        sharp = _smooth(rng, h, w)
        for side, image in (("sharp", sharp), ("blur", _noisy(rng, sharp, 40))):
            (root / dataset / "test" / side).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / dataset / "test" / side / f"{name}.png")
        results[name] = _noisy(rng, sharp, 12)
    record_identity(root / dataset, dataset, "synth")
    return results


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """A small GoPro-named and RealBlur-J-named test split (``<data>/gopro``, ``<data>/realblur_j``), and the result
    images of each."""
    root = tmp_path_factory.mktemp("outputs") / "data"
    gopro = _split(root, "gopro", [f"{s}_{f}" for s, f in GOPRO], seed=1)
    realblur = _split(root, "realblur_j", [f"{s}_blur_{k}" for s, k in REALBLUR], seed=2)
    return root, {"gopro": gopro, "realblur_j": realblur}


def _write(folder: Path, files: dict[str, np.ndarray]) -> Path:
    for relative, image in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / relative)
    return folder


def _gopro_layouts(tmp_path: Path, results: dict[str, np.ndarray]) -> tuple[Path, Path]:
    """MPRNet's flat ``GOPR0384_11_00-000001.png`` and a folder per sequence ``GOPR0384_11_00/000001.png``."""
    dash = {f"{s}-{f}.png": results[f"{s}_{f}"] for s, f in GOPRO}
    tree = {f"{s}/{f}.png": results[f"{s}_{f}"] for s, f in GOPRO}
    return _write(tmp_path / "dash", dash), _write(tmp_path / "tree", tree)


def _cfg(root: Path, work: Path, *extra: str):
    return load_config(
        [
            f"paths.data={root}",
            f"paths.results={work / 'results'}",
            f"paths.checkpoints={work / 'checkpoints'}",
            "eval.device=cpu",
            "eval.score_workers=0",
            *extra,
        ]
    )


def _reference_split(tmp_path: Path, dataset: str, root: Path, results: dict[str, np.ndarray]) -> Path:
    """A copy of ``dataset`` whose blurry images are the result images: ``identity`` evaluated on it is the normal
    evaluation path over the same images."""
    copy = tmp_path / "reference"
    shutil.copytree(root / dataset / "test" / "sharp", copy / dataset / "test" / "sharp")
    _write(copy / dataset / "test" / "blur", {f"{n}.png": image for n, image in results.items()})
    record_identity(copy / dataset, dataset, "synth")
    return copy


def test_every_rule_is_the_identity_on_8_bit_values() -> None:
    """Result files are k / 255 exactly; no quantizer of any protocol moves such a value (so ``uint8_file`` only
    states what is true), in float32 and float64."""
    for dtype in (torch.float32, torch.float64):
        values = torch.arange(256, dtype=dtype) / 255
        for name, quantize in QUANTIZERS.items():
            assert torch.equal(quantize(values), values), (name, dtype)


def test_two_gopro_layouts_score_as_the_normal_evaluation_path_under_both_protocols(data, tmp_path: Path) -> None:
    """DMPHN's release protocol (truncation, MATLAB's SSIM) beside GoPro's official one, each per image identical to
    the identity model evaluated on a dataset whose inputs are the result images."""
    root, results = data
    dash, tree = _gopro_layouts(tmp_path, results["gopro"])
    records = [
        evaluate_outputs(_cfg(root, tmp_path, "model=dmphn", "dataset=gopro", f"outputs={folder}", f"name_map={rule}"))
        for folder, rule in ((dash, "gopro_sequence_dash"), (tree, "gopro_sequence_dir"))
    ]
    reference = _reference_split(tmp_path, "gopro", root, results["gopro"])
    normal = evaluate_run(_cfg(reference, tmp_path / "normal", "model=identity", "dataset=gopro"), tlc=False)
    release = load_config(["model=dmphn"]).model.release.protocols["gopro"]
    loader = torch.utils.data.DataLoader(
        PairedDataset(reference / "gopro", "test", crop_size=None, augment="none"), batch_size=1
    )
    alone = score_model(create_model("identity"), loader, release, progress=False)
    names = tuple(sorted(f"{s}_{f}" for s, f in GOPRO))
    for record in records:
        assert record.names == names == normal.names
        assert record.scores == normal.scores and set(record.scores) == {"psnr", "ssim", "ssim_matlab3d"}
        assert record.release is not None and record.release.scores == alone.values
        assert record.release.scores["ssim"] == normal.scores["ssim_matlab3d"]  # one MATLAB SSIM, two protocols
        assert record.weights == "released outputs" and record.train_dataset == "gopro" and not record.tlc
        assert record.protocol.quantize == record.release.protocol.quantize == "uint8_file"
        assert "8-bit result files scored as read (no rounding" in record.protocol_text
        assert record.outputs is not None and record.outputs.n_test == 3 and not record.outputs.missing
    first, second = (r.outputs for r in records)
    assert sorted(first.files.values()) == sorted(second.files.values())  # the same files under two layouts
    assert first.sha256 != second.sha256  # the manifest names the paths too
    assert set(first.files) == {f"{s}-{f}.png" for s, f in GOPRO}
    written = tmp_path / "results" / "runs" / "outputs" / "gopro" / "gopro" / "dmphn-released.json"
    assert read_record(written) == records[1]  # the later layout's record, read back whole


def test_realblur_tree_scores_with_ecc_and_the_release_protocol_without(data, tmp_path: Path) -> None:
    """RealBlur's own ``sceneNNN/blur/blur_K.png`` by MSFS-Net's release rule: the official ECC protocol equals the
    normal path; the release's (MATLAB, no alignment) is scored beside it."""
    root, results = data
    folder = _write(
        tmp_path / "realblur", {f"{s}/blur/blur_{k}.png": results["realblur_j"][f"{s}_blur_{k}"] for s, k in REALBLUR}
    )
    cfg = _cfg(root, tmp_path, "model=msfsnet", "dataset=realblur_j", f"outputs={folder}", "name_map=realblur_tree")
    record = evaluate_outputs(cfg)
    reference = _reference_split(tmp_path, "realblur_j", root, results["realblur_j"])
    normal = evaluate_run(_cfg(reference, tmp_path / "normal", "model=identity", "dataset=realblur_j"), tlc=False)
    assert record.scores == normal.scores and record.protocol.align == "ecc"
    assert record.release is not None and record.release.protocol.align == "none"
    assert record.release.scores["psnr"] != record.scores["psnr"]
    assert record.train_dataset == "gopro"  # the release's GoPro-trained weights made them, by default
    realblur_trained = evaluate_outputs(dataclasses.replace(cfg, train_dataset="realblur_j"))
    assert realblur_trained.train_dataset == "realblur_j" and realblur_trained.scores == record.scores
    # Stripformer's layout, <scene>/blur_K.png, by the rule its conf names (no name_map=): the same scores.
    flat = {f"{s}/blur_{k}.png": results["realblur_j"][f"{s}_blur_{k}"] for s, k in REALBLUR}
    stripformer = evaluate_outputs(
        _cfg(root, tmp_path, "model=stripformer", "dataset=realblur_j", f"outputs={_write(tmp_path / 'sf', flat)}")
    )
    assert stripformer.outputs is not None and stripformer.outputs.name_map == "realblur_scene_dir"
    assert stripformer.scores == record.scores and stripformer.release is None  # its release scores officially


def test_a_partial_folder_is_refused_and_scored_with_allow_missing(data, tmp_path: Path) -> None:
    root, results = data
    dash, _ = _gopro_layouts(tmp_path, results["gopro"])
    full = evaluate_outputs(_cfg(root, tmp_path, "model=mprnet", "dataset=gopro", f"outputs={dash}"))
    (dash / "GOPR0384_11_00-000002.png").unlink()
    args = ("model=mprnet", "dataset=gopro", f"outputs={dash}")
    with pytest.raises(
        OutputsError,
        match=r"1 of the 3 test images have no result file \(first: GOPR0384_11_00_000002\); 2 matched under "
        r"name_map gopro_sequence_dash .* allow_missing=true",
    ):
        evaluate_outputs(_cfg(root, tmp_path, *args))
    partial = evaluate_outputs(_cfg(root, tmp_path, *args, "allow_missing=true"))
    kept = [i for i, n in enumerate(full.names) if n != "GOPR0384_11_00_000002"]
    assert partial.names == tuple(full.names[i] for i in kept)
    assert partial.scores == {k: tuple(v[i] for i in kept) for k, v in full.scores.items()}
    assert partial.outputs is not None and partial.outputs.missing == ("GOPR0384_11_00_000002",)
    assert "2 of the 3 test images (allow_missing=true)" in partial.outputs.describe()
    path = tmp_path / "results" / "runs" / "outputs" / "gopro" / "gopro" / "mprnet-released.json"
    assert read_record(path) == partial


def test_unmatched_names_are_listed_with_the_matched_count(data, tmp_path: Path) -> None:
    root, results = data
    _, tree = _gopro_layouts(tmp_path, results["gopro"])
    (tree / "notes.txt").write_text("not an image: ignored")
    with pytest.raises(
        OutputsError,
        match=r"3 of 3 image files name no test image under name_map gopro_sequence_dash "
        r"\(<sequence>-<frame>.png\) \(first: GOPR0384_11_00/000001.png, GOPR0384_11_00/000002.png, "
        r"GOPR0862_11_00/000001.png\); 0 matched\. Test images are named like 'GOPR0384_11_00_000001'",
    ):
        evaluate_outputs(_cfg(root, tmp_path, "model=mprnet", "dataset=gopro", f"outputs={tree}"))
    _write(tree, {"GOPR9999_11_00/000001.png": results["gopro"]["GOPR0384_11_00_000001"]})
    with pytest.raises(OutputsError, match=r"1 of 4 image files .* \(first: GOPR9999_11_00/000001.png\); 3 matched"):
        evaluate_outputs(
            _cfg(root, tmp_path, "model=mprnet", "dataset=gopro", f"outputs={tree}", "name_map=gopro_sequence_dir")
        )


def test_lossy_deep_resized_duplicate_and_absent_files_are_refused(data, tmp_path: Path) -> None:
    root, results = data
    gopro = results["gopro"]

    def run(folder: Path, *extra: str):
        return evaluate_outputs(_cfg(root, tmp_path, "model=mprnet", "dataset=gopro", f"outputs={folder}", *extra))

    dash, _ = _gopro_layouts(tmp_path, gopro)
    Image.fromarray(gopro["GOPR0384_11_00_000001"]).save(dash / "GOPR0384_11_00-000001.jpg", quality=95)
    with pytest.raises(OutputsError, match=r"1 JPEG files \(GOPR0384_11_00-000001.jpg\): JPEG is lossy"):
        run(dash)
    (dash / "GOPR0384_11_00-000001.jpg").unlink()
    Image.fromarray(gopro["GOPR0384_11_00_000001"]).save(dash / "GOPR0384_11_00-000001.bmp")
    with pytest.raises(OutputsError, match=r"GOPR0384_11_00-000001.bmp and GOPR0384_11_00-000001.png both map to"):
        run(dash)
    (dash / "GOPR0384_11_00-000001.bmp").unlink()
    deep = gopro["GOPR0384_11_00_000001"][..., 0].astype(np.uint16) * 257
    Image.fromarray(deep).save(dash / "GOPR0384_11_00-000001.png")
    with pytest.raises(OutputsError, match=r"GOPR0384_11_00-000001.png: .*more than 8 bits.* our rounding, not"):
        run(dash)
    Image.fromarray(gopro["GOPR0384_11_00_000001"][:-8]).save(dash / "GOPR0384_11_00-000001.png")
    with pytest.raises(OutputsError, match=r"32x56 \(HxW\), but its test image GOPR0384_11_00_000001 is 40x56"):
        run(dash)
    with pytest.raises(OutputsError, match=r"outputs=.*absent: no such folder"):
        run(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OutputsError, match=r"no image files under it"):
        run(tmp_path / "empty")


def test_arguments_that_run_a_model_and_unstated_or_unknown_rules_are_refused(data, tmp_path: Path) -> None:
    root, results = data
    dash, _ = _gopro_layouts(tmp_path, results["gopro"])
    base = ("dataset=gopro", f"outputs={dash}")
    for extra, key in (("checkpoint=release", "checkpoint"), ("tile=64", "tile"), ("tlc=true", "tlc")):
        with pytest.raises(ConfigError, match=rf"^{key}: .*runs a model|^{key}: tlc= converts"):
            evaluate_outputs(_cfg(root, tmp_path, "model=mprnet", *base, extra))
    with pytest.raises(ConfigError, match=r"^name_map: no name map 'mine'; known: same, gopro_sequence_dash"):
        _cfg(root, tmp_path, "model=mprnet", *base, "name_map=mine")
    # DMPHN commits 20 result images without naming their GoPro sequence: the rule must be given.
    with pytest.raises(ConfigError, match=r"^name_map: dmphn's release does not state how its gopro result files"):
        evaluate_outputs(_cfg(root, tmp_path, "model=dmphn", *base))


def test_deblur_folders_are_scored_with_their_weights_recorded(data, tmp_path: Path) -> None:
    """Deblur once, score many times: the folder's scores equal the evaluation of the same weights (both round to 8
    bit with ties to even), and the record names the checkpoint that made the images."""
    root, _ = data
    torch.manual_seed(3)
    weights = tmp_path / "nafnet_tiny.pth"
    torch.save({"params": create_model("nafnet_tiny").state_dict()}, weights)
    out = tmp_path / "restored"
    args = ("model=nafnet_tiny", "dataset=gopro", f"checkpoint={weights}")
    list(deblur(_cfg(root, tmp_path, *args, f"input={root / 'gopro/test/blur'}", f"output={out}"), progress=False))
    made = (out / DEBLUR_MANIFEST).read_text()
    assert '"weights": "file"' in made and '"saves": "uint8"' in made
    scored = evaluate_outputs(_cfg(root, tmp_path, "model=nafnet_tiny", "dataset=gopro", f"outputs={out}"))
    normal = evaluate_run(_cfg(root, tmp_path / "normal", *args), tlc=False)
    assert scored.names == normal.names and scored.scores == normal.scores
    assert scored.weights == "deblur outputs" and scored.checkpoint_sha256 == normal.checkpoint_sha256
    assert scored.outputs is not None and scored.outputs.name_map == "same" and scored.outputs.deblur is not None
    with pytest.raises(OutputsError, match=r"wrote it with model 'nafnet_tiny' \(deblur.json\), not 'mimo_unet_tiny'"):
        evaluate_outputs(_cfg(root, tmp_path, "model=mimo_unet_tiny", "dataset=gopro", f"outputs={out}"))
    torch.save({"params": create_model("nafnet_tiny").state_dict()}, tmp_path / "other.pth")
    other = (f"checkpoint={tmp_path / 'other.pth'}", f"input={root / 'gopro/test/blur'}", f"output={out}")
    with pytest.raises(DeblurError, match=r"holds restorations of another run .*checkpoint_sha256"):
        list(deblur(_cfg(root, tmp_path, "model=nafnet_tiny", "dataset=gopro", *other), progress=False))


def test_the_manifest_is_what_sha256sum_checks(data, tmp_path: Path) -> None:
    root, results = data
    dash, _ = _gopro_layouts(tmp_path, results["gopro"])
    record = evaluate_outputs(_cfg(root, tmp_path, "model=mprnet", "dataset=gopro", f"outputs={dash}"))
    assert record.outputs is not None
    (dash / "SHA256SUMS").write_text(manifest_text(record.outputs.files))
    if shutil.which("sha256sum"):
        check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=dash, capture_output=True, text=True)
        assert check.returncode == 0 and check.stdout.count(": OK") == 3, check.stdout


def test_the_command_prints_the_scores_and_one_line_errors(data, tmp_path: Path) -> None:
    root, results = data
    dash, _ = _gopro_layouts(tmp_path, results["gopro"])
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    base = [sys.executable, "-m", "benchmark.evaluate", f"paths.data={root}", f"paths.results={tmp_path / 'r'}"]
    base += ["model=mprnet", "dataset=gopro", "eval.device=cpu", "eval.score_workers=0"]
    proc = subprocess.run([*base, f"outputs={dash}"], cwd=REPO, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "[evaluate] mprnet (released outputs) on gopro: PSNR" in proc.stdout
    assert "all 3 from" in proc.stdout and "8-bit result files scored as read" in proc.stdout
    proc = subprocess.run([*base, f"outputs={tmp_path}"], cwd=REPO, capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "name no test image under name_map gopro_sequence_dash" in proc.stderr


def test_no_conf_file_uses_the_file_rule_and_every_release_rule_exists() -> None:
    with pytest.raises(ConfigError, match=r"^dataset.protocol.quantize: uint8_file is how result files are scored"):
        from benchmark.core.schema import build

        build(
            DatasetConfig,
            {"name": "x", "protocol": {"quantize": "uint8_file", "ssim_variant": "gaussian2d"}, "synth": {}},
            "dataset",
        )
    assert ScoringProtocol(quantize="uint8_file", ssim_variant="gaussian2d").describe().startswith("8-bit result files")
    rules = load_config([]).eval.name_maps
    for conf in sorted((REPO / "conf" / "model").glob("*.yaml")):
        release = load_config([f"model={conf.stem}"]).model.release
        for dataset, published in (release.outputs if release else {}).items():
            assert published.name_map is None or published.name_map in rules, (conf.stem, dataset)
            assert published.url.startswith("https://") and published.source, (conf.stem, dataset)
