"""Table cells, formatted once: means with intervals, beside reported numbers, paired p-values, the reference row."""

from __future__ import annotations

from collections.abc import Iterable

from benchmark.evaluation.records import EvalRecord
from benchmark.scoring.stats import paired_test

REFERENCE_MODEL = "msfsnet"
"""The method the paper proposes: every table's p-values test the other rows against it."""

PSNR_DIGITS = 2
"""PSNR decimals, in every table (the papers report two)."""


def reference_model(models: Iterable[str]) -> str | None:
    """The reference of a table listing ``models``: MSFS-Net itself, else its first variant (``msfsnet_tiny`` in the
    CPU pipeline), else none. Rows are compared with the reference's record of the same TLC setting, training and
    test set (a ``-Local`` row against the reference's ``-Local`` row)."""
    names = list(models)
    if REFERENCE_MODEL in names:
        return REFERENCE_MODEL
    return next((name for name in names if name.startswith(REFERENCE_MODEL)), None)


def mean_ci(record: EvalRecord, metric: str, digits: int) -> str:
    """``mean [low, high]``: the recorded mean and bootstrap 95% interval of ``metric``."""
    mean = record.means[metric]
    interval = record.intervals.get(metric)
    if interval is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def versus_reported(record: EvalRecord | None, metric: str, reported: float | None, digits: int) -> str:
    """``mean [low, high] · reported (±diff)``; ``⚠`` when the interval misses every value that rounds to the
    reported one; the reported value alone without a record, ``–`` without either."""
    rep = f"{reported:.{digits}f}" if reported is not None else None
    if record is None:
        return rep or "–"
    text = mean_ci(record, metric, digits)
    if rep is None:
        return text
    mean = record.means[metric]
    low, high = record.intervals.get(metric, (mean, mean))
    half = 0.5 * 10.0**-digits  # the paper rounds to ``digits`` decimals
    flag = " ⚠" if high < reported - half or low > reported + half else ""
    return f"{text} · {rep} ({signed(mean - reported, digits)}){flag}"


def signed(value: float, digits: int) -> str:
    """``value`` with its sign and ``digits`` decimals; one that rounds to zero is ``+0.00``, never ``-0.00``."""
    return f"{value + 0.0 if round(value, digits) != 0 else 0.0:+.{digits}f}"


def p_value(record: EvalRecord | None, reference: EvalRecord | None, *, is_reference: bool) -> str:
    """The paired sign-flip test of the per-image PSNR against the reference's, on the same images in the same order
    (:func:`paired_scores`); ``(reference)`` on the reference's own rows, ``–`` when either record or a common image
    list is missing."""
    if is_reference:
        return "(reference)"
    pairs = None if record is None or reference is None else paired_scores(record, reference, "psnr")
    return "–" if pairs is None else f"{paired_test(*pairs):.3g}"


def paired_scores(
    record: EvalRecord, other: EvalRecord, metric: str
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Both records' per-image ``metric`` on the images both scored, in ``record``'s order: the whole test set, or,
    where one is a partial folder of result images (``outputs=`` with ``allow_missing=true``), the images it holds.
    ``None`` when they were scored on different image lists otherwise, or share no image."""
    if record.names == other.names:
        return (record.values(metric), other.values(metric)) if record.names else None
    if not any(r.outputs is not None and r.outputs.partial for r in (record, other)):
        return None
    theirs = dict(zip(other.names, other.values(metric), strict=True))
    mine = dict(zip(record.names, record.values(metric), strict=True))
    common = [name for name in record.names if name in theirs]
    return (tuple(mine[n] for n in common), tuple(theirs[n] for n in common)) if common else None
