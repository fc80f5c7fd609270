"""Per-image plots: each row's PSNR on every test image beside the identity row's (the blurry input's) on that image.

The report stage writes one CSV per (training set, test set, row) under ``Layout.per_image_plots`` (columns
``image, identity, psnr, gain``) from the evaluation records it already reads, since it is the stage that sees the
identity row and every other row together; ``dvc.yaml`` declares the folder as a scatter plot (x: identity, y: psnr),
so points above the diagonal are images the model improved. The whole folder is rebuilt and swapped in atomically, so
a removed model leaves no stale file behind.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from benchmark.core import atomic
from benchmark.core.layout import Layout
from benchmark.evaluation.records import EvalRecord, RecordError
from benchmark.reporting.tables import IDENTITY

COLUMNS = ("image", "identity", "psnr", "gain")


def per_image_csv(record: EvalRecord, identity: EvalRecord) -> str:
    """``record``'s per-image PSNR beside ``identity``'s, in ``record``'s image order.

    Raises:
        RecordError: the two records were not scored on the same images (the message names both rows).
    """
    base = dict(zip(identity.names, identity.scores["psnr"], strict=True))
    missing = [n for n in record.names if n not in base]
    if missing or len(base) != len(record.names):
        raise RecordError(
            f"{record.row} and {identity.row} on {record.dataset} were scored on different images (e.g. "
            f"{missing[:3] or sorted(set(base) - set(record.names))[:3]}); re-run both evaluations"
        )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for name, psnr in zip(record.names, record.scores["psnr"], strict=True):
        writer.writerow([name, f"{base[name]:.4f}", f"{psnr:.4f}", f"{psnr - base[name]:.4f}"])
    return buf.getvalue()


def write_per_image_plots(layout: Layout, records: Sequence[EvalRecord]) -> list[Path]:
    """Rebuild ``layout.per_image_plots`` from ``records`` (pipeline and release rows); returns the files written.

    Rows on a test set without a plain identity record get no file (there is nothing to put them beside).
    """
    identities = {r.dataset: r for r in records if r.model == IDENTITY and not r.tlc}
    target = layout.per_image_plots
    atomic.remove_stale_builds(target)
    built = atomic.building_dir(target)
    written = []
    for record in records:
        identity = identities.get(record.dataset)
        if record is identity or identity is None or not record.applicable:
            continue
        path = layout.per_image_plot(
            record.train_dataset, record.dataset, record.row, release=record.weights == "release"
        )
        atomic.write_text(built / path.relative_to(target), per_image_csv(record, identity))
        written.append(path)
    atomic.replace_dir(built, target)
    return written
