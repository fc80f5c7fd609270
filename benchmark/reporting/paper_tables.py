"""The MSFS-Net paper's Tables 1-3, reproduced beside the reported numbers: ``results/tables/table{1,2,3}.md``.

Rows come from ``results/reported/table*.csv`` (the paper's numbers, typed from its text, in its order). A row whose
method the harness implements (``model`` column) gets its reproduced value from an evaluation record, found in this
order (:func:`find_record`):

1. ``<results>/runs/<train set>/<test set>/<model>[-local].json``: weights trained by this pipeline;
2. ``<results>/runs/release/<train set>/<test set>/<model>[-local].json``: the authors' released weights trained on
   the row's training set (``checkpoint=release train_dataset=<train set>``), marked ``ʳ``; Table 2's ``*`` rows read
   ``release/realblur_r/realblur_r/`` and ``release/realblur_j/realblur_j/``.

Where the authors' own published result images were scored (``<results>/runs/outputs/<train>/<test>/<model>-released
.json``, ``python -m benchmark.evaluate ... outputs=<folder>``), a ``· released outputsᵒ`` row follows the method's
row: their images beside their weights, both beside the reported number.

Each reproduced cell shows the mean, its bootstrap 95% interval over the test images, the reported value and the
difference; ``⚠`` flags a reported value outside the interval (``benchmark.reporting.cells``). A last column per test
set gives the paired sign-flip test of the row's per-image PSNR against MSFS-Net's (same images, same TLC setting).
Methods the harness does not run show the reported value only. SSIM is compared in the variant the table's numbers
used (:func:`comparable_ssim`): ``matlab3d`` where the dataset's protocol scores it (GoPro/HIDE: MATLAB's ``ssim`` of
MPRNet's evaluation script and the MSFS-Net release's ``psnr_ssim.m``), else the protocol's own SSIM (RealBlur's
official masked SSIM).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from benchmark.core.layout import Layout
from benchmark.core.sections import ScoringProtocol
from benchmark.evaluation.records import EvalRecord, read_record
from benchmark.reporting.cells import PSNR_DIGITS, REFERENCE_MODEL, p_value, signed, versus_reported

DATASET_TITLES = {
    "gopro": "GoPro",
    "hide": "HIDE",
    "realblur_r": "RealBlur-R",
    "realblur_j": "RealBlur-J",
    "synthblur": "synthblur",
}
SSIM_DIGITS = 3  # as the paper reports SSIM


def find_record(layout: Layout, model: str, tlc: bool, train: str, test: str) -> EvalRecord | None:
    """The applicable evaluation of ``model`` (TLC or not) trained on ``train`` and scored on ``test``, or None:
    this pipeline's weights first, else the authors' released ones."""
    for release in (False, True):
        path = layout.record(train, test, model, tlc, release=release)
        if not path.is_file():
            continue
        record = read_record(path)
        if record.applicable and record.train_dataset == train:
            return record
    return None


def find_outputs_record(layout: Layout, model: str, tlc: bool, train: str, test: str) -> EvalRecord | None:
    """The record of the authors' published result images of ``model`` (trained on ``train``) on ``test``, or None."""
    path = layout.record(train, test, model, tlc, outputs="released")
    return read_record(path) if path.is_file() else None


OUTPUTS_MARK = "ᵒ"
"""Marks a row of the authors' published result images, scored (``outputs=<folder>``)."""


def comparable_ssim(protocol: ScoringProtocol) -> str:
    """The per-image SSIM column comparable with the paper: MATLAB's ``matlab3d`` where the protocol scores it."""
    if protocol.ssim_variant != "matlab3d" and "matlab3d" in protocol.extra_ssim_variants:
        return "ssim_matlab3d"
    return "ssim"


