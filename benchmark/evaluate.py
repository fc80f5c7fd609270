"""Evaluation: ``python -m benchmark.evaluate model=<name> dataset=<name> [checkpoint=<path>|release] tlc=<bool>``.

``tlc=[false,true]`` scores the plain and the TLC-converted model in one process (the pipeline's evaluate stages).

``evaluate(model, loader, protocol)`` is pure: it runs the model on full test images, applies the dataset's protocol
(clamp and 8-bit rounding, border crop) and returns per-image PSNR/SSIM and their means; it does no I/O.
``main`` resolves paths, loads weights (any release format, through ``models.load_checkpoint``), converts the model
with TLC when asked, and writes ``results/runs/<train dataset>/<dataset>/<model>[-local].{json,csv}`` atomically, plus
one MLflow run.
"""

from __future__ import annotations

import hashlib
import io as _io
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import torch
from omegaconf import DictConfig, ListConfig
from tqdm import tqdm

from benchmark import io
from benchmark.config import (
    ConfigError,
    EvalConfig,
    Protocol,
    apply_params_file,
    build,
    model_overrides,
    resolve_recipe,
    to_dict,
)
from benchmark.data import DatasetError, PairedDataset, dataset_fingerprint
from benchmark.metrics import AlignmentError, psnr, quantize_uint8, realblur_scores, ssim
from benchmark.tlc import count_local_layers, to_local
from benchmark.tracking import start_run
from benchmark.train import NonFiniteLossError, run_dir, select_device
from models import CheckpointError, create_model, load_checkpoint


@dataclass(frozen=True)
class EvalResult:
    """Per-image scores (columns ``name``, ``psnr``, ``ssim`` and ``ssim_<variant>`` for each extra variant of the
    protocol) and their means."""

    per_image: pd.DataFrame
    means: dict[str, float]
    seconds: float


def score(pred: torch.Tensor, gt: torch.Tensor, protocol: Protocol) -> dict[str, torch.Tensor]:
    """Per-image scores of a restored batch under ``protocol``; inputs (N, 3, H, W) in [0, 1], outputs (N,) each.

    Keys: ``psnr``, ``ssim`` (the protocol's ``ssim_variant``), and ``ssim_<variant>`` for every extra variant.
    Under ``align: ecc`` both come from ``realblur_scores`` (RealBlur's aligned, masked protocol).
    """
    pred = quantize_uint8(pred) if protocol.quantize == "uint8" else pred.clamp(0, 1)
    if protocol.align == "ecc":
        pairs = [realblur_scores(p, g) for p, g in zip(pred, gt, strict=True)]
        return {
            "psnr": torch.tensor([p for p, _ in pairs], dtype=torch.float64),
            "ssim": torch.tensor([s for _, s in pairs], dtype=torch.float64),
        }
    if protocol.crop_border:
        b = protocol.crop_border
        pred, gt = pred[..., b:-b, b:-b], gt[..., b:-b, b:-b]
    scores = {"psnr": psnr(pred, gt), "ssim": ssim(pred, gt, variant=protocol.ssim_variant)}
    for variant in protocol.extra_ssim_variants:
        scores[f"ssim_{variant}"] = ssim(pred, gt, variant=variant)
    return scores


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    protocol: Protocol,
    *,
    device: torch.device | None = None,
    progress: bool = True,
) -> EvalResult:
    """Score ``model`` on every batch of ``loader`` (dicts with ``lq``, ``gt`` (N,3,H,W) in [0,1] and ``name``)."""
    device = device or torch.device("cpu")
    model.eval()
    rows: list[dict[str, Any]] = []
    columns = ["name", "psnr", "ssim", *(f"ssim_{v}" for v in protocol.extra_ssim_variants)]
    t0 = time.perf_counter()
    for batch in tqdm(loader, desc="evaluate", disable=not progress, mininterval=2.0, file=sys.stderr):
        lq, gt = batch["lq"].to(device), batch["gt"].to(device)
        pred = model(lq)
        if pred.shape != gt.shape:
            raise RuntimeError(f"model returned {tuple(pred.shape)} for an input of {tuple(lq.shape)}")
        try:
            scores = score(pred.float(), gt, protocol)
        except AlignmentError as err:
            raise AlignmentError(f"{', '.join(batch['name'])}: {err}") from err
        for i, name in enumerate(batch["name"]):
            rows.append({"name": name, **{k: float(v[i]) for k, v in scores.items()}})
    frame = pd.DataFrame(rows, columns=columns)
    means = {c: float(frame[c].mean()) for c in columns[1:]} if rows else {}
    return EvalResult(frame, means, time.perf_counter() - t0)


