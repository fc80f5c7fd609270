"""MLflow tracking at the edge. The only module of the project that imports mlflow.

Runs go to a sqlite database at an absolute path: ``MLFLOW_TRACKING_URI`` if set, else ``tracking.uri``, else
``sqlite:///<repo>/mlflow.db``, where ``<repo>`` is the repository that launched the run even when DVC runs it in a
temporary workspace (`dvc exp run --temp`, queued experiments: ``benchmark.core.layout.experiment_home``), whose files
vanish with it. Telemetry is switched off before mlflow is imported.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmark.core.layout import experiment_home, project_root
from benchmark.core.sections import TrackingConfig


def tracking_uri(configured: str | None = None) -> str:
    """The tracking URI in force (environment, then config, then the project's sqlite file)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if configured:
        return configured
    return f"sqlite:///{experiment_home() / 'mlflow.db'}"


def git_state(root: Path | None = None) -> dict[str, str]:
    """``{"git_commit": sha, "git_dirty": "true"|"false"}``, or "unknown" outside a git checkout."""
    root = root or project_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": sha.stdout.strip(), "git_dirty": "true" if status.stdout.strip() else "false"}


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


class TrackedRun:
    """A handle on one MLflow run; every method is a no-op when tracking is disabled."""

    def __init__(self, mlflow: Any | None, run_id: str | None) -> None:
        self._mlflow = mlflow
        self.run_id = run_id

    @property
    def enabled(self) -> bool:
        return self._mlflow is not None

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self._mlflow is None:
            return
        flat = {k: str("null" if v is None else v) for k, v in flatten(params).items()}
        # MLflow refuses to change a logged param, yet a resumed run may legitimately differ in keys that do not
        # affect the weights (train.log_every, ...): keep the first value as the param, record the new one as a tag.
        logged = self._mlflow.get_run(self.run_id).data.params
        changed = {f"resumed_param.{k}": v for k, v in flat.items() if k in logged and logged[k] != v}
        items = [(k, v) for k, v in flat.items() if k not in logged]
        for i in range(0, len(items), 100):
            self._mlflow.log_params(dict(items[i : i + 100]))
        if changed:
            self.set_tags(changed)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._mlflow is not None:
            self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self._mlflow is not None:
            self._mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self._mlflow is not None:
            self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_dict(self, obj: Mapping[str, Any], artifact_file: str) -> None:
        if self._mlflow is not None:
            self._mlflow.log_dict(dict(obj), artifact_file)

    def log_image(self, image: Any, artifact_file: str) -> None:
        """An (H, W, 3) uint8 array as a PNG artifact, which the UI shows as a picture."""
        if self._mlflow is not None:
            self._mlflow.log_image(image, artifact_file=artifact_file)

    def log_table(self, columns: Mapping[str, Any], artifact_file: str) -> None:
        """Equal-length columns as a table artifact (JSON), which the UI shows as a sortable table."""
        if self._mlflow is not None:
            self._mlflow.log_table(data={k: list(v) for k, v in columns.items()}, artifact_file=artifact_file)


def _import_mlflow() -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import mlflow

    return mlflow


@contextmanager
def start_run(
    config: TrackingConfig,
    *,
    run_name: str,
    tags: Mapping[str, Any],
    resume_run_id: str | None = None,
    active: bool = True,
) -> Iterator[TrackedRun]:
    """Open (or, with ``resume_run_id``, reopen) a run; it ends FINISHED, or FAILED/KILLED when the body raises.

    Nothing is recorded when ``config.enabled`` is false or ``active`` is false (the ranks > 0 of a torchrun job):
    the handle's methods are then no-ops.
    """
    if not (config.enabled and active):
        yield TrackedRun(None, None)
        return
    mlflow = _import_mlflow()
    mlflow.set_tracking_uri(tracking_uri(config.uri))
    mlflow.set_experiment(config.experiment)
    run_id = None
    if resume_run_id:
        try:
            run_id = mlflow.get_run(resume_run_id).info.run_id
        except Exception:  # the run may live in another database: start a new one, linked by tag
            run_id = None
    active = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name)
    handle = TrackedRun(mlflow, active.info.run_id)
    handle.set_tags({**git_state(), **tags, **({"resumed_from": resume_run_id} if resume_run_id else {})})
    try:
        yield handle
    except KeyboardInterrupt:
        mlflow.end_run(status="KILLED")
        raise
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")
