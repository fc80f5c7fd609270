"""The GAN releases' discriminator side (models/adversarial.py) and adversarial training in the trainer.

The golden values were computed once with the releases' own code on the same weights and inputs, in float64 on the
CPU (``.cuda()`` calls removed, nothing else changed): KupynOrest/DeblurGAN@2499a87 ``models/networks.py``
``NLayerDiscriminator`` and ``models/losses.py`` ``DiscLossWGANGP`` (``get_loss``, ``get_g_loss``; its ``__init__``
chain fails on Python 3, so ``LAMBDA = 10`` was set on a bare instance), and VITA-Group/DeblurGANv2@c16bd9f
``models/networks.py`` ``NLayerDiscriminator``, ``models/losses.py`` ``RelativisticDiscLossLS``,
``adversarial_trainer.py`` ``DoubleGAN`` and ``util/image_pool.py`` ``ImagePool``, three rounds of ``0.001 *
loss_d`` then ``loss_g`` (``train.py`` ``_update_d``). Ours equals them to the last printed digit (tolerance 1e-12).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.training import step as step_module
from benchmark.training.loop import run_training
from models import create_model
from models.adversarial import WGANGP, DoubleRaGANLS, NLayerDiscriminator

GOLDEN_WGANGP = {"d_loss": 8.642627662625918, "g_loss": -0.08867946073314299, "critic_sum": 11.350970973842303}
GOLDEN_DOUBLE = [  # (0.001 * d_loss, g_loss) per round
    (0.0010353263302442523, 1.1658546718391212),
    (0.00105989154307128, 1.094594854018362),
    (0.00106796273687844, 1.1110082201877547),
]


@pytest.fixture
def float64_default():
    """The goldens' weights were drawn with float64 as the default dtype."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def test_discriminator_sizes_and_release_layout() -> None:
    patch, full = NLayerDiscriminator(ndf=64, n_layers=3), NLayerDiscriminator(ndf=64, n_layers=5)
    assert sum(p.numel() for p in patch.parameters()) == 2_764_737
    assert sum(p.numel() for p in full.parameters()) == 11_154_369
    keys = list(patch.state_dict())
    assert keys[:4] == ["model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias"]
    assert keys[-2:] == ["model.11.weight", "model.11.bias"]  # conv, LReLU, 3 x (conv, norm, LReLU), conv
    assert patch(torch.rand(1, 3, 64, 64)).shape == (1, 1, 11, 11)  # padding 2 (ceil((4 - 1) / 2)): 33, 17, 9, 10, 11
    with pytest.raises(ValueError, match="NLayerDiscriminator"):
        NLayerDiscriminator(n_layers=0)


def test_wgan_gp_matches_deblurgan(float64_default) -> None:
    torch.manual_seed(1)
    critic = WGANGP(ndf=8)
    g = torch.Generator().manual_seed(2)
    fake, real = torch.rand(2, 3, 40, 40, generator=g), torch.rand(2, 3, 40, 40, generator=g)
    torch.manual_seed(3)  # the gradient penalty's interpolation weight
    assert critic.d_loss(fake, real).item() == pytest.approx(GOLDEN_WGANGP["d_loss"], rel=1e-12)
    assert critic.g_loss(fake, real).item() == pytest.approx(GOLDEN_WGANGP["g_loss"], rel=1e-12)
    assert critic.critic(fake * 2 - 1).sum().item() == pytest.approx(GOLDEN_WGANGP["critic_sum"], rel=1e-12)
    assert critic.d_steps == 5 and critic.weight == 1.0


def test_double_ragan_ls_matches_deblurganv2_with_its_pools(float64_default) -> None:
    torch.manual_seed(4)
    critics = DoubleRaGANLS(ndf=8)
    g = torch.Generator().manual_seed(5)
    for d_golden, g_golden in GOLDEN_DOUBLE:
        fake, real = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
        assert (critics.d_scale * critics.d_loss(fake, real)).item() == pytest.approx(d_golden, rel=1e-12)
        assert critics.g_loss(fake, real).item() == pytest.approx(g_golden, rel=1e-12)
    assert critics.weight == critics.d_scale == 0.001 and critics.d_steps == 1
    # The pools travel in the state dict: a copy continues with the same values.
    twin = DoubleRaGANLS(ndf=8)
    twin.load_state_dict(critics.state_dict())
    fake, real = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    assert twin.g_loss(fake, real).item() == critics.g_loss(fake, real).item()


@pytest.mark.parametrize("name", ["deblurgan_tiny", "deblurganv2_tiny"])
def test_gan_models_offer_their_release_adversary(name: str) -> None:
    model = create_model(name)
    assert isinstance(model.adversary(), WGANGP if name == "deblurgan_tiny" else DoubleRaGANLS)
    assert create_model(name, adversarial=False).adversary() is None
    assert "critic" not in " ".join(model.state_dict())  # released checkpoints hold generators only
    assert create_model("mtrnn_tiny").adversary() is None


def _final(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_adversarial_training_logs_checkpoints_and_resumes_exactly(small_cfg, monkeypatch) -> None:
    cfg = small_cfg("model=deblurgan_tiny", "train.max_steps=4", "train.checkpoint_every=2")
    reference = run_training(cfg)
    last = torch.load(reference.last_path, map_location="cpu", weights_only=True)
    assert {"adversary", "adversary_optimizer", "adversary_scheduler"} <= set(last)
    assert any(k.startswith("critic.model.") for k in last["adversary"])

    # The same run, stopped after its step-2 checkpoint, then resumed: the same generator (and critic) weights.
    cfg_b = small_cfg(
        "model=deblurgan_tiny",
        "train.max_steps=4",
        "train.checkpoint_every=2",
        "paths.checkpoints=" + str(reference.last_path.parents[1].parent / "interrupted"),
    )
    calls = {"n": 0}
    original = step_module.TrainStep.__call__

    def stop_at_three(self, lq, gt):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill")
        return original(self, lq, gt)

    monkeypatch.setattr(step_module.TrainStep, "__call__", stop_at_three)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg_b)
    monkeypatch.setattr(step_module.TrainStep, "__call__", original)
    resumed = run_training(cfg_b)
    assert resumed.resumed_from == 2
    a, b = _final(reference.final_path), _final(resumed.final_path)
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed GAN run diverged from the uninterrupted one"
    la = torch.load(reference.last_path, weights_only=True)["adversary"]
    lb = torch.load(resumed.last_path, weights_only=True)["adversary"]
    assert all(torch.equal(la[k], lb[k]) for k in la)


def test_a_non_finite_critic_loss_stops_before_any_update(small_cfg, monkeypatch) -> None:
    from benchmark.training.step import NonFiniteLossError

    monkeypatch.setattr(WGANGP, "d_loss", lambda self, fake, real: self.critic(fake).mean() * float("nan"))
    with pytest.raises(NonFiniteLossError, match="critic=nan"):
        run_training(small_cfg("model=deblurgan_tiny", "train.max_steps=2"))
