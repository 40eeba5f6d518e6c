"""Volume anomalies on months loaded into each warehouse: quiet weekends and holidays are normal,
a spike, a drop or a month far off its expected total is flagged, a short history is said so."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.checks.outcome import CheckOutcome
from pipeline.checks.scope import MonthUnderCheck
from pipeline.checks.volume import (
    MAD_TO_SIGMA,
    Baseline,
    check_volume,
    month_and_history_counts,
)
from pipeline.sample_data import month_frame
from pipeline.settings import Settings
from pipeline.specs import CompletenessSpec, DatasetSpec
from pipeline.warehouse.base import Warehouse
from pipeline_tests.support import candidate_month, load_month

ROWS_PER_DAY = 20  # Saturdays 14, holidays 8, the last two days of a month 26 (sample_data)
QUIET_SUNDAY = 4  # a fifth of a weekday: an anomaly against any baseline but Sundays'


def steady_month(month: str, seed: int, rows_per_day: int = ROWS_PER_DAY) -> pl.DataFrame:
    """A month of sample rows whose Sundays are very quiet."""
    frame = month_frame(month, rows_per_day, seed)
    sunday = pl.col("flight_date").str.to_date().dt.weekday() == 7
    return frame.filter(~sunday | (pl.int_range(pl.len()).over("flight_date") < QUIET_SUNDAY))


def volume(month: MonthUnderCheck) -> CheckOutcome:
    """The check as the load runs it, on the month's candidate."""
    spec = month.spec
    assert spec.checks.volume is not None
    return check_volume(
        spec,
        spec.checks.volume,
        month.month,
        *month_and_history_counts(month, spec.checks.volume.lookback_months),
    )


@pytest.fixture
def history(settings: Settings, warehouse: Warehouse, flights: DatasetSpec) -> DatasetSpec:
    """January to March 2024 loaded: steady weekdays, quiet Sundays, three US holidays."""
    for seed, month in enumerate(["2024-01", "2024-02", "2024-03"]):
        load_month(settings, warehouse, flights, month, steady_month(month, seed))
    return flights


def test_too_little_history_passes_and_says_so(
    settings: Settings, warehouse: Warehouse, flights: DatasetSpec
) -> None:
    load_month(settings, warehouse, flights, "2024-01", month_frame("2024-01", ROWS_PER_DAY, 1))
    frame = month_frame("2024-02", ROWS_PER_DAY * 5, 2)  # five times the volume: still no verdict
    outcome = volume(candidate_month(settings, warehouse, flights, "2024-02", frame))

    assert outcome.passed and outcome.severity == "INFO"
    assert outcome.summary == (
        "not enough history to judge volume: 1 earlier month(s) loaded in the 6 before "
        "2024-02; at least 2 needed"
    )


def test_sunday_dips_and_a_holiday_are_not_anomalies(
    settings: Settings, warehouse: Warehouse, history: DatasetSpec
) -> None:
    # May 2024: four quiet Sundays, Memorial Day at 40%, a busier month end.
    outcome = volume(
        candidate_month(settings, warehouse, history, "2024-05", steady_month("2024-05", 5))
    )

    assert outcome.passed, outcome.summary
    assert outcome.facts["history_months"] == "2024-01, 2024-02, 2024-03"
    assert outcome.facts["days_judged"] == 30  # every day but Memorial Day
    sundays = [row for row in outcome.samples["weekday_baselines"] if row["weekday"] == "Sun"]
    assert sundays[0]["median"] == QUIET_SUNDAY
    # One type in the column the UI shows: it mixed 600 and 600.5.
    assert {type(row["median"]) for row in outcome.samples["weekday_baselines"]} == {float}


