"""The schema check: how many of a month's lines broke the spec, against the allowed ratio."""

from __future__ import annotations

from pipeline.checks.outcome import CheckOutcome
from pipeline.checks.scope import MonthUnderCheck

SAMPLE_ROWS = 20


def share(ratio: float, against: float | None = None) -> str:
    """`ratio` as a percent: alone, to four decimals without trailing zeros (`0.1%`); against
    another ratio, with the fewest decimals, up to four, that tell the two apart and do not show
    a share above zero as zero (`2.0%` against `0.1%`, `0.1003%` against `0.1%`, `0.04%`).
    `2.0016%, over the allowed 0.1000%` had people read every digit."""
    if against is None:
        if _reads_as_zero(ratio, 4):
            return "<0.0001%"
        return f"{ratio * 100:.4f}".rstrip("0").rstrip(".") + "%"
    places = 1
    while f"{ratio:.{places}%}" == f"{against:.{places}%}" or _reads_as_zero(ratio, places):
        if places == 4:
            return share(ratio)
        places += 1
    return f"{ratio:.{places}%}"


def _reads_as_zero(ratio: float, places: int) -> bool:
    """Whether a share above zero would print as zero (`7 of 17,052 lines rejected (0.0%)`)."""
    return ratio > 0 and float(f"{ratio * 100:.{places}f}") == 0


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
        f"select _column as column_name, _rule as rule, count(*) as lines, "
        f"min(_line_number) as first_line from {month.rejects} "
        "group by _column, _rule order by lines desc, first_line"
    )
    sample = month.query(
        f"select _line_number as line, _column as column_name, _value as value, _rule as rule, "
        f"_reason as reason from {month.rejects} order by _line_number limit {SAMPLE_ROWS}"
    )
    verdict = "within" if passed else "over"
    return CheckOutcome(
        passed=passed,
        severity="ERROR",
        summary=(
            f"{rejected:,} of {read:,} lines rejected ({share(ratio, limit)}), {verdict} the "
            f"allowed {share(limit)}" + ("" if passed else _most_often(by_rule[0]))
        ),
        observed=ratio,
        threshold=limit,
        facts={
            "rows_read": read,
            "rows_loaded": month.candidate.rows,
            "rows_rejected": rejected,
            "reject_ratio": round(ratio, 6),  # a share to read, not 0.02001619807937059
            "max_reject_ratio": limit,
            "source_file": month.staged.source_file,
        },
        samples={"rejects_by_rule": by_rule, "failing_rows_sample": sample},
    )


def _most_often(group: dict) -> str:
    """`; most often currency: must be one of EUR, GBP (360 lines, the first line 17)`: what a
    refused month's lines break most, by rule, never by value. The summary said only how many
    lines were rejected; the rules were in the run's metadata."""
    broken = f"{group['column_name']}: {group['rule']}" if group["column_name"] else group["rule"]
    return f"; most often {broken} ({group['lines']:,} lines, the first line {group['first_line']})"
