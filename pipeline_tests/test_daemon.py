"""The real Dagster daemon: files land, the sensor's tick queues their months, and they load one
at a time, as the DuckDB pool allows; a backfill launched on the asset runs month by month."""

from __future__ import annotations

import time

import dagster as dg
import pytest
from dagster._core.execution.backfill import BULK_ACTION_TERMINAL_STATUSES, PartitionBackfill
from dagster._core.utils import make_new_backfill_id

from pipeline.assets.loads import raw_asset_key
from pipeline.definitions import build_definitions
from pipeline.instance import prepare_instance
from pipeline.jobs import FRESHNESS_JOB
from pipeline.runner import month_statuses
from pipeline.sample_data import month_frame, write_tsv
from pipeline.sensors import FRESHNESS_SENSOR
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline_tests.mailserver import Inbox
from pipeline_tests.support import daemon_running, finished_runs, scalar

# The dataset's monthly dbt models: with raw/flights, what `raw/flights+` selects in the UI.
MODELS = [dg.AssetKey(name) for name in ("stg_flights", "flights_daily", "flights_monthly")]


def test_landed_files_are_loaded_by_the_sensor_through_the_daemon_one_at_a_time(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh instance, as `make install` prepares it. Two months in the sensor's first tick: the
    # daemon used to launch both at once, and one failed on the DuckDB file's lock.
    instance = prepare_instance()
    monkeypatch.setenv("PIPELINE_SENSOR_INTERVAL_SECONDS", "1")
    for month in ("2024-04", "2024-05"):
        write_tsv(month_frame(month, 20, seed=4), settings.landing_dir / f"flights_{month}.tsv")
    with daemon_running("flights_landing"):
        runs = finished_runs(instance, 2)

    assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS] * 2, runs
    assert {run.tags["dagster/partition"] for run in runs} == {"2024-04", "2024-05"}
    assert {run.tags["dagster/sensor_name"] for run in runs} == {"flights_landing"}
    first, second = sorted(
        (record.start_time, record.end_time)
        for record in instance.get_run_records(dg.RunsFilter(run_ids=[r.run_id for r in runs]))
    )
    assert first[1] <= second[0]  # the duckdb pool let one run write at a time
    assert scalar(settings, "select count(distinct _month) from raw.flights") == 2
    assert scalar(settings, "select count(*) from analytics.flights_monthly") == 2


def test_a_backfill_from_the_asset_page_runs_each_month_with_its_checks(
    settings: Settings, flights: DatasetSpec
) -> None:
    # What *Materialize* → a range of months on raw/flights and its models in the UI launches.
    # With a one-month backfill policy the daemon ran each month as a range of one, which Dagster
    # does not take for a partition: the month's check results were recorded without it and it
    # showed `8 not run`; the models (which keep that policy) were built without their month,
    # over every month, with every fiscal column null.
    # One month is enough: the daemon runs it as a range of one, as it runs each month of many.
    instance = prepare_instance()
    months = ["2024-04"]
    for month in months:
        write_tsv(month_frame(month, 20, seed=4), settings.landing_dir / f"flights_{month}.tsv")
    defs = build_definitions(settings)
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=defs.resolve_asset_graph(),
        partition_names=months,
        asset_selection=[raw_asset_key(flights), *MODELS],
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=None,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    with daemon_running():
        runs = backfill_runs(instance, backfill.backfill_id)

    assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}, runs
    loads = [run for run in runs if run.tags.get("dagster/partition")]
    assert sorted(run.tags["dagster/partition"] for run in loads) == months
    for status in month_statuses(defs, flights, instance, months):
        assert status.status == "materialized"
        assert status.checks and "not run" not in status.checks.values(), status
    unplaced = "select count(*) - count(fiscal_year) from analytics.flights_daily"
    assert scalar(settings, unplaced) == 0  # every day in its fiscal year
    assert scalar(settings, "select count(*) from analytics.flights_daily") == 30  # April
    assert scalar(settings, "select count(distinct month) from analytics.flights_monthly") == 1


def backfill_runs(instance: dg.DagsterInstance, backfill_id: str) -> list[dg.DagsterRun]:
    """The runs of a backfill, once the daemon has launched them all and they have finished."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        done = instance.get_backfill(backfill_id).status in BULK_ACTION_TERMINAL_STATUSES
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        if done and runs and all(run.is_finished for run in runs):
            return runs
        time.sleep(2)
    raise AssertionError(f"backfill {backfill_id} did not end: {instance.get_runs()}")


def test_a_late_month_the_freshness_sensor_finds_is_announced_by_mail(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, inbox: Inbox
) -> None:
    # The unattended path: Dagster's own freshness sensor ran the check as the implicit asset
    # job, which the alerts sensor does not watch, so no late month was ever announced.
    instance = prepare_instance()
    monkeypatch.setenv("PIPELINE_SENSOR_INTERVAL_SECONDS", "1")
    with daemon_running(FRESHNESS_SENSOR):
        (run,) = finished_runs(instance, 1)
        deadline = time.monotonic() + 60
        while len(inbox.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)

    assert run.job_name == FRESHNESS_JOB and run.tags["dagster/sensor_name"] == FRESHNESS_SENSOR
    # Both bundled datasets are late (their sample months are 2024's): one mail each.
    subjects = sorted(mail["Subject"] for mail in inbox.messages)
    assert len(subjects) == 2 and "flights" in subjects[0], subjects
    assert "freshness FAILED (WARN)" in subjects[0] and "settlements" in subjects[1]
