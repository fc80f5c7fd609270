"""``identity``: returns the blurry input unchanged. The floor row of every table (the PSNR of doing nothing)."""

from __future__ import annotations

from torch import Tensor

from models._registry import register_model
from models.base import DeblurModel


class Identity(DeblurModel):
    """Returns its input: (N, 3, H, W) -> the same tensor. Has no parameters, so there is nothing to train."""

    def restore(self, lq: Tensor) -> Tensor:
        return lq


@register_model
def identity() -> Identity:
    """The blurry input itself: the no-restoration baseline."""
    return Identity()
