"""The code location: the one Definitions object, assembled from the dataset specs."""

from __future__ import annotations

import dagster as dg
from dagster_dbt import DbtCliResource

from pipeline.assets.checks import build_checks
from pipeline.assets.dbt import build_dbt_assets
from pipeline.assets.freshness import build_freshness_checks
from pipeline.assets.loads import IO_MANAGER_KEY, build_load_asset
from pipeline.jobs import build_freshness_job, build_load_job
from pipeline.project import DBT_EXECUTABLE, dbt_project
from pipeline.resources import LandingFiles
from pipeline.sensors import build_freshness_sensor, build_landing_sensor
from pipeline.settings import Settings
from pipeline.specs import load_specs
from pipeline.warehouse.duckdb import DuckDBWarehouse
from pipeline.warehouse.io_manager import WarehouseIOManager


def build_resources(settings: Settings) -> dict[str, object]:
    """Resources for the configured warehouse."""
    warehouse = DuckDBWarehouse(path=str(settings.duckdb_path))
    return {
        "warehouse": warehouse,
        IO_MANAGER_KEY: WarehouseIOManager(warehouse=warehouse),
        "files": LandingFiles(
            landing_dir=str(settings.landing_dir), staging_dir=str(settings.staging_dir)
        ),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything Dagster shows, for the specs in `settings.datasets_dir`."""
    settings.export_for_subprocesses()
    specs = list(load_specs(settings.datasets_dir).values())
    freshness = build_freshness_checks(specs)
    return dg.Definitions(
        assets=[build_load_asset(spec) for spec in specs] + build_dbt_assets(specs),
        asset_checks=[check for spec in specs for check in build_checks(spec)] + freshness,
        jobs=[build_load_job(spec) for spec in specs]
        + ([build_freshness_job(freshness)] if freshness else []),
        sensors=[build_landing_sensor(spec) for spec in specs]
        + ([build_freshness_sensor(freshness)] if freshness else []),
        resources=build_resources(settings),
    )


defs = build_definitions(Settings.from_env())
