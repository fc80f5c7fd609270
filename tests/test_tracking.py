"""benchmark.core.tracking against a real sqlite MLflow store: resumed runs, end states, git state, the URI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import mlflow
import pytest

from benchmark.core.layout import experiment_home
from benchmark.core.sections import TrackingConfig
from benchmark.core.tracking import flatten, git_state, start_run, tracking_uri


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TrackingConfig:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return TrackingConfig(enabled=True, uri=None, experiment="tracking-test")


def _run(run_id: str) -> mlflow.entities.Run:
    return mlflow.MlflowClient().get_run(run_id)


def test_a_run_records_tags_params_metrics_and_finishes(tracking: TrackingConfig, tmp_path: Path) -> None:
    artifact = tmp_path / "table.md"
    artifact.write_text("| a |\n")
    with start_run(tracking, run_name="report", tags={"kind": "report", "n": 3}) as run:
        run.log_params({"train": {"batch_size": 4, "device": None}, "seed": 0})
        run.log_metrics({"loss/total": 0.5}, step=2)
        run.log_artifact(artifact, "tables")
    recorded = _run(run.run_id)
    assert recorded.info.status == "FINISHED" and recorded.info.run_name == "report"
    assert recorded.data.params == {"train.batch_size": "4", "train.device": "null", "seed": "0"}
    assert recorded.data.metrics == {"loss/total": 0.5}
    assert recorded.data.tags["kind"] == "report" and recorded.data.tags["n"] == "3"
    assert {"git_commit", "git_dirty"} <= set(recorded.data.tags)
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(run.run_id, "tables")] == ["tables/table.md"]


def test_a_resumed_run_keeps_first_params_and_tags_the_changed_ones(tracking: TrackingConfig) -> None:
    with start_run(tracking, run_name="train/x", tags={"kind": "train"}) as first:
        first.log_params({"train": {"log_every": 1, "max_steps": 6}})
    with start_run(tracking, run_name="train/x", tags={"kind": "train"}, resume_run_id=first.run_id) as again:
        again.log_params({"train": {"log_every": 2, "max_steps": 6}, "seed": 1})
    assert again.run_id == first.run_id
    recorded = _run(first.run_id)
    assert recorded.data.params == {"train.log_every": "1", "train.max_steps": "6", "seed": "1"}
    assert recorded.data.tags["resumed_param.train.log_every"] == "2"
    assert "resumed_param.train.max_steps" not in recorded.data.tags
    assert recorded.data.tags["resumed_from"] == first.run_id


def test_a_resume_id_from_another_database_starts_a_new_linked_run(tracking: TrackingConfig) -> None:
    with start_run(tracking, run_name="train/x", tags={}, resume_run_id="0" * 32) as run:
        pass
    assert run.run_id != "0" * 32 and _run(run.run_id).data.tags["resumed_from"] == "0" * 32


def test_failure_and_interruption_end_the_run_failed_and_killed(tracking: TrackingConfig) -> None:
    with pytest.raises(ValueError), start_run(tracking, run_name="bad", tags={}) as failed:
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), start_run(tracking, run_name="stopped", tags={}) as killed:
        raise KeyboardInterrupt
    assert _run(failed.run_id).info.status == "FAILED"
    assert _run(killed.run_id).info.status == "KILLED"
    assert mlflow.active_run() is None


def test_disabled_tracking_records_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for config, active in ((TrackingConfig(enabled=False), True), (TrackingConfig(enabled=True), False)):
        with start_run(config, run_name="x", tags={}, active=active) as run:
            run.log_params({"a": 1})
            run.log_metrics({"m": 1.0})
        assert run.run_id is None and not run.enabled
    assert not (tmp_path / "mlflow.db").exists()


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args], cwd=cwd, check=True)


def test_git_state_reads_commit_and_dirty_flag(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("1\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-qm", "one")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert git_state(repo) == {"git_commit": head, "git_dirty": "false"}
    (repo / "untracked.txt").write_text("not part of the commit, not dirt\n")
    assert git_state(repo)["git_dirty"] == "false"
    (repo / "a.txt").write_text("2\n")
    assert git_state(repo) == {"git_commit": head, "git_dirty": "true"}
    outside = tmp_path / "plain"
    outside.mkdir()
    assert git_state(outside) == {"git_commit": "unknown", "git_dirty": "unknown"}


def test_tracking_uri_prefers_environment_then_config_then_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////env.db")
    assert tracking_uri("sqlite:////conf.db") == "sqlite:////env.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking_uri("sqlite:////conf.db") == "sqlite:////conf.db"
    assert tracking_uri(None) == f"sqlite:///{experiment_home() / 'mlflow.db'}"


def test_flatten_makes_dotted_params() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": None}}, "e": [1, 2]}) == {"a.b": 1, "a.c.d": None, "e": [1, 2]}
