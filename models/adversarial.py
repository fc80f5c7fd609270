"""The discriminator side of the GAN releases (DeblurGAN, DeblurGAN-v2): networks and losses, for the trainer.

A model whose release trains adversarially returns an :class:`Adversary` from ``DeblurModel.adversary()``; the
trainer (``benchmark.training.step``) then runs, per optimiser step and in the releases' order: the generator's
forward, ``d_steps`` discriminator updates on the detached output (``d_loss``), and the generator's update on its
content loss plus ``weight * g_loss`` (KupynOrest/DeblurGAN ``ConditionalGAN.optimize_parameters``;
VITA-Group/DeblurGANv2 ``train.py`` ``_run_epoch``/``_update_d``). The discriminators are not part of the model's
state dict (released checkpoints hold generators only); the trainer checkpoints them beside it.

Discriminators and losses (re-implemented from the releases, not copied):
- ``NLayerDiscriminator`` (both releases' ``models/networks.py``): 4x4 convolutions, padding 2, LeakyReLU 0.2: one at
  stride 2 to ``ndf``, ``n_layers - 1`` more at stride 2 doubling (up to 8 ``ndf``) with InstanceNorm (no affine;
  biases on, the releases' ``use_bias`` for InstanceNorm), one at stride 1, and a 1-channel output map (PatchGAN).
- :class:`WGANGP` (DeblurGAN ``DiscLossWGANGP``, ``gan_type: wgan-gp``, the default): critic ``D(fake) - D(real)``
  plus 10 x the gradient penalty at one random interpolation (one ``alpha`` for the whole batch, the norm of the
  gradient taken over the channel axis only, then averaged), 5 critic updates per generator step; generator term
  ``-D(fake)``.
- :class:`DoubleRaGANLS` (DeblurGAN-v2 ``DoubleGAN`` with ``RelativisticDiscLossLS``, ``d_name: double_gan``,
  ``disc_loss: ragan-ls``, the released weights' setting): a patch critic (``n_layers`` 3) and a full-image one (5),
  each with least-squares relativistic terms against the mean of a pool of its last 50 predictions of the other kind
  (``ImagePool(50)``, predictions detached), averaged over the two; one update per generator step, its loss scaled by
  ``adv_lambda`` (``_update_d``).
"""

from __future__ import annotations

from collections import deque

import torch
from torch import Tensor, nn


class NLayerDiscriminator(nn.Module):
    """PatchGAN critic: (N, 3, H, W) in [-1, 1] -> (N, 1, h, w) scores; module names are the releases' (``model.<i>``).

    Args:
        ndf: width of the first convolution (64 in both releases).
        n_layers: stride-2 convolutions (3: DeblurGAN, DeblurGAN-v2's patch critic; 5: its full-image critic).
    """

    def __init__(self, *, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if ndf < 1 or n_layers < 1:
            raise ValueError(f"NLayerDiscriminator: need ndf >= 1 and n_layers >= 1, got {ndf}, {n_layers}")
        layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=2), nn.InstanceNorm2d(ndf * mult)]
            layers.append(nn.LeakyReLU(0.2))
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=2))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class Adversary(nn.Module):
    """What the trainer needs of a GAN release's discriminator side (module docstring).

    Attributes:
        weight: the factor of ``g_loss`` in the generator's total loss.
        d_steps: discriminator updates per generator step.
        d_scale: the factor of ``d_loss`` in the discriminator's update (DeblurGAN-v2 scales it by ``adv_lambda``).
    """

    weight: float = 1.0
    d_steps: int = 1
    d_scale: float = 1.0

    def d_loss(self, fake: Tensor, real: Tensor) -> Tensor:
        """The discriminator's loss on a detached generator output ``fake`` and the sharp ``real`` (N, 3, H, W) in
        [0, 1]."""
        raise NotImplementedError

    def g_loss(self, fake: Tensor, real: Tensor) -> Tensor:
        """The generator's adversarial term (unweighted) on its output ``fake`` (with gradient) and ``real``."""
        raise NotImplementedError


def _signed(x: Tensor) -> Tensor:
    """[0, 1] -> [-1, 1], the releases' generator output range, which their critics see."""
    return x * 2 - 1


