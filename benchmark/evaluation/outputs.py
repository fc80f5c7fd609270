"""Scoring a folder of result images instead of running a model: ``python -m benchmark.evaluate model=<name>
dataset=<test> outputs=<folder> [allow_missing=true] [name_map=<rule>]``.

It answers the first question of a reproduction: do the authors' own published images give their reported number
under the protocol they used? Beside the row of their released weights run by the harness, a gap then shows where it
comes from: the weights (the images differ) or the scoring (same images, another number).

The folder is matched to the test split by a name rule (``benchmark.data.outputs``; the release's own,
``model.release.outputs.<test>.name_map``, or ``name_map=``), then scored on the evaluation's own path
(``benchmark.evaluation.run.score_and_record``: the scoring loop, record, CSV and MLflow run), under the dataset's
official protocol and the release's, as a model's restorations are. What differs, stated in the record: nothing is
rounded (the files are 8-bit: ``quantize: uint8_file``), and what a protocol says about running a model (tiling,
padding, train mode) does not apply (the files are what the model's run produced). A folder ``benchmark.deblur``
wrote carries its ``deblur.json``: the record is then ``deblur outputs`` with that run's weights; any other folder is
``released outputs``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from benchmark.core.config import RunConfig
from benchmark.core.errors import ConfigError
from benchmark.core.sections import NameMap, ScoringProtocol
from benchmark.data.identity import read_identity
from benchmark.data.outputs import MatchedOutputs, OutputPairs, OutputsError, match_outputs
from benchmark.data.pairs import find_pairs
from benchmark.evaluation.deblur import read_manifest
from benchmark.evaluation.records import EvalRecord, OutputsSource
from benchmark.evaluation.run import protocols_of, score_and_record

SAME = "same"
"""The rule of a folder that keeps the test set's own names (``benchmark.deblur`` from ``<data>/<set>/test/blur``)."""


def as_files(protocol: ScoringProtocol) -> ScoringProtocol:
    """``protocol`` for 8-bit result files: no rounding, and its inference fields (tiling, padding, network mode) at
    their defaults, since no model runs; the scoring fields (SSIM variants, alignment, crop, colour) unchanged."""
    return dataclasses.replace(protocol, quantize="uint8_file", tile=None, padding="model", network_mode="eval", seed=0)


def name_rule(run: RunConfig, made: dict[str, Any] | None) -> tuple[str, NameMap]:
    """The rule matching the folder: ``name_map=``; else ``same`` for a ``benchmark.deblur`` folder; else the release's
    rule for the dataset; else ``same``.

    Raises:
        ConfigError: (``name_map``) the release publishes this dataset's images without stating their names.
    """
    rules = run.eval.name_maps
    name = run.name_map
    if name is None and made is None:
        release = run.model.release
        published = release.outputs.get(run.dataset.name) if release is not None else None
        if published is not None and published.name_map is None:
            raise ConfigError(
                f"{run.model.name}'s release does not state how its {run.dataset.name} result files are named "
                f"({published.source}); give the rule of the folder's layout: name_map=<one of {', '.join(rules)}>",
                key="name_map",
            )
        name = published.name_map if published is not None else None
    name = name or SAME
    if name not in rules:
        raise ConfigError(f"no name map {name!r}; known: {', '.join(rules)} (eval.name_maps)", key="name_map")
    return name, rules[name]


def _check_arguments(run: RunConfig) -> None:
    for key, given in (("checkpoint", run.checkpoint is not None), ("tile", run.tile is not None)):
        if given:
            raise ConfigError(f"{key}= runs a model; outputs=<folder> scores result images without one", key=key)
    if run.tlc_settings != (False,):
        raise ConfigError(
            "tlc= converts a model; result images are scored as they are (a folder benchmark.deblur wrote with "
            "tlc=true is recorded as such from its deblur.json)",
            key="tlc",
        )


def _source(run: RunConfig, matched: MatchedOutputs, rule: NameMap, made: dict[str, Any] | None) -> OutputsSource:
    return OutputsSource(
        folder=run.layout.display(matched.folder),
        name_map=matched.rule,
        layout=rule.layout,
        sha256=matched.sha256,
        files=matched.manifest,
        n_test=matched.n_test,
        missing=matched.missing,
        deblur=made,
    )


def _train_dataset(run: RunConfig, made: dict[str, Any] | None) -> str:
    """What the weights behind the images were trained on: the deblur run's; for published images, the release's
    checkpoint that ``train_dataset=`` picks (the GoPro one by default)."""
    if made is not None:
        return made["train_dataset"]
    if run.model.release is not None:
        return run.model.release.checkpoint(run.train_dataset)[0]
    return run.train_dataset or run.dataset.name


def evaluate_outputs(run: RunConfig) -> EvalRecord:
    """Score the result images of ``run.outputs`` on ``run.dataset``'s test split; write the record and one MLflow run.

    Raises:
        ConfigError: ``checkpoint``, ``tile`` or ``tlc`` given, an unknown rule, or a release without stated names.
        OutputsError: the folder does not match the test split (``benchmark.data.outputs``), or ``deblur.json`` names
            another model.
        DatasetError, AlignmentError: as every evaluation.
    """
    _check_arguments(run)
    assert run.outputs is not None
    folder = Path(run.outputs)
    made = read_manifest(folder) if folder.is_dir() else None
    if made is not None and made["model"] != run.model.name:
        raise OutputsError(
            f"outputs={folder}: benchmark.deblur wrote it with model {made['model']!r} (deblur.json), not "
            f"{run.model.name!r}; score it with model={made['model']}"
        )
    rule_name, rule = name_rule(run, made)
    layout = run.layout
    identity = read_identity(layout.dataset(run.dataset.name), run.dataset.name)
    pairs = find_pairs(layout.dataset(run.dataset.name) / "test")
    matched = match_outputs(folder, pairs, rule_name, rule, allow_missing=run.allow_missing)
    protocols = tuple(as_files(p) for p in protocols_of(run))
    kind = "released" if made is None else "deblur"
    tlc = bool(made and made["tlc"])
    record = EvalRecord(
        model=run.model.name,
        row=f"{run.model.name}-Local" if tlc else run.model.name,
        dataset=run.dataset.name,
        train_dataset=_train_dataset(run, made),
        weights=f"{kind} outputs",
        tlc=tlc,
        checkpoint=made["checkpoint"] if made else None,
        checkpoint_sha256=made["checkpoint_sha256"] if made else None,
        protocol=protocols[0],
        protocol_text=protocols[0].describe(),
        outputs=_source(run, matched, rule, made),
    )
    path = layout.record(record.train_dataset, record.dataset, record.model, tlc, outputs=kind)
    # One image per batch: result images keep their test image's size, which may differ between images.
    loader = torch.utils.data.DataLoader(OutputPairs(matched), batch_size=1, shuffle=False)
    return score_and_record(run, None, record, path, torch.device("cpu"), loader, protocols, identity)
