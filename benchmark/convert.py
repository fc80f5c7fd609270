"""``python -m benchmark.convert <model> <release file(s)> <out.pt>``: a release's weights as this harness's state dict.

Reads the release in its own format (``models.load_checkpoint``: PyTorch wrappers, DMPHN's module folder, TensorFlow
checkpoints through ``models.tfcheckpoint``, no TensorFlow needed), loads it strictly into the registered ``model``,
and writes ``{"model": state_dict}`` to ``out.pt`` atomically; then reads ``out.pt`` back and loads it strictly again.
Any of ``checkpoint=release``, ``checkpoint=<out.pt>`` then scores the same weights. A TensorFlow checkpoint is named by
its prefix (``.../deblur.model-523000``), its ``.index`` file, or the folder holding it.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmark.core.atomic import save_torch
from benchmark.core.cli import errors_exit
from models import CheckpointError, create_model, list_models, load_checkpoint


def convert(model_name: str, release: Path, out: Path) -> int:
    """Convert ``release`` for ``model_name`` into ``out`` and verify it; returns the number of tensors written.

    Raises:
        CheckpointError: the release does not fit the model (names what is missing or extra), or ``out`` does not
            load back.
    """
    model = create_model(model_name)
    load_checkpoint(model, release)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    save_torch(out, {"model": state})
    load_checkpoint(create_model(model_name), out)
    return len(state)


def _one_release(parser: argparse.ArgumentParser, paths: list[Path]) -> Path:
    """One path, or the files of one TensorFlow checkpoint (``<prefix>.index``, ``<prefix>.data-*``, ``.meta``)."""
    if len(paths) == 1:
        return paths[0]
    prefixes = {re.sub(r"\.(index|meta|data-\d{5}-of-\d{5})$", "", str(p)) for p in paths}
    if len(prefixes) != 1:
        parser.error(
            "several release paths must be the files of one TensorFlow checkpoint (<prefix>.index, "
            f"<prefix>.data-00000-of-00001); got {', '.join(map(str, paths))}"
        )
    return Path(prefixes.pop())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.convert", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="registered model name (e.g. srn, srn_color, pssnsc)")
    parser.add_argument("release", nargs="+", type=Path, help="the release's file, folder or checkpoint prefix")
    parser.add_argument("out", type=Path, help="where to write the converted state dict (.pt)")
    args = parser.parse_args(argv)
    if args.model not in list_models():
        parser.error(f"unknown model {args.model!r}; registered: {', '.join(list_models())}")
    release = _one_release(parser, args.release)
    if args.out.suffix != ".pt":
        parser.error(f"out must be a .pt file, got {args.out}")
    with errors_exit(CheckpointError):
        count = convert(args.model, release, args.out)
    print(f"[convert] {args.model}: {count} tensors from {release} -> {args.out} (loads strictly)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
