"""MIMO-UNet family: release-exact parameters and state-dict layout, the loss recipe, the rotation ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import create_model, list_models
from models.base import TrainOutput
from models.losses import fft_l1
from models.mimo_unet import MIMOTrainOutput, mimo_unet_tiny

Shape = tuple[int, ...]


def _basic_conv(prefix: str, in_ch: int, out_ch: int, k: int, *, transpose: bool = False) -> list[tuple[str, Shape]]:
    """Entries of the release's ``BasicConv``: one conv (bias on) at ``<prefix>.main.0``."""
    weight = (in_ch, out_ch, k, k) if transpose else (out_ch, in_ch, k, k)
    return [(f"{prefix}.main.0.weight", weight), (f"{prefix}.main.0.bias", (out_ch,))]


def _release_layout(num_res: int, c: int = 32) -> list[tuple[str, Shape]]:
    """(key, shape) of the release's ``MIMOUNet(num_res)`` / ``MIMOUNetPlus`` state dict, in its order.

    Written from ``models/MIMOUNet.py`` and ``models/layers.py`` at chosj95/MIMO-UNet@8c85e56, not from our model.
    """

    def stage(prefix: str, ch: int) -> list[tuple[str, Shape]]:  # EBlock / DBlock: num_res ResBlocks
        return [
            entry
            for i in range(num_res)
            for j in range(2)
            for entry in _basic_conv(f"{prefix}.layers.{i}.main.{j}", ch, ch, 3)
        ]

    def scm(prefix: str, out: int) -> list[tuple[str, Shape]]:
        widths = [(3, out // 4, 3), (out // 4, out // 2, 1), (out // 2, out // 2, 3), (out // 2, out - 3, 1)]
        convs = [e for i, (a, b, k) in enumerate(widths) for e in _basic_conv(f"{prefix}.main.{i}", a, b, k)]
        return convs + _basic_conv(f"{prefix}.conv", out, out, 1)

    layout: list[tuple[str, Shape]] = []
    for i, ch in enumerate((c, 2 * c, 4 * c)):
        layout += stage(f"Encoder.{i}", ch)
    feat = [(3, c, 3, False), (c, 2 * c, 3, False), (2 * c, 4 * c, 3, False)]
    feat += [(4 * c, 2 * c, 4, True), (2 * c, c, 4, True), (c, 3, 3, False)]
    for i, (a, b, k, t) in enumerate(feat):
        layout += _basic_conv(f"feat_extract.{i}", a, b, k, transpose=t)
    for i, ch in enumerate((4 * c, 2 * c, c)):
        layout += stage(f"Decoder.{i}", ch)
    layout += _basic_conv("Convs.0", 4 * c, 2 * c, 1) + _basic_conv("Convs.1", 2 * c, c, 1)
    layout += _basic_conv("ConvsOut.0", 4 * c, 3, 3) + _basic_conv("ConvsOut.1", 2 * c, 3, 3)
    for i, out in enumerate((c, 2 * c)):
        layout += _basic_conv(f"AFFs.{i}.conv.0", 7 * c, out, 1) + _basic_conv(f"AFFs.{i}.conv.1", out, out, 3)
    layout += _basic_conv("FAM1.merge", 4 * c, 4 * c, 3) + scm("SCM1", 4 * c)
    layout += _basic_conv("FAM2.merge", 2 * c, 2 * c, 3) + scm("SCM2", 2 * c)
    return layout


def _layout(model: torch.nn.Module) -> list[tuple[str, Shape]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def test_registered() -> None:
    assert {"mimo_unet", "mimo_unet_plus", "mimo_unet_plusplus", "mimo_unet_tiny"} <= set(list_models())


@pytest.mark.parametrize(
    ("name", "params", "entries"),
    [("mimo_unet", 6_807_171, 244), ("mimo_unet_plus", 16_107_651, 532), ("mimo_unet_plusplus", 16_107_651, 532)],
)
def test_parameter_counts_match_release(name: str, params: int, entries: int) -> None:
    model = create_model(name)
    assert model.num_parameters == params
    assert len(model.state_dict()) == entries


def test_tiny_size_matches_docstring() -> None:
    count = create_model("mimo_unet_tiny").num_parameters
    assert f"{count:,} parameters" in (mimo_unet_tiny.__doc__ or "")


def test_state_dict_layout_is_release_layout() -> None:
    model = create_model("mimo_unet")
    expected = _release_layout(num_res=8)
    assert len(expected) == 244
    assert _layout(model) == expected
    # A checkpoint with exactly the release's keys and shapes loads strictly, and the values land where expected.
    generator = torch.Generator().manual_seed(0)
    release_like = {k: torch.randn(shape, generator=generator) for k, shape in expected}
    model.load_state_dict(release_like, strict=True)
    torch.testing.assert_close(model.state_dict()["SCM2.conv.main.0.weight"], release_like["SCM2.conv.main.0.weight"])
    # MIMO-UNet+ differs only in the number of ResBlocks (its Dropout2d layers hold no state).
    assert _layout(create_model("mimo_unet_plus")) == _release_layout(num_res=20)


def test_fft_l1_matches_numpy() -> None:
    generator = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 5, 6, generator=generator), torch.rand(2, 3, 5, 6, generator=generator)
    diff = np.fft.fft2(pred.double().numpy()) - np.fft.fft2(target.double().numpy())
    expected = np.abs(np.stack([diff.real, diff.imag], axis=-1)).mean()
    assert fft_l1(pred, target).item() == pytest.approx(expected, rel=1e-5)


def test_loss_terms_hand_computed() -> None:
    """gt = 0..15 on a 4x4 grid; each scale's prediction is its bilinear target plus a known error.

    Bilinear 1/2 of gt is the 2x2 block means [[2.5, 4.5], [10.5, 12.5]]; bilinear 1/4 samples the centre, the mean
    of 5, 6, 9, 10 = 7.5 (nearest would pick a corner value). Errors and their terms:
      1/4: +1 on 1 pixel            -> L1 1,   spectrum: DC 1 among 1 x 2 values       -> 0.5
      1/2: checkerboard +-1 on 2x2  -> L1 1,   spectrum: only bin (1, 1) = 4 of 2x2x2   -> 0.5
      1/1: +0.5 everywhere on 4x4   -> L1 0.5, spectrum: only DC = 8 of 4x4x2 values    -> 0.25
    content = 2.5, fft = 1.25, total = 2.5 + 0.1 * 1.25 = 2.625.
    """
    gt = torch.arange(16.0).reshape(1, 1, 4, 4)
    pred_4 = torch.tensor([[[[7.5 + 1.0]]]])
    pred_2 = torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]) + torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    pred_1 = gt + 0.5
    out = MIMOTrainOutput(restored=pred_1, multiscale=(pred_4, pred_2, pred_1))
    terms = create_model("mimo_unet_tiny").loss(out, gt)
    assert set(terms) == {"content", "fft", "total"}
    assert terms["content"].item() == pytest.approx(2.5, abs=1e-5)
    assert terms["fft"].item() == pytest.approx(1.25, abs=1e-5)
    assert terms["total"].item() == pytest.approx(2.625, abs=1e-5)


