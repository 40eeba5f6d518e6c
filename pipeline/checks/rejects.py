"""The schema check: how many of a month's lines broke the spec, against the allowed ratio."""

from __future__ import annotations

from pipeline.checks.outcome import CheckOutcome
from pipeline.specs import DatasetSpec
from pipeline.warehouse.base import RAW_SCHEMA, Warehouse, rejects_table

SAMPLE_ROWS = 20


def check_rejects(warehouse: Warehouse, spec: DatasetSpec, month: str) -> CheckOutcome:
    """Fail when rejected / read exceeds the spec's `checks.max_reject_ratio`."""
    load = warehouse.latest_load(spec.name, month)
    if load is None:
        return CheckOutcome(
            passed=False,
            severity="ERROR",
            summary=f"{spec.name} {month} has no successful load to check",
        )
    read, rejected = load["rows_read"], load["rows_rejected"]
    ratio = rejected / read if read else 0.0
    limit = spec.checks.max_reject_ratio
    passed = ratio <= limit
    table = f"{RAW_SCHEMA}.{rejects_table(spec.name)}"
    by_rule = warehouse.query(
        f"select _column as column_name, _rule as rule, count(*) as lines from {table} "
        "where _month = ? group by _column, _rule order by lines desc, rule",
        [month],
    )
    sample = warehouse.query(
        f"select _line_number as line, _column as column_name, _value as value, _rule as rule "
        f"from {table} where _month = ? order by _line_number limit {SAMPLE_ROWS}",
        [month],
    )
    verdict = "within" if passed else "over"
    return CheckOutcome(
        passed=passed,
        severity="ERROR",
        summary=(
            f"{rejected} of {read} lines rejected ({ratio:.4%}), {verdict} the allowed "
            f"{limit:.4%}; see raw.{rejects_table(spec.name)}"
        ),
        observed=ratio,
        threshold=limit,
        facts={
            "rows_read": read,
            "rows_loaded": load["rows_loaded"],
            "rows_rejected": rejected,
            "reject_ratio": ratio,
            "max_reject_ratio": limit,
            "source_file": load["source_file"],
        },
        samples={"rejects_by_rule": by_rule, "failing_rows_sample": sample},
    )
