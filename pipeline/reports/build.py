"""Write a report file: read the datasets through the warehouse, render, print if asked."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pipeline.reports.data import dataset_months, read_dataset
from pipeline.reports.html import render_report
from pipeline.reports.pdf import print_pdf
from pipeline.specs import DatasetSpec
from pipeline.warehouse.base import Warehouse

SUFFIXES = (".html", ".pdf")


def report_path(reports_dir: Path, datasets: Sequence[str]) -> Path:
    """Where a report goes without `-o`: `<reports dir>/<dataset>.html` (names joined by `+`)."""
    return reports_dir / f"{'+'.join(datasets)}.html"


def output_path(path: Path) -> Path:
    """`-o PATH`: a PDF when it ends in .pdf, else HTML (`.html` added when it has neither)."""
    return path if path.suffix.lower() in SUFFIXES else path.with_name(path.name + ".html")


def write_report(
    warehouse: Warehouse,
    specs: Sequence[DatasetSpec],
    path: Path,
    first: str | None = None,
    last: str | None = None,
) -> Path:
    """Report `specs` over their months from `first` to `last` (default: all) into `path`."""
    views = [
        read_dataset(warehouse, spec, dataset_months(warehouse, spec, first, last))
        for spec in specs
    ]
    html = render_report(views, type(warehouse).__name__.removesuffix("Warehouse"))
    path = output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".pdf":
        return print_pdf(html, path)
    # Written beside and renamed, so a browser (or a mail's link) never sees half a report.
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(path)
    return path
