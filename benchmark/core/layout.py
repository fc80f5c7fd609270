"""The on-disk layout: the one module that spells a path. Everything else asks a :class:`Layout` (or ``paths.*``).

Relative ``paths.*`` are relative to the repository root, so a command behaves the same from any working directory::

    <paths.data>/<dataset>/{train,test}/{blur,sharp}/<name>.png   a dataset, normalised (fetch / synth)
    <paths.data>/<dataset>/dataset_identity.json                   its identity record (benchmark.data.identity)
    <paths.data>/external/archives/<archive>                       hand-placed or downloaded archives (data.dvc)
    <paths.data>/external/checkpoints/<model>/<file>               the authors' released weights (data.dvc)
    <paths.checkpoints>/<model>-<train dataset>/{last,final}.pt    training state and trained weights
    <paths.results>/runs/<train dataset>/<test dataset>/<model>[-local].{json,csv}
                                                                   evaluation records of this pipeline's weights
    <paths.results>/runs/release/<train dataset>/<test dataset>/...  of the authors' released weights
    <paths.results>/runs/outputs/<train dataset>/<test dataset>/<model>[-local]-{released,deblur}.{json,csv}
                                                                   of result images (the authors', benchmark.deblur's)
    <folder>/deblur.json                                           what benchmark.deblur wrote a folder with
    <paths.results>/plots/train/<model>-<train dataset>/{loss,lr,val}.csv
                                                                   training curves (DVC plots, written by training)
    <paths.results>/plots/per_image/[release/]<train dataset>/<test dataset>/<row>.csv
                                                                   per-image PSNR beside the identity row's (report)
    <paths.results>/{tables,figures,bench,complexity}/             generated tables, figures and measurements
    <paths.cache>/<dataset>/                                        decoded-image cache (train.cache=true)
    results/reported/                                              the paper's numbers, typed from its text (inputs)
    stages/<stage>.json                                            each DVC stage's inputs (benchmark.configure)
    checksums.sha256                                               pinned archive checksums
    <repository>/mlflow.db                                         MLflow runs (tracking.uri null)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from benchmark.core.sections import PathsConfig


def project_root() -> Path:
    """The checkout this package runs from (the folder holding dvc.yaml), else the current directory.

    Inside a DVC experiment's temporary workspace (``dvc exp run --temp/--queue``) this is that workspace, because
    ``python -m`` imports the working directory's copy of the package; :func:`experiment_home` names the repository
    it belongs to.
    """
    here = Path(__file__).resolve().parents[2]
    if (here / "dvc.yaml").exists() or (here / "pyproject.toml").exists():
        return here
    return Path.cwd()


def experiment_home(root: Path | None = None) -> Path:
    """The repository a checkout belongs to: ``root`` itself, or, for a DVC experiment's temporary workspace
    (``<repo>/.dvc/tmp/exps/<tmp>/``, which DVC deletes afterwards), the ``<repo>`` that launched it. Records that must
    outlive a run (``mlflow.db``) go there."""
    root = (root or project_root()).resolve()
    parts = root.parts
    for i in range(len(parts) - 3, 0, -1):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return root


CONF_DIR = project_root() / "conf"
"""The single source of configuration (Hydra)."""

IDENTITY_RECORD = "dataset_identity.json"
"""A dataset folder's identity record (``benchmark.data.identity``); ``.dvcignore`` leaves it out of the folder's DVC
hash, since it holds modification times."""
SYNTH_MANIFEST = "synth.json"
"""A generated dataset's parameters and per-image trajectories (``benchmark.data.synth``)."""
FETCH_MANIFEST = "fetch.json"
"""A fetched dataset's archive, its SHA-256 and the pair counts (``benchmark.data.fetch``)."""
DEBLUR_MANIFEST = "deblur.json"
"""In a folder ``benchmark.deblur`` restored into: the model, weights and rounding that wrote it (read back when the
folder is scored with ``outputs=``)."""