def test_loss_rejects_plain_train_output() -> None:
    model = create_model("mimo_unet_tiny")
    with pytest.raises(TypeError):
        model.loss(TrainOutput(restored=torch.zeros(1, 3, 4, 4)), torch.zeros(1, 3, 4, 4))


def test_forward_train_scales_and_gradients() -> None:
    torch.manual_seed(0)
    model = create_model("mimo_unet_tiny")
    lq, gt = torch.rand(2, 3, 32, 24), torch.rand(2, 3, 32, 24)
    out = model.forward_train(lq, gt)
    assert isinstance(out, MIMOTrainOutput)
    assert [tuple(t.shape) for t in out.multiscale] == [(2, 3, 8, 6), (2, 3, 16, 12), (2, 3, 32, 24)]
    assert out.restored is out.multiscale[2]
    terms = model.loss(out, gt)
    terms["total"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(lq), model.forward_train(lq, gt).restored)
    with pytest.raises(ValueError, match="multiple of 4"):
        model.forward_train(torch.rand(1, 3, 30, 24), torch.rand(1, 3, 30, 24))


def test_odd_size_keeps_shape() -> None:
    model = create_model("mimo_unet").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 37, 53))
    assert out.shape == (1, 3, 37, 53)
    assert torch.isfinite(out).all()


# The ensemble and dropout checks build the registered variants at reduced width and depth: the logic under test does
# not depend on the size, and full-size MIMO-UNet+ passes cost seconds each on a 2-core CPU.
_SMALL = {"base_channels": 8, "num_res": 2}


def test_plusplus_is_rotation_mean_of_plus() -> None:
    plus = create_model("mimo_unet_plus", **_SMALL).eval()
    plusplus = create_model("mimo_unet_plusplus", **_SMALL).eval()
    plusplus.load_state_dict(plus.state_dict())
    lq = torch.rand(2, 3, 12, 20, generator=torch.Generator().manual_seed(0))  # non-square, already a multiple of 4
    with torch.no_grad():
        runs = [torch.rot90(plus(torch.rot90(lq, k, (2, 3))), -k, (2, 3)) for k in range(4)]
        torch.testing.assert_close(plusplus(lq), torch.stack(runs).mean(0), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(runs[0], runs[1], atol=1e-4)  # the rotations do differ, so the mean is a real test
        assert plusplus(lq[:1, :, :11, :17]).shape == (1, 3, 11, 17)
        # Training is plain MIMO-UNet+: forward_train does not ensemble.
        torch.testing.assert_close(plusplus.forward_train(lq, lq).restored, plus(lq))


def test_dropout_only_in_plus_and_only_in_training() -> None:
    plus = create_model("mimo_unet_plus", **_SMALL)
    assert isinstance(plus.drop1, torch.nn.Dropout2d) and plus.drop1.p == 0.1
    assert isinstance(plus.drop2, torch.nn.Dropout2d) and plus.drop2.p == 0.1
    assert isinstance(create_model("mimo_unet").drop1, torch.nn.Identity)
    lq = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.manual_seed(0)
        assert not torch.equal(plus.multiscale(lq)[2], plus.multiscale(lq)[2])  # train mode: channels dropped
        plus.eval()
        torch.testing.assert_close(plus(lq), plus(lq), rtol=0, atol=0)


@pytest.mark.parametrize(("key", "value"), [("base_channels", 1), ("num_res", 0), ("dropout", 1.0)])
def test_invalid_arguments(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=key):
        create_model("mimo_unet_tiny", **{key: value})


def test_unknown_override_fails_at_build_time() -> None:
    with pytest.raises(TypeError, match="bad override"):
        create_model("mimo_unet_tiny", base_channel=16)  # the release's spelling, not ours
