"""Data-quality checks on data built to trigger them and data built not to, on both warehouses."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import polars as pl
import pytest

from pipeline.checks.completeness import (
    check_closed_days,
    check_completeness,
    days_with_rows,
    open_days,
)
from pipeline.checks.drift import check_schema_drift
from pipeline.checks.keys import check_unique
from pipeline.checks.rejects import check_rejects, share
from pipeline.checks.rules import check_rule
from pipeline.checks.scope import MonthUnderCheck
from pipeline.sample_data import month_frame
from pipeline.settings import Settings
from pipeline.specs import CompletenessSpec, DatasetSpec, FiscalSpec, RuleSpec, UniqueSpec
from pipeline.warehouse.base import Warehouse
from pipeline_tests.support import candidate_month, load_month

BUSINESS = CompletenessSpec(calendar="business_days", country="US")


def load(
    settings: Settings, warehouse: Warehouse, spec: DatasetSpec, frame: pl.DataFrame
) -> MonthUnderCheck:
    """January as the checks see it: a candidate, not yet published."""
    return candidate_month(settings, warehouse, spec, "2024-01", frame)


def with_calendar(spec: DatasetSpec, calendar: CompletenessSpec) -> DatasetSpec:
    return spec.model_copy(
        update={"checks": spec.checks.model_copy(update={"completeness": calendar})}
    )


def test_business_days_skip_weekends_and_us_holidays() -> None:
    days = open_days("2024-01", BUSINESS)
    assert dt.date(2024, 1, 1) not in days  # New Year's Day
    assert dt.date(2024, 1, 15) not in days  # Martin Luther King Jr. Day
    assert dt.date(2024, 1, 6) not in days  # a Saturday
    assert len(days) == 21
    adjusted = BUSINESS.model_copy(
        update={
            "extra_closed_dates": [dt.date(2024, 1, 2)],
            "extra_open_dates": [dt.date(2024, 1, 6)],
        }
    )
    assert dt.date(2024, 1, 2) not in open_days("2024-01", adjusted)
    assert dt.date(2024, 1, 6) in open_days("2024-01", adjusted)
    weekdays = CompletenessSpec(calendar="weekdays", weekdays=[0])
    assert [d.day for d in open_days("2024-01", weekdays)] == [1, 8, 15, 22, 29]


def test_business_days_open_the_spec_s_weekdays_minus_holidays() -> None:
    # A shop open Monday to Saturday: `weekdays` was ignored on business_days (Saturdays closed,
    # silently), and the weekdays calendar has no holidays.
    bavaria = CompletenessSpec(
        calendar="business_days", country="DE", subdiv="BY", weekdays=[0, 1, 2, 3, 4, 5]
    )
    days = open_days("2024-05", bavaria)
    assert dt.date(2024, 5, 4) in days  # a Saturday
    assert dt.date(2024, 5, 5) not in days  # a Sunday
    holidays = {dt.date(2024, 5, day) for day in (1, 9, 20, 30)}  # with Corpus Christi (BY)
    assert not holidays & set(days)
    assert len(days) == 27 - 4


def test_holidays_are_not_missing_business_days(
    settings: Settings, warehouse: Warehouse, flights: DatasetSpec
) -> None:
    spec = with_calendar(flights, BUSINESS)
    business = {str(day) for day in open_days("2024-01", BUSINESS)}
    month = load(
        settings,
        warehouse,
        spec,
        month_frame("2024-01", 5, seed=1).filter(pl.col("flight_date").is_in(business)),
    )

    observed = days_with_rows(month)
    assert check_completeness(spec, "2024-01", observed).passed
    assert check_closed_days(spec, "2024-01", observed).passed


def test_a_missing_day_fails_and_weekend_rows_warn(
    settings: Settings, warehouse: Warehouse, flights: DatasetSpec
) -> None:
    spec = with_calendar(flights, BUSINESS)
    frame = month_frame("2024-01", 5, seed=1).filter(pl.col("flight_date") != "2024-01-17")
    observed = days_with_rows(load(settings, warehouse, spec, frame))

    missing = check_completeness(spec, "2024-01", observed)
    assert not missing.passed and missing.severity == "ERROR"
    assert missing.samples["missing"] == [
        {"date": "2024-01-17", "weekday": "Wed", "fiscal_period": "FY2024 P04"}  # October years
    ]
    closed = check_closed_days(spec, "2024-01", observed)
    assert not closed.passed and closed.severity == "WARN"
    assert {row["date"] for row in closed.samples["closed_days"]} >= {"2024-01-01", "2024-01-06"}


@pytest.mark.parametrize(
    ("rule", "passed", "severity"),
    [
        (RuleSpec(name="any delay", where="dep_delay > 0", severity="CRITICAL"), False, "ERROR"),
        (RuleSpec(name="any delay", where="dep_delay > 0", severity="INFO"), True, "WARN"),
        (RuleSpec(name="absurd", where="distance > 99999", severity="CRITICAL"), True, "ERROR"),
        (RuleSpec(name="few", where="dep_delay > 0", max_violations=10**6), True, "WARN"),
    ],
)
def test_rules_count_matches_with_line_numbers(
    settings: Settings,
    warehouse: Warehouse,
    flights: DatasetSpec,
    rule: RuleSpec,
    passed: bool,
    severity: str,
) -> None:
    frame = month_frame("2024-01", 5, seed=1)
    month = load(settings, warehouse, flights, frame)
    outcome = check_rule(month, rule)
    assert outcome.passed is passed and outcome.severity == severity
    # Counted from the file itself: line n is row n - 2 of the frame (line 1 is the header).
    column = {"any delay": "dep_delay", "absurd": "distance", "few": "dep_delay"}[rule.name]
    limit = 99999 if rule.name == "absurd" else 0
    numbers = frame.with_row_index("line", 2).filter(pl.col(column) != "NA")
    matching = numbers.filter(pl.col(column).cast(pl.Float64) > limit)["line"].to_list()
    assert outcome.observed == len(matching) and (rule.name == "absurd") == (not matching)
    lines = [row["line"] for row in outcome.samples["matching_rows"]]
    assert lines == matching[:10]


def test_a_rule_that_does_not_compile_names_the_rule_and_the_error(
    settings: Settings, warehouse: Warehouse, flights: DatasetSpec
) -> None:
    month = load(settings, warehouse, flights, month_frame("2024-01", 5, seed=1))
    rule = RuleSpec(name="typo", where="dep_dely > 0", severity="CRITICAL")
    outcome = check_rule(month, rule)
    assert not outcome.passed
    assert outcome.summary.startswith("rule 'typo' could not run:")
    assert "dep_dely" in outcome.summary.lower()  # Snowflake names it DEP_DELY


def test_repeated_keys_fail_within_and_across_months(
    settings: Settings, warehouse: Warehouse, flights: DatasetSpec
) -> None:
    frame = month_frame("2024-01", 5, seed=1).head(40)
    january = load(settings, warehouse, flights, pl.concat([frame, frame.head(3)]))
    key = UniqueSpec(columns=["flight_date", "carrier", "flight", "time_hour"])

    within = check_unique(january, key)
    assert not within.passed and within.observed == 3
    assert [row["copies"] for row in within.samples["repeated"]] == [2, 2, 2]
    # One of them named in the summary, which said only how many: the keys were in metadata.
    most = within.samples["repeated"][0]
    named = " ".join(str(most[c]) for c in ["flight_date", "carrier", "flight", "time_hour"])
    assert within.summary.endswith(f"repeat within the month (most: {named}, 2 times)")
    # Not a sensitive column's value: summaries reach dq_check_history, mails and reports.
    spec = flights.model_dump(exclude_unset=True)
    columns = spec["columns"] | {"carrier": {"type": "string", "pii": "mask"}}
    masked = DatasetSpec.model_validate(spec | {"columns": columns})
    scope = MonthUnderCheck(warehouse, replace(january.staged, spec=masked), january.candidate)
    hidden = check_unique(scope, key)
    assert hidden.summary == f"3 key(s) ({', '.join(key.columns)}) repeat within the month"

    load_month(settings, warehouse, flights, "2024-01", frame)  # published: history for February
    february = frame.head(5).with_columns(pl.lit("2024-02-01").alias("flight_date"))
    month = candidate_month(settings, warehouse, flights, "2024-02", february)
    feb_key = UniqueSpec(columns=["carrier", "flight", "dest"], across_months=True)
    across = check_unique(month, feb_key)
    assert across.facts == {"repeated_keys": 0, "keys_in_other_months": 5}
    assert not across.passed
    # Named, with their month: only their number was said.
    others = across.samples["in_other_months"]
    assert len(others) == 5 and {row["other_month"] for row in others} == {"2024-01"}
    first = others[0]
    assert across.summary.endswith(
        f"5 also appear in another month (first: {first['carrier']} {first['flight']} "
        f"{first['dest']} in 2024-01)"
    )
    assert check_unique(month, UniqueSpec(columns=["carrier", "flight", "dest"])).passed


def test_an_extra_column_is_a_schema_drift_warning_and_the_month_still_loads(
    settings: Settings, warehouse: Warehouse, flights: DatasetSpec
) -> None:
    frame = month_frame("2024-01", 5, seed=1)
    drift = flights.checks.schema_drift
    assert check_schema_drift(load(settings, warehouse, flights, frame), drift).passed

    month = load(settings, warehouse, flights, frame.with_columns(pl.lit("B12").alias("gate")))
    (settings.landing_dir / "flights_2024-01.tsv").unlink()  # archived after staging

    outcome = check_schema_drift(month, drift)
    assert not outcome.passed and outcome.severity == "WARN"
    assert outcome.summary == ("1 column(s) not in the spec, ignored: gate (flights_2024-01.tsv)")
    assert month.candidate.rows == frame.height
    # Repeated and blank extra names (a header ending in two tabs) are said once, visibly.
    header = (*month.staged.header, "gate", "")
    twice = MonthUnderCheck(warehouse, replace(month.staged, header=header), month.candidate)
    assert check_schema_drift(twice, drift).summary.startswith(
        "2 column(s) not in the spec, ignored: gate, '' ("
    )


def test_missing_days_are_named_with_their_fiscal_period(
    settings: Settings, warehouse: Warehouse, flights: DatasetSpec
) -> None:
    spec = flights.model_copy(update={"fiscal": FiscalSpec(year_start_month=7)})
    frame = month_frame("2024-01", 5, seed=1).filter(pl.col("flight_date") != "2024-01-17")
    month = load(settings, warehouse, spec, frame)

    outcome = check_completeness(spec, "2024-01", days_with_rows(month))

    assert outcome.samples["missing"] == [
        {"date": "2024-01-17", "weekday": "Wed", "fiscal_period": "FY2024 P07"}
    ]
    assert outcome.facts["fiscal_periods_with_missing_days"] == "FY2024 P07"


def test_a_summary_names_ten_missing_days_and_counts_the_rest(flights: DatasetSpec) -> None:
    observed = {dt.date(2024, 1, 1): 5}  # a test file with one day: 30 of January's are missing
    outcome = check_completeness(flights, "2024-01", observed)
    assert outcome.summary.startswith(
        "30 of 31 expected days (every_day) have no rows: 2024-01-02 (Tue), 2024-01-03 (Wed), "
    )
    assert outcome.summary.endswith(", 2024-01-11 (Thu) and 20 more")
    assert len(outcome.samples["missing"]) == 30


@pytest.mark.parametrize(
    ("ratio", "limit", "written"),
    [
        (346 / 17286, 0.001, "2.0%"),  # was 2.0016%, against the allowed 0.1000%
        (0.001003, 0.001, "0.1003%"),  # just over: as many decimals as tell it from the limit
        (0.0, 0.001, "0.0%"),
        (7 / 17052, 0.001, "0.04%"),  # not 0.0% beside 7 rejected lines
        (1 / 10**7, 0.001, "<0.0001%"),
        (0.001, 0.001, "0.1%"),  # exactly the limit: within it
        (0.001, None, "0.1%"),  # the limit itself
        (0.05, None, "5%"),
    ],
)
def test_the_reject_share_has_the_digits_that_matter(
    ratio: float, limit: float | None, written: str
) -> None:
    assert share(ratio, limit) == written


def test_a_refused_month_s_summary_names_the_rule_its_lines_break_most(
    settings: Settings, warehouse: Warehouse, flights: DatasetSpec
) -> None:
    # It said only how many lines were rejected; which rule, in the run's metadata alone.
    frame = month_frame("2024-01", 5, seed=1, defect_ratio=0.3)
    month = candidate_month(settings, warehouse, flights, "2024-01", frame)

    outcome = check_rejects(month)

    top = outcome.samples["rejects_by_rule"][0]
    broken = f"{top['column_name']}: {top['rule']}" if top["column_name"] else top["rule"]
    assert not outcome.passed
    assert outcome.summary.endswith(
        f"; most often {broken} ({top['lines']} lines, the first line {top['first_line']})"
    )
    assert all(top["lines"] >= group["lines"] for group in outcome.samples["rejects_by_rule"])