@dataclass(frozen=True)
class Layout:
    """Every path of the harness, from ``paths.*`` and the repository root."""

    paths: PathsConfig
    root: Path = field(default_factory=project_root)

    def _under_root(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    def display(self, path: Path) -> str:
        """``path`` relative to the repository root when it lies inside it (portable records), else absolute."""
        try:
            return Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    # --- data ----------------------------------------------------------------------------------------------------

    @property
    def data(self) -> Path:
        return self._under_root(self.paths.data)

    def dataset(self, name: str) -> Path:
        return self.data / name

    def identity_record(self, dataset: str) -> Path:
        return self.dataset(dataset) / IDENTITY_RECORD

    def archive(self, file: str) -> Path:
        return self.data / "external" / "archives" / file

    def release_weights(self, model: str, file: str) -> Path:
        return self.data / "external" / "checkpoints" / model / file

    def cache(self, dataset: str) -> Path:
        return self._under_root(self.paths.cache) / dataset

    @property
    def checksums(self) -> Path:
        return self.root / "checksums.sha256"

    # --- training ------------------------------------------------------------------------------------------------

    def run_dir(self, model: str, train_dataset: str) -> Path:
        return self._under_root(self.paths.checkpoints) / f"{model}-{train_dataset}"

    def last_checkpoint(self, model: str, train_dataset: str) -> Path:
        return self.run_dir(model, train_dataset) / "last.pt"

    def final_checkpoint(self, model: str, train_dataset: str) -> Path:
        return self.run_dir(model, train_dataset) / "final.pt"

    # --- results -------------------------------------------------------------------------------------------------

    @property
    def results(self) -> Path:
        return self._under_root(self.paths.results)

    def record(
        self,
        train_dataset: str,
        dataset: str,
        model: str,
        tlc: bool,
        *,
        release: bool = False,
        outputs: Literal["released", "deblur"] | None = None,
    ) -> Path:
        """The evaluation record (JSON) of ``model`` trained on ``train_dataset`` (by this pipeline, or by the authors
        with ``release``), scored on ``dataset``; its per-image CSV is the same path with ``.csv``. ``outputs``: the
        record of result images scored without running the model, the authors' (``released``) or ``benchmark.deblur``'s
        (``deblur``)."""
        stem = f"{model}-local" if tlc else model
        if outputs is not None:
            return self.results / "runs" / "outputs" / train_dataset / dataset / f"{stem}-{outputs}.json"
        runs = self.results / "runs" / "release" if release else self.results / "runs"
        return runs / train_dataset / dataset / f"{stem}.json"

    def train_curves(self, model: str, train_dataset: str) -> Path:
        """The folder of one training run's curves (``loss.csv``, ``lr.csv``, ``val.csv``: DVC plots)."""
        return self.results / "plots" / "train" / f"{model}-{train_dataset}"

    @property
    def per_image_plots(self) -> Path:
        """The report stage's per-image plots (a DVC plots folder: one CSV per row and test set)."""
        return self.results / "plots" / "per_image"

    def per_image_plot(self, train_dataset: str, dataset: str, row: str, *, release: bool = False) -> Path:
        """Per-image PSNR of ``row`` beside the identity row's on ``dataset`` (CSV: image, identity, psnr, gain)."""
        base = self.per_image_plots / "release" if release else self.per_image_plots
        return base / train_dataset / dataset / f"{row}.csv"

    @property
    def tables(self) -> Path:
        return self.results / "tables"

    @property
    def figures(self) -> Path:
        return self.results / "figures"

    @property
    def bench(self) -> Path:
        return self.results / "bench"

    @property
    def complexity(self) -> Path:
        return self.results / "complexity"

    @property
    def reported(self) -> Path:
        """The paper's numbers: inputs committed with the code, so they stay put when ``paths.results`` moves."""
        return self.root / "results" / "reported"

    # --- pipeline and tracking -----------------------------------------------------------------------------------

    def stage_inputs(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage}.json"

    @property
    def mlflow_db(self) -> Path:
        return experiment_home(self.root) / "mlflow.db"