def render(
    title: str,
    rows: pd.DataFrame,
    *,
    layout: Layout,
    tests: list[str],
    protocols: dict[str, ScoringProtocol],
    train_for_row: Callable[[pd.Series, str], str],
    label_for_row: Callable[[pd.Series], str],
) -> str:
    """A Markdown table: one row per reported row, per test set PSNR, SSIM and the paired p-value vs MSFS-Net."""
    header = ["Method"]
    for t in tests:
        name = DATASET_TITLES.get(t, t)
        header += [f"{name} PSNR", f"{name} SSIM", f"{name} p (PSNR vs MSFS-Net)"]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    release_notes: dict[str, str] = {}
    outputs_notes: dict[str, str] = {}
    no_run: dict[str, str] = {}

    def row_cells(row: pd.Series, label: str, find: Callable[..., EvalRecord | None]) -> tuple[list[str], set[str]]:
        """The row's cells with the records ``find`` returns, and the marks its label gets."""
        model = row.get("model") if isinstance(row.get("model"), str) else None
        tlc = str(row.get("tlc", "false")).lower() == "true"
        cells, marks = [label], set()
        for t in tests:
            train = train_for_row(row, t)
            record = find(layout, model, tlc, train, t) if model else None
            reference = find_record(layout, REFERENCE_MODEL, tlc, train, t)
            if record is not None and record.weights == "release":
                marks.add("ʳ")
            where = f"{label} on {DATASET_TITLES.get(t, t)}"
            if record is not None and record.outputs is not None:
                outputs_notes[where] = record.outputs.describe()
            shown = record
            if record is not None and reported_protocol(row, t) == "release" and record.release is not None:
                shown = record.under("release")
                release_notes[where] = record.release.protocol_text
            cells += _metric_cells(shown, record, row, t, protocols[t])
            own = model == REFERENCE_MODEL and find is find_record  # MSFS-Net's outputs row is tested against it
            cells.append(p_value(record, reference, is_reference=own))
        return cells, marks

    for _, row in rows.iterrows():
        cells, marks = row_cells(row, label_for_row(row), find_record)
        reason = _no_run(row)
        if reason:
            no_run[cells[0]] = reason
            marks.add(NO_RUN_MARK)
        cells[0] += "".join(sorted(marks))
        lines.append("| " + " | ".join(cells) + " |")
        if any(
            find_outputs_record(layout, row["model"], False, train_for_row(row, t), t)
            for t in tests
            if isinstance(row.get("model"), str) and str(row.get("tlc", "false")).lower() != "true"
        ):
            # The authors' own result images, scored: beside the row of their weights run by the harness.
            cells, _ = row_cells(row, f"{label_for_row(row)} · released outputs", find_outputs_record)
            cells[0] += OUTPUTS_MARK
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Cells: reproduced mean [bootstrap 95% interval over the test images] · reported (reproduced − reported); ⚠: "
        "the interval excludes the reported value; a reported value alone: the harness has no run for it (yet). "
        f"{RELEASE_MARK}: scored under the protocol of the method's own release, the one its reported number used "
        "(listed below), then `official`: the same outputs under the dataset's official protocol and Δ = official − "
        "release protocol, so a gap that Δ explains is the protocol, not the model; where the release declares no "
        "protocol of its own for the test set (`results/reported/` says `release` but `release.protocols` has none), "
        "its evaluation is the official one and the cell is unmarked. "
        "p: paired sign-flip test of the per-image PSNR against MSFS-Net's on the same images (same TLC setting, "
        "official protocol). ʳ: the authors' released weights (`checkpoint=release`); otherwise weights trained by "
        f"this pipeline. {OUTPUTS_MARK} (`· released outputs` rows): the authors' own published result images, scored "
        "by the harness without running any model (`python -m benchmark.evaluate model=<name> dataset=<test> "
        "outputs=<folder>`; 8-bit files, not rounded again), beside the row of their weights: the same reported "
        "number, so a gap between the two rows is the weights or the release's inference, and one in both rows is "
        "the scoring; p there: against MSFS-Net's row on the images both scored.",
        "",
        "Protocol:",
        *[f"- {note}" for note in _protocol_notes(tests, protocols)],
        *[f"- {RELEASE_MARK} {where}: {text}." for where, text in release_notes.items()],
        *[f"- {OUTPUTS_MARK} {where}: {text}." for where, text in outputs_notes.items()],
        "",
        *([f"{NO_RUN_MARK} Rows the harness cannot run (`results/reported/` `no_run`):", ""] if no_run else []),
        *[f"- {label}: {reason}." for label, reason in no_run.items()],
        *([""] if no_run else []),
        "Reported numbers: `results/reported/` (typed from the paper; its `<test>_protocol` columns say which protocol "
        "produced each reported cell). Generated by `python -m benchmark.report`; do not edit by hand.",
        "",
    ]
    return "\n".join(lines)


NO_RUN_MARK = "†"
"""Marks a row without a harness model; the footer says why (``no_run`` in ``results/reported/``)."""


def _no_run(row: pd.Series) -> str | None:
    value = row.get("no_run")
    return None if value is None or pd.isna(value) or not str(value) else str(value)


RELEASE_MARK = "ᵖ"
"""Marks a cell scored under the method's release protocol (``ScoringProtocol`` in ``release.protocols``)."""


def reported_protocol(row: pd.Series, test: str) -> str:
    """Which protocol produced the reported ``test`` cell of ``row``: ``release``, ``official`` or a description."""
    value = row.get(f"{test}_protocol")
    return "official" if value is None or pd.isna(value) else str(value)


