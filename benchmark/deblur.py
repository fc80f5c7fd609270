"""``python -m benchmark.deblur model=<name> [checkpoint=release|<path>] input=<png|folder> output=<png|folder>``.

Restores one image or every PNG of a folder with any registered model and any weights (``checkpoint=release
[train_dataset=<set>]`` for the authors' file, ``checkpoint=<path>`` for any release format, none for this pipeline's
``final.pt``); ``tlc=true`` converts the model with TLC, ``tile=<px>`` restores in overlapping tiles. Outputs are
8-bit PNGs rounded as the model's release saves them (printed). With ``gt=<png|folder>`` each image is scored and the
mean printed, under ``protocol=official`` (``dataset=<set>``'s protocol) or ``protocol=release`` (the release's own
for that dataset). Each output is written atomically, so an interrupted folder run leaves only whole PNGs.
"""

from __future__ import annotations

import hydra
import numpy as np
from omegaconf import DictConfig

from benchmark.core.cli import errors_exit
from benchmark.core.config import from_hydra
from benchmark.evaluation.deblur import deblur, save_rule, scoring_protocol
from models import CheckpointError


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(_: DictConfig) -> None:
    with errors_exit(CheckpointError):
        run = from_hydra()
        rule = {
            "uint8": "ties to even",
            "uint8_half_up": "ties up, as to_pil_image(x + 0.5 / 255) and save_image since torchvision 0.3",
            "uint8_floor": "truncated, as torchvision 0.2's save_image",
        }[save_rule(run)]
        print(f"[deblur] {run.model.name}: outputs rounded to 8 bit, {rule}")
        scores: dict[str, list[float]] = {}
        for result in deblur(run):
            line = ", ".join(f"{k} {v:.4f}" for k, v in result.scores.items())
            print(f"[deblur] {result.job.source.name} -> {result.job.target}" + (f": {line}" if line else ""))
            for k, v in result.scores.items():
                scores.setdefault(k, []).append(v)
        if scores:
            means = ", ".join(f"{k} {np.mean(v):.4f}" for k, v in scores.items())
            n = len(next(iter(scores.values())))
            print(f"[deblur] mean over {n} images ({scoring_protocol(run).describe()}): {means}")


if __name__ == "__main__":
    main()
