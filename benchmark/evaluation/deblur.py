"""Restore single images or folders with any registered model and any weights (``python -m benchmark.deblur``).

Inputs are PNGs (any 8-bit mode ``benchmark.data.decode`` accepts); outputs are 8-bit RGB PNGs rounded the way the
model's release saves its outputs (``release.saves``: ties to even, or ties up), or ties to even for a model without
a release. With ground truth, each restoration is scored under a named protocol before rounding for saving, exactly
as an evaluation scores it (``benchmark.scoring.protocol.score``). A folder restored into a folder gets a
``deblur.json`` (:func:`manifest`: model, weights, rounding) before its first PNG, so that scoring the folder later
(``python -m benchmark.evaluate outputs=<folder>``) records which weights made it; a folder another run wrote is
refused.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from benchmark.core import atomic
from benchmark.core.config import RunConfig
from benchmark.core.device import disable_tf32, select_device
from benchmark.core.errors import ConfigError, HarnessError
from benchmark.core.hashing import sha256_weights
from benchmark.core.layout import DEBLUR_MANIFEST
from benchmark.core.sections import ScoringProtocol
from benchmark.data.decode import read_rgb, to_tensor
from benchmark.evaluation.run import convert, release_protocol
from benchmark.scoring.inference import restore
from benchmark.scoring.protocol import QUANTIZERS, score
from benchmark.weights.resolve import Weights, build_model, load_weights, resolve_weights


class DeblurError(HarnessError):
    """Bad input to ``benchmark.deblur`` (missing or unreadable file, size mismatch, output over an input)."""


@dataclass(frozen=True)
class Job:
    """One image to restore: ``source`` -> ``target``, scored against ``gt`` when given."""

    source: Path
    target: Path
    gt: Path | None


@dataclass(frozen=True)
class Result:
    """One restored image and, with ground truth, its scores under the protocol (``psnr``, ``ssim``, ...)."""

    job: Job
    scores: dict[str, float]


def plan(input_: str | None, output: str | None, gt: str | None) -> list[Job]:
    """The jobs for ``input=`` / ``output=`` / ``gt=``: one file to one file, or every ``*.png`` of a folder into a
    folder (same names). Nothing is read beyond the directory listing.

    Raises:
        DeblurError: naming the path, for a missing input, output or ground truth, an empty folder, a folder input
            with a file output, or an output that would overwrite an input.
    """
    if input_ is None or output is None:
        raise ConfigError("deblur needs input=<png or folder> and output=<png or folder>", key="input")
    source, target = Path(input_), Path(output)
    if not source.exists():
        raise DeblurError(f"input {source} does not exist")
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() == ".png" and p.is_file())
        if not files:
            raise DeblurError(f"input folder {source} holds no .png files")
        if target.exists() and not target.is_dir():
            raise DeblurError(f"output {target} is a file, but input {source} is a folder: give an output folder")
        jobs = [Job(f, target / f.name, _gt_for(gt, f, folder=True)) for f in files]
    else:
        if target.is_dir():
            target = target / source.name
        jobs = [Job(source, target, _gt_for(gt, source, folder=False))]
    for job in jobs:
        if job.target.resolve() == job.source.resolve() or (job.gt and job.target.resolve() == job.gt.resolve()):
            raise DeblurError(f"output {job.target} would overwrite an input; choose another output")
    return jobs


def _gt_for(gt: str | None, source: Path, *, folder: bool) -> Path | None:
    if gt is None:
        return None
    path = Path(gt)
    if folder or path.is_dir():
        path = path / source.name
    if not path.is_file():
        raise DeblurError(f"ground truth {path} for {source} does not exist (gt= must hold the input's file names)")
    return path


def scoring_protocol(run: RunConfig) -> ScoringProtocol:
    """``protocol=official``: ``dataset.protocol``; ``release``: the model's release protocol for ``dataset``."""
    if run.protocol == "official":
        return run.dataset.protocol
    found = release_protocol(run)
    if found is None:
        raise ConfigError(
            f"model {run.model.name!r} declares no release protocol for dataset {run.dataset.name!r} "
            "(conf/model/<model>.yaml release.protocols); use protocol=official",
            key="protocol",
        )
    return found


def save_rule(run: RunConfig) -> str:
    """How outputs are rounded to 8 bit: the release's ``saves`` (``uint8`` or ``uint8_half_up``)."""
    return run.model.release.saves if run.model.release is not None else "uint8"


def load_model(run: RunConfig, device: torch.device) -> tuple[torch.nn.Module, Weights]:
    """The configured model with the weights ``checkpoint=`` names, TLC-converted with ``tlc=true``, in eval mode,
    and those weights."""
    model = build_model(run.model)
    weights = resolve_weights(
        run.model,
        run.layout,
        checkpoint=run.checkpoint,
        train_dataset=run.train_dataset,
        dataset=run.dataset.name,
        has_parameters=len(model.state_dict()) > 0,
    )
    load_weights(model, weights)
    if run.tlc_settings == (True,):
        model = convert(model, run, weights)[0]
    elif run.tlc_settings != (False,):
        raise ConfigError("deblur takes tlc=true or tlc=false, not a list", key="tlc")
    return model.to(device).eval(), weights


