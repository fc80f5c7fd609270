"""One evaluation: a configured model with its weights, plain or TLC, scored on a test split; its record and run.

The scoring itself is ``benchmark.scoring.loop.score_model`` (pure, no I/O). Here: the weights (any release format,
``benchmark.weights``), the TLC conversion and where its window comes from, the record, the files and the run.
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path

import torch

from benchmark.core.config import RunConfig
from benchmark.core.device import disable_tf32, select_device
from benchmark.core.hashing import sha256_weights
from benchmark.core.sections import ScoringProtocol
from benchmark.core.tracking import git_state, start_run
from benchmark.data.dataset import PairedDataset
from benchmark.data.identity import Identity, read_identity
from benchmark.evaluation.records import EvalRecord, ProtocolScores, TLCWindow, write_record
from benchmark.evaluation.samples import SampleKeeper
from benchmark.evaluation.tlc import count_local_layers, to_local
from benchmark.scoring.loop import Scores, score_protocols
from benchmark.scoring.pool import default_workers
from benchmark.scoring.stats import bootstrap_ci
from benchmark.weights.resolve import Weights, build_model, load_weights, resolve_weights
from models import DeblurModel

NOT_APPLICABLE = "no global-statistics layer (AdaptiveAvgPool2d/InstanceNorm2d)"


def tlc_train_size(run: RunConfig, weights: Weights) -> tuple[int, str]:
    """The training crop the TLC window is scaled from, and where that number came from.

    In order: ``eval.tlc_window.train_size``; the release's ``train_size`` for released weights; the
    ``train.crop_size`` recorded in a checkpoint this harness trained; the current ``train.crop_size``.
    """
    if run.eval.tlc_window.train_size:
        return run.eval.tlc_window.train_size, "eval.tlc_window.train_size"
    if weights.train_size is not None:
        return weights.train_size, (
            f"conf/model/{run.model.name}.yaml release.checkpoints.{weights.train_dataset}.train_size"
        )
    if weights.path is not None:
        try:
            saved = torch.load(weights.path, map_location="cpu", weights_only=True)
        except Exception:  # unreadable files were already reported by load_weights
            saved = None
        crop = saved.get("config", {}).get("train", {}).get("crop_size") if isinstance(saved, dict) else None
        if isinstance(crop, int):
            return crop, f"{run.layout.display(weights.path)} (train.crop_size it was trained with)"
    return run.train.crop_size, "train.crop_size"


def convert(model: DeblurModel, run: RunConfig, weights: Weights) -> tuple[torch.nn.Module, TLCWindow]:
    """The TLC-converted copy of ``model`` and its window (``layers`` = 0: TLC changes nothing in it)."""
    size, source = tlc_train_size(run, weights)
    ratio = run.eval.tlc_window.base_ratio
    local = to_local(model, (size, size), base_ratio=ratio)
    return local, TLCWindow(size, source, ratio, count_local_layers(local))


def release_protocol(run: RunConfig) -> ScoringProtocol | None:
    """The protocol the model's release scored ``run.dataset`` with, where it differs from the official one."""
    release = run.model.release
    return None if release is None else release.protocols.get(run.dataset.name)


def _header(run: RunConfig, weights: Weights, tlc: bool) -> EvalRecord:
    """The record's fields known before scoring."""
    protocol = run.dataset.protocol
    return EvalRecord(
        model=run.model.name,
        row=f"{run.model.name}-Local" if tlc else run.model.name,
        dataset=run.dataset.name,
        train_dataset=weights.train_dataset,
        weights=weights.kind,
        tlc=tlc,
        checkpoint=run.layout.display(weights.path) if weights.path else None,
        checkpoint_sha256=sha256_weights(weights.path) if weights.path else None,
        protocol=protocol,
        protocol_text=protocol.describe(),
    )