def result_paths(cfg: DictConfig, tlc: bool) -> tuple[Path, Path]:
    """``results/runs/<source>/<dataset>/<model>[-local].{json,csv}``.

    ``<source>`` is the training dataset of weights trained here, or ``release`` for the authors' released weights
    (``checkpoint=release``), so the two never overwrite each other.
    """
    source = "release" if _is_release(cfg) else train_dataset(cfg)
    base = Path(cfg.paths.results) / "runs" / source / cfg.dataset.name
    stem = f"{cfg.model.name}-local" if tlc else cfg.model.name
    return base / f"{stem}.json", base / f"{stem}.csv"


def train_dataset(cfg: DictConfig) -> str:
    """The dataset the scored weights were trained on."""
    if _is_release(cfg):
        return str(_release(cfg)["trained_on"])
    return cfg.get("train_dataset") or cfg.dataset.name


def _is_release(cfg: DictConfig) -> bool:
    return cfg.get("checkpoint") == "release"


def _release(cfg: DictConfig) -> DictConfig:
    release = cfg.model.get("release")
    if not release:
        raise ConfigError(
            f"checkpoint=release: model {cfg.model.name!r} has no released weights (conf/model/{cfg.model.name}.yaml "
            "release: null); pass checkpoint=<path> instead"
        )
    return release


def checkpoint_path(cfg: DictConfig, model_has_weights: bool) -> Path | None:
    """The weights ``cfg.checkpoint`` names: null = this pipeline's ``final.pt``, ``release``, or a path."""
    if _is_release(cfg):
        release = _release(cfg)
        path = Path(cfg.paths.data) / "external" / "checkpoints" / cfg.model.name / str(release["file"])
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint=release: {path} does not exist. Download {release['file']} from {release['url']} "
                f"({release['source']}) and place it there; data.dvc tracks that folder (`dvc add data/external`)."
            )
        return path
    if cfg.checkpoint:
        return Path(cfg.checkpoint)
    if model_has_weights:
        return run_dir(cfg, train_dataset(cfg)) / "final.pt"
    return None


