"""What a researcher looks at besides the tables: MLflow's images, metrics and per-image table of an evaluation, the
training curves and per-image plots that DVC draws (benchmark.training.curves, benchmark.reporting.per_image)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from benchmark.core.layout import Layout
from benchmark.core.sections import PathsConfig
from benchmark.evaluation.records import RecordError
from benchmark.evaluation.run import evaluate_run
from benchmark.evaluation.samples import GAP, SampleKeeper, strip
from benchmark.reporting.per_image import per_image_csv, write_per_image_plots
from benchmark.training.curves import TrainingCurves
from tests.conftest import make_record


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_evaluation_run_logs_samples_metrics_and_the_per_image_table(small_cfg, tiny_synth: Path, tmp_path) -> None:
    cfg = small_cfg("model=identity", "eval.samples=1", "eval.sample_crop=40")
    record = evaluate_run(cfg, tlc=False)
    client = mlflow.MlflowClient()
    run = client.get_run(record.mlflow_run_id)
    assert run.data.metrics["test/synthblur/psnr"] == record.psnr
    assert run.data.metrics["test/synthblur/ssim"] == record.ssim
    # One sample (the first image by name): input | restoration | ground truth, the same 40 px centre crop of each;
    # identity restores nothing, so the first two panels are the blurry PNG itself.
    assert [a.path for a in client.list_artifacts(run.info.run_id, "samples")] == ["samples/chelsea_0.png"]
    got = _png(Path(client.download_artifacts(run.info.run_id, "samples/chelsea_0.png", str(tmp_path))))
    blur = _png(tiny_synth / "test" / "blur" / "chelsea_0.png")[12:52, 12:52]
    sharp = _png(tiny_synth / "test" / "sharp" / "chelsea_0.png")[12:52, 12:52]
    white = np.full((40, GAP, 3), 255, dtype=np.uint8)
    np.testing.assert_array_equal(got, np.concatenate([blur, white, blur, white, sharp], axis=1))
    table = json.loads(
        Path(client.download_artifacts(run.info.run_id, "per_image/scores.json", str(tmp_path))).read_text()
    )
    frame = pd.DataFrame(table["data"], columns=table["columns"])
    assert frame["image"].tolist() == list(record.names)
    assert frame["psnr"].tolist() == pytest.approx(list(record.scores["psnr"]), abs=1e-9)  # JSON: 10 decimals


def test_no_samples_logs_no_images(small_cfg) -> None:
    record = evaluate_run(small_cfg("model=identity", "eval.samples=0"), tlc=False)
    assert mlflow.MlflowClient().list_artifacts(record.mlflow_run_id, "samples") == []


def test_sample_strip_clamps_rounds_and_crops_known_values() -> None:
    lq = torch.full((3, 6, 8), 0.5)
    restored = torch.tensor([-0.2, 0.25, 1.7]).view(3, 1, 1).expand(3, 6, 8)
    gt = torch.zeros(3, 6, 8)
    image = strip(lq, restored, gt, size=4)
    assert image.shape == (4, 3 * 4 + 2 * GAP, 3) and image.dtype == np.uint8
    assert (image[:, :4] == 128).all()  # 0.5 * 255 = 127.5, rounded half to even -> 128
    np.testing.assert_array_equal(image[0, 4 + GAP], [0, 64, 255])  # clamped; 0.25 * 255 = 63.75 -> 64
    assert (image[:, 4 : 4 + GAP] == 255).all() and (image[:, -4:] == 0).all()
    keeper = SampleKeeper(count=2, size=4)
    for name in ("b", "a", "c"):
        keeper(name, lq, restored, gt)
    assert list(keeper.strips) == ["b", "a"]


def test_curves_resume_keeps_rows_up_to_the_checkpoint(tmp_path: Path) -> None:
    curves = TrainingCurves.resume(tmp_path, 0)
    curves.write()  # before the first checkpoint: headers only, so DVC finds the files
    assert (tmp_path / "loss.csv").read_text() == "step,total\n"
    for step in range(1, 7):
        curves.add_loss(step, {"total": step / 10, "l1": step / 20}, lr=1e-3 * step)
    curves.add_val(3, 21.5)
    curves.add_val(6, 22.25)
    curves.write()
    assert (tmp_path / "loss.csv").read_text().splitlines()[:2] == ["step,total,l1", "1,0.1,0.05"]
    resumed = TrainingCurves.resume(tmp_path, 4)
    assert [r["step"] for r in resumed.loss] == [1, 2, 3, 4] and [r["step"] for r in resumed.val] == [3]
    resumed.add_loss(5, {"total": 0.5, "l1": 0.25}, lr=5e-3)
    resumed.write()
    assert pd.read_csv(tmp_path / "lr.csv")["lr"].tolist() == pytest.approx([1e-3, 2e-3, 3e-3, 4e-3, 5e-3])
    assert TrainingCurves.resume(tmp_path, 0).loss == []  # a fresh start drops an old run's rows


def test_per_image_plots_put_each_row_beside_the_identity_row(tmp_path: Path) -> None:
    layout = Layout(PathsConfig(results=str(tmp_path / "results")), root=tmp_path)
    identity = make_record("identity", {"psnr": [20.0, 25.0, 30.0], "ssim": [0.5, 0.6, 0.7]})
    model = make_record("nafnet_tiny", {"psnr": [21.5, 25.0, 29.0], "ssim": [0.6, 0.6, 0.7]})
    local = make_record("nafnet_tiny", {"psnr": [21.0, 26.0, 31.0], "ssim": [0.6, 0.6, 0.7]}, tlc=True)
    stale = layout.per_image_plot("synthblur", "synthblur", "removed_model")
    stale.parent.mkdir(parents=True)
    stale.write_text("old\n")
    written = write_per_image_plots(layout, [identity, model, local])
    assert written == [
        layout.per_image_plot("synthblur", "synthblur", "nafnet_tiny"),
        layout.per_image_plot("synthblur", "synthblur", "nafnet_tiny-Local"),
    ]
    assert not stale.exists()  # the folder is rebuilt from the records
    frame = pd.read_csv(written[0])
    assert frame.to_dict("list") == {
        "image": ["img0", "img1", "img2"],
        "identity": [20.0, 25.0, 30.0],
        "psnr": [21.5, 25.0, 29.0],
        "gain": [1.5, 0.0, -1.0],
    }
    other = make_record("msfsnet_tiny", {"psnr": [1.0, 2.0], "ssim": [0.1, 0.2]})
    with pytest.raises(RecordError, match="msfsnet_tiny and identity on synthblur were scored on different images"):
        per_image_csv(other, identity)
