"""The code location: the one Definitions object, assembled from the dataset specs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from pipeline.alerts.channels import Alerts
from pipeline.assets.dbt import build_dbt_assets
from pipeline.assets.freshness import build_freshness_checks
from pipeline.assets.loads import build_load_asset
from pipeline.assets.reports import build_report_asset, build_report_schedule
from pipeline.ingest.pii import KEY_VARIABLE
from pipeline.jobs import build_freshness_job, build_load_job
from pipeline.metrics import MetricsExport
from pipeline.project import DBT_EXECUTABLE, DbtCli, dbt_project
from pipeline.resources import LandingFiles
from pipeline.sensors import (
    build_freshness_alerts_sensor,
    build_freshness_sensor,
    build_landing_sensor,
)
from pipeline.settings import AlertSettings, Settings
from pipeline.specs import load_specs
from pipeline.warehouse.base import Warehouse
from pipeline.warehouse.duckdb import DuckDBWarehouse


def build_warehouse(settings: Settings) -> Warehouse:
    """The warehouse PIPELINE_WAREHOUSE names; the only place that asks which one it is."""
    if settings.snowflake is None:
        chosen = {
            "memory_limit": settings.duckdb_memory_limit,
            "lock_wait_seconds": settings.duckdb_lock_wait_seconds,
        }
        return DuckDBWarehouse(
            path=str(settings.duckdb_path),
            **{name: value for name, value in chosen.items() if value is not None},
        )
    # Imported only when configured: Snowflake's connector and dagster-snowflake take 3.5 s to
    # import, a third of the start of every command and run on DuckDB.
    from pipeline.warehouse.snowflake import snowflake_warehouse

    return snowflake_warehouse(settings.snowflake)


@contextmanager
def open_warehouse(settings: Settings) -> Iterator[Warehouse]:
    """The warehouse outside a run (CLI, doctor, tests), with its EnvVars resolved as in a run."""
    with dg.build_resources({"warehouse": build_warehouse(settings)}) as resources:
        yield resources.warehouse


def alerts_resource(settings: AlertSettings) -> Alerts:
    """The alert channels; the SMTP password and the webhook URL (it holds a token) are EnvVars,
    passed only when set."""
    secrets = {
        "smtp_password": "PIPELINE_SMTP_PASSWORD",
        "webhook_url": "PIPELINE_ALERT_WEBHOOK_URL",
    }
    return Alerts(
        smtp_host=settings.smtp_host,
        smtp_port=settings.smtp_port,
        smtp_user=settings.smtp_user,
        smtp_starttls=settings.smtp_starttls,
        sender=settings.sender,
        recipients=list(settings.recipients),
        **{field: dg.EnvVar(name) for field, name in secrets.items() if os.environ.get(name)},
    )


def build_resources(settings: Settings) -> dict[str, object]:
    """Resources for the configured warehouse."""
    warehouse = build_warehouse(settings)
    return {
        "warehouse": warehouse,
        "files": LandingFiles(
            landing_dir=str(settings.landing_dir),
            staging_dir=str(settings.staging_dir),
            workers=settings.ingest_workers,
            reports_dir=str(settings.reports_dir),
            reports_url=settings.reports_url,
            # Read when a run starts, never shown; left out when unset, so that only datasets
            # with `pii: hash` columns are refused (naming the variable) rather than every run.
            pii_key=dg.EnvVar(KEY_VARIABLE) if os.environ.get(KEY_VARIABLE) else None,
        ),
        "alerts": alerts_resource(settings.alerts),
        "dbt": DbtCli(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE),
        "metrics": metrics_resource(settings),
    }


def metrics_resource(settings: Settings) -> MetricsExport:
    """Where the metrics go; also for `pipeline purge`, which changes them outside any run."""
    return MetricsExport(
        textfile_dir=str(settings.metrics_dir) if settings.metrics_dir else None,
        pushgateway_url=settings.pushgateway_url,
    )


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything Dagster shows, for the specs in `settings.datasets_dir`."""
    settings.export_for_subprocesses()
    specs = list(load_specs(settings.datasets_dir).values())
    freshness = build_freshness_checks(specs)
    # A late month: the freshness sensor runs the check job, the alerts sensor announces it.
    late_jobs: list[dg.UnresolvedAssetJobDefinition] = []
    late_sensors: list[dg.SensorDefinition] = []
    if freshness:
        late_jobs.append(build_freshness_job(freshness))
        late_sensors += [
            build_freshness_sensor(freshness, late_jobs[0], settings.sensor_interval_seconds),
            build_freshness_alerts_sensor(specs, late_jobs[0], settings.sensor_interval_seconds),
        ]
    return dg.Definitions(
        assets=[build_load_asset(spec, settings.warehouse) for spec in specs]
        + [build_report_asset(spec, settings.warehouse) for spec in specs]
        + build_dbt_assets(specs, pool=settings.warehouse),
        asset_checks=freshness,
        jobs=[build_load_job(spec) for spec in specs] + late_jobs,
        sensors=[build_landing_sensor(spec, settings.sensor_interval_seconds) for spec in specs]
        + late_sensors,
        schedules=[build_report_schedule(specs)] if specs else [],
        resources=build_resources(settings),
    )


defs = build_definitions(Settings.from_env())
