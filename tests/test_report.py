"""The report renders recorded results only: known rows, fixed precision, protocol footers, no stale rows; a whole
table from fixed records equals its golden file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from benchmark.core.layout import Layout
from benchmark.core.sections import PathsConfig, ScoringProtocol
from benchmark.evaluation.records import RecordError, TLCWindow, write_record
from benchmark.reporting.tables import load_pipeline_records, render_results_table
from benchmark.scoring.stats import paired_test
from tests.conftest import make_record

GOLDEN = Path(__file__).parent / "golden"
PROTO = (
    "outputs clamped and rounded to 8 bit; PSNR on RGB; SSIM variant `gaussian2d`; alignment: none; border crop: 0 px"
)
WINDOW = TLCWindow(train_size=128, source="checkpoint", base_ratio=1.5, layers=5)


def _golden_records() -> list:
    """Four images; msfsnet_tiny the reference. Per-image PSNR differences chosen so the p-values are exact sign-flip
    counts (4 images: 16 sign assignments, benchmark.scoring.stats.paired_test)."""
    return [
        make_record("identity", {"psnr": [22.0, 23.0, 24.0, 25.0], "ssim": [0.60, 0.70, 0.70, 0.80]}),
        make_record("mimo_unet_tiny", {"psnr": [22.5, 23.5, 24.5, 25.5], "ssim": [0.62, 0.72, 0.72, 0.82]}),
        make_record("msfsnet_tiny", {"psnr": [23.0, 24.0, 25.0, 26.0], "ssim": [0.64, 0.74, 0.74, 0.84]}),
        make_record(
            "msfsnet_tiny",
            {"psnr": [23.0, 24.0, 25.0, 26.5], "ssim": [0.64, 0.74, 0.74, 0.85]},
            tlc=True,
            window=WINDOW,
        ),
    ]


def test_whole_table_equals_its_golden_file() -> None:
    text = render_results_table(_golden_records(), title="Models trained on synthblur (profile `quick`)")
    assert text == (GOLDEN / "results_table.md").read_text()


def test_golden_table_values_are_the_records_values() -> None:
    """The golden file's numbers, derived here independently of the renderer."""
    identity, mimo, ref, local = _golden_records()
    assert identity.psnr == 23.5 and mimo.psnr == 24.0 and ref.psnr == 24.5 and local.psnr == 24.625
    # Every mimo image is 0.5 dB below the reference: only the all-same-sign assignments are as extreme, 2 of 16.
    assert paired_test(mimo.values("psnr"), ref.values("psnr")) == pytest.approx(2 / 16)
    text = (GOLDEN / "results_table.md").read_text()
    assert "| mimo_unet_tiny | 24.00 [" in text and "| +0.50 | 0.125 |" in text
    assert "| msfsnet_tiny | 24.50 [" in text and "| +1.00 | (reference) |" in text
    assert "| msfsnet_tiny-Local | 24.62 [" in text  # 24.625 rounds half to even
    assert "window 1.5 x training size 128" in text


def test_render_table_known_output() -> None:
    records = [
        make_record("identity", {"psnr": [23.456] * 3, "ssim": [0.71234] * 3}),
        make_record("net", {"psnr": [25.0] * 3, "ssim": [0.8] * 3}),
        make_record("net", {"psnr": [25.104] * 3, "ssim": [0.80019] * 3}, tlc=True, window=WINDOW),
    ]
    text = render_results_table(records, title="T")
    assert "| Model | synthblur PSNR | synthblur SSIM | synthblur ΔPSNR vs identity |" in text
    assert "| identity | 23.46 [23.46, 23.46] | 0.7123 [0.7123, 0.7123] | +0.00 |" in text
    assert "| net | 25.00 [25.00, 25.00] | 0.8000 [0.8000, 0.8000] | +1.54 |" in text
    assert "| net-Local | 25.10 [25.10, 25.10] | 0.8002 [0.8002, 0.8002] | +1.65 |" in text
    assert f"- synthblur (3 test images): {PROTO}." in text
    assert "window 1.5 x training size 128" in text
    assert "p (PSNR vs" not in text  # no MSFS-Net row: no reference