def test_a_spike_and_a_drop_are_flagged_with_their_expected_range(
    settings: Settings, warehouse: Warehouse, history: DatasetSpec
) -> None:
    frame = steady_month("2024-05", 5)
    spike = frame.filter(pl.col("flight_date") == "2024-05-15")
    dropped = frame.filter(pl.col("flight_date") == "2024-05-22").tail(17)
    frame = pl.concat([frame, spike, spike]).join(dropped, on=frame.columns, how="anti")
    outcome = volume(candidate_month(settings, warehouse, history, "2024-05", frame))

    assert not outcome.passed and outcome.severity == "WARN"
    assert outcome.samples["flagged_days"] == [
        {
            "date": "2024-05-15",
            "weekday": "Wed",
            "observed": 60,
            "expected_range": "10–30",
            "median": 20,
            "robust_z": 13.5,
        },
        {
            "date": "2024-05-22",
            "weekday": "Wed",
            "observed": 3,
            "expected_range": "10–30",
            "median": 20,
            "robust_z": -5.7,
        },
    ]
    assert outcome.summary.startswith(
        "2 day(s) outside their weekday's range: 2024-05-15 (Wed) 60 rows, expected 10–30; "
    )


def test_a_month_far_off_its_expected_total_is_flagged(
    settings: Settings, warehouse: Warehouse, history: DatasetSpec
) -> None:
    # Every day 30% busier: each within its weekday's range, the month as a whole is not.
    # (The busier last two days are left out: missing days are completeness's finding.)
    frame = steady_month("2024-05", 5, rows_per_day=26).filter(pl.col("flight_date") < "2024-05-30")
    outcome = volume(candidate_month(settings, warehouse, history, "2024-05", frame))

    assert not outcome.passed
    assert outcome.facts["days_flagged"] == 0
    assert outcome.summary == (
        "all 28 regular days within their weekday's range; "
        "the total of the 28 regular days judged, 608, is +28.8% from the 472 their weekdays "
        "predict (allowed ±25%)"
    )


def test_a_month_without_rows_is_a_volume_finding(
    settings: Settings, warehouse: Warehouse, history: DatasetSpec
) -> None:
    # A header-only file passed as "not enough history ... no weekday has 4 regular days".
    empty = steady_month("2024-05", 5).head(0)
    outcome = volume(candidate_month(settings, warehouse, history, "2024-05", empty))

    assert not outcome.passed and outcome.severity == "WARN"
    assert outcome.summary.startswith("no rows on any of the month's 30 regular days; its ")
    assert outcome.facts["total_rows"] == 0 and outcome.facts["expected_total_rows"] > 500


def test_a_business_day_calendar_compares_open_days_only(
    settings: Settings, warehouse: Warehouse, history: DatasetSpec
) -> None:
    spec = history.model_copy(
        update={
            "checks": history.checks.model_copy(
                update={"completeness": CompletenessSpec(calendar="business_days", country="US")}
            )
        }
    )
    # A weekend three times busier than usual is the closed_days check's business, not volume's.
    frame = steady_month("2024-05", 5)
    weekend = frame.filter(pl.col("flight_date").is_in(["2024-05-04", "2024-05-05"]))
    outcome = volume(
        candidate_month(settings, warehouse, spec, "2024-05", pl.concat([frame, weekend, weekend]))
    )

    assert outcome.passed, outcome.summary
    assert outcome.facts["days_judged"] == 22  # 23 business days minus Memorial Day
    assert {row["weekday"] for row in outcome.samples["weekday_baselines"]} == {
        "Mon",
        "Tue",
        "Wed",
        "Thu",
        "Fri",
    }


def test_the_range_a_finding_shows_holds_exactly_the_counts_that_pass() -> None:
    # Bounds 1.44 and 2.56: rounded to the nearest they showed `1–3`, and a day of 1 row was
    # flagged as outside `1–3`.
    baseline = Baseline(median=2.0, mad=MAD_TO_SIGMA * 0.56 / 3.5, days=6)
    low, high = baseline.expected_range(3.5)
    assert (low, high) == (2, 2)
    assert all(abs(baseline.z(count)) <= 3.5 for count in range(low, high + 1))
    assert abs(baseline.z(low - 1)) > 3.5 and abs(baseline.z(high + 1)) > 3.5
