"""Volume anomalies: each day's row count against the same weekday in the trailing months.

Counting happens in the warehouse (one GROUP BY over the month's candidate and the published
history); only the per-day counts, a few hundred numbers, come into Python for the statistics.

Which days are compared: the calendar's regular days (`regular_days`): open days that are not
public holidays. A business-day dataset's weekends and holidays are closed, so they are neither
judged nor part of the baseline (rows on them are the `closed_days` check's finding); on any
calendar a holiday's dip is not its weekday's, so holidays are left out on both sides. Days without
rows are the completeness check's finding and are not judged here either.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass

from pipeline.checks.completeness import WEEKDAYS, days_with_rows, label, regular_days
from pipeline.checks.outcome import CheckOutcome
from pipeline.checks.scope import MonthUnderCheck
from pipeline.partitions import months_before
from pipeline.specs import DatasetSpec, VolumeSpec

# Scales the MAD to a standard deviation for normal data: the usual robust z-score.
MAD_TO_SIGMA = 0.6745
# A bound a float error away from a whole number is that number.
ROUNDING = 1e-9
SHOWN_DAYS = 5

DayCounts = dict[dt.date, int]


@dataclass(frozen=True)
class Baseline:
    """One weekday's history: the median count and its MAD (floored, never zero)."""

    median: float
    mad: float
    days: int

    def z(self, count: int) -> float:
        """The robust z-score of a day's count."""
        return MAD_TO_SIGMA * (count - self.median) / self.mad

    def expected_range(self, max_z: float) -> tuple[int, int]:
        """The lowest and highest count whose z-score is within ±max_z: the bounds rounded
        inwards, so a count shown inside the range always passes (rounded to the nearest, 1.44
        showed as 1, and a day of 1 row was flagged as outside `1–3`)."""
        spread = max_z * self.mad / MAD_TO_SIGMA
        low, high = self.median - spread, self.median + spread
        return max(0, math.ceil(low - ROUNDING)), math.floor(high + ROUNDING)


def month_and_history_counts(
    month: MonthUnderCheck, lookback_months: int
) -> tuple[DayCounts, dict[str, DayCounts]]:
    """Rows per day of the month's candidate (counted once for every check that needs them),
    and of every month published in the `lookback_months` before it."""
    earlier = months_before(month.month, lookback_months)
    day = month.column(month.spec.date_column)
    rows = month.query(
        f"select _month as month, {day} as day, count(*) as row_count from {month.published} "
        f"where _month >= ? and _month < ? group by _month, {day}",
        [earlier[0], month.month],
    )
    history: dict[str, DayCounts] = defaultdict(dict)
    for row in rows:
        history[row["month"]][row["day"]] = row["row_count"]
    return days_with_rows(month), dict(history)


def weekday_baselines(
    spec: DatasetSpec, volume: VolumeSpec, history: dict[str, DayCounts]
) -> dict[int, Baseline]:
    """Median and MAD of each weekday's regular days with rows, for weekdays with enough days."""
    counts: dict[int, list[int]] = defaultdict(list)
    for month, days in history.items():
        for day in regular_days(month, spec.checks.completeness):
            if day in days:
                counts[day.weekday()].append(days[day])
    baselines = {}
    for weekday, values in counts.items():
        if len(values) >= volume.min_days_per_weekday:
            median = statistics.median(values)
            mad = statistics.median(abs(value - median) for value in values)
            baselines[weekday] = Baseline(
                median=median, mad=max(mad, volume.min_mad_ratio * median), days=len(values)
            )
    return baselines


