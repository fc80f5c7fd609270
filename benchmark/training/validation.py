"""The validation pass during training: mean PSNR on held-out training pairs, through evaluation's scoring loop."""

from __future__ import annotations

import torch

from benchmark.core.sections import ScoringProtocol
from benchmark.data.dataset import PairedDataset
from benchmark.scoring.loop import score_model
from models import DeblurModel


@torch.no_grad()
def validation_psnr(
    model: DeblurModel, dataset: PairedDataset, device: torch.device, protocol: ScoringProtocol
) -> float:
    """Mean PSNR over the validation pairs (full images, batch 1), scored with the dataset's protocol; the model's
    train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False)
    scores = score_model(model, loader, protocol, device=device, progress=False)
    model.train(was_training)
    return scores.means["psnr"]