MANIFEST_SCHEMA = "msfs-bench/deblur/1"
_SAME_RUN = ("model", "weights", "checkpoint_sha256", "train_dataset", "tlc", "tile", "padding", "saves")
"""The fields of ``deblur.json`` that make two runs write the same files: a folder holds one run's outputs."""


def manifest(run: RunConfig, weights: Weights, inference: ScoringProtocol) -> dict[str, Any]:
    """What ``deblur.json`` says about the run that writes a folder: the model, its weights (kind, file as given and
    SHA-256, training set), TLC, tiling, padding and the 8-bit rounding of the PNGs. ``benchmark.evaluation.outputs``
    records it when the folder is scored."""
    return {
        "schema": MANIFEST_SCHEMA,
        "model": run.model.name,
        "row": f"{run.model.name}-Local" if run.tlc_settings == (True,) else run.model.name,
        "weights": weights.kind,
        "checkpoint": run.layout.display(weights.path) if weights.path else None,
        "checkpoint_sha256": sha256_weights(weights.path) if weights.path else None,
        "train_dataset": weights.train_dataset,
        "tlc": run.tlc_settings == (True,),
        "tile": inference.tile,
        "padding": inference.padding,
        "saves": save_rule(run),
        "input": str(run.input),
    }


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The ``deblur.json`` of ``folder``, ``None`` where there is none; an unreadable one is a :class:`DeblurError`."""
    path = Path(folder) / DEBLUR_MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DeblurError(f"{path}: unreadable ({err}); delete it (the folder then counts as made elsewhere)") from err
    if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA or any(k not in data for k in _SAME_RUN):
        raise DeblurError(f"{path}: not a {MANIFEST_SCHEMA} manifest; delete it or restore into another folder")
    return data


def _claim_folder(folder: Path, made: dict[str, Any]) -> None:
    """Write ``folder``'s ``deblur.json`` before its first PNG; refuse a folder another run wrote."""
    found = read_manifest(folder)
    if found is not None:
        differs = [k for k in _SAME_RUN if found[k] != made[k]]
        if differs:
            raise DeblurError(
                f"output {folder} holds restorations of another run ({folder / DEBLUR_MANIFEST}: "
                + ", ".join(f"{k} {found[k]!r}, now {made[k]!r}" for k in differs)
                + "); choose another output folder"
            )
    atomic.write_json(folder / DEBLUR_MANIFEST, made)


def deblur(run: RunConfig, *, progress: bool = True) -> Iterator[Result]:
    """Restore every job of ``run`` (:func:`plan`), writing each output PNG atomically before the next image; yields
    each :class:`Result` as it is written. Inference: ``tile=`` (else the protocol's tiling) and the model's padding.

    Raises:
        DeblurError, ConfigError, CheckpointError, DatasetError: bad input, named; outputs already written stay.
    """
    jobs = plan(run.input, run.output, run.gt)
    protocol = scoring_protocol(run)
    inference = dataclasses.replace(protocol, tile=run.tile if run.tile is not None else protocol.tile)
    device = select_device(run.eval.device, key="eval.device")
    disable_tf32()
    model, weights = load_model(run, device)
    quantize = QUANTIZERS[save_rule(run)]
    if Path(run.input).is_dir():  # a folder restored into a folder: say what wrote it, for outputs=<folder>
        _claim_folder(Path(run.output), manifest(run, weights, inference))
    for job in tqdm(jobs, desc="deblur", disable=not progress or len(jobs) == 1, file=sys.stderr):
        lq = to_tensor(read_rgb(job.source))[None].to(device)
        with torch.no_grad():
            pred = restore(model, lq, inference).float()
        scores = _score(pred, job, protocol, device) if job.gt is not None else {}
        _write_png(job.target, quantize(pred[0]))
        yield Result(job, scores)


def _score(pred: torch.Tensor, job: Job, protocol: ScoringProtocol, device: torch.device) -> dict[str, float]:
    assert job.gt is not None
    gt = to_tensor(read_rgb(job.gt))[None].to(device)
    if gt.shape != pred.shape:
        raise DeblurError(
            f"ground truth {job.gt} is {gt.shape[-1]}x{gt.shape[-2]}, input {job.source} is "
            f"{pred.shape[-1]}x{pred.shape[-2]}: a pair must have one size"
        )
    return {k: float(v[0]) for k, v in score(pred, gt, protocol).items()}


def _write_png(path: Path, image: torch.Tensor) -> None:
    """(3, H, W) on the 8-bit grid -> an RGB PNG at ``path``, written atomically (folders created)."""
    array = (image.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array, "RGB").save(buffer, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(path, buffer.getvalue())
