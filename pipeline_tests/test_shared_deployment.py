"""The shared deployment, as far as it runs here: the instance in PostgreSQL (deploy/dagster.yaml),
the daemon's queued run coordinator launching each run in a process of its own, and two landed
months loaded by their sensor at once on the Snowflake-protocol server."""

from __future__ import annotations

import os

import dagster as dg
import pytest
import yaml

from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline_tests.support import (
    REPO,
    daemon_running,
    dagster,
    finished_runs,
    run_time,
    scalar,
)

DEPLOY = REPO / "deploy"


def test_on_postgres_the_daemon_loads_two_landed_months_at_once_on_snowflake(
    snowflake_deployment: Settings,
    postgres_instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, instance = snowflake_deployment, postgres_instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    monkeypatch.setenv("PIPELINE_SENSOR_INTERVAL_SECONDS", "1")
    # The deployment's one step to run Snowflake months side by side (README, "Scaling out").
    dagster("instance", "concurrency", "set", "snowflake", "2")
    frames = {
        month: month_frame(month, 3, seed=n) for n, month in enumerate(["2024-01", "2024-02"])
    }

    with daemon_running("flights_landing") as daemon:
        # Landed together, seen on the same tick: two runs the pool lets start together.
        for month, frame in frames.items():
            write_tsv(frame, settings.landing_dir / f"flights_{month}.tsv")
        runs = finished_runs(instance, 2)

    assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS] * 2
    assert {run.tags["dagster/partition"] for run in runs} == set(frames)
    assert {run.tags["dagster/sensor_name"] for run in runs} == {"flights_landing"}
    # Queued, then launched by the daemon, each in a run worker process of its own.
    workers = {_worker_pid(instance, run) for run in runs}
    assert len(workers) == 2 and not workers & {daemon.pid, os.getpid()}
    records = instance.get_run_records(dg.RunsFilter(run_ids=[run.run_id for run in runs]))
    assert max(run_time(r.start_time) for r in records) < min(run_time(r.end_time) for r in records)
    for month, frame in frames.items():
        loaded = f"select count(*) from raw.flights where _month = '{month}'"
        assert scalar(settings, loaded) == frame.height
        monthly = f"select flights from analytics.flights_monthly where month = '{month}'"
        assert scalar(settings, monthly) == frame.height


def _worker_pid(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int:
    """The process the run's steps ran in, as its first step event records it."""
    records = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
    return records[0].dagster_event.pid  # type: ignore[union-attr]


def test_the_deployment_files_parse_and_agree_with_the_instance_template() -> None:
    # They cannot run here (no Docker, no Kubernetes): valid, and in step with what is tested.
    template = yaml.safe_load((REPO / "pipeline" / "dagster.yaml").read_text())
    shared = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    helm = yaml.safe_load((DEPLOY / "helm-values.yaml").read_text())

    assert {k: shared[k] for k in ("concurrency", "run_retries")} == {
        k: template[k] for k in ("concurrency", "run_retries")
    }
    assert set(compose["services"]) == {"postgres", "code", "webserver", "daemon"}
    assert compose["services"]["code"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (REPO / compose["services"]["webserver"]["command"][-1]).is_file()
    assert helm["runLauncher"]["type"] == "K8sRunLauncher"
    (code,) = helm["dagster-user-deployments"]["deployments"]
    assert code["dagsterApiGrpcArgs"][:2] == ["--module-name", "pipeline.definitions"]
    pools = template["concurrency"]["pools"]
    assert helm["concurrency"]["pools"] == {
        "granularity": pools["granularity"],
        "defaultLimit": pools["default_limit"],
    }
    # Helm's retries as the instance's: a refused month is not loaded (and announced) again.
    retries = template["run_retries"]
    assert helm["dagsterDaemon"]["runRetries"] == {
        "enabled": retries["enabled"],
        "maxRetries": retries["max_retries"],
        "retryOnAssetOrOpFailure": retries["retry_on_asset_or_op_failure"],
    }
    # The chart's URL would otherwise need psycopg 3, as deploy/dagster.yaml says.
    scheme = shared["storage"]["postgres"]["postgres_db"]["scheme"]
    assert helm["postgresql"]["postgresqlScheme"] == scheme
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "ensure_manifest()" in dockerfile  # the manifest is built into the image
    # What a run writes outlives its container or pod: on the shared volume.
    for name in ("PIPELINE_REPORTS_DIR=/data/", "PIPELINE_AUDIT_ANCHORS=/data/"):
        assert name in dockerfile
    ignored = (REPO / ".dockerignore").read_text().split()
    assert "dbt_project/target" in ignored  # else the image ships the local manifest
