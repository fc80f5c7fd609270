"""The evaluation record: one frozen schema, written by evaluation, read by the report, paper tables and figures.

On disk (``benchmark.core.layout``: ``<results>/runs/[release/]<train set>/<test set>/<model>[-local].json``) the
record is one JSON object. Its means under the dataset's official protocol sit at the top level (``psnr``, ``ssim``,
``ssim_<variant>``), so ``dvc metrics show`` lists them; the intervals, the per-image scores and the provenance are
nested (DVC skips lists and strings). Where the model's release scored the dataset its own way
(``model.release.protocols``), ``release_protocol`` holds the same fields under that protocol, computed on the same
outputs in the same pass. A record of result images scored without running the model (``outputs=<folder>``) also
holds ``outputs``: the folder, the rule that matched its files, their SHA-256 manifest and any missing images (an
optional key: records of models that ran are unchanged). The CSV beside it holds the per-image scores for spreadsheets
(6 decimals; the release protocol's columns prefixed ``release_``); readers use the JSON.

A record without ``schema`` (written before this schema existed) is refused with a message to re-run ``dvc repro``.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchmark.core import atomic
from benchmark.core.errors import HarnessError
from benchmark.core.schema import build, to_plain
from benchmark.core.sections import ScoringProtocol

SCHEMA = "msfs-bench/eval-record/3"


class RecordError(HarnessError):
    """An evaluation record that cannot be read; the message names the file and says to re-run its stage."""


@dataclass(frozen=True)
class TLCWindow:
    """How a ``-Local`` row's model was converted: window = ``base_ratio`` x ``train_size``.

    Attributes:
        train_size: The training crop the window scales from.
        source: Where ``train_size`` came from (``eval.tlc_window.train_size``, the release, the checkpoint).
        base_ratio: TLC's ratio (1.5).
        layers: Global-statistics layers converted (0: TLC changes nothing in this model).
    """

    train_size: int
    source: str
    base_ratio: float
    layers: int

    def describe(self) -> str:
        return f"{self.base_ratio} x training size {self.train_size}"


@dataclass(frozen=True)
class ProtocolScores:
    """The scores of one evaluation under a second protocol (the release's own), on the same images in the same order.

    Attributes:
        protocol: The protocol; ``protocol_text`` its footer line.
        means: Metric -> mean over the images.
        scores: Metric -> per-image scores (float64), in the record's ``names`` order.
        intervals: Metric -> bootstrap 95% interval of the mean.
    """

    protocol: ScoringProtocol
    protocol_text: str
    means: dict[str, float]
    scores: dict[str, tuple[float, ...]]
    intervals: dict[str, tuple[float, float]]

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": to_plain(self.protocol),
            "protocol_text": self.protocol_text,
            **self.means,
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "per_image": {k: list(v) for k, v in self.scores.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], n_images: int) -> ProtocolScores:
        protocol = build(ScoringProtocol, data["protocol"], "release_protocol.protocol")
        scores = {k: tuple(float(x) for x in v) for k, v in dict(data["per_image"]).items()}
        if set(scores) != set(protocol.metrics) or any(len(v) != n_images for v in scores.values()):
            raise ValueError("release_protocol: per-image columns do not match the protocol's metrics or the images")
        return cls(
            protocol=protocol,
            protocol_text=data["protocol_text"],
            means={m: float(data[m]) for m in protocol.metrics},
            scores=scores,
            intervals={k: (float(v[0]), float(v[1])) for k, v in data["intervals"].items()},
        )


@dataclass(frozen=True)
class OutputsSource:
    """Where the restorations of an evaluation of result files (``outputs=<folder>``) came from.

    Attributes:
        folder: The folder as given (repository-relative when inside it).
        name_map: The ``eval.name_maps`` rule that matched its files to the test images; ``layout`` in words.
        sha256: SHA-256 of ``files`` as ``sha256sum`` prints it (``benchmark.data.outputs.manifest_text``).
        files: Relative path -> SHA-256 of every scored file.
        n_test: Images in the test split; ``missing`` those without a file (scored with ``allow_missing=true``).
        deblur: The folder's ``deblur.json`` (``benchmark.deblur``'s record of the model and weights that wrote it),
            ``None`` for images made elsewhere (the authors' published results).
    """

    folder: str
    name_map: str
    layout: str
    sha256: str
    files: dict[str, str]
    n_test: int
    missing: tuple[str, ...] = ()
    deblur: dict[str, Any] | None = None

    @property
    def partial(self) -> bool:
        return bool(self.missing)

    def describe(self) -> str:
        """One line for footers: how many images, from where, matched how."""
        scored = self.n_test - len(self.missing)
        subset = f"{scored} of the {self.n_test} test images (allow_missing=true)" if self.missing else f"all {scored}"
        return f"{subset} from `{self.folder}` ({self.name_map}: {self.layout}), manifest sha256 {self.sha256[:12]}"

    def to_json(self) -> dict[str, Any]:
        return {**to_plain(self), "missing": list(self.missing)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutputsSource:
        return cls(**{**data, "missing": tuple(data["missing"]), "files": dict(data["files"])})


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation: a model with its weights, plain or TLC, scored on one test split under the dataset's official
    protocol and, where the model's release scored that dataset otherwise, under the release's protocol too.

    Attributes:
        model: Registry key.
        row: Table row: ``model``, or ``model-Local`` for TLC.
        dataset: The test set.
        train_dataset: The dataset the weights were trained on.
        weights: ``pipeline``, ``release``, ``file`` or ``none`` (identity), see ``benchmark.weights``; for result
            images scored without running the model (``outputs``), ``released outputs`` (made elsewhere: the authors'
            published images) or ``deblur outputs`` (written by ``benchmark.deblur``, whose weights ``checkpoint``
            names).
        tlc: Whether the model was converted by TLC.
        checkpoint: The weights file as given (repository-relative when inside it), ``None`` for ``none``.
        checkpoint_sha256: Its SHA-256.
        protocol: The scoring protocol; ``protocol_text`` is its footer line.
        applicable: ``False`` for a TLC row of a model without global statistics (no scores, ``reason`` says why).
        tlc_window: The TLC conversion (``None`` for plain rows).
        names: The test images, in scoring order.
        means: Metric -> mean over the images (``psnr``, ``ssim``, ``ssim_<variant>``).
        scores: Metric -> per-image scores (float64), in ``names`` order.
        intervals: Metric -> bootstrap 95% interval of the mean over the images (``benchmark.scoring.stats``).
        seconds: Wall time of the scoring pass.
        mlflow_run_id: The MLflow run that recorded it.
        provenance: Where it came from: git commit and dirty flag, the dataset's identity hash, package versions,
            the device and whether TF32 was allowed (``tf32``: always ``disabled`` in evaluation).
        release: The scores under the release's own protocol, ``None`` where the release declares none for the
            dataset (its evaluation matched the official protocol, or the model has no release).
        outputs: Where the scored result images came from (``outputs=<folder>``); ``None`` when the model ran.
    """

    model: str
    row: str
    dataset: str
    train_dataset: str
    weights: Literal["pipeline", "release", "file", "none", "released outputs", "deblur outputs"]
    tlc: bool
    checkpoint: str | None
    checkpoint_sha256: str | None
    protocol: ScoringProtocol
    protocol_text: str
    applicable: bool = True
    reason: str | None = None
    tlc_window: TLCWindow | None = None
    names: tuple[str, ...] = ()
    means: dict[str, float] = field(default_factory=dict)
    scores: dict[str, tuple[float, ...]] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    seconds: float | None = None
    mlflow_run_id: str | None = None
    provenance: dict[str, str] = field(default_factory=dict)
    release: ProtocolScores | None = None
    outputs: OutputsSource | None = None

    @property
    def n_images(self) -> int:
        return len(self.names)

    @property
    def psnr(self) -> float:
        return self.means["psnr"]

    @property
    def ssim(self) -> float:
        return self.means["ssim"]

    def values(self, metric: str) -> tuple[float, ...]:
        """Per-image scores of ``metric`` in image order."""
        return self.scores[metric]

    # --- JSON ----------------------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The on-disk object (see the module docstring)."""
        window = self.tlc_window
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "model": self.model,
            "row": self.row,
            "dataset": self.dataset,
            "train_dataset": self.train_dataset,
            "weights": self.weights,
            "tlc": self.tlc,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "protocol": to_plain(self.protocol),
            "protocol_text": self.protocol_text,
            "applicable": self.applicable,
            "reason": self.reason,
            "tlc_window": None if window is None else to_plain(window),
            "n_images": self.n_images,
            **self.means,
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "per_image": {"name": list(self.names), **{k: list(v) for k, v in self.scores.items()}},
            "seconds": self.seconds,
            "mlflow_run_id": self.mlflow_run_id,
            "provenance": dict(self.provenance),
            "release_protocol": None if self.release is None else self.release.to_json(),
        }
        if self.outputs is not None:  # absent from records of models that ran (schema 3 before outputs existed)
            out["outputs"] = self.outputs.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "record") -> EvalRecord:
        """Inverse of :meth:`to_json`; raises :class:`RecordError` for another schema or a malformed object."""
        if data.get("schema") != SCHEMA:
            found = data.get("schema", "none (written before records had a schema)")
            raise RecordError(
                f"{where}: evaluation record of schema {found}, expected {SCHEMA}; re-run its stage (`dvc repro`) to "
                "write it again"
            )
        try:
            per_image = dict(data["per_image"])
            names = tuple(str(n) for n in per_image.pop("name"))
            scores = {k: tuple(float(x) for x in v) for k, v in per_image.items()}
            if any(len(v) != len(names) for v in scores.values()):
                raise ValueError("per-image columns of different lengths")
            protocol = build(ScoringProtocol, data["protocol"], "protocol")
            window = data["tlc_window"]
            metrics = protocol.metrics if data["applicable"] else ()
            return cls(
                model=data["model"],
                row=data["row"],
                dataset=data["dataset"],
                train_dataset=data["train_dataset"],
                weights=data["weights"],
                tlc=bool(data["tlc"]),
                checkpoint=data["checkpoint"],
                checkpoint_sha256=data["checkpoint_sha256"],
                protocol=protocol,
                protocol_text=data["protocol_text"],
                applicable=bool(data["applicable"]),
                reason=data["reason"],
                tlc_window=None if window is None else TLCWindow(**window),
                names=names,
                means={m: float(data[m]) for m in metrics},
                scores=scores,
                intervals={k: (float(v[0]), float(v[1])) for k, v in data["intervals"].items()},
                seconds=data["seconds"],
                mlflow_run_id=data["mlflow_run_id"],
                provenance=dict(data["provenance"]),
                release=None
                if data["release_protocol"] is None
                else ProtocolScores.from_json(data["release_protocol"], len(names)),
                outputs=None if data.get("outputs") is None else OutputsSource.from_json(data["outputs"]),
            )
        except (KeyError, TypeError, ValueError, HarnessError) as err:
            raise RecordError(
                f"{where}: malformed evaluation record ({type(err).__name__}: {err}); re-run its stage"
            ) from err

    def per_image_csv(self) -> str:
        """The per-image scores as CSV (``name``, one column per metric, then ``release_<metric>`` ones; 6 decimals)."""
        columns = dict(self.scores)
        if self.release is not None:
            columns.update({f"release_{k}": v for k, v in self.release.scores.items()})
        buf = io.StringIO()
        buf.write(",".join(["name", *columns]) + "\n")
        for i, name in enumerate(self.names):
            buf.write(",".join([_csv_field(name), *(f"{v[i]:.6f}" for v in columns.values())]) + "\n")
        return buf.getvalue()

    def under(self, protocol: Literal["official", "release"]) -> EvalRecord | None:
        """This record with the means, scores and intervals of ``protocol`` in the top-level fields (what the table
        cells read); ``None`` for ``release`` when no release protocol was scored."""
        if protocol == "official":
            return self
        if self.release is None:
            return None
        r = self.release
        return dataclasses.replace(
            self,
            protocol=r.protocol,
            protocol_text=r.protocol_text,
            means=r.means,
            scores=r.scores,
            intervals=r.intervals,
            release=None,
        )


def _csv_field(text: str) -> str:
    return f'"{text}"' if any(c in text for c in ',"\n') else text


def write_record(record: EvalRecord, path: Path) -> None:
    """Write ``path`` (JSON) and the per-image CSV beside it, each atomically."""
    atomic.write_text(path.with_suffix(".csv"), record.per_image_csv() if record.applicable else "name,psnr,ssim\n")
    atomic.write_json(path, record.to_json())


def read_record(path: Path) -> EvalRecord:
    """The record at ``path``; a missing, unreadable or other-schema file is a :class:`RecordError` naming it."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RecordError(f"{path} is missing: run its evaluate stage (`dvc repro`)") from None
    except (OSError, ValueError) as err:
        raise RecordError(f"{path} is not valid JSON ({err}); run its evaluate stage again (`dvc repro`)") from err
    if not isinstance(data, dict):
        raise RecordError(f"{path}: not an evaluation record; run its evaluate stage again (`dvc repro`)")
    return EvalRecord.from_json(data, str(path))