class WGANGP(Adversary):
    """DeblurGAN's critic and losses (``DiscLossWGANGP``): the generator's term has weight 1 beside ``100 *
    content``; 5 critic updates per generator step; gradient-penalty weight 10."""

    d_steps = 5

    def __init__(self, *, ndf: int = 64, n_layers: int = 3, gp_weight: float = 10.0) -> None:
        super().__init__()
        self.critic = NLayerDiscriminator(ndf=ndf, n_layers=n_layers)
        for module in self.critic.modules():  # networks.weights_init: conv weights N(0, 0.02)
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
        self.gp_weight = gp_weight

    def d_loss(self, fake: Tensor, real: Tensor) -> Tensor:
        fake, real = _signed(fake), _signed(real)
        loss = self.critic(fake).mean() - self.critic(real).mean()
        alpha = torch.rand(1, 1, device=real.device, dtype=real.dtype).expand_as(real)  # one alpha per batch
        inter = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
        scores = self.critic(inter)
        (grad,) = torch.autograd.grad(scores, inter, torch.ones_like(scores), create_graph=True)
        penalty = ((grad.norm(2, dim=1) - 1) ** 2).mean()  # dim=1: the channel axis, as the release
        return loss + self.gp_weight * penalty

    def g_loss(self, fake: Tensor, real: Tensor) -> Tensor:
        return -self.critic(_signed(fake)).mean()


class PredictionPool:
    """DeblurGAN-v2's ``ImagePool(50)`` of critic predictions: the last ``size`` maps, detached; ``mean`` averages
    every stored value (the release's ``query`` returns all of them, never a random sample, at this size)."""

    def __init__(self, size: int = 50) -> None:
        self.items: deque[Tensor] = deque(maxlen=size)

    def add(self, predictions: Tensor) -> None:
        for p in predictions.detach():
            self.items.append(p.unsqueeze(0))

    def mean(self) -> Tensor:
        return torch.cat(list(self.items)).mean()

    def state(self) -> list[Tensor]:
        return [t.clone() for t in self.items]

    def load(self, items: list[Tensor]) -> None:
        self.items.clear()
        self.items.extend(items)


class _RaGANLS(nn.Module):
    """``RelativisticDiscLossLS`` around one critic, with its two prediction pools."""

    def __init__(self, critic: nn.Module) -> None:
        super().__init__()
        self.critic = critic
        self.fake_pool, self.real_pool = PredictionPool(), PredictionPool()

    def d_loss(self, fake: Tensor, real: Tensor) -> Tensor:
        pred_fake = self.critic(fake)
        self.fake_pool.add(pred_fake)
        pred_real = self.critic(real)
        self.real_pool.add(pred_real)
        return (
            torch.mean((pred_real - self.fake_pool.mean() - 1) ** 2)
            + torch.mean((pred_fake - self.real_pool.mean() + 1) ** 2)
        ) / 2

    def g_loss(self, fake: Tensor, real: Tensor) -> Tensor:
        pred_fake, pred_real = self.critic(fake), self.critic(real)
        return (
            torch.mean((pred_real - self.fake_pool.mean() + 1) ** 2)
            + torch.mean((pred_fake - self.real_pool.mean() - 1) ** 2)
        ) / 2


class DoubleRaGANLS(Adversary):
    """DeblurGAN-v2's ``double_gan`` + ``ragan-ls``: patch (``patch``, 3 layers) and full-image (``full``, 5 layers)
    critics, the mean of their terms; ``adv_lambda`` 0.001 weighs the generator's term and scales the critics'."""

    def __init__(self, *, ndf: int = 64, patch_layers: int = 3, full_layers: int = 5, adv_lambda: float = 0.001):
        super().__init__()
        self.patch = _RaGANLS(NLayerDiscriminator(ndf=ndf, n_layers=patch_layers))
        self.full = _RaGANLS(NLayerDiscriminator(ndf=ndf, n_layers=full_layers))
        self.weight = self.d_scale = adv_lambda

    def d_loss(self, fake: Tensor, real: Tensor) -> Tensor:
        fake, real = _signed(fake), _signed(real)
        return (self.patch.d_loss(fake, real) + self.full.d_loss(fake, real)) / 2

    def g_loss(self, fake: Tensor, real: Tensor) -> Tensor:
        fake, real = _signed(fake), _signed(real)
        return (self.patch.g_loss(fake, real) + self.full.g_loss(fake, real)) / 2

    def get_extra_state(self) -> dict[str, list[Tensor]]:
        """The four prediction pools travel in the state dict (a resumed run continues them exactly)."""
        critics = {"patch": self.patch, "full": self.full}
        return {
            f"{name}_{kind}": getattr(critic, f"{kind}_pool").state()
            for name, critic in critics.items()
            for kind in ("fake", "real")
        }

    def set_extra_state(self, state: dict[str, list[Tensor]]) -> None:
        for key, items in state.items():
            name, kind = key.split("_")
            getattr(getattr(self, name), f"{kind}_pool").load(items)
