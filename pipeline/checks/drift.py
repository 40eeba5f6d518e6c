"""Schema drift: columns in the file's header that the spec does not know.

A header that lacks a spec column never gets this far: the load refuses the file before anything
is written, unless the spec marks the column `optional` (the summary then says it is null in this
month). An extra column is loaded around (ignored) and reported here, so an upstream change is
noticed before someone relies on the new field. The header is the one read at staging (and kept
in the load ledger), so the check holds after the landed file is moved or replaced.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.checks.outcome import CheckOutcome
from pipeline.checks.scope import MonthUnderCheck
from pipeline.specs import SchemaDriftSpec


def check_schema_drift(month: MonthUnderCheck, drift: SchemaDriftSpec) -> CheckOutcome:
    """Fail (WARN by default) when the month's file has columns the spec does not list."""
    spec = month.spec
    path = Path(month.staged.source_file)
    names = month.staged.header
    # Once each, a blank name shown as such (a header ending in two tabs has one).
    extra = [n or repr(n) for n in dict.fromkeys(names) if n not in spec.columns]
    absent = [name for name in spec.columns if name not in names]
    present = [name for name in spec.columns if name in names]
    in_spec_order = [name for name in names if name in spec.columns] == present
    if extra:
        ignored = ", ".join(extra)
        summary = f"{len(extra)} column(s) not in the spec, ignored: {ignored} ({path.name})"
    elif absent:
        summary = "no column beyond the spec's"
    else:
        summary = f"the header has exactly the spec's {len(spec.columns)} columns"
    if not extra and not in_spec_order:
        summary += " (in another order, which is fine)"
    if absent:
        summary += f"; optional column(s) absent, null in this month: {', '.join(absent)}"
    return CheckOutcome(
        passed=not extra,
        severity=drift.severity,
        summary=summary,
        observed=len(extra),
        threshold=0,
        facts={
            "source_file": str(path),
            "header": ", ".join(names),
            "extra_columns": ", ".join(extra) or "none",
            "absent_optional_columns": ", ".join(absent) or "none",
            "spec_order": in_spec_order,
        },
    )