def check_volume(
    spec: DatasetSpec,
    volume: VolumeSpec,
    month: str,
    observed: DayCounts,
    history: dict[str, DayCounts],
) -> CheckOutcome:
    """Flag days beyond `max_z` and a month total beyond `max_total_change` of the expected one.

    `observed` are the month's rows per day, `history` those of the earlier months loaded. With
    too little history the check passes and says so (INFO) instead of guessing.
    """
    if len(history) < volume.min_history_months:
        return _not_enough(
            f"{len(history)} earlier month(s) loaded in the {volume.lookback_months} before "
            f"{month}; at least {volume.min_history_months} needed",
        )
    baselines = weekday_baselines(spec, volume, history)
    regular = regular_days(month, spec.checks.completeness)
    days = [day for day in regular if day in observed]
    judged = [day for day in days if day.weekday() in baselines]
    if not days and baselines:
        return _empty(volume, regular, baselines)
    if not judged:
        return _not_enough(
            f"no weekday has {volume.min_days_per_weekday} regular days of history in "
            f"{', '.join(sorted(history))}",
        )
    flagged = [
        day for day in judged if abs(baselines[day.weekday()].z(observed[day])) > volume.max_z
    ]
    total = sum(observed[day] for day in judged)
    expected = sum(baselines[day.weekday()].median for day in judged)
    change = total / expected - 1
    total_off = abs(change) > volume.max_total_change
    findings = [
        f"{label(day)} {observed[day]:,} rows, expected "
        + "–".join(f"{n:,}" for n in baselines[day.weekday()].expected_range(volume.max_z))
        for day in flagged[:SHOWN_DAYS]
    ]
    more = f" and {len(flagged) - SHOWN_DAYS} more" if len(flagged) > SHOWN_DAYS else ""
    total_text = (
        f"the total of the {len(judged)} regular days judged, {total:,}, is {change:+.1%} from "
        f"the {expected:,.0f} their weekdays predict "
        f"(allowed ±{volume.max_total_change:.0%})"
    )
    days_text = (
        f"{len(flagged)} day(s) outside their weekday's range: {'; '.join(findings)}{more}"
        if flagged
        else f"all {len(judged)} regular days within their weekday's range"
    )
    summary = days_text if flagged and not total_off else f"{days_text}; {total_text}"
    return CheckOutcome(
        passed=not flagged and not total_off,
        severity=volume.severity,
        summary=summary,
        observed=len(flagged) + total_off,
        threshold=0,
        facts={
            "history_months": ", ".join(sorted(history)),
            "days_judged": len(judged),
            "days_without_baseline": len(days) - len(judged),
            "days_flagged": len(flagged),
            "max_z": volume.max_z,
            "total_rows": total,
            "expected_total_rows": round(expected),
            "total_change": round(change, 4),
        },
        samples={
            "flagged_days": [
                _flagged_row(day, observed[day], baselines[day.weekday()], volume.max_z)
                for day in flagged
            ],
            "weekday_baselines": [
                {
                    "weekday": WEEKDAYS[weekday],
                    "median": float(round(baseline.median, 1)),  # not 600 beside 600.5
                    "mad": round(baseline.mad, 1),
                    "days": baseline.days,
                }
                for weekday, baseline in sorted(baselines.items())
            ],
        },
    )


def _flagged_row(day: dt.date, count: int, baseline: Baseline, max_z: float) -> dict[str, object]:
    """A flagged day as the metadata table shows it."""
    low, high = baseline.expected_range(max_z)
    return {
        "date": str(day),
        "weekday": WEEKDAYS[day.weekday()],
        "observed": count,
        "expected_range": f"{low:,}–{high:,}",
        "median": baseline.median,
        "robust_z": round(baseline.z(count), 1),
    }


def _empty(
    volume: VolumeSpec, regular: list[dt.date], baselines: dict[int, Baseline]
) -> CheckOutcome:
    """No rows on any regular day: the month's total is nothing, whatever the days' verdicts
    (missing days themselves are the completeness check's finding)."""
    expected = sum(baselines[day.weekday()].median for day in regular if day.weekday() in baselines)
    return CheckOutcome(
        passed=False,
        severity=volume.severity,
        summary=(
            f"no rows on any of the month's {len(regular)} regular days; its weekdays predict "
            f"{expected:,.0f}"
        ),
        observed=1,
        threshold=0,
        facts={"total_rows": 0, "expected_total_rows": round(expected), "total_change": -1.0},
    )


def _not_enough(why: str) -> CheckOutcome:
    """A passing verdict that says the history is too short to judge (INFO)."""
    return CheckOutcome(
        passed=True,
        severity="INFO",
        summary=f"not enough history to judge volume: {why}",
        facts={"enough_history": False},
    )
