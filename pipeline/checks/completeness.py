"""Date completeness: every expected day of the month has rows, on the dataset's calendar."""

from __future__ import annotations

import datetime as dt

import holidays

from pipeline.checks.outcome import CheckOutcome
from pipeline.checks.scope import MonthUnderCheck
from pipeline.fiscal import fiscal_day
from pipeline.partitions import month_bounds, month_days
from pipeline.specs import CompletenessSpec, DatasetSpec

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def open_days(month: str, calendar: CompletenessSpec) -> list[dt.date]:
    """The days of `month` that should have data."""
    first, last = month_bounds(month)
    days = month_days(month)
    if calendar.calendar == "every_day":
        expected = set(days)
    elif calendar.calendar == "weekdays":
        expected = {day for day in days if day.weekday() in calendar.weekdays}
    else:
        closed = public_holidays(first.year, calendar)
        expected = {day for day in days if day.weekday() in calendar.weekdays} - set(closed)
    expected |= {day for day in calendar.extra_open_dates if first <= day <= last}
    expected -= set(calendar.extra_closed_dates)
    return sorted(expected)


def regular_days(month: str, calendar: CompletenessSpec) -> list[dt.date]:
    """Open days that are not public holidays (unless listed in `extra_open_dates`).

    On an `every_day` calendar a holiday is open but its volume is not its weekday's, so volume
    comparisons leave holidays out on both sides.
    """
    first, _ = month_bounds(month)
    closed = public_holidays(first.year, calendar)
    return [
        day
        for day in open_days(month, calendar)
        if day not in closed or day in calendar.extra_open_dates
    ]


def public_holidays(year: int, calendar: CompletenessSpec) -> holidays.HolidayBase:
    """The public holidays of the calendar's country (and subdivision) in `year`."""
    return holidays.country_holidays(calendar.country, subdiv=calendar.subdiv, years=year)


def days_with_rows(month: MonthUnderCheck) -> dict[dt.date, int]:
    """Rows per day of the month's candidate, counted in the warehouse (once for both checks)."""

    def count() -> dict[dt.date, int]:
        day = month.column(month.spec.date_column)
        rows = month.query(
            f"select {day} as day, count(*) as row_count from {month.rows} group by {day}"
        )
        return {row["day"]: row["row_count"] for row in rows}

    return month.once("days_with_rows", count)


def check_completeness(spec: DatasetSpec, month: str, observed: dict[dt.date, int]) -> CheckOutcome:
    """Missing open days, listed by date and weekday."""
    calendar = spec.checks.completeness
    expected = open_days(month, calendar)
    missing = [day for day in expected if day not in observed]
    return CheckOutcome(
        passed=not missing,
        severity=calendar.severity,
        summary=(
            f"all {len(expected)} expected days ({calendar.calendar}) have rows"
            if not missing
            else f"{len(missing)} of {len(expected)} expected days ({calendar.calendar}) "
            f"have no rows: {_listed(missing)}"
        ),
        observed=len(missing),
        threshold=0,
        facts={"expected_days": len(expected), "missing_days": len(missing)}
        | _fiscal_periods(spec, missing),
        samples={"missing": [_missing_row(spec, day) for day in missing]},
    )


def _listed(days: list[dt.date], shown: int = 10) -> str:
    """The first `shown` days by date and weekday, and how many more there are: a summary is one
    line; the check's metadata lists them all."""
    more = f" and {len(days) - shown} more" if len(days) > shown else ""
    return ", ".join(label(day) for day in days[:shown]) + more


def _missing_row(spec: DatasetSpec, day: dt.date) -> dict[str, str]:
    """A missing day by date and weekday, and its fiscal period if the spec has a calendar."""
    row = {"date": str(day), "weekday": WEEKDAYS[day.weekday()]}
    if spec.fiscal is not None:
        row["fiscal_period"] = fiscal_day(day, spec.fiscal).period_label
    return row


def _fiscal_periods(spec: DatasetSpec, missing: list[dt.date]) -> dict[str, str]:
    """The fiscal periods the missing days fall in, so completeness reads per fiscal period."""
    if spec.fiscal is None:
        return {}
    periods = {fiscal_day(day, spec.fiscal).period_label: None for day in missing}
    return {"fiscal_periods_with_missing_days": ", ".join(periods) or "none"}


def check_closed_days(spec: DatasetSpec, month: str, observed: dict[dt.date, int]) -> CheckOutcome:
    """Rows on days the calendar says are closed (weekends, holidays): a WARN finding."""
    calendar = spec.checks.completeness
    expected = set(open_days(month, calendar))
    extra = sorted(day for day in observed if day not in expected)
    return CheckOutcome(
        passed=not extra,
        severity="WARN",
        summary=(
            "no rows on closed days"
            if not extra
            else f"{sum(observed[d] for d in extra)} rows on {len(extra)} closed day(s): "
            f"{_listed(extra)}"
        ),
        observed=len(extra),
        threshold=0,
        facts={"closed_days_with_rows": len(extra)},
        samples={
            "closed_days": [
                {"date": str(day), "weekday": WEEKDAYS[day.weekday()], "rows": observed[day]}
                for day in extra
            ]
        },
    )


def label(day: dt.date) -> str:
    """`2024-11-05 (Tue)`: how a day is named in summaries."""
    return f"{day} ({WEEKDAYS[day.weekday()]})"