def evaluate_run(run: RunConfig, *, tlc: bool) -> EvalRecord:
    """Evaluate one (model, weights, dataset, TLC) combination; write its record and CSV and one MLflow run.

    Raises:
        ConfigError, CheckpointError, DatasetError, AlignmentError: bad key, weights or data, naming what to fix.
    """
    device = select_device(run.eval.device, key="eval.device")
    layout = run.layout
    model = build_model(run.model)
    weights = resolve_weights(
        run.model,
        layout,
        checkpoint=run.checkpoint,
        train_dataset=run.train_dataset,
        dataset=run.dataset.name,
        has_parameters=len(model.state_dict()) > 0,
    )
    load_weights(model, weights)
    path = weights.record_path(layout, run.dataset.name, run.model.name, tlc)
    record = _header(run, weights, tlc)
    if tlc:
        model, window = convert(model, run, weights)
        record = dataclasses.replace(record, tlc_window=window)
        if window.layers == 0:
            # TLC changes nothing in a model without global statistics: record that instead of a duplicate row.
            record = dataclasses.replace(record, applicable=False, reason=NOT_APPLICABLE)
            write_record(record, path)
            return record
    identity = read_identity(layout.dataset(run.dataset.name), run.dataset.name)
    test_set = PairedDataset(layout.dataset(run.dataset.name), "test", crop_size=None, augment="none")
    loader = torch.utils.data.DataLoader(test_set, batch_size=run.eval.batch_size, shuffle=False)
    return score_and_record(run, model.to(device), record, path, device, loader, protocols_of(run), identity)


def protocols_of(run: RunConfig) -> tuple[ScoringProtocol, ...]:
    """The dataset's official protocol, then the release's own for it where it declares one."""
    second = release_protocol(run)
    return (run.dataset.protocol,) if second is None else (run.dataset.protocol, second)


def score_and_record(
    run: RunConfig,
    model: torch.nn.Module | None,
    record: EvalRecord,
    path: Path,
    device: torch.device,
    loader: torch.utils.data.DataLoader,
    protocols: tuple[ScoringProtocol, ...],
    identity: Identity,
) -> EvalRecord:
    """Score ``loader`` (``model``'s restorations, or result files: ``benchmark.evaluation.outputs``) under
    ``protocols`` (official, then the release's) on the test split whose ``identity`` is given, fill in ``record``
    and write it, with one MLflow run."""
    layout = run.layout
    tags = {
        "kind": "evaluate",
        "model": record.model,
        "dataset": record.dataset,
        "train_dataset": record.train_dataset,
        "weights": record.weights,
        "profile": _profile(run, record),
        "tlc": str(record.tlc).lower(),
        "dataset_hash": identity.sha256,
        "protocol": record.protocol_text,
        "ssim_variant": record.protocol.ssim_variant,
    }
    if len(protocols) > 1:
        tags["release_protocol"] = protocols[1].describe()
    if record.outputs is not None:
        tags["outputs_sha256"] = record.outputs.sha256
    tf32 = disable_tf32()
    name = record.row if record.outputs is None else f"{record.row} ({record.weights})"
    with start_run(run.tracking, run_name=f"evaluate/{name}/{record.dataset}", tags=tags) as tracked:
        workers = default_workers() if run.eval.score_workers is None else run.eval.score_workers
        samples = SampleKeeper(run.eval.samples, run.eval.sample_crop)
        keep = samples if run.eval.samples else None
        scores, *rest = score_protocols(model, loader, protocols, device=device, workers=workers, keep=keep)
        record = dataclasses.replace(
            record,
            names=scores.names,
            means=scores.means,
            scores=scores.values,
            intervals={k: bootstrap_ci(v) for k, v in scores.values.items()},
            seconds=round(scores.seconds, 3),
            mlflow_run_id=tracked.run_id,
            provenance={
                **git_state(layout.root),
                "dataset_sha256": identity.sha256,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "device": str(device),
                "tf32": tf32,
            },
            release=_protocol_scores(protocols[1], rest[0]) if rest else None,
        )
        write_record(record, path)
        tracked.log_params(run.to_dict())
        tracked.log_metrics({f"test/{record.dataset}/{k}": v for k, v in record.means.items()})
        if record.release is not None:
            tracked.log_metrics({f"test/{record.dataset}/release_{k}": v for k, v in record.release.means.items()})
        tracked.log_artifact(path.with_suffix(".csv"), "per_image")
        tracked.log_artifact(path, "results")
        tracked.log_table({"image": record.names, **record.scores}, "per_image/scores.json")
        for image, strip in samples.strips.items():  # input | restoration | ground truth
            tracked.log_image(strip, f"samples/{image}.png")
    return record


def _profile(run: RunConfig, record: EvalRecord) -> str:
    """The MLflow ``profile`` tag: the training profile of this pipeline's weights, else where the weights came from."""
    if record.weights == "release":
        return "release"
    return "outputs" if record.outputs is not None else run.train.profile


def _protocol_scores(protocol: ScoringProtocol, scores: Scores) -> ProtocolScores:
    return ProtocolScores(
        protocol=protocol,
        protocol_text=protocol.describe(),
        means=scores.means,
        scores=scores.values,
        intervals={k: bootstrap_ci(v) for k, v in scores.values.items()},
    )
