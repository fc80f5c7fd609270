"""``python -m benchmark.evaluate model=<name> dataset=<name> [checkpoint=<path>|release] [tlc=<bool or list>]``.

With ``outputs=<folder>`` it scores a folder of result images instead (the authors' published ones, or
``benchmark.deblur``'s; ``allow_missing=true`` for a partial folder, ``name_map=<rule>`` for its file names):
``benchmark.evaluation.outputs``.

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
from benchmark.evaluation.outputs import evaluate_outputs
from benchmark.evaluation.records import EvalRecord
from benchmark.evaluation.run import evaluate_run
from models import CheckpointError


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(_: DictConfig) -> None:
    with errors_exit(CheckpointError):
        run = resolve_recipe(from_hydra())
        verify_stage_inputs("evaluate", run)
        if run.outputs is not None:
            _report(evaluate_outputs(run))
            return
        for tlc in run.tlc_settings:
            record = evaluate_run(run, tlc=tlc)
            if record.applicable:
                _report(record)
            else:
                print(f"[evaluate] {record.row}: TLC not applicable ({record.reason})")


def _report(record: EvalRecord) -> None:
    what = f"{record.row} ({record.weights})" if record.outputs is not None else record.row
    print(
        f"[evaluate] {what} on {record.dataset}: PSNR {record.psnr:.2f} dB, SSIM {record.ssim:.4f} "
        f"({record.n_images} images)"
    )
    if record.outputs is not None:
        print(f"[evaluate]   {record.outputs.describe()}; {record.protocol_text}")
        if record.outputs.missing:
            print(f"[evaluate]   not scored (no file): {', '.join(record.outputs.missing)}")
    if record.release is not None:
        means = record.release.means
        print(
            f"[evaluate]   under the release's protocol: PSNR {means['psnr']:.2f} dB, SSIM "
            f"{means['ssim']:.4f} ({record.release.protocol_text})"
        )


if __name__ == "__main__":
    main()