def tlc_train_size(cfg: DictConfig, ecfg: EvalConfig, checkpoint: Path | None) -> tuple[int, str]:
    """The training crop the TLC window is scaled from, and where that number came from.

    In order: ``eval.tlc.train_size``; the release's ``train_size`` for ``checkpoint=release``; the ``train.crop_size``
    recorded in a checkpoint this harness trained; the current ``train.crop_size``.
    """
    if ecfg.tlc.train_size:
        return int(ecfg.tlc.train_size), "eval.tlc.train_size"
    if _is_release(cfg):
        return int(_release(cfg)["train_size"]), f"conf/model/{cfg.model.name}.yaml release.train_size"
    if checkpoint is not None:
        try:
            saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception:  # unreadable files were already reported by load_checkpoint
            saved = None
        crop = saved.get("config", {}).get("train", {}).get("crop_size") if isinstance(saved, dict) else None
        if isinstance(crop, int):
            return crop, f"{checkpoint} (train.crop_size it was trained with)"
    return int(cfg.train.crop_size), "train.crop_size"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_evaluation(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate one (model, checkpoint, dataset, TLC) combination, write its files and MLflow run; returns the JSON."""
    ecfg: EvalConfig = build(EvalConfig, cfg.eval, "eval")
    protocol: Protocol = build(Protocol, cfg.dataset.protocol, "dataset.protocol")
    if not isinstance(cfg.tlc, bool):
        raise ConfigError(f"tlc: expected true or false, got {cfg.tlc!r}")
    device = select_device(ecfg.device)
    json_path, csv_path = result_paths(cfg, cfg.tlc)

    model = create_model(cfg.model.name, **model_overrides(cfg))
    checkpoint = checkpoint_path(cfg, model_has_weights=len(model.state_dict()) > 0)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    record: dict[str, Any] = {
        "model": cfg.model.name,
        "row": f"{cfg.model.name}-Local" if cfg.tlc else cfg.model.name,
        "train_dataset": train_dataset(cfg),
        "weights": "release" if _is_release(cfg) else ("file" if cfg.checkpoint else "pipeline"),
        "dataset": cfg.dataset.name,
        "tlc": bool(cfg.tlc),
        "checkpoint": str(checkpoint) if checkpoint else None,
        "checkpoint_sha256": _sha256(checkpoint) if checkpoint else None,
        "protocol": to_dict(cfg)["dataset"]["protocol"],
        "protocol_text": protocol.describe(),
    }
    if cfg.tlc:
        size, size_source = tlc_train_size(cfg, ecfg, checkpoint)
        converted = to_local(model, (size, size), base_ratio=ecfg.tlc.base_ratio)
        replaced = count_local_layers(converted)
        record |= {
            "tlc_train_size": size,
            "tlc_train_size_source": size_source,
            "tlc_base_ratio": ecfg.tlc.base_ratio,
            "tlc_layers": replaced,
        }
        if replaced == 0:
            # TLC changes nothing in a model without global statistics: record that instead of a duplicate row.
            record |= {"applicable": False, "reason": "no global-statistics layer (AdaptiveAvgPool2d/InstanceNorm2d)"}
            io.write_json(json_path, record)
            io.write_text(csv_path, "name,psnr,ssim\n")
            return record
        model = converted
    record["applicable"] = True
    model = model.to(device)

    root = Path(cfg.dataset.root)
    test_set = PairedDataset(root, "test", crop_size=None, augment="none")
    loader = torch.utils.data.DataLoader(test_set, batch_size=ecfg.batch_size, shuffle=False)
    tags = {
        "kind": "evaluate",
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "train_dataset": train_dataset(cfg),
        "profile": "release" if _is_release(cfg) else cfg.train.profile,
        "tlc": str(bool(cfg.tlc)).lower(),
        "dataset_hash": dataset_fingerprint(root),
        "protocol": protocol.describe(),
        "ssim_variant": protocol.ssim_variant,
    }
    with start_run(
        enabled=bool(cfg.tracking.enabled),
        experiment=cfg.tracking.experiment,
        run_name=f"evaluate/{record['row']}/{cfg.dataset.name}",
        tags=tags,
        uri=cfg.tracking.uri,
    ) as run:
        result = evaluate(model, loader, protocol, device=device)
        record |= {
            **result.means,
            "n_images": len(result.per_image),
            "seconds": round(result.seconds, 3),
            "mlflow_run_id": run.run_id,
        }
        buf = _io.StringIO()
        result.per_image.to_csv(buf, index=False, float_format="%.6f")
        io.write_text(csv_path, buf.getvalue())
        io.write_json(json_path, record)
        run.log_params(to_dict(cfg))
        run.log_metrics({f"test/{cfg.dataset.name}/{k}": v for k, v in result.means.items()})
        run.log_artifact(csv_path, "per_image")
        run.log_artifact(json_path, "results")
    return record


def tlc_settings(value: object) -> list[bool]:
    """``tlc`` as a list of booleans: ``true``, ``false`` or a list of them."""
    values = list(value) if isinstance(value, list | tuple | ListConfig) else [value]
    if not values or not all(isinstance(v, bool) for v in values):
        raise ConfigError(f"tlc: expected true, false or a list of them, got {value!r}")
    return values


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        cfg = resolve_recipe(apply_params_file(cfg))
        for local in tlc_settings(cfg.tlc):
            cfg.tlc = local
            record = run_evaluation(cfg)
            if record.get("applicable", True):
                print(
                    f"[evaluate] {record['row']} on {record['dataset']}: PSNR {record['psnr']:.2f} dB, "
                    f"SSIM {record['ssim']:.4f} ({record['n_images']} images)"
                )
            else:
                print(f"[evaluate] {record['row']}: TLC not applicable ({record['reason']})")
    except (ConfigError, DatasetError, CheckpointError, NonFiniteLossError, AlignmentError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
