"""Fiscal calendars on known dates: month-based years and 52/53-week 4-4-5 style years."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.fiscal import FiscalDay, fiscal_day, year_start
from pipeline.specs import FiscalSpec

JULY = FiscalSpec(year_start_month=7)
# Years start on the Monday nearest 1 January: 2024 on 1 Jan 2024, 2026 on 29 Dec 2025.
MONDAY_445 = FiscalSpec(week_pattern="4-4-5", year_start_month=1, week_start=0)
# The US retail (NRF) 4-5-4 calendar: years start on the Sunday nearest 1 February.
RETAIL_454 = FiscalSpec(week_pattern="4-5-4", year_start_month=2, week_start=6)


@pytest.mark.parametrize(
    ("fiscal", "day", "expected"),
    [
        (FiscalSpec(), dt.date(2024, 5, 17), FiscalDay(2024, 2, 5)),
        # A July year is named for the year it ends in.
        (JULY, dt.date(2024, 6, 30), FiscalDay(2024, 4, 12)),
        (JULY, dt.date(2024, 7, 1), FiscalDay(2025, 1, 1)),
        (JULY, dt.date(2025, 1, 15), FiscalDay(2025, 3, 7)),
        (MONDAY_445, dt.date(2024, 1, 28), FiscalDay(2024, 1, 1, week=4)),
        (MONDAY_445, dt.date(2024, 1, 29), FiscalDay(2024, 1, 2, week=5)),
        (MONDAY_445, dt.date(2024, 3, 31), FiscalDay(2024, 1, 3, week=13)),  # the 5-week period
        (MONDAY_445, dt.date(2024, 4, 1), FiscalDay(2024, 2, 4, week=14)),
        (MONDAY_445, dt.date(2024, 12, 29), FiscalDay(2024, 4, 12, week=52)),
        (MONDAY_445, dt.date(2024, 12, 30), FiscalDay(2025, 1, 1, week=1)),
        # 2026 has 53 weeks (29 Dec 2025 to 3 Jan 2027): the 53rd joins period 12.
        (MONDAY_445, dt.date(2027, 1, 2), FiscalDay(2026, 4, 12, week=53)),
        (MONDAY_445, dt.date(2027, 1, 4), FiscalDay(2027, 1, 1, week=1)),
        # Retail 2023 (our FY2024) had 53 weeks, as the NRF calendar says.
        (RETAIL_454, dt.date(2024, 2, 3), FiscalDay(2024, 4, 12, week=53)),
        (RETAIL_454, dt.date(2024, 2, 4), FiscalDay(2025, 1, 1, week=1)),
        (RETAIL_454, dt.date(2024, 3, 3), FiscalDay(2025, 1, 2, week=5)),  # March: 5 weeks
        (RETAIL_454, dt.date(2024, 4, 7), FiscalDay(2025, 1, 3, week=10)),
    ],
)
def test_known_dates(fiscal: FiscalSpec, day: dt.date, expected: FiscalDay) -> None:
    assert fiscal_day(day, fiscal) == expected


def test_week_years_start_on_the_weekday_nearest_the_month() -> None:
    assert year_start(2024, MONDAY_445) == dt.date(2024, 1, 1)
    assert year_start(2025, MONDAY_445) == dt.date(2024, 12, 30)
    assert year_start(2026, MONDAY_445) == dt.date(2025, 12, 29)
    assert year_start(2027, MONDAY_445) == dt.date(2027, 1, 4)
    assert year_start(2023, RETAIL_454) == dt.date(2023, 1, 29)


def test_every_day_of_a_week_year_has_one_period_and_periods_follow_the_pattern() -> None:
    first, last = year_start(2024, MONDAY_445), year_start(2025, MONDAY_445)
    days = [first + dt.timedelta(days=n) for n in range((last - first).days)]
    weeks_per_period = [
        sum(1 for day in days if fiscal_day(day, MONDAY_445).period == period) // 7
        for period in range(1, 13)
    ]
    assert weeks_per_period == [4, 4, 5] * 4
    assert fiscal_day(dt.date(2024, 5, 1), MONDAY_445).period_label == "FY2024 P05"
