"""The report renders recorded results only: known rows, fixed precision, protocol footers, no stale rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.report import Record, load_records, render_table

PROTO = (
    "outputs clamped and rounded to 8 bit; PSNR on RGB; SSIM variant `gaussian2d`; alignment: none; border crop: 0 px"
)


def _record(row: str, psnr: float, ssim: float, *, tlc: bool = False) -> dict:
    return {
        "row": row,
        "model": row.removesuffix("-Local"),
        "tlc": tlc,
        "train_dataset": "synthblur",
        "dataset": "synthblur",
        "psnr": psnr,
        "ssim": ssim,
        "n_images": 12,
        "protocol_text": PROTO,
        "applicable": True,
        **({"tlc_base_ratio": 1.5, "tlc_train_size": 128} if tlc else {}),
    }


def test_render_table_known_output() -> None:
    records = [
        Record.from_json(_record("identity", 23.456, 0.71234)),
        Record.from_json(_record("net", 25.0, 0.8)),
        Record.from_json(_record("net-Local", 25.104, 0.80019, tlc=True)),
    ]
    text = render_table(records, title="T")
    assert "| Model | synthblur PSNR | synthblur SSIM | synthblur ΔPSNR vs identity |" in text
    assert "| identity | 23.46 | 0.7123 | +0.00 |" in text
    assert "| net | 25.00 | 0.8000 | +1.54 |" in text
    assert "| net-Local | 25.10 | 0.8002 | +1.65 |" in text
    assert f"- synthblur (12 test images): {PROTO}." in text
    assert "window 1.5 x training size 128" in text


def test_load_records_reads_pipeline_combinations_only(tmp_path: Path) -> None:
    runs = tmp_path / "runs" / "synthblur" / "synthblur"
    runs.mkdir(parents=True)
    (runs / "identity.json").write_text(json.dumps(_record("identity", 20, 0.5)))
    (runs / "identity-local.json").write_text(json.dumps({"applicable": False}))
    (runs / "stale.json").write_text(json.dumps(_record("stale", 99, 0.99)))  # not in the pipeline: ignored
    records = load_records(tmp_path, ["identity"], ["synthblur"], (False, True))
    assert [r.row for r in records] == ["identity"]
    with pytest.raises(
        FileNotFoundError, match=r"net\.json is missing: run `dvc repro evaluate@net-synthblur-synthblur`"
    ):
        load_records(tmp_path, ["identity", "net"], ["synthblur"], (False,))


def test_report_stage_rerenders_the_complexity_table_from_its_records(tmp_path: Path) -> None:
    """The report stage owns results/tables/ (DVC clears it before the stage runs), so it re-renders complexity.md."""
    import torch

    from benchmark.complexity import run as run_complexity
    from benchmark.config import compose
    from benchmark.report import run_report

    _, table = run_complexity(
        ["identity"], results=tmp_path, repeats=1, latency=False, device=torch.device("cpu"), progress=False
    )
    expected = table.read_text()
    table.unlink()
    cfg = compose([f"paths.results={tmp_path}", "pipeline.train_datasets=[]", "tracking=none"])
    assert run_report(cfg)[-1] == table
    assert table.read_text() == expected and "| identity | 0 | 0.0 | 0.0 | not measured |" in expected


def test_cross_dataset_records_and_extra_ssim_columns(tmp_path: Path) -> None:
    """A GoPro-trained model scored on GoPro and HIDE: one row, a column group per test set, matlab3d beside it."""
    for test, psnr in (("gopro", 30.0), ("hide", 28.0)):
        runs = tmp_path / "runs" / "gopro" / test
        runs.mkdir(parents=True)
        record = {**_record("net", psnr, 0.9), "train_dataset": "gopro", "dataset": test, "ssim_matlab3d": 0.95}
        (runs / "net.json").write_text(json.dumps(record))
    records = load_records(tmp_path, ["net"], ["gopro"], (False,), ["gopro", "hide"])
    assert [(r.dataset, r.psnr, r.extra_ssim) for r in records] == [
        ("gopro", 30.0, (("matlab3d", 0.95),)),
        ("hide", 28.0, (("matlab3d", 0.95),)),
    ]
    text = render_table(records, title="t")
    assert (
        "| Model | gopro PSNR | gopro SSIM | gopro SSIM (matlab3d) | hide PSNR | hide SSIM | hide SSIM (matlab3d) |"
        in text
    )
    assert "| net | 30.00 | 0.9000 | 0.9500 | 28.00 | 0.9000 | 0.9500 |" in text
