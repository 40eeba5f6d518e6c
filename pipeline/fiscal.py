"""Fiscal calendars: which fiscal year, quarter and period a day belongs to.

One pure-Python definition serves the checks (completeness names the fiscal periods of missing
days) and the reports (dbt gets each month's days with their fiscal columns as a var), so the two
can never disagree, and no SQL dialect has to express a 4-4-5 calendar.

Conventions, also in the README:
- A fiscal year is named for the calendar year it ends in: with `year_start_month: 7`, July 2024
  to June 2025 is FY2025. With `year_start_month: 1` (the default) it is the calendar year.
- Week patterns (`4-4-5`, `4-5-4`, `5-4-4`) are 52/53-week years: a year starts on the
  `week_start` weekday nearest the 1st of `year_start_month`, and runs to the day before the next
  one. The quarters repeat the pattern's three periods; a 53rd week joins period 12.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

from pipeline.specs import FiscalSpec

WEEKS_PER_YEAR = 52


@dataclass(frozen=True)
class FiscalDay:
    """A day's place in the fiscal calendar; `week` only in week-pattern calendars."""

    year: int
    quarter: int
    period: int
    week: int | None = None

    @property
    def period_label(self) -> str:
        """`FY2025 P03`: how the period is named in check results."""
        return f"FY{self.year} P{self.period:02d}"


def fiscal_day(day: dt.date, fiscal: FiscalSpec) -> FiscalDay:
    """The fiscal year, quarter and period of `day`."""
    if fiscal.week_pattern is None:
        period = (day.month - fiscal.year_start_month) % 12 + 1
        return FiscalDay(
            year=_year_name(day.year, day.month, fiscal),
            quarter=(period - 1) // 3 + 1,
            period=period,
        )
    anchor_year = max(
        year for year in (day.year - 1, day.year, day.year + 1) if year_start(year, fiscal) <= day
    )
    week = (day - year_start(anchor_year, fiscal)).days // 7
    period = _period_of_week(min(week, WEEKS_PER_YEAR - 1), fiscal.week_pattern)
    return FiscalDay(
        year=_year_name(anchor_year, fiscal.year_start_month, fiscal),
        quarter=(period - 1) // 3 + 1,
        period=period,
        week=week + 1,
    )


def year_start(year: int, fiscal: FiscalSpec) -> dt.date:
    """First day of the week-pattern fiscal year that starts near the 1st of `year_start_month`
    of calendar year `year`: the `week_start` weekday nearest it (never more than 3 days away)."""
    target = dt.date(year, fiscal.year_start_month, 1)
    ahead = (fiscal.week_start - target.weekday()) % 7
    return target + dt.timedelta(days=ahead if ahead <= 3 else ahead - 7)


def _year_name(year: int, month: int, fiscal: FiscalSpec) -> int:
    """The fiscal year a calendar (or nominal) month belongs to, named for the year it ends in."""
    return year + 1 if fiscal.year_start_month > 1 and month >= fiscal.year_start_month else year


def _period_of_week(week: int, pattern: str) -> int:
    """Period 1–12 of a 0-based week within weeks 0–51 of a `4-4-5`-style year."""
    period_ends = list(accumulate(int(weeks) for weeks in pattern.split("-") * 4))
    return bisect_right(period_ends, week) + 1
