"""Files land, the real Dagster daemon's sensor tick queues their months, and they load one at a
time, as the DuckDB pool allows."""

from __future__ import annotations

import dagster as dg
import pytest

from pipeline.instance import prepare_instance
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline_tests.support import daemon_running, finished_runs, scalar


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
