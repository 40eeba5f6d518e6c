"""Schema drift: columns in the loaded file's header that the spec does not know.

A header that lacks a spec column never gets this far: the load refuses the file before anything
is written. An extra column is loaded around (ignored) and reported here, so an upstream change is
noticed before someone relies on the new field. The header is read again from the file the ledger
says was loaded: one line, whatever the file's size.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.checks.outcome import CheckOutcome
from pipeline.ingest.header import LoadError, read_header
from pipeline.specs import DatasetSpec, SchemaDriftSpec
from pipeline.warehouse.base import Warehouse


def check_schema_drift(
    warehouse: Warehouse, spec: DatasetSpec, drift: SchemaDriftSpec, month: str
) -> CheckOutcome:
    """Fail (WARN by default) when the month's file has columns the spec does not list."""
    load = warehouse.latest_load(spec.name, month)
    if load is None:
        return CheckOutcome(
            passed=False,
            severity=drift.severity,
            summary=f"{spec.name} {month} has no successful load whose header could be read",
        )
    path = Path(load["source_file"])
    try:
        with path.open("rb") as handle:
            header = read_header(handle, spec, path)
    except (OSError, LoadError) as error:
        return CheckOutcome(
            passed=False,
            severity=drift.severity,
            summary=f"the header of the loaded file cannot be read again: {error}",
            facts={"source_file": str(path)},
        )
    extra = list(header.extra_columns)
    in_spec_order = [name for name in header.names if name in spec.columns] == list(spec.columns)
    return CheckOutcome(
        passed=not extra,
        severity=drift.severity,
        summary=(
            f"{len(extra)} column(s) not in the spec, ignored: {', '.join(extra)} ({path.name})"
            if extra
            else f"the header has exactly the spec's {len(spec.columns)} columns"
            + ("" if in_spec_order else " (in another order, which is fine)")
        ),
        observed=len(extra),
        threshold=0,
        facts={
            "source_file": str(path),
            "header": ", ".join(header.names),
            "extra_columns": ", ".join(extra) or "none",
            "spec_order": in_spec_order,
        },
    )
