"""A file lands, the real Dagster daemon's sensor tick starts the month's run, and it loads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline_tests.support import scalar

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TIMEOUT_SECONDS = 240


def test_a_landed_file_is_loaded_by_the_sensor_through_the_daemon(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Path(os.environ["DAGSTER_HOME"])
    shutil.copyfile(REPO / "pipeline" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("PIPELINE_SENSOR_INTERVAL_SECONDS", "1")
    write_tsv(month_frame("2024-04", 20, seed=4), settings.landing_dir / "flights_2024-04.tsv")
    workspace = ["-w", str(REPO / "workspace.yaml")]
    subprocess.run(
        [BIN / "dagster", "sensor", "start", "flights_landing", *workspace],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    daemon = subprocess.Popen(
        [BIN / "dagster-daemon", "run", *workspace],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        run = wait_for_finished_run(dg.DagsterInstance.get())
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)

    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/partition"] == "2024-04"
    assert run.tags["dagster/sensor_name"] == "flights_landing"
    assert scalar(settings, "select count(*) from raw.flights where _month = '2024-04'") > 0
    assert scalar(settings, "select count(*) from analytics.flights_monthly") == 1


def wait_for_finished_run(instance: dg.DagsterInstance) -> dg.DagsterRun:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        runs = instance.get_runs()
        finished = [run for run in runs if run.is_finished]
        if finished:
            return finished[0]
        time.sleep(2)
    raise AssertionError(f"no sensor run finished within {TIMEOUT_SECONDS}s: {instance.get_runs()}")
