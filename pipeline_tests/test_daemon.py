"""A file lands, the real Dagster daemon's sensor tick starts the month's run, and it loads."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline_tests.support import REPO, daemon_running, finished_runs, scalar


def test_a_landed_file_is_loaded_by_the_sensor_through_the_daemon(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Path(os.environ["DAGSTER_HOME"])
    shutil.copyfile(REPO / "pipeline" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("PIPELINE_SENSOR_INTERVAL_SECONDS", "1")
    write_tsv(month_frame("2024-04", 20, seed=4), settings.landing_dir / "flights_2024-04.tsv")
    with daemon_running("flights_landing"):
        (run,) = finished_runs(dg.DagsterInstance.get(), 1)

    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/partition"] == "2024-04"
    assert run.tags["dagster/sensor_name"] == "flights_landing"
    assert scalar(settings, "select count(*) from raw.flights where _month = '2024-04'") > 0
    assert scalar(settings, "select count(*) from analytics.flights_monthly") == 1
