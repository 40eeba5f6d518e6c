"""The schema check: how many of a month's lines broke the spec, against the allowed ratio."""

from __future__ import annotations

from pipeline.checks.outcome import CheckOutcome
from pipeline.checks.scope import MonthUnderCheck

SAMPLE_ROWS = 20


def check_rejects(month: MonthUnderCheck) -> CheckOutcome:
    """Fail when rejected / read exceeds the spec's `checks.max_reject_ratio`.

    `read` is the file's data lines as counted from its bytes, `rejected` what the warehouse took
    into the candidate's rejects.
    """
    read, rejected = month.staged.rows_read, month.candidate.rejects
    ratio = rejected / read if read else 0.0
    limit = month.spec.checks.max_reject_ratio
    passed = ratio <= limit
    by_rule = month.query(
        f"select _column as column_name, _rule as rule, count(*) as lines from {month.rejects} "
        "group by _column, _rule order by lines desc, rule"
    )
    sample = month.query(
        f"select _line_number as line, _column as column_name, _value as value, _rule as rule "
        f"from {month.rejects} order by _line_number limit {SAMPLE_ROWS}"
    )
    verdict = "within" if passed else "over"
    return CheckOutcome(
        passed=passed,
        severity="ERROR",
        summary=(
            f"{rejected} of {read} lines rejected ({ratio:.4%}), {verdict} the allowed {limit:.4%}"
        ),
        observed=ratio,
        threshold=limit,
        facts={
            "rows_read": read,
            "rows_loaded": month.candidate.rows,
            "rows_rejected": rejected,
            "reject_ratio": ratio,
            "max_reject_ratio": limit,
            "source_file": month.staged.source_file,
        },
        samples={"rejects_by_rule": by_rule, "failing_rows_sample": sample},
    )
