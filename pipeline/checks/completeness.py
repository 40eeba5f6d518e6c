"""Date completeness: every expected day of the month has rows, on the dataset's calendar."""

from __future__ import annotations

import datetime as dt

import holidays

from pipeline.checks.outcome import CheckOutcome
from pipeline.partitions import month_bounds
from pipeline.specs import CompletenessSpec, DatasetSpec
from pipeline.warehouse.base import RAW_SCHEMA, Warehouse

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def open_days(month: str, calendar: CompletenessSpec) -> list[dt.date]:
    """The days of `month` that should have data."""
    first, last = month_bounds(month)
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    if calendar.calendar == "every_day":
        expected = set(days)
    elif calendar.calendar == "weekdays":
        expected = {day for day in days if day.weekday() in calendar.weekdays}
    else:
        closed = holidays.country_holidays(
            calendar.country, subdiv=calendar.subdiv, years=first.year
        )
        expected = {day for day in days if day.weekday() < 5 and day not in closed}
    expected |= {day for day in calendar.extra_open_dates if first <= day <= last}
    expected -= set(calendar.extra_closed_dates)
    return sorted(expected)


def days_with_rows(warehouse: Warehouse, spec: DatasetSpec, month: str) -> dict[dt.date, int]:
    """Rows per day of the loaded month, counted in the warehouse."""
    column = spec.date_column
    rows = warehouse.query(
        f"select {column} as day, count(*) as row_count from {RAW_SCHEMA}.{spec.name} "
        f"where _month = ? group by {column}",
        [month],
    )
    return {row["day"]: row["row_count"] for row in rows}


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
            f"have no rows: {', '.join(_label(day) for day in missing[:10])}"
        ),
        observed=len(missing),
        threshold=0,
        facts={"expected_days": len(expected), "missing_days": len(missing)},
        samples={
            "missing": [{"date": str(day), "weekday": WEEKDAYS[day.weekday()]} for day in missing]
        },
    )


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
            f"{', '.join(_label(day) for day in extra[:10])}"
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


def _label(day: dt.date) -> str:
    return f"{day} ({WEEKDAYS[day.weekday()]})"
