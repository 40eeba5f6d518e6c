"""Write a report file: read the datasets through the warehouse, render, print if asked."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pipeline.audit import record_event, verify_log
from pipeline.reports.data import dataset_months, read_dataset
from pipeline.reports.html import render_report
from pipeline.reports.pdf import print_pdf
from pipeline.specs import DatasetSpec
from pipeline.warehouse.base import Warehouse

SUFFIXES = (".html", ".pdf")


class ReportNotWritten(Exception):
    """The report's file could not be written where it was asked for."""


def report_path(reports_dir: Path, datasets: Sequence[str]) -> Path:
    """Where a report goes without `-o`: `<reports dir>/<dataset>.html` (names joined by `+`)."""
    return reports_dir / f"{'+'.join(datasets)}.html"


def output_path(path: Path) -> Path:
    """`-o PATH`: a PDF when it ends in .pdf, HTML when in .html or in nothing (`.html` added).

    Raises ValueError for another suffix: `-o report.docx` wrote HTML to `report.docx.html`.
    """
    suffix = path.suffix.lower()
    if suffix in SUFFIXES:
        return path
    if suffix:
        raise ValueError(f"{path}: a report is written as .html or .pdf, not {path.suffix}")
    return path.with_name(path.name + ".html")


def write_report(
    warehouse: Warehouse,
    specs: Sequence[DatasetSpec],
    path: Path,
    anchors: Path,
    first: str | None = None,
    last: str | None = None,
    run_id: str | None = None,
) -> Path:
    """Report `specs` over their months from `first` to `last` (default: all) into `path`, with
    the audit log's verification against the heads in `anchors`; the report is an audit event,
    with the id of the run that wrote it (None from the CLI)."""
    views = [
        read_dataset(warehouse, spec, dataset_months(warehouse, spec, first, last))
        for spec in specs
    ]
    html = render_report(
        views,
        type(warehouse).__name__.removesuffix("Warehouse"),
        audit_log=verify_log(warehouse, anchors),
    )
    path = output_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".pdf":
            print_pdf(html, path)
        else:
            # Written beside and renamed, so a browser (or a mail's link) never sees half a
            # report.
            partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
            partial.write_text(html, encoding="utf-8")
            partial.replace(path)
    except OSError as exc:  # a folder that is a file, a place not writable
        raise ReportNotWritten(f"{path}: the report cannot be written there: {exc}") from exc
    record_event(
        warehouse,
        "report_written",
        anchors=anchors,
        run_id=run_id,
        dataset=",".join(spec.name for spec in specs),
        source_file=str(path),
        file_size=path.stat().st_size,
        detail=f"months {views[0].months[0].month}..{views[0].months[-1].month}"
        if views and views[0].months
        else None,
    )
    return path
