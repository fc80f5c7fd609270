"""``python -m benchmark.evaluate model=<name> dataset=<name> [checkpoint=<path>|release] [tlc=<bool or list>]``.

Scores one model's weights on a test split (``benchmark.evaluation``): this pipeline's ``final.pt`` by default,
``checkpoint=release`` for the authors' released weights, or any checkpoint file in a release format;
``train_dataset=<name>`` picks the training set of the pipeline's weights. ``tlc=[false,true]`` scores the plain and
the TLC-converted model in one process (the ``evaluate@<model>-<train>-<test>`` stages). Where the model's release
scored the dataset its own way (``release.protocols``), that protocol is scored too, on the same outputs.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from benchmark.core.cli import errors_exit
from benchmark.core.config import from_hydra, resolve_recipe
from benchmark.core.stages import verify_stage_inputs
from benchmark.evaluation.run import evaluate_run
from models import CheckpointError


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(_: DictConfig) -> None:
    with errors_exit(CheckpointError):
        run = resolve_recipe(from_hydra())
        verify_stage_inputs("evaluate", run)
        for tlc in run.tlc_settings:
            record = evaluate_run(run, tlc=tlc)
            if record.applicable:
                print(
                    f"[evaluate] {record.row} on {record.dataset}: PSNR {record.psnr:.2f} dB, SSIM {record.ssim:.4f} "
                    f"({record.n_images} images)"
                )
                if record.release is not None:
                    means = record.release.means
                    print(
                        f"[evaluate]   under the release's protocol: PSNR {means['psnr']:.2f} dB, SSIM "
                        f"{means['ssim']:.4f} ({record.release.protocol_text})"
                    )
            else:
                print(f"[evaluate] {record.row}: TLC not applicable ({record.reason})")


if __name__ == "__main__":
    main()
