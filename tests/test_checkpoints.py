"""Released checkpoints: every release format loads and evaluates, unsafe pickles are refused, mismatches are listed.

The files are built here in each release's own layout (``{"model": ...}`` for MIMO-UNet and MSFS-Net,
``{"params": ...}`` for NAFNet and HINet, ``{"state_dict": ...}`` with DataParallel's ``module.`` prefix for MPRNet,
and a bare state dict), from a tiny variant of the same family so that the evaluation runs in seconds.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest
import torch

from benchmark.core.errors import ConfigError
from benchmark.core.sections import ReleaseCheckpoint, ReleaseConfig
from benchmark.evaluation.run import evaluate_run
from models import CheckpointError, create_model, load_checkpoint, read_state_dict
from tests.caffenet import svrnn_layers, write_caffemodel
from tests.tfbundle import to_slim, write_tf_checkpoint


def _release_file(path: Path, model_name: str, wrapper: str | None, *, prefix: str = "") -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    state = {prefix + k: v.clone() for k, v in create_model(model_name).state_dict().items()}
    payload: object = state if wrapper is None else {wrapper: state, "epoch": 3000}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return state


@pytest.mark.parametrize(
    ("model_name", "wrapper", "prefix"),
    [
        ("mimo_unet_tiny", "model", ""),
        ("msfsnet_tiny", "model", ""),
        ("nafnet_tiny", "params", ""),
        ("hinet_tiny", "params", ""),
        ("mprnet_tiny", "state_dict", "module."),
        ("mprnet_tiny", "state_dict", ""),
        ("nafnet_tiny", None, ""),
    ],
)
def test_each_release_format_loads_and_evaluates(
    small_cfg, tmp_path: Path, model_name: str, wrapper: str | None, prefix: str
) -> None:
    path = tmp_path / f"{model_name}-{wrapper}.pth"
    saved = _release_file(path, model_name, wrapper, prefix=prefix)
    model = load_checkpoint(create_model(model_name), path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, saved[prefix + key], rtol=0, atol=0)
    record = evaluate_run(small_cfg(f"model={model_name}", f"checkpoint={path}"), tlc=False)
    assert record.weights == "file" and record.checkpoint == str(path)
    assert record.n_images == 2 and 5 < record.psnr < 60


def test_checkpoint_release_reads_the_placed_file_and_scales_tlc_from_its_train_size(small_cfg, tmp_path: Path) -> None:
    cfg = small_cfg("model=nafnet_tiny", "checkpoint=release", "tlc=true")
    # The tiny model has no release of its own; give it one in the shape the released models' conf files use.
    release = ReleaseConfig(
        url="https://example.invalid/NAFNet-tiny.pth",
        source="test",
        checkpoints={"gopro": ReleaseCheckpoint(file="NAFNet-tiny.pth", format="params", train_size=48)},
    )
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, release=release))
    with pytest.raises(CheckpointError) as err:
        evaluate_run(cfg, tlc=True)
    message = str(err.value)
    placed = cfg.layout.release_weights("nafnet_tiny", "NAFNet-tiny.pth")
    assert str(placed) in message and "https://example.invalid/NAFNet-tiny.pth" in message

    _release_file(placed, "nafnet_tiny", "params")
    try:
        record = evaluate_run(cfg, tlc=True)
    finally:
        placed.unlink()  # the dataset fixture's folder is shared by the session
    assert record.weights == "release" and record.train_dataset == "gopro"
    window = record.tlc_window
    assert window is not None and window.train_size == 48
    assert "release.checkpoints.gopro.train_size" in window.source
    assert window.layers == 9  # one simplified channel attention per NAFBlock: 4 + 1 + 4
    # Released weights are filed under the release source, never over the pipeline's own results.
    assert cfg.layout.record("gopro", "synthblur", "nafnet_tiny", True, release=True).is_file()
    assert not cfg.layout.record("gopro", "synthblur", "nafnet_tiny", True).exists()


def test_release_of_a_model_without_one_is_a_clear_error(small_cfg) -> None:
    with pytest.raises(
        ConfigError, match=r"^checkpoint: model 'mprnet_tiny' has no released weights.*checkpoint=<path>"
    ):
        evaluate_run(small_cfg("model=mprnet_tiny", "checkpoint=release"), tlc=False)


class _Exploit:
    """Unpickling this would call ``os.system``: the safe loader must refuse it before anything runs."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"params": _Exploit()}, f, protocol=2)
    with pytest.raises(CheckpointError, match=r"refused by the safe loader \(weights_only=True\)"):
        read_state_dict(path)
    # The same through torch.save's zip container.
    zipped = tmp_path / "evil_zip.pth"
    torch.save({"params": _Exploit()}, zipped)
    with pytest.raises(CheckpointError, match="refused by the safe loader"):
        load_checkpoint(create_model("nafnet_tiny"), zipped)


