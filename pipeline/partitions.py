"""Monthly partitions, keyed `YYYY-MM` so a partition key reads like the month in a file name."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from pipeline.specs import DatasetSpec, FreshnessSpec

MONTH_FORMAT = "%Y-%m"


def monthly_partitions(start_month: str) -> dg.MonthlyPartitionsDefinition:
    """Months from `start_month` up to the last complete month."""
    return dg.MonthlyPartitionsDefinition(start_date=start_month, fmt=MONTH_FORMAT)


def dataset_partitions(spec: DatasetSpec) -> dg.MonthlyPartitionsDefinition:
    """The partitions of one dataset's monthly files."""
    return monthly_partitions(spec.start_month)


def parse_month(text: str) -> str:
    """`text` as a `YYYY-MM` month, zero-padded (`2024-8` is `2024-08`); ValueError naming the
    value if it is not a month.

    Months are compared and stored as text: an unpadded `2024-8` sorts after `2024-12`, so the
    CLI's `--from 2024-8` ran to the latest month there was and `purge --month 2024-4` found
    nothing to purge.
    """
    year, _, number = text.strip().partition("-")
    if len(year) == 4 and year.isdigit() and number.isdigit() and 1 <= int(number) <= 12:
        return f"{year}-{int(number):02d}"
    raise ValueError(f"{text!r} is not a month: use YYYY-MM, e.g. 2024-03")


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """First and last day of a `YYYY-MM` month; ValueError naming the value if it is not one."""
    try:
        first = dt.datetime.strptime(month, MONTH_FORMAT).date()
    except ValueError:
        raise ValueError(f"{month!r} is not a month: use YYYY-MM, e.g. 2024-03") from None
    next_first = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return first, next_first - dt.timedelta(days=1)


def freshness_deadline(month: str, freshness: FreshnessSpec) -> dt.datetime:
    """When `month` is due: 00:00 UTC on day `days_after_month_end` + 1 of the next month, the
    instant the freshness check's cron (`assets.freshness.deadline_cron`) starts to expect it."""
    _, last_day = month_bounds(month)
    due = last_day + dt.timedelta(days=freshness.days_after_month_end + 1)
    return dt.datetime.combine(due, dt.time(), tzinfo=dt.UTC)


def month_days(month: str) -> list[dt.date]:
    """Every day of a `YYYY-MM` month, in order."""
    first, last = month_bounds(month)
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def month_range(first: str, last: str) -> list[str]:
    """The months from `first` to `last` inclusive; raises ValueError if they are out of order."""
    start, _ = month_bounds(first)
    end, _ = month_bounds(last)
    if end < start:
        raise ValueError(f"--to {last} is before --from {first}")
    months = []
    current = start
    while current <= end:
        months.append(current.strftime(MONTH_FORMAT))
        current = (current.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return months


def months_before(month: str, count: int) -> list[str]:
    """The `count` months before `month` (`YYYY-MM`), oldest first."""
    year, number = (int(part) for part in month.split("-"))
    index = year * 12 + number - 1
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - count, index)]
