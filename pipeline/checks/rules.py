"""Custom SQL rules from the spec: rows matching `where` are findings."""

from __future__ import annotations

from pipeline.checks.outcome import CheckOutcome, Severity
from pipeline.checks.scope import MonthUnderCheck
from pipeline.specs import RuleSpec

SAMPLE_ROWS = 10
# An INFO rule passes at WARN level: its count is recorded, not announced. (The INFO level is
# for verdicts that could not be given, such as volume without enough history.)
SEVERITIES: dict[str, Severity] = {"CRITICAL": "ERROR", "WARNING": "WARN", "INFO": "WARN"}


def check_rule(month: MonthUnderCheck, rule: RuleSpec) -> CheckOutcome:
    """Count and sample the month's rows matching the rule, in the warehouse.

    `where` filters a subquery over the month's candidate rows, so whatever it says it cannot
    reach other months or tables' rows beyond what it names itself. A rule whose SQL the database
    rejects fails with the rule's name and the database's message; any other error (a lost
    connection, a missing privilege) is the warehouse's and fails the load instead: the month's
    own count runs first, outside the rule, to tell them apart.
    """
    rows = month.query(f"select count(*) as n from {month.rows}")[0]["n"]
    matching = f"select * from (select * from {month.rows}) m where ({rule.where})"
    try:
        count = month.query(f"select count(*) as n from ({matching}) r")[0]["n"]
        sample = month.query(f"{matching} order by _line_number limit {SAMPLE_ROWS}")
    except Exception as error:
        if not month.warehouse.is_statement_error(error):
            raise
        return CheckOutcome(
            passed=False,
            severity=SEVERITIES[rule.severity],
            summary=f"rule {rule.name!r} could not run: {str(error).splitlines()[0]}",
            facts={"where": rule.where},
        )
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
    """A sample row with its line number first."""
    return {"line": row["_line_number"]} | {k: v for k, v in row.items() if k != "_line_number"}
