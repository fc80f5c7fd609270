"""MSFS-Net: the release's layout and numbers, input sizes, gradients, the Table 3 ablations and the losses by hand."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor

from models import create_model
from models.msfsnet import (
    MSFSNet,
    MSFSTrainOutput,
    OctBlock,
    PlainBlock,
    consistency_loss,
    contrastive_loss,
)
from models.octconv import OctaveConv

# Small enough for CPU tests, still every kind of block (ResBlock, RCAB, both FSM widths).
TINY = {"channels": 16, "encoder_blocks": 1, "latent_blocks": 1, "decoder_blocks": 1, "reduction": 4}

ABLATIONS = {
    # name: (use_fsm, use_csffm, use_clm, use_consistency), Table 3 rows 1-5
    "msfsnet_ablation_nofsm_clm": (False, True, True, False),
    "msfsnet_ablation_nofsm_consistency": (False, True, False, True),
    "msfsnet_ablation_nocsffm": (True, False, True, True),
    "msfsnet_ablation_noclm": (True, True, False, True),
    "msfsnet_ablation_noconsistency": (True, True, True, False),
}


# ----------------------------------------------------------------------------------------------------------------------
# The release's state-dict layout, written from LiQiang0307/MSFS-Net @ ebc59c7 (models/freNet.py, layers.py, octconv.py)
# ----------------------------------------------------------------------------------------------------------------------


def release_layout(c: int = 64, n_res: int = 8, n_latent: int = 10, n_rcab: int = 30, red: int = 16):
    """(key, shape) of ``FreNet(num_res=8, num_RCAB=30).state_dict()``, in its order."""
    out: list[tuple[str, tuple[int, ...]]] = []

    def conv(prefix: str, cin: int, cout: int, k: int, bias: bool = True) -> None:
        out.append((f"{prefix}.weight", (cout, cin, k, k)))
        if bias:
            out.append((f"{prefix}.bias", (cout,)))

    def bn(prefix: str, n: int) -> None:
        out.extend((f"{prefix}.{s}", (n,)) for s in ("weight", "bias", "running_mean", "running_var"))
        out.append((f"{prefix}.num_batches_tracked", ()))

    def rcab(prefix: str, ch: int) -> None:
        conv(f"{prefix}.body.0", ch, ch, 3)
        conv(f"{prefix}.body.2", ch, ch, 3)
        conv(f"{prefix}.body.3.conv_du.0", ch, ch // red, 1)
        conv(f"{prefix}.body.3.conv_du.2", ch // red, ch, 1)

    def oct_conv_bn_act(prefix: str, cin: int, cout: int, k: int, a_in: float, a_out: float) -> None:
        in_l, out_l = int(a_in * cin), int(a_out * cout)
        in_h, out_h = cin - in_l, cout - out_l
        # OctaveConv registers conv_l2l, conv_l2h, conv_h2l, conv_h2h; a branch is None when a side has no channels.
        for name, ci, co in (("l2l", in_l, out_l), ("l2h", in_l, out_h), ("h2l", in_h, out_l), ("h2h", in_h, out_h)):
            if ci and co:
                conv(f"{prefix}.conv.conv_{name}", ci, co, k, bias=False)
        bn(f"{prefix}.bn_h", out_h)
        if out_l:
            bn(f"{prefix}.bn_l", out_l)

    conv("conv.main.0", 3, c, 3)
    for i in range(n_latent):
        rcab(f"latent.{i}", c)
    for e in range(4):
        if e % 2 == 0:
            for j in range(n_res):
                conv(f"Encoder.{e}.layers.{j}.main.0.main.0", c, c, 3)
                conv(f"Encoder.{e}.layers.{j}.main.1.main.0", c, c, 3)
        else:
            conv(f"Encoder.{e}.dual_module.0.0", c, c, 3, bias=False)
    for d in range(2):
        for j in range(n_rcab):
            rcab(f"Decoder.{d}.layers.{j}", 2 * c)
        conv(f"Decoder.{d}.up.0", 2 * c, 8 * c, 3)
    for i, (inp, oup) in enumerate([(c, c)] * 4 + [(2 * c, c)] * 2):
        oct_conv_bn_act(f"octblock.{i}.oct1", inp, inp, 1, 0.0, 0.5)
        oct_conv_bn_act(f"octblock.{i}.oct2", inp, inp, 3, 0.5, 0.5)
        oct_conv_bn_act(f"octblock.{i}.oct3", inp, oup, 1, 0.5, 0.0)
        conv(f"octblock.{i}.conv", inp, oup, 1)
    conv("tail_", c, 3, 1)
    conv("changeChannel_", c, c // 2, 1)
    out += [("mix1.w", (1,)), ("mix2.w", (1,))]
    conv("conv_2_", c, 3, 1)
    conv("conv_4", c, 3, 1)
    return out


def synthetic_release_state(layout) -> dict[str, Tensor]:
    """Deterministic float64 weights from a formula (no RNG, so no dependence on torch's generator across versions)."""
    # sin(0.618 j + i) = sin(0.618 j) cos(i) + cos(0.618 j) sin(i): two tables instead of 21.6M sines.
    phase = torch.arange(max(math.prod(shape) for _, shape in layout), dtype=torch.float64) * 0.618
    sin, cos = phase.sin(), phase.cos()
    state: dict[str, Tensor] = {}
    for i, (key, shape) in enumerate(layout):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
            continue
        n = math.prod(shape)
        t = (sin[:n] * math.cos(i) + cos[:n] * math.sin(i)).reshape(shape)
        if key.endswith("running_var"):
            state[key] = 1 + 0.25 * t
        elif key.endswith("running_mean"):
            state[key] = 0.05 * t
        elif len(shape) == 4:
            state[key] = t / math.sqrt(math.prod(shape[1:]))
        elif ".bn" in key and key.endswith("weight"):
            state[key] = 1 + 0.1 * t
        else:
            state[key] = 0.05 * t
    return state


def synthetic_inputs() -> tuple[Tensor, Tensor]:
    a = torch.arange(2 * 3 * 16 * 16, dtype=torch.float64)
    lq = (0.5 + 0.45 * torch.sin(a * 0.37)).reshape(2, 3, 16, 16)
    gt = (0.5 + 0.45 * torch.cos(a * 0.23)).reshape(2, 3, 16, 16)
    return lq, gt


# Produced by the release's own FreNet (a scratch copy of its three model files, never vendored) in float64 with the
# weights and inputs above: eval-mode ``model([lq, gt])[0]``, and train-mode mean |.| of the feature tensors it returns.
GOLDEN_EVAL_CHANNEL_MEAN = (0.772584415321, 0.237441545614, 0.486122905504)
GOLDEN_EVAL_PIXELS = {
    (0, 0, 0): (0.7713352458123947, 0.44061380781963605, 0.849049912560829),
    (1, 7, 11): (0.8596098653308244, 0.11353276430525622, 0.17867037501266056),
    (1, 15, 15): (1.2208534693159938, 0.6465869634249997, 0.7667959969271148),
}
GOLDEN_TRAIN_ABS_MEAN = {
    "predict": 0.5441326755820006,
    "pred_4": 0.556888310208709,
    "pred_2": 0.62821383275036,
    "xh_1": 0.37143686775321405,
    "xl_1": 0.40989427145753016,
    "xh_2": 0.40255588197518494,
    "xl_2": 0.390644851799204,
    "xh_4": 0.3930531757821468,
    "xl_4": 0.4595609011349097,
    "yh_4": 0.3900010059028845,
    "yh_2": 0.13481792555634575,
    "yh_1": 0.20535349395626432,
    "gth_1": 0.3665796210960629,
    "gtl_1": 0.3784234513869289,
    "gth_2": 0.3949476980455508,
    "gtl_2": 0.3893264533174985,
    "gth_4": 0.40463875579687725,
    "gtl_4": 0.4230862329445495,
}


@pytest.fixture(scope="module")
def full() -> MSFSNet:
    torch.manual_seed(0)
    model = create_model("msfsnet")
    assert isinstance(model, MSFSNet)
    return model


def _uninitialised(name: str, dtype: torch.dtype = torch.float32, **overrides) -> MSFSNet:
    """A real model with uninitialised memory, for tests that load every entry of a state dict (skips 21.6M inits)."""
    return _meta(name, **overrides).to_empty(device="cpu").to(dtype)


def _meta(name: str, **overrides) -> MSFSNet:
    """Full-size model without allocating memory: shapes and structure only."""
    with torch.device("meta"):
        model = create_model(name, **overrides)
    assert isinstance(model, MSFSNet)
    return model


def _layout(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------------------------------------------------
# Release compatibility
# ----------------------------------------------------------------------------------------------------------------------


def test_parameter_count_and_state_dict_equal_the_release(full: MSFSNet) -> None:
    assert full.num_parameters == 21_586_291
    expected = release_layout()
    assert len(expected) == 852
    assert [(k, tuple(v.shape)) for k, v in full.state_dict().items()] == expected


def test_release_checkpoint_loads_strictly(full: MSFSNet, tmp_path: Path) -> None:
    torch.manual_seed(1)
    state = {k: torch.randn(shape) if shape else torch.tensor(7) for k, shape in release_layout()}
    path = tmp_path / "model.pkl"
    torch.save({"model": state}, path)  # the release's format (eval.py reads state_dict["model"])
    model = _uninitialised("msfsnet")
    model.load_state_dict(torch.load(path, weights_only=True)["model"], strict=True)
    assert torch.equal(model.octblock[5].oct2.conv.conv_l2h.weight, state["octblock.5.oct2.conv.conv_l2h.weight"])
    assert torch.equal(model.mix2.w, state["mix2.w"])
    from models.checkpoint import load_checkpoint

    load_checkpoint(_uninitialised("msfsnet"), path)


def test_matches_the_release_numerically(full: MSFSNet) -> None:
    """Golden values from the release's code: eval output, and every train-mode feature the release returns."""
    model = _uninitialised("msfsnet", torch.float64, positive_source="ground_truth")
    model.load_state_dict(synthetic_release_state(release_layout()), strict=True)
    lq, gt = synthetic_inputs()
    model.eval()
    with torch.no_grad():
        pred = model(lq)
    assert pred.mean((0, 2, 3)).tolist() == pytest.approx(GOLDEN_EVAL_CHANNEL_MEAN, rel=1e-9)
    for (n, y, x), value in GOLDEN_EVAL_PIXELS.items():
        assert pred[n, :, y, x].tolist() == pytest.approx(value, rel=1e-9)

    model.train()
    with torch.no_grad():
        out = model.forward_train(lq, gt)
    assert out.dec_hf is not None and out.pos_hf is not None and out.pos_lf is not None
    ours = {
        "predict": out.restored,
        "pred_4": out.restored_quarter,
        "pred_2": out.restored_half,
        **{f"xh_{s}": t for s, t in zip((1, 2, 4), out.enc_hf, strict=True)},
        **{f"xl_{s}": t for s, t in zip((1, 2, 4), out.enc_lf, strict=True)},
        **{f"yh_{s}": t for s, t in zip((1, 2, 4), out.dec_hf, strict=True)},
        **{f"gth_{s}": t for s, t in zip((1, 2, 4), out.pos_hf, strict=True)},
        **{f"gtl_{s}": t for s, t in zip((1, 2, 4), out.pos_lf, strict=True)},
    }
    assert {k: v.abs().mean().item() for k, v in ours.items()} == pytest.approx(GOLDEN_TRAIN_ABS_MEAN, rel=1e-9)


# ----------------------------------------------------------------------------------------------------------------------
# Sizes and padding
# ----------------------------------------------------------------------------------------------------------------------


def test_full_size_model_runs_on_small_and_odd_inputs(full: MSFSNet) -> None:
    full.eval()
    for h, w in ((16, 16), (13, 21)):
        lq = torch.rand(1, 3, h, w)
        with torch.no_grad():
            pred = full(lq)
        assert pred.shape == lq.shape and torch.isfinite(pred).all()


@pytest.mark.parametrize("size", [(256, 256), (720, 1280), (721, 1279)])
def test_forward_any_size(size: tuple[int, int]) -> None:
    # The full model costs ~6 TFLOP at 720x1280, far too much for a CPU test; a narrow one has the same geometry.
    model = create_model("msfsnet_tiny", channels=4, reduction=2, decoder_blocks=1).eval()
    lq = torch.rand(1, 3, *size)
    with torch.no_grad():
        pred = model(lq)
    assert pred.shape == lq.shape and torch.isfinite(pred).all()


def test_pad_multiple_is_what_the_geometry_needs() -> None:
    model = create_model("msfsnet_tiny").eval()
    assert model.pad_multiple == 8
    with torch.no_grad():
        model.encode(torch.rand(1, 3, 40, 48))  # multiples of 8 work
        with pytest.raises(ValueError, match="even height and width"):
            model.encode(torch.rand(1, 3, 36, 40))  # 36 is a multiple of 4: the 1/4-scale FSM would see 9 rows
        with pytest.raises(ValueError, match="divisible by 8"):
            model.restore(torch.rand(1, 3, 36, 40))
        assert model(torch.rand(1, 3, 36, 41)).shape == (1, 3, 36, 41)  # forward pads

    plain = create_model("msfsnet_tiny", use_fsm=False).eval()
    assert plain.pad_multiple == 4  # no half-resolution branch
    with torch.no_grad():
        assert plain.restore(torch.rand(1, 3, 36, 44)).shape == (1, 3, 36, 44)


def test_training_crop_must_be_a_multiple() -> None:
    model = create_model("msfsnet_tiny")
    lq = torch.rand(1, 3, 36, 40)
    with pytest.raises(ValueError, match="multiple of 8"):
        model.forward_train(lq, lq)


# ----------------------------------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoder_first_block", ["release", "paper"])
@pytest.mark.parametrize("positive_source", ["output", "ground_truth"])
def test_every_parameter_gets_a_gradient_under_the_full_loss(positive_source: str, encoder_first_block: str) -> None:
    torch.manual_seed(0)
    model = create_model(
        "msfsnet_tiny", positive_source=positive_source, encoder_first_block=encoder_first_block, multiscale_l1=True
    )
    assert all(p.requires_grad for p in model.parameters())
    lq, gt = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    terms = model.loss(model.forward_train(lq, gt), gt)
    assert set(terms) == {"l1", "low", "high", "multiscale", "total"}
    terms["total"].backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_parameters_the_loss_cannot_reach_are_frozen() -> None:
    def frozen(model: MSFSNet) -> set[str]:
        return {n.rsplit(".", 1)[0] for n, p in model.named_parameters() if not p.requires_grad}

    assert frozen(create_model("msfsnet_tiny")) == {"conv_2_", "conv_4"}
    assert frozen(create_model("msfsnet_tiny", multiscale_l1=True)) == set()
    assert frozen(create_model("msfsnet_tiny", use_clm=False, multiscale_l1=True)) == {"changeChannel_"}
    gone = frozen(create_model("msfsnet_tiny", use_clm=False, use_consistency=False, multiscale_l1=True))
    assert gone == {"changeChannel_", "Encoder.0.layers.0.main.0.main.0", "Encoder.0.layers.0.main.1.main.0"}
    # Under the default loss every trainable parameter gets a gradient.
    model = create_model("msfsnet_tiny")
    lq = torch.rand(2, 3, 32, 32)
    model.loss(model.forward_train(lq, lq.flip(-1)), lq.flip(-1))["total"].backward()
    assert all((p.grad is not None) == p.requires_grad for p in model.parameters())


def test_reencode_bn_stats_switch() -> None:
    """True (default, the release's train-mode forward): the re-encoding updates the encoder's running statistics too;
    False: only the blurry path, which is all that inference sees, updates them."""
    lq, gt = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)

    def encoder_stats(blurry_only: bool = False, **overrides) -> list[Tensor]:
        torch.manual_seed(0)
        model = create_model("msfsnet_tiny", **overrides)  # in train mode, as created
        with torch.no_grad():
            if blurry_only:
                model(lq)  # the blurry path alone, as in a training step without re-encoding
            else:
                model.forward_train(lq, gt)
        encoder_fsms = ("octblock.0.", "octblock.1.", "octblock.2.")
        return [b for name, b in model.named_buffers() if name.startswith(encoder_fsms)]

    reference = encoder_stats(blurry_only=True)
    assert all(torch.equal(a, b) for a, b in zip(encoder_stats(reencode_bn_stats=False), reference, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(encoder_stats(), reference, strict=True))


# ----------------------------------------------------------------------------------------------------------------------
# The first-EBlock switch
# ----------------------------------------------------------------------------------------------------------------------


def _perturbed_first_eblock_changes(model: MSFSNet) -> tuple[bool, bool]:
    """(does forward change, do the re-encoded features change) when Encoder.0's weights move."""
    model.eval()
    lq, gt = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        before, pos_before = model(lq), model.forward_train(lq, gt).pos_hf
        for p in model.Encoder[0].parameters():
            p.add_(0.1)
        after, pos_after = model(lq), model.forward_train(lq, gt).pos_hf
    assert pos_before is not None and pos_after is not None
    return not torch.equal(before, after), not torch.equal(pos_before[1], pos_after[1])


def test_release_mode_skips_the_first_eblock_on_the_blurry_path_only() -> None:
    torch.manual_seed(0)
    assert _perturbed_first_eblock_changes(create_model("msfsnet_tiny")) == (False, True)
    torch.manual_seed(0)
    assert _perturbed_first_eblock_changes(create_model("msfsnet_tiny", encoder_first_block="paper")) == (True, True)
    assert create_model("msfsnet_tiny").encoder_first_block == "release"


# ----------------------------------------------------------------------------------------------------------------------
# Table 3 ablations
# ----------------------------------------------------------------------------------------------------------------------


def test_ablation_flags_are_exactly_table_3() -> None:
    flags = {}
    for name in ABLATIONS:
        model = _meta(name)
        flags[name] = (model.use_fsm, model.use_csffm, model.use_clm, model.use_consistency)
    assert flags == ABLATIONS
    full = _meta("msfsnet")
    assert (full.use_fsm, full.use_csffm, full.use_clm, full.use_consistency) == (True, True, True, True)
    assert len(set(ABLATIONS.values()) | {(True, True, True, True)}) == 6


def _differing(a: dict, b: dict) -> set[str]:
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_each_ablation_removes_what_it_names_and_nothing_else(name: str) -> None:
    use_fsm, use_csffm, _, _ = ABLATIONS[name]
    full, ablated = _meta("msfsnet"), _meta(name)
    diff = _differing(_layout(full), _layout(ablated))
    octconvs = sum(isinstance(m, OctaveConv) for m in ablated.modules())
    if use_fsm:
        assert octconvs == 18 and not any(k.startswith("octblock.") for k in diff)
    else:
        assert octconvs == 0 and all(isinstance(b, PlainBlock) for b in ablated.octblock)
        assert ablated.num_parameters == full.num_parameters  # the plain block costs the same parameters
        assert ablated.pad_multiple == 4
    if use_csffm:
        assert ablated.mix1 is not None and not any(k.startswith("mix") for k in diff)
    else:
        assert ablated.mix1 is None and ablated.mix2 is None
        assert {k for k in diff if not k.startswith("octblock.")} == {"mix1.w", "mix2.w"}
    assert all(k.startswith(("octblock.", "mix")) for k in diff)


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_ablation_loss_terms(name: str) -> None:
    _, _, use_clm, use_consistency = ABLATIONS[name]
    torch.manual_seed(0)
    model = create_model(name, **TINY)
    lq, gt = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    out = model.forward_train(lq, gt)
    terms = model.loss(out, gt)
    expected = {"l1", "total"} | ({"high"} if use_clm else set()) | ({"low"} if use_consistency else set())
    assert set(terms) == expected
    assert (out.dec_hf is not None) == use_clm
    assert (out.pos_hf is not None) == (use_clm or use_consistency)
    terms["total"].backward()
    assert all(torch.isfinite(t) for t in terms.values())


def test_ablation_factories_refuse_to_override_their_defining_flags() -> None:
    with pytest.raises(TypeError, match="fixes"):
        create_model("msfsnet_ablation_noclm", use_clm=True)
    assert create_model("msfsnet_ablation_noclm", **TINY).use_clm is False


def _pair(**flags) -> tuple[MSFSNet, MSFSNet]:
    """The tiny full model and an ablated one with identical weights (where both have them)."""
    torch.manual_seed(0)
    base = create_model("msfsnet_tiny", multiscale_l1=True)
    other = create_model("msfsnet_tiny", multiscale_l1=True, **flags)
    other.load_state_dict(base.state_dict(), strict=False)
    return base, other


def test_no_csffm_is_the_plain_concatenation_skip() -> None:
    base, plain = _pair(use_csffm=False)
    assert base.mix1 is not None and base.mix2 is not None
    with torch.no_grad():
        base.mix1.w.fill_(-1e4)  # sigmoid(w) = 0: the mix returns the decoder feature alone
        base.mix2.w.fill_(-1e4)
    base.eval(), plain.eval()
    lq = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(base(lq), plain(lq))
        base.mix1.w.fill_(-1.0)
        assert not torch.equal(base(lq), plain(lq))


@pytest.mark.parametrize(
    ("flag", "term", "weight"), [("use_clm", "high", "weight_high"), ("use_consistency", "low", "weight_low")]
)
def test_removing_a_feature_loss_removes_only_its_weighted_term(flag: str, term: str, weight: str) -> None:
    base, ablated = _pair(**{flag: False})
    lq, gt = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    full_terms = base.loss(base.forward_train(lq, gt), gt)
    ablated_terms = ablated.loss(ablated.forward_train(lq, gt), gt)
    assert term not in ablated_terms
    for key in ablated_terms.keys() - {"total"}:
        torch.testing.assert_close(ablated_terms[key], full_terms[key])
    expected_total = ablated_terms["total"] + getattr(base, weight) * full_terms[term]
    torch.testing.assert_close(full_terms["total"], expected_total)


# ----------------------------------------------------------------------------------------------------------------------
# Losses by hand (Eqs. 5-7)
# ----------------------------------------------------------------------------------------------------------------------


def _t(*values: float) -> Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(1, len(values), 1, 1)


def _hand_output() -> tuple[MSFSTrainOutput, Tensor]:
    gt = torch.arange(16.0).reshape(1, 1, 4, 4) / 16
    out = MSFSTrainOutput(
        restored=gt + 0.1,
        restored_half=torch.zeros(1, 1, 2, 2),
        restored_quarter=torch.zeros(1, 1, 1, 1),
        enc_hf=(_t(3, 1), _t(2, 2), _t(2, 4)),  # negatives
        enc_lf=(_t(1, 2), _t(0, 0), _t(3, 3)),
        dec_hf=(_t(1, 1), _t(2, 2), _t(0, 0)),  # anchors
        pos_hf=(_t(1, 2), _t(3, 3), _t(1, 1)),  # positives
        pos_lf=(_t(1.5, 1), _t(0.5, -0.5), _t(3, 3)),
    )
    return out, gt


def test_losses_by_hand() -> None:
    out, gt = _hand_output()
    assert out.pos_lf is not None and out.pos_hf is not None and out.dec_hf is not None
    # Eq. 5: mean(|1 - 1.5|, |2 - 1|) + mean(0.5, 0.5) + 0
    low = 0.75 + 0.5 + 0.0
    torch.testing.assert_close(consistency_loss(out.enc_lf, out.pos_lf), torch.tensor(low))
    # Eq. 6: k=0: mean(0, 1) / mean(2, 0) = 0.5; k=1: 1 / max(0, eps); k=2: 1 / mean(2, 4) = 1/3
    high_eps = 0.5 + 1 / 0.5 + 1 / 3
    torch.testing.assert_close(contrastive_loss(out.dec_hf, out.pos_hf, out.enc_hf, eps=0.5), torch.tensor(high_eps))
    torch.testing.assert_close(
        contrastive_loss(out.dec_hf, out.pos_hf, out.enc_hf, eps=1e-3), torch.tensor(0.5 + 1000 + 1 / 3)
    )
    # Multi-scale L1 against the bilinearly downsampled gt: at 1/2 the 2x2 block means (2.5, 4.5, 10.5, 12.5) / 16, at
    # 1/4 the mean of the centre 2x2 (5, 6, 9, 10) / 16 = 7.5 / 16 (nearest would take pixels 0 and (0, 2, 8, 10)).
    multiscale = (2.5 + 4.5 + 10.5 + 12.5) / 4 / 16 + 7.5 / 16

    model = create_model("msfsnet_tiny", multiscale_l1=True, contrastive_eps=0.5)
    assert (model.weight_high, model.weight_low, model.weight_multiscale) == (0.05, 0.05, 1.0)
    terms = model.loss(out, gt)
    assert set(terms) == {"l1", "low", "high", "multiscale", "total"}
    torch.testing.assert_close(terms["l1"], torch.tensor(0.1))
    torch.testing.assert_close(terms["low"], torch.tensor(low))
    torch.testing.assert_close(terms["high"], torch.tensor(high_eps))
    torch.testing.assert_close(terms["multiscale"], torch.tensor(multiscale))
    torch.testing.assert_close(terms["total"], torch.tensor(0.1 + 0.05 * high_eps + 0.05 * low + multiscale))

    weighted = create_model("msfsnet_tiny", contrastive_eps=0.5, weight_high=0.2, weight_low=0.3)
    terms = weighted.loss(out, gt)
    assert "multiscale" not in terms  # off by default: Eq. 7 has no such term
    torch.testing.assert_close(terms["total"], torch.tensor(0.1 + 0.2 * high_eps + 0.3 * low))


def test_loss_rejects_a_foreign_output() -> None:
    from models.base import TrainOutput

    with pytest.raises(TypeError, match="MSFSTrainOutput"):
        create_model("msfsnet_tiny").loss(TrainOutput(restored=torch.zeros(1, 3, 8, 8)), torch.zeros(1, 3, 8, 8))


# ----------------------------------------------------------------------------------------------------------------------
# Scale pairing and construction
# ----------------------------------------------------------------------------------------------------------------------


def test_feature_shapes_pair_up_per_scale() -> None:
    model = create_model("msfsnet_tiny", channels=8, reduction=2)
    lq = torch.rand(1, 3, 32, 48)
    out = model.forward_train(lq, lq)
    assert out.dec_hf is not None and out.pos_hf is not None and out.pos_lf is not None
    for k, s in enumerate((1, 2, 4)):
        hf_shape = (1, 4, 32 // s, 48 // s)
        assert out.enc_hf[k].shape == out.dec_hf[k].shape == out.pos_hf[k].shape == hf_shape
        assert out.enc_lf[k].shape == out.pos_lf[k].shape == (1, 4, 16 // s, 24 // s)
    assert out.restored_half.shape == (1, 3, 16, 24) and out.restored_quarter.shape == (1, 3, 8, 12)


def test_constructor_checks_and_overrides() -> None:
    assert create_model("msfsnet_tiny", channels=24).changeChannel_.out_channels == 12
    with pytest.raises(TypeError, match="bad override"):
        create_model("msfsnet_tiny", chanels=16)
    for bad in ({"channels": 15}, {"encoder_first_block": "paperr"}, {"positive_source": "gt"}, {"reduction": 0}):
        with pytest.raises(ValueError):
            create_model("msfsnet_tiny", **bad)
    assert sum(isinstance(m, OctBlock) for m in create_model("msfsnet_tiny").modules()) == 6


# ----------------------------------------------------------------------------------------------------------------------
# TLC
# ----------------------------------------------------------------------------------------------------------------------


def test_tlc_replaces_every_channel_attention_pool(full: MSFSNet) -> None:
    from benchmark.evaluation import tlc

    full.eval()
    local = tlc.to_local(full, (16, 16))
    assert tlc.count_local_layers(local) == 70  # 10 latent + 2 x 30 decoder RCABs
    assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in local.modules())

    torch.manual_seed(0)
    tiny = create_model("msfsnet_tiny").eval()
    local = tlc.to_local(tiny, (32, 32))  # windows 1.5x the features seen at 32x32: any input up to 48x48 fits
    assert tlc.count_local_layers(local) == len(tiny.latent) + sum(len(d.layers) for d in tiny.Decoder)
    lq = torch.rand(1, 3, 48, 40)
    big = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(local(lq), tiny(lq))
        assert not torch.allclose(local(big), tiny(big))  # larger than the window: statistics become local


# ----------------------------------------------------------------------------------------------------------------------
# Learning (slow)
# ----------------------------------------------------------------------------------------------------------------------


def _batches(lq: Tensor, gt: Tensor, batch: int, crop: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(seed)
    while True:
        idx = torch.randint(len(lq), (batch,), generator=g)
        top, left = (torch.randint(s - crop + 1, (1,), generator=g).item() for s in lq.shape[-2:])
        sl = (idx, slice(None), slice(top, top + crop), slice(left, left + crop))
        yield lq[sl], gt[sl]


TRAIN_STEPS = 300


@pytest.mark.slow
def test_tiny_learns_from_its_start_to_the_identity_level(tmp_path: Path) -> None:
    """msfsnet_tiny, trained for 300 steps (~2 CPU-minutes: AdamW 1e-3 with cosine decay, batch 4, 128 px crops) on
    the default synthblur data, halves its training loss, gains more than 5 dB on its held-out test photos over its
    untrained start (16.25 dB) and lands in the identity's neighbourhood (24.89 dB): within 4 dB of it.

    Where it lands in that neighbourhood is not a property a CPU test can pin: eval mode normalises with BatchNorm
    running statistics tracked over the last few batches of 4 crops (``models/msfsnet.py``, deviation 4), so the test
    PSNR swings by up to 2.9 dB from one 50-step checkpoint to the next, and the same loop ends at 24.84 dB with 2
    threads and 23.17 dB with 1 (this suite's setting) on one AMD EPYC; an earlier machine's CI cleared 24.79 dB.
    Measured by running this loop (seeds 0-2, 1 and 2 threads): final PSNR 22.02-24.84 dB, gain over the untrained
    start 6.9-9.7 dB, mean loss of the last 50 steps 0.31-0.33x that of the first 50. This checks that training moves
    the network the right way end to end (losses, heads, eval-mode BatchNorm statistics), not how well it deblurs.
    """
    from benchmark.core.sections import SynthConfig
    from benchmark.data.dataset import PairedDataset
    from benchmark.data.synth import generate_synthblur

    root = tmp_path / "synthblur"
    generate_synthblur(root, SynthConfig())

    def load(split: str) -> tuple[Tensor, Tensor]:
        items = list(PairedDataset(root, split, crop_size=None, augment="none"))
        return torch.stack([i["lq"] for i in items]), torch.stack([i["gt"] for i in items])

    def psnr(pred: Tensor, target: Tensor) -> float:
        return (-10 * torch.log10(((pred.clamp(0, 1) - target) ** 2).mean((1, 2, 3)))).mean().item()

    (train_lq, train_gt), (test_lq, test_gt) = load("train"), load("test")
    torch.manual_seed(0)
    model = create_model("msfsnet_tiny")
    model.eval()
    with torch.no_grad():
        untrained = psnr(model(test_lq), test_gt)
    lr, min_lr = 1e-3, 1e-5
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr, betas=(0.9, 0.9), weight_decay=0)
    cosine = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * s / TRAIN_STEPS))) / lr
    )
    model.train()
    losses = []
    for step, (lq, gt) in enumerate(_batches(train_lq[:50], train_gt[:50], 4, 128, seed=0)):
        if step == TRAIN_STEPS:
            break
        loss = model.loss(model.forward_train(lq, gt), gt)["total"]
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
        cosine.step()
    model.eval()
    with torch.no_grad():
        trained, identity = psnr(model(test_lq), test_gt), psnr(test_lq, test_gt)
    first, last = sum(losses[:50]) / 50, sum(losses[-50:]) / 50
    assert last < 0.5 * first, (first, last)
    assert untrained == pytest.approx(16.2477, abs=1e-3)  # seed 0's initialisation, before any step
    assert trained > untrained + 5.0, (untrained, trained)
    assert trained > identity - 4.0, (trained, identity)
