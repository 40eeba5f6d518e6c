"""Months through Dagster end to end: load, blocking check, dbt models and tests, in a real
instance, real dbt runs, on DuckDB and on the Snowflake-protocol server."""

from __future__ import annotations

import json
import os
import time

import dagster as dg
import pytest
from dagster_dbt import DbtCliResource

from pipeline.assets.loads import INTERRUPTED_REASON
from pipeline.definitions import build_definitions, open_warehouse
from pipeline.project import DBT_EXECUTABLE, dbt_project
from pipeline.runner import latest_run_errors, load_months, month_statuses, step_errors
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline_tests.support import scalar


def land(
    settings: Settings, spec: DatasetSpec, month: str, defects: float = 0.0, rows_per_day: int = 30
) -> None:
    seed = int(month.replace("-", "")) % 1000  # the same file in every process
    frame = month_frame(month, rows_per_day, seed=seed, defect_ratio=defects)
    write_tsv(frame, settings.landing_dir / spec.file_name(month))


def test_a_bad_file_is_not_published_and_the_good_month_keeps_being_served(
    deployment: Settings, instance: dg.DagsterInstance, flights: DatasetSpec
) -> None:
    land(deployment, flights, "2024-01")
    defs = build_definitions(deployment)
    (good,) = load_months(defs, flights, ["2024-01"], instance)
    served = scalar(deployment, "select sum(flights) from analytics.flights_monthly")
    # A redelivery with half its lines bad, and a month whose only file is bad.
    land(deployment, flights, "2024-01", defects=0.5)
    land(deployment, flights, "2024-02", defects=0.5)

    bad, never = load_months(defs, flights, ["2024-01", "2024-02"], instance)

    assert good.success and set(good.checks.values()) == {"passed"}
    assert {"raw/flights:schema", "raw/flights:completeness"} <= set(good.checks)
    assert good.rows["rows_read"] == good.rows["rows_loaded"] > 0
    assert not bad.success
    assert bad.checks["raw/flights:schema"] == "FAILED (ERROR)"
    assert bad.checks["raw/flights:completeness"] == "passed"
    assert bad.rows["rows_read"] == bad.rows["rows_loaded"] + bad.rows["rows_rejected"]
    assert bad.rows["rows_rejected"] > bad.rows["rows_read"] / 3
    assert bad.errors[0].startswith("check schema: ") and "over the allowed" in bad.errors[0]
    # The good month is still what every reader gets: raw, rejects, the reports.
    assert scalar(deployment, "select count(*) from raw.flights") == good.rows["rows_loaded"]
    assert scalar(deployment, "select count(*) from raw.flights_rejects") == 0
    assert scalar(deployment, "select sum(flights) from analytics.flights_monthly") == served
    # The refused loads wait in their candidate tables, named in the ledger and the checks.
    attempt = scalar(
        deployment,
        "select candidate || ' | ' || error from pipeline.load_ledger "
        "where month = '2024-01' and status = 'failed'",
    )
    candidate, error = str(attempt).split(" | ", 1)
    assert error.startswith("refused by check schema: ")
    rows_table, rejects_table = candidate.split(", ")
    assert scalar(deployment, f"select count(*) from {rows_table}") == bad.rows["rows_loaded"]
    assert scalar(deployment, f"select count(*) from {rejects_table}") == bad.rows["rows_rejected"]
    assert f"are in {candidate}" in bad.errors[-1]
    # The quality marts are current for the refused month too.
    assert (
        scalar(
            deployment,
            "select last_status || ' ' || rows_rejected from analytics.dq_load_history "
            "where month = '2024-01'",
        )
        == f"failed {bad.rows['rows_rejected']}"
    )
    assert (
        scalar(
            deployment,
            "select count(*) from pipeline.check_results where month = '2024-01' "
            "and check_name = 'schema' and not passed",
        )
        == 1
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
    with open_warehouse(deployment) as warehouse:
        statuses = {
            s.month: s
            for s in month_statuses(
                defs, flights, instance, ["2024-01", "2024-02", "2024-03"], warehouse
            )
        }
    assert statuses["2024-01"].status == "failed"
    assert statuses["2024-01"].checks["schema"] == "FAILED (ERROR)"
    assert statuses["2024-01"].detail.startswith("not published; serving the load of ")
    served_at = statuses["2024-01"].detail.split("serving the load of ")[1].split(" UTC")[0]
    serving = f"from {flights.file_name('2024-01')}: {good.rows['rows_loaded']:,} rows, 0 rejected"
    assert serving in statuses["2024-01"].detail
    assert statuses["2024-01"].rows == bad.rows  # the line's figures are the refused load's
    # The candidate is named once: by the run's error, or by the detail when no error names it.
    assert "candidates." not in statuses["2024-01"].detail
    assert "rows and rejects are in candidates.flights__202401__" in statuses["2024-01"].errors[0]
    # The refusal says what readers still get: the good load, or nothing of the month.
    assert f"The load of {served_at} UTC is still served;" in statuses["2024-01"].errors[0]
    assert "Nothing of 2024-02 is served;" in statuses["2024-02"].errors[0]
    assert statuses["2024-02"].detail == "never published"
    assert not never.success
    assert statuses["2024-03"].status == "missing"

    # A corrected delivery (one reject, under the allowed 0.1%) publishes once, over the good
    # month: no duplicates, the refused candidates gone, the marts and dbt's tests agree.
    land(deployment, flights, "2024-01", defects=0.0008, rows_per_day=40)
    (fixed,) = load_months(defs, flights, ["2024-01"], instance)
    assert fixed.success and fixed.rows["rows_rejected"] == 1
    loaded = fixed.rows["rows_loaded"]
    assert scalar(deployment, "select count(*) from raw.flights") == loaded
    assert scalar(deployment, "select count(*) from raw.flights_rejects") == 1
    with open_warehouse(deployment) as warehouse:
        assert warehouse.drop_candidates("flights", "2024-01") == []
    assert scalar(deployment, "select sum(flights) from analytics.flights_monthly") == loaded
    assert scalar(deployment, "select count(*) from analytics.flights_monthly") == 1
    # The month's mean delay over its flights with one (the daily means weighted by all flights
    # were off by the flights without a delay).
    mean = float(scalar(deployment, "select avg(dep_delay) from raw.flights"))
    mart = float(scalar(deployment, "select avg_dep_delay_minutes from analytics.flights_monthly"))
    assert abs(mart - mean) < 1e-9, (mart, mean)
    if deployment.warehouse == "duckdb":  # the counts marts.yml documents as bigint were HUGEINT
        counted = scalar(
            deployment,
            "select string_agg(distinct data_type, ',') from information_schema.columns "
            "where table_name in ('flights_daily', 'flights_monthly', 'dq_check_history') "
            "and column_name in ('flights', 'cancelled_flights', 'failed_runs')",
        )
        assert counted == "BIGINT"
    history = "select attempts from analytics.dq_load_history where month = '2024-01'"
    assert scalar(deployment, history) == 3  # good, refused, corrected
    # (The record's own asset_key is None for a check's evaluation: the key is in its data.)
    evaluations = [
        record.event_log_entry.dagster_event.event_specific_data
        for record in instance.get_event_records(
            dg.EventRecordsFilter(dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        )
    ]
    dbt_tests = [e for e in evaluations if e.asset_key != dg.AssetKey(["raw", "flights"])]
    assert len(dbt_tests) < len(evaluations), "the raw month's own checks are left out"
    assert dbt_tests, "dbt tests should report as asset checks"
    assert [(e.asset_key, e.check_name) for e in dbt_tests if not e.passed] == []

    # A month built by hand gets no fiscal days (only Dagster passes them): its not_null tests
    # fail the build, where the fiscal columns were emptied with every test passing.
    by_hand = DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE).cli(
        ["build", "--select", "flights_daily", "--vars", '{"month": "2024-01"}'],
        raise_on_error=False,
    )
    by_hand.wait()
    failed = {
        result["unique_id"].split(".")[2]
        for result in by_hand.get_artifact("run_results.json")["results"]
        if result["status"] == "fail"
    }
    fiscal = {f"not_null_flights_daily_fiscal_{part}" for part in ("year", "quarter", "period")}
    assert failed == fiscal

    # The reconciliation test can fail: a published row lost behind the ledger's back.
    scalar(deployment, "delete from raw.flights where _line_number = 2")
    reconcile = DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE).cli(
        ["test", "--select", "assert_loads_reconcile"], raise_on_error=False
    )
    reconcile.wait()
    (result,) = reconcile.get_artifact("run_results.json")["results"]
    assert (result["status"], result["failures"]) == ("fail", 1)  # failed, not errored