def test_truncated_checkpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "cut.pth"
    _release_file(path, "hinet_tiny", "params")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=rf"{path.name} is unreadable or truncated"):
        load_checkpoint(create_model("hinet_tiny"), path)


def test_wrong_family_lists_missing_unexpected_and_shapes(tmp_path: Path) -> None:
    path = tmp_path / "hinet.pth"
    _release_file(path, "hinet_tiny", "params")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(create_model("nafnet_tiny"), path)
    message = str(err.value)
    assert "does not fit model 'nafnet_tiny'" in message
    assert "missing keys (178):\n    decoders.0.0.beta\n" in message and "... and 158 more" in message
    assert "unexpected keys (148):\n    cat12.bias\n" in message
    # Same family, other width: every key is there, the shapes differ.
    wide = tmp_path / "wide.pth"
    torch.save({"params": create_model("nafnet_tiny", width=16).state_dict()}, wide)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(create_model("nafnet_tiny"), wide)
    message = str(err.value)
    assert "missing keys" not in message and "unexpected keys" not in message
    first = "decoders.0.0.beta: checkpoint (1, 128, 1, 1) vs model (1, 64, 1, 1)"
    assert f"shape differences (177):\n    {first}" in message


def _place_release(layout, name: str, published, model: torch.nn.Module) -> None:
    """Write ``model``'s weights where and how the release publishes them (``format``: a wrapper key, ``bare``,
    ``modules``: a folder of one bare state dict per submodule, as DMPHN's eight files, or ``tensorflow``: a folder
    holding a TF-slim checkpoint, ``tests.tfbundle``, or ``caffe``: a ``.caffemodel``, ``tests.caffenet``)."""
    path = layout.release_weights(name, published.file)
    if published.format == "tensorflow":
        write_tf_checkpoint(path / "deblur.model-523000", to_slim(model.state_dict()))
        return
    if published.format == "caffe":
        write_caffemodel(path, svrnn_layers(model))
        return
    if published.format == "modules":
        path.mkdir(parents=True)
        for module in model.release_modules:
            torch.save(getattr(model, module).state_dict(), path / f"{module}.pkl")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    torch.save(state if published.format == "bare" else {published.format: state}, path)


@pytest.mark.slow
def test_checkpoint_release_loads_every_published_checkpoint_of_every_model(tmp_path: Path) -> None:
    """Every checkpoint a conf file lists, in its release's layout from random weights, resolves and loads strictly
    (full-size models, so a wrong key or shape in any conf or model shows here)."""
    from benchmark.core.config import load_config
    from benchmark.weights.resolve import load_weights, resolve_weights

    seen = []
    for conf in sorted((Path(__file__).resolve().parents[1] / "conf" / "model").glob("*.yaml")):
        run = load_config([f"model={conf.stem}", f"paths.data={tmp_path / conf.stem}"])
        if run.model.release is None:
            continue
        for train, published in run.model.release.checkpoints.items():
            torch.manual_seed(len(seen))
            source = create_model(conf.stem)
            _place_release(run.layout, conf.stem, published, source)
            weights = resolve_weights(
                run.model, run.layout, checkpoint="release", train_dataset=train, dataset="gopro", has_parameters=True
            )
            assert weights.kind == "release" and weights.train_dataset == train
            loaded = load_weights(create_model(conf.stem), weights).state_dict()
            for key, value in source.state_dict().items():
                assert torch.equal(loaded[key], value), f"{conf.stem} ({train}): {key}"
            seen.append((conf.stem, train))
    assert ("msfsnet", "realblur_j") in seen and ("msfsnet", "realblur_r") in seen
    assert ("mimo_unet_plus", "realblur_r") in seen and ("dmphn", "gopro") in seen and ("dmphn_1_2_4", "gopro") in seen
    assert ("srn_color", "realblur_j") in seen and ("pssnsc", "gopro") in seen
    # 13 + deepdeblur, deblurgan, deblurgan_wild, dbgan, mtrnn, deblurganv2 x3, _mobilenet, srn, srn_gray,
    # srn_color x3, pssnsc, svrnn, restormer, stripformer x3, fftformer
    assert ("stripformer", "realblur_j") in seen and ("restormer", "gopro") in seen and ("fftformer", "gopro") in seen
    assert len(seen) == 34
