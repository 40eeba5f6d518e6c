"""Months through Dagster end to end: load, blocking check, dbt models and tests, in a real
instance, real dbt runs, on DuckDB and on the Snowflake-protocol server."""

from __future__ import annotations

import dagster as dg

from pipeline.definitions import build_definitions
from pipeline.runner import load_months, month_statuses
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline_tests.support import scalar


def land(settings: Settings, spec: DatasetSpec, month: str, defects: float = 0.0) -> None:
    frame = month_frame(month, rows_per_day=30, seed=hash(month) % 1000, defect_ratio=defects)
    write_tsv(frame, settings.landing_dir / spec.file_name(month))


def test_a_bad_month_is_quarantined_and_kept_out_of_the_reports(
    deployment: Settings, instance: dg.DagsterInstance, flights: DatasetSpec
) -> None:
    land(deployment, flights, "2024-01")
    land(deployment, flights, "2024-02", defects=0.05)
    defs = build_definitions(deployment)

    good, bad = load_months(defs, flights, ["2024-01", "2024-02"], instance)

    assert good.success and set(good.checks.values()) == {"passed"}
    assert {"raw/flights:schema", "raw/flights:completeness"} <= set(good.checks)
    assert good.rows["rows_read"] == good.rows["rows_loaded"] > 0
    assert not bad.success
    assert bad.checks["raw/flights:schema"] == "FAILED (ERROR)"
    assert bad.checks["raw/flights:completeness"] == "passed"
    assert bad.rows["rows_read"] == bad.rows["rows_loaded"] + bad.rows["rows_rejected"]
    assert bad.errors[0].startswith("check schema: ") and "over the allowed" in bad.errors[0]
    # The blocking check does not undo the write: the rows and rejects are there to inspect...
    assert (
        scalar(deployment, "select count(*) from raw.flights_rejects where _month = '2024-02'")
        == (bad.rows["rows_rejected"])
    )
    # ...but the month never reached the reports.
    assert (
        scalar(deployment, "select min(month) || '..' || max(month) from analytics.flights_monthly")
        == "2024-01..2024-01"
    )
    assert (
        scalar(deployment, "select sum(flights) from analytics.flights_daily")
        == good.rows["rows_loaded"]
    )
    # Fiscal columns from the spec's October year, via the month's dbt vars.
    assert (
        scalar(
            deployment,
            "select fiscal_year || ' Q' || fiscal_quarter || ' P' || fiscal_period "
            "from analytics.flights_daily where flight_date = '2024-01-15'",
        )
        == "2024 Q2 P4"
    )
    assert (
        scalar(deployment, "select count(*) from analytics.flights_daily where fiscal_year is null")
        == 0
    )

    # The quality marts are current for the blocked month too.
    assert (
        scalar(
            deployment,
            "select last_status || ' ' || rows_rejected from analytics.dq_load_history "
            "where month = '2024-02'",
        )
        == f"loaded {bad.rows['rows_rejected']}"
    )
    # Every verdict is also kept in the warehouse for the quality history.
    assert (
        scalar(
            deployment,
            "select count(*) from pipeline.check_results where month = '2024-02' "
            "and check_name = 'schema' and not passed",
        )
        == 1
    )
    statuses = {
        s.month: s
        for s in month_statuses(defs, flights, instance, ["2024-01", "2024-02", "2024-03"])
    }
    assert statuses["2024-01"].status == "materialized"
    assert statuses["2024-01"].checks["schema"] == "passed"
    assert statuses["2024-02"].checks["schema"] == "FAILED (ERROR)"
    assert statuses["2024-03"].status == "missing"


def test_rerunning_a_month_gives_no_duplicates_and_dbt_tests_pass(
    deployment: Settings, instance: dg.DagsterInstance, flights: DatasetSpec
) -> None:
    land(deployment, flights, "2024-01")
    defs = build_definitions(deployment)

    first = load_months(defs, flights, ["2024-01"], instance)[0]
    land(deployment, flights, "2024-01", defects=0.0005)  # a corrected delivery, one reject
    again = load_months(defs, flights, ["2024-01"], instance)[0]

    assert first.success and again.success
    loaded = again.rows["rows_loaded"]
    assert scalar(deployment, "select count(*) from raw.flights") == loaded
    assert scalar(deployment, "select sum(flights) from analytics.flights_monthly") == loaded
    assert scalar(deployment, "select count(*) from analytics.flights_monthly") == 1
    assert scalar(deployment, "select attempts from analytics.dq_load_history") == 2
    dbt_tests = [
        record
        for record in instance.get_event_records(
            dg.EventRecordsFilter(dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        )
        if record.asset_key != dg.AssetKey(["raw", "flights"])
    ]
    assert dbt_tests, "dbt tests should report as asset checks"
    assert all(
        record.event_log_entry.dagster_event.event_specific_data.passed for record in dbt_tests
    )