@pytest.mark.alone
def test_a_months_dbt_build_reuses_the_last_parse_and_says_its_month_in_every_statement(
    settings: Settings, instance: dg.DagsterInstance, flights: DatasetSpec
) -> None:
    """The month's values reach dbt outside `--vars`, which dbt keys its saved parse on: the
    second month's build parses only what changed (nothing), and the values still reach the
    models (one month in the mart) and the comment on each statement. A build folder older than
    a week is removed meanwhile, dbt's own by hand is not."""
    target = dbt_project.project_dir / dbt_project.target_path
    week_old = time.time() - 8 * 86400
    old_build, by_hand = target / "flights_reports-0000000-0000000", target / "run"
    ours = not by_hand.exists()
    for folder in (old_build, by_hand):
        folder.mkdir(parents=True, exist_ok=True)
        os.utime(folder, (week_old, week_old))
    defs = build_definitions(settings)
    for month in ("2024-01", "2024-02"):
        land(settings, flights, month)
        (result,) = load_months(defs, flights, [month], instance)
        assert result.success, result.errors

    (run,) = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": "2024-02"}))
    (log,) = target.glob(f"flights_reports-{run.run_id[:7]}-*/dbt.log")
    assert not old_build.exists() and by_hand.exists()
    if ours:
        by_hand.rmdir()
    events = [json.loads(line) for line in log.read_text().splitlines()]
    names = {event["info"]["name"] for event in events}
    assert "StateCheckVarsHash" in names  # dbt looked at its saved parse...
    assert "UnableToPartialParse" not in names  # ...and used it
    statements = [
        event["data"]["sql"]
        for event in events
        if event["info"]["name"] == "SQLQuery" and event["data"]["sql"] not in ("BEGIN", "COMMIT")
    ]
    comment = f"/* pipeline dataset=flights month=2024-02 run_id={run.run_id} node="
    assert statements and all(sql.startswith(comment) for sql in statements)
    months = "select string_agg(month, ',' order by month) from analytics.flights_monthly"
    assert scalar(settings, months) == "2024-01,2024-02"
    unplaced = "select count(*) from analytics.flights_daily where fiscal_year is null"
    assert scalar(settings, unplaced) == 0


