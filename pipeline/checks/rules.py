"""Custom SQL rules from the spec: rows matching `where` are findings."""

from __future__ import annotations

from pipeline.checks.outcome import CheckOutcome, Severity
from pipeline.specs import DatasetSpec, RuleSpec
from pipeline.warehouse.base import RAW_SCHEMA, Warehouse

SAMPLE_ROWS = 10
# An INFO rule passes at WARN level: its count is recorded, not announced. (The INFO level is
# for verdicts that could not be given, such as volume without enough history.)
SEVERITIES: dict[str, Severity] = {"CRITICAL": "ERROR", "WARNING": "WARN", "INFO": "WARN"}


def check_rule(warehouse: Warehouse, spec: DatasetSpec, rule: RuleSpec, month: str) -> CheckOutcome:
    """Count and sample the month's rows matching the rule, in the warehouse.

    A rule whose SQL the warehouse rejects fails with the rule's name and the database's message.
    INFO rules always pass; their count is recorded.
    """
    table = f"{RAW_SCHEMA}.{spec.name}"
    scope = f"from {table} where _month = ? and ({rule.where})"
    try:
        count = warehouse.query(f"select count(*) as matches {scope}", [month])[0]["matches"]
        total = warehouse.query(f"select count(*) as total from {table} where _month = ?", [month])
        sample = warehouse.query(
            f"select * {scope} order by _line_number limit {SAMPLE_ROWS}", [month]
        )
    except Exception as error:  # the database's verdict on user SQL is the finding itself
        return CheckOutcome(
            passed=False,
            severity=SEVERITIES[rule.severity],
            summary=f"rule {rule.name!r} could not run: {str(error).splitlines()[0]}",
            facts={"where": rule.where},
        )
    rows = total[0]["total"]
    passed = rule.severity == "INFO" or count <= rule.max_violations
    return CheckOutcome(
        passed=passed,
        severity=SEVERITIES[rule.severity],
        summary=(
            f"{count} row(s) match {rule.name!r} ({rule.severity}; allowed {rule.max_violations})"
        ),
        observed=count,
        threshold=rule.max_violations,
        facts={
            "matches": count,
            "ratio": count / rows if rows else 0.0,
            "max_violations": rule.max_violations,
            "rule_severity": rule.severity,
            "where": rule.where,
        },
        samples={"matching_rows": [_shown(row) for row in sample]},
    )


def _shown(row: dict) -> dict:
    """A sample row with its line number first and load bookkeeping left out."""
    hidden = {"_month", "_source_file", "_loaded_at", "_line_number"}
    return {"line": row["_line_number"]} | {k: v for k, v in row.items() if k not in hidden}
