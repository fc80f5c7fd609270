"""benchmark.core.layout: the documented tree, spelled here once and nowhere else in the tests."""

from __future__ import annotations

from pathlib import Path

from benchmark.core.layout import Layout, project_root
from benchmark.core.sections import PathsConfig

REPO = Path(__file__).resolve().parents[1]


def test_the_default_layout_is_the_documented_tree() -> None:
    layout = Layout(PathsConfig())
    assert layout.root == project_root() == REPO
    assert layout.dataset("gopro") == REPO / "data" / "gopro"
    assert layout.identity_record("gopro") == REPO / "data" / "gopro" / "dataset_identity.json"
    assert layout.archive("GOPRO_Large.zip") == REPO / "data" / "external" / "archives" / "GOPRO_Large.zip"
    assert layout.release_weights("msfsnet", "model.pkl") == REPO / "data/external/checkpoints/msfsnet/model.pkl"
    assert layout.cache("gopro") == REPO / "cache" / "gopro"
    assert layout.last_checkpoint("msfsnet", "gopro") == REPO / "checkpoints" / "msfsnet-gopro" / "last.pt"
    assert layout.final_checkpoint("msfsnet", "gopro") == REPO / "checkpoints" / "msfsnet-gopro" / "final.pt"
    assert layout.record("gopro", "hide", "msfsnet", False) == REPO / "results/runs/gopro/hide/msfsnet.json"
    assert layout.record("release", "hide", "msfsnet", True) == REPO / "results/runs/release/hide/msfsnet-local.json"
    assert (layout.tables, layout.figures) == (REPO / "results" / "tables", REPO / "results" / "figures")
    assert (layout.bench, layout.complexity) == (REPO / "results" / "bench", REPO / "results" / "complexity")
    assert layout.reported == REPO / "results" / "reported"
    assert layout.stage_inputs("train@msfsnet-gopro") == REPO / "stages" / "train@msfsnet-gopro.json"
    assert layout.checksums == REPO / "checksums.sha256"
    assert layout.mlflow_db == REPO / "mlflow.db"


def test_paths_move_every_place_under_them(tmp_path: Path) -> None:
    moved = Layout(PathsConfig(data=str(tmp_path / "d"), checkpoints="ck", results=str(tmp_path / "r"), cache="/c"))
    assert moved.dataset("gopro") == tmp_path / "d" / "gopro"
    assert moved.archive("a.zip").is_relative_to(tmp_path / "d") and moved.release_weights("m", "f").is_relative_to(
        tmp_path / "d"
    )
    assert moved.run_dir("m", "d") == REPO / "ck" / "m-d"  # relative: from the repository root, whatever the cwd
    assert moved.record("gopro", "gopro", "m", False).is_relative_to(tmp_path / "r")
    assert moved.tables.is_relative_to(tmp_path / "r") and moved.cache("x") == Path("/c/x")
    # Inputs committed with the code stay in the repository.
    assert moved.reported == REPO / "results" / "reported" and moved.checksums == REPO / "checksums.sha256"


def test_display_is_repository_relative_inside_it(tmp_path: Path) -> None:
    layout = Layout(PathsConfig())
    assert layout.display(layout.final_checkpoint("m", "d")) == "checkpoints/m-d/final.pt"
    assert layout.display(tmp_path / "x.pt") == str(tmp_path / "x.pt")