LOCKED = OSError('Could not set lock on file "warehouse.duckdb"')


@pytest.mark.parametrize(
    ("retries", "raised", "said"),
    [
        # Not Dagster's wrapper ("Error occurred while executing op ..."): its cause.
        (None, LOCKED, 'OSError: Could not set lock on file "warehouse.duckdb"'),
        # Not only "Exceeded max_retries of 1" (a Snowflake load failing for minutes).
        (
            dg.RetryPolicy(max_retries=1),
            LOCKED,
            "Exceeded max_retries of 1; the last attempt: OSError: Could not set lock on file "
            '"warehouse.duckdb"',
        ),
        # Ctrl-C while Dagster's code ran between two events of a step: a bare class name.
        (None, dg.DagsterExecutionInterruptedError(), INTERRUPTED_REASON),
    ],
)
def test_a_step_error_names_its_cause(
    retries: dg.RetryPolicy | None, raised: BaseException, said: str
) -> None:
    @dg.asset(retry_policy=retries)
    def reports__flights() -> None:
        raise raised

    result = dg.materialize([reports__flights], raise_on_error=False)

    failures = [event for event in result.all_events if event.is_step_failure]
    assert step_errors(failures) == [f"reports__flights: {said}"]


def test_a_run_whose_process_died_under_the_daemon_says_what_to_do(
    instance: dg.DagsterInstance,
) -> None:
    # A killed backfill run's worker: Dagster's code server fails the run with words that say
    # nothing of why or what next, and a one-month backfill has ended, so it is not retried.
    @dg.op
    def step() -> None: ...

    @dg.job
    def one_step() -> None:
        step()

    run = instance.create_run_for_job(job_def=one_step)
    instance.report_run_failed(run)

    (error,) = latest_run_errors(instance, [instance.get_run_by_id(run.run_id)])
    assert error == (
        "This run has been marked as failed from outside the execution context: its process "
        "ended before the run did (killed or crashed); `pipeline load --retry-failed` loads the "
        "month again"
    )
