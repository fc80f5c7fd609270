"""The leaderboard (benchmark/reporting/leaderboard.py) rendered from fixed records: cells, order, costs, sources, the
figure, and the errors for a reported number given twice or a bad row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.core.layout import Layout
from benchmark.core.sections import PathsConfig, ScoringProtocol
from benchmark.evaluation.records import write_record
from benchmark.reporting.leaderboard import (
    leaderboard_entries,
    leaderboard_figure,
    read_complexity,
    read_reported,
    render_leaderboard,
)
from tests.conftest import make_record

TABLE1 = (
    "order,method,citation,model,tlc,gopro_psnr,gopro_ssim,hide_psnr,hide_ssim,gopro_protocol,hide_protocol,no_run\n"
    "1,MPRNet,Zamir et al. 2021,mprnet,false,32.66,0.959,30.96,0.939,official,official,\n"
    "2,(Liu et al. 2020),Liu et al. 2020,,false,30.31,0.920,,,official,,no code\n"
)
TABLE2 = (
    "order,method,citation,model,tlc,trained_on,realblur_r_psnr,realblur_r_ssim,realblur_j_psnr,realblur_j_ssim,"
    "realblur_r_protocol,realblur_j_protocol,no_run\n"
    "1,MSFS-Net*,this paper,msfsnet,false,realblur,38.26,0.972,30.89,0.929,release,release,\n"
)
BOARD = (
    "model,tlc,train,test,psnr,ssim,source\n"
    "restormer,false,gopro,gopro,32.92,0.961,Restormer paper\n"
    "restormer,false,gopro,hide,31.22,,TLC README\n"
    "restormer,true,gopro,gopro,33.57,,TLC README\n"
)


def _reported(folder: Path, board: str = BOARD) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table1.csv").write_text(TABLE1)
    (folder / "table2.csv").write_text(TABLE2)
    (folder / "leaderboard.csv").write_text(board)
    return folder


def _layout(tmp_path: Path) -> Layout:
    """Released-weights records: Restormer on GoPro (with a release protocol) and MSFS-Net* on RealBlur-R; a
    complexity record for Restormer only."""
    layout = Layout(PathsConfig(results=str(tmp_path / "results")), root=tmp_path)
    official = ScoringProtocol(quantize="uint8", ssim_variant="gaussian2d")
    release = ScoringProtocol(quantize="uint8_half_up", ssim_variant="gaussian2d")
    gopro = make_record(
        "restormer",
        {"psnr": [33.0, 33.2, 32.8, 33.4], "ssim": [0.95, 0.96, 0.96, 0.97]},
        dataset="gopro",
        weights="release",
        protocol=official,
        release=(release, {"psnr": [33.1, 33.3, 32.9, 33.5], "ssim": [0.96, 0.97, 0.97, 0.98]}),
    )
    write_record(gopro, layout.record("gopro", "gopro", "restormer", False, release=True))
    star = make_record("msfsnet", {"psnr": [38.0, 38.5], "ssim": [0.97, 0.99]}, dataset="realblur_r", weights="release")
    write_record(star, layout.record("realblur_r", "realblur_r", "msfsnet", False, release=True))
    # A pipeline-trained record is not a released model's number: ignored.
    pipeline = make_record("mprnet", {"psnr": [20.0, 21.0], "ssim": [0.5, 0.6]}, dataset="gopro")
    write_record(pipeline, layout.record("gopro", "gopro", "mprnet", False))
    layout.complexity.mkdir(parents=True)
    run = {
        "created": "2026-12-03T00:00:00",
        "machine": {"device": "cpu", "cpu": "test", "threads": 2, "torch": "x", "python": "3"},
        "repeats": 1,
        "models": [{"model": "restormer", "parameters": 26126644, "macs_720p": 2.0e12, "latency_ms": 1234.4}],
    }
    (layout.complexity / "cpu-2threads.json").write_text(json.dumps(run))
    return layout


def _entries(tmp_path: Path):
    layout = _layout(tmp_path)
    reported = read_reported(_reported(tmp_path / "reported"))
    models = ["mprnet", "msfsnet", "restormer", "fftformer"]
    return leaderboard_entries(layout, models, reported, read_complexity(layout.complexity))


def test_leaderboard_renders_fixed_records(tmp_path: Path) -> None:
    text = render_leaderboard(_entries(tmp_path))
    lines = text.splitlines()
    # Columns with a number in some row only: GoPro, HIDE and RealBlur-R* (MSFS-Net*), not RealBlur-J (GoPro-trained).
    assert lines[2] == (
        "| Model | GoPro | HIDE | RealBlur-J* | RealBlur-R* | Parameters | GMACs 1280x720 | CPU ms 256x256 | "
        "GPU ms 1280x720 |"
    )
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| Model")]
    # Sorted by GoPro PSNR: restormer-Local (reported 33.57), restormer (reproduced 33.10), mprnet (reported 32.66),
    # then the rows without a GoPro number by name.
    assert [r.split(" | ")[0][2:] for r in rows] == ["restormer-Local", "restormer", "mprnet", "fftformer", "msfsnet"]
    assert rows[1] == (
        "| restormer | 33.10 / 0.960 (ʳᵖ 33.20 / 0.970) · 32.92 / 0.961 | – · 31.22 | – | – | 26,126,644 | 2,000.0 | "
        "1,234 | – |"
    )
    assert rows[0] == "| restormer-Local | – · 33.57 | – | – | – | 26,126,644 | 2,000.0 | 1,234 | – |"
    assert rows[2] == "| mprnet | – · 32.66 / 0.959 | – · 30.96 / 0.939 | – | – | – | – | – | – |"
    assert rows[4] == "| msfsnet | – | – | – · 30.89 / 0.929 | 38.25 / 0.980 · 38.26 / 0.972 | – | – | – | – |"
    assert rows[3] == "| fftformer | – | – | – | – | – | – | – | – |"
    assert "- TLC README: restormer-Local GoPro, restormer HIDE." in lines
    assert "- MSFS-Net paper Table 2 (this paper): msfsnet RealBlur-J*, msfsnet RealBlur-R*." in lines


def test_leaderboard_figure_plots_the_rows_with_a_cost(tmp_path: Path) -> None:
    path = tmp_path / "figures" / "leaderboard.png"
    assert leaderboard_figure(path, _entries(tmp_path)) == 2  # restormer and restormer-Local have MACs
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_number_reported_twice_is_an_error(tmp_path: Path) -> None:
    folder = _reported(tmp_path, BOARD + "mprnet,false,gopro,gopro,32.66,0.959,elsewhere\n")
    with pytest.raises(ValueError, match=r"leaderboard\.csv line 5: mprnet .* already reported in table1\.csv"):
        read_reported(folder)


def test_a_bad_leaderboard_row_names_its_line(tmp_path: Path) -> None:
    folder = _reported(tmp_path, BOARD + "fftformer,yes,gopro,gopro,34.21,0.969,paper\n")
    with pytest.raises(ValueError, match=r"leaderboard\.csv line 5: tlc must be true/false"):
        read_reported(folder)
    (folder / "leaderboard.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"leaderboard\.csv"):
        read_reported(folder)


def test_the_committed_reported_numbers_read_cleanly() -> None:
    reported = read_reported(Path(__file__).resolve().parents[1] / "results" / "reported")
    assert reported[("restormer", True, "gopro", "gopro")].psnr == 33.57
    assert reported[("fftformer", False, "gopro", "gopro")].ssim == 0.969
    assert reported[("msfsnet", True, "realblur_j", "realblur_j")].psnr == 31.53


def test_a_released_outputs_row_follows_its_weights_row(tmp_path: Path) -> None:
    """Restormer's published GoPro images scored: a row right under its weights' row, the same reported number."""
    from benchmark.evaluation.records import OutputsSource

    layout = _layout(tmp_path)
    source = OutputsSource("Restormer/GoPro", "gopro_sequence_dash", "<sequence>-<frame>.png", "cd" * 32, {}, 4)
    record = make_record(
        "restormer",
        {"psnr": [32.9, 32.9, 33.0, 32.9], "ssim": [0.96, 0.96, 0.96, 0.96]},
        dataset="gopro",
        weights="released outputs",
        protocol=ScoringProtocol(quantize="uint8_file", ssim_variant="gaussian2d"),
        outputs=source,
    )
    write_record(record, layout.record("gopro", "gopro", "restormer", False, outputs="released"))
    reported = read_reported(_reported(tmp_path / "reported"))
    entries = leaderboard_entries(layout, ["mprnet", "restormer"], reported, read_complexity(layout.complexity))
    lines = render_leaderboard(entries).splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| Model")]
    assert [r.split(" | ")[0][2:] for r in rows] == [
        "restormer-Local",
        "restormer",
        "restormer · released outputsᵒ",
        "mprnet",
    ]
    assert rows[1].startswith("| restormer | 33.10 / 0.960 (ʳᵖ 33.20 / 0.970) · 32.92 / 0.961 |")
    assert rows[2].startswith("| restormer · released outputsᵒ | 32.92 / 0.960 · 32.92 / 0.961 | – · 31.22 |")
    assert (
        "- ᵒ restormer on GoPro: all 4 from `Restormer/GoPro` (gopro_sequence_dash: <sequence>-<frame>.png), "
        "manifest sha256 cdcdcdcdcdcd." in lines
    )
    assert leaderboard_figure(tmp_path / "board.png", entries) == 2  # the outputs row is not a second point