def test_load_records_reads_pipeline_combinations_only(tmp_path: Path) -> None:
    layout = Layout(PathsConfig(results=str(tmp_path)))
    write_record(
        make_record("identity", {"psnr": [20.0], "ssim": [0.5]}),
        layout.record("synthblur", "synthblur", "identity", False),
    )
    not_applicable = dataclasses.replace(
        make_record("identity", {"psnr": [20.0], "ssim": [0.5]}, tlc=True),
        applicable=False,
        names=(),
        means={},
        scores={},
        intervals={},
    )
    write_record(not_applicable, layout.record("synthblur", "synthblur", "identity", True))
    # Not in the pipeline: ignored.
    write_record(
        make_record("stale", {"psnr": [99.0], "ssim": [0.99]}), layout.record("synthblur", "synthblur", "stale", False)
    )
    records = load_pipeline_records(layout, ["identity"], "synthblur", ["synthblur"])
    assert [r.row for r in records] == ["identity"]
    with pytest.raises(RecordError, match=r"net\.json is missing: run `dvc repro evaluate@net-synthblur-synthblur`"):
        load_pipeline_records(layout, ["identity", "net"], "synthblur", ["synthblur"])


def test_report_stage_rerenders_the_complexity_table_from_its_records(tmp_path: Path) -> None:
    """The report stage owns results/tables/ (DVC clears it before the stage runs), so it re-renders complexity.md."""
    import torch

    from benchmark.core.config import load_config
    from benchmark.reporting.report import run_report
    from benchmark.tools.complexity import measure

    layout = Layout(PathsConfig(results=str(tmp_path)))
    _, table = measure(
        ["identity"], layout=layout, repeats=1, latency=False, device=torch.device("cpu"), progress=False
    )
    expected = table.read_text()
    table.unlink()
    run = load_config([f"paths.results={tmp_path}", "pipeline.train_datasets=[]", "tracking=none"])
    assert run_report(run)[-1] == table
    assert table.read_text() == expected and "| identity | 0 | 0.0 | 0.0 | not measured |" in expected


def test_cross_dataset_records_and_extra_ssim_columns(tmp_path: Path) -> None:
    """A GoPro-trained model scored on GoPro and HIDE: one row, a column group per test set, matlab3d beside it."""
    layout = Layout(PathsConfig(results=str(tmp_path)))
    protocol = ScoringProtocol(quantize="uint8", ssim_variant="gaussian2d", extra_ssim_variants=("matlab3d",))
    for test, psnr in (("gopro", 30.0), ("hide", 28.0)):
        for tlc in (False, True):
            record = make_record(
                "net",
                {"psnr": [psnr] * 2, "ssim": [0.9] * 2, "ssim_matlab3d": [0.95] * 2},
                dataset=test,
                train_dataset="gopro",
                protocol=protocol,
                tlc=tlc,
                window=WINDOW if tlc else None,
            )
            write_record(record, layout.record("gopro", test, "net", tlc))
    records = load_pipeline_records(layout, ["net"], "gopro", ["gopro", "hide"])
    assert [(r.dataset, r.tlc, r.psnr, r.means["ssim_matlab3d"]) for r in records] == [
        ("gopro", False, 30.0, 0.95),
        ("gopro", True, 30.0, 0.95),
        ("hide", False, 28.0, 0.95),
        ("hide", True, 28.0, 0.95),
    ]
    text = render_results_table(records, title="t")
    assert (
        "| Model | gopro PSNR | gopro SSIM | gopro SSIM (matlab3d) | hide PSNR | hide SSIM | hide SSIM (matlab3d) |"
        in text
    )
    assert "| net | 30.00 [30.00, 30.00] | 0.9000 [0.9000, 0.9000] | 0.9500 | 28.00 [28.00, 28.00] |" in text