def _metric_cells(
    shown: EvalRecord | None, official: EvalRecord | None, row: pd.Series, test: str, protocol: ScoringProtocol
) -> list[str]:
    """The PSNR and SSIM cells: ``shown`` (the record under the reported number's protocol) beside the reported
    number, and, when that is the release's protocol, the official number and the difference."""
    cells = []
    for metric, digits in (("psnr", PSNR_DIGITS), ("ssim", SSIM_DIGITS)):
        column = metric if metric == "psnr" else comparable_ssim(shown.protocol if shown else protocol)
        cell = versus_reported(shown, column, _reported(row, test, metric), digits)
        if shown is not None and official is not None and shown is not official:
            official_column = metric if metric == "psnr" else comparable_ssim(official.protocol)
            value, released = official.means[official_column], shown.means[column]
            cell = f"{RELEASE_MARK} {cell} · official {value:.{digits}f} (Δ {signed(value - released, digits)})"
        cells.append(cell)
    return cells


def _reported(row: pd.Series, test: str, metric: str) -> float | None:
    value = row.get(f"{test}_{metric}")
    return None if value is None or pd.isna(value) else float(value)


def _protocol_notes(tests: list[str], protocols: dict[str, ScoringProtocol]) -> list[str]:
    notes = []
    for t in tests:
        ssim = comparable_ssim(protocols[t])
        compared = (
            f"; SSIM compared: `{ssim.removeprefix('ssim_')}` (MATLAB's ssim, as the reported numbers)"
            if ssim != "ssim"
            else ""
        )
        notes.append(f"{DATASET_TITLES.get(t, t)}: {protocols[t].describe()}{compared}.")
    notes.append("`-Local` rows: TLC (Chu et al. 2022), exact local box means, window 1.5 x the training crop.")
    return notes


PAPER_TESTS = {"table1.md": ["gopro", "hide"], "table2.md": ["realblur_r", "realblur_j"], "table3.md": ["gopro"]}
"""The test sets of each of the paper's tables."""


def render_paper_tables(layout: Layout, protocol_of: Callable[[str], ScoringProtocol]) -> dict[str, str]:
    """``{"table1.md": ..., "table2.md": ..., "table3.md": ...}`` from the reported CSVs and the records.

    Args:
        layout: Where the records and the reported numbers are.
        protocol_of: A test set's scoring protocol (its ``dataset.protocol``), for the SSIM column and the footer.
    """
    reported = layout.reported
    protocols = {t: protocol_of(t) for tests in PAPER_TESTS.values() for t in tests}
    t1 = pd.read_csv(reported / "table1.csv", dtype={"model": str})
    t2 = pd.read_csv(reported / "table2.csv", dtype={"model": str})
    t3 = pd.read_csv(reported / "table3.csv", dtype={"model": str})

    def check(frame: pd.DataFrame) -> pd.Series:
        return frame.apply(lambda r: "✓" if r else "×")

    t3_label = t3.assign(
        label=lambda f: (
            "FSM "
            + check(f["fsm"])
            + " · CSFFM "
            + check(f["csffm"])
            + " · CLM "
            + check(f["clm"])
            + " · Consistency "
            + check(f["consistency"])
        )
    )
    return {
        "table1.md": render(
            "Table 1: GoPro and HIDE (models trained on GoPro)",
            t1,
            layout=layout,
            protocols=protocols,
            tests=PAPER_TESTS["table1.md"],
            train_for_row=lambda row, test: "gopro",
            label_for_row=lambda row: (
                f"{row['method']} ({row['citation']})"
                if row["citation"] != "this paper" and not row["method"].startswith("(")
                else row["method"]
            ),
        ),
        "table2.md": render(
            "Table 2: RealBlur-R and RealBlur-J (GoPro-trained; `*` rows trained on RealBlur)",
            t2,
            layout=layout,
            protocols=protocols,
            tests=PAPER_TESTS["table2.md"],
            # `*` rows: trained and tested on each RealBlur variant's own split.
            train_for_row=lambda row, test: test if row["trained_on"] == "realblur" else "gopro",
            label_for_row=lambda row: row["method"],
        ),
        "table3.md": render(
            "Table 3: MSFS-Net ablations on GoPro",
            t3_label.assign(method=t3_label["label"], tlc=False),
            layout=layout,
            protocols=protocols,
            tests=PAPER_TESTS["table3.md"],
            train_for_row=lambda row, test: "gopro",
            label_for_row=lambda row: f"{row['label']} (`{row['model']}`)",
        ),
    }
