"""Schema drift: columns in the loaded file's header that the spec does not know.

A header that lacks a spec column never gets this far: the load refuses the file before anything
is written. An extra column is loaded around (ignored) and reported here, so an upstream change is
noticed before someone relies on the new field. The header is the one the load ledger recorded
for the month's last load, so the check holds after the landed file is moved or replaced.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.checks.outcome import CheckOutcome
from pipeline.specs import DatasetSpec, SchemaDriftSpec
from pipeline.warehouse.base import Warehouse
from pipeline.warehouse.ledger import HEADER_SEPARATOR


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
    if not load.get("header"):
        return CheckOutcome(
            passed=False,
            severity=drift.severity,
            summary=f"the load of {path.name} recorded no header; load the month again",
            facts={"source_file": str(path)},
        )
    names = load["header"].split(HEADER_SEPARATOR)
    extra = [name for name in names if name not in spec.columns]
    in_spec_order = [name for name in names if name in spec.columns] == list(spec.columns)
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
            "header": ", ".join(names),
            "extra_columns": ", ".join(extra) or "none",
            "spec_order": in_spec_order,
        },
    )
