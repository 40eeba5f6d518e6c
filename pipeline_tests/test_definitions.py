"""The code location loads, and its pieces are wired the way the README says."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import dagster_dbt.core.resource
import pytest

import pipeline.project as project_module
from pipeline.assets.dbt import failed_nodes, models_of_several_datasets, partitioned_dbt_vars
from pipeline.definitions import build_definitions, build_resources
from pipeline.jobs import load_job_name
from pipeline.project import DBT_EXECUTABLE, DBT_PACKAGE, DbtCli, dbt_project
from pipeline.settings import Settings
from pipeline.specs import FiscalSpec
from pipeline.warehouse.snowflake import SnowflakeWarehouse


def test_definitions_load_and_the_load_job_resolves(settings: Settings) -> None:
    defs = build_definitions(settings)
    job = defs.resolve_job_def(load_job_name("flights"))
    graph = defs.resolve_asset_graph()
    raw = dg.AssetKey(["raw", "flights"])
    assert job.partitions_def is not None
    assert job.partitions_def.get_partition_keys()[:2] == ["2024-01", "2024-02"]
    downstream = {key.to_user_string() for key in graph.get(raw).child_keys}
    assert {"stg_flights", "dq_load_history", "reports/flights"} <= downstream
    assert dg.AssetKey(["reports", "flights"]) in job.asset_layer.selected_asset_keys
    schedule = defs.resolve_schedule_def("weekly_reports")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    schema_check = graph.get_check_spec(dg.AssetCheckKey(raw, "schema"))
    assert schema_check.blocking
    # The reconciliation test shows as a check of the ledger's model, run by the load job: it
    # was an observation no check page showed.
    reconcile = dg.AssetCheckKey(dg.AssetKey(["dq_load_history"]), "assert_loads_reconcile")
    assert reconcile in job.asset_layer.asset_graph.asset_check_keys


def test_dbt_gets_the_month_of_its_partition_and_its_fiscal_days() -> None:
    window = dg.TimeWindow(dt.datetime(2024, 3, 1), dt.datetime(2024, 4, 1))
    dbt_vars = partitioned_dbt_vars(window, FiscalSpec(week_pattern="4-4-5", week_start=0))
    assert dbt_vars["month"] == "2024-03"
    assert len(dbt_vars["fiscal_days"]) == 31
    assert dbt_vars["fiscal_days"][-1] == {
        "day": "2024-03-31",
        "fiscal_year": 2024,
        "fiscal_quarter": 1,
        "fiscal_period": 3,
    }


def test_snowflake_credentials_are_env_vars_read_at_run_time(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "PIPELINE_WAREHOUSE": "snowflake",
        "SNOWFLAKE_ACCOUNT": "acme-prod",
        "SNOWFLAKE_USER": "loader",
        "SNOWFLAKE_DATABASE": "pipeline_db",
        "SNOWFLAKE_PRIVATE_KEY_PATH": "/secrets/key.p8",
        "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "do-not-show",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SNOWFLAKE_PASSWORD", raising=False)

    defs = build_definitions(Settings.from_env())  # no connection is made to load the code
    warehouse = defs.resources["warehouse"]

    assert isinstance(warehouse, SnowflakeWarehouse)
    config = warehouse.snowflake
    assert isinstance(config.private_key_password, dg.EnvVar)
    assert config.private_key_password.env_var_name == "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"
    assert config.password is None  # unset variables are left out, not passed as ""
    assert "do-not-show" not in repr(defs.resources)


def test_a_failed_dbt_build_names_each_failed_model_and_the_database_message() -> None:
    run_results = {
        "results": [
            {"unique_id": "model.pipeline_reports.stg_orders", "status": "success"},
            {
                "unique_id": "model.pipeline_reports.stg_flights",
                "status": "error",
                "message": "Runtime Error in model stg_flights (models/staging/stg_flights.sql)\n"
                '  Binder Error: Referenced column "fare" not found in FROM clause!\n'
                '  Candidate bindings: "carrier"',
            },
            {"unique_id": "model.pipeline_reports.flights_daily", "status": "skipped"},
            {
                "unique_id": "model.pipeline_reports.settlements_daily",
                "status": "error",
                "message": "Compilation Error in model settlements_daily (models/marts/x.sql)\n"
                "  settlements_daily needs column(s) fee in raw.settlements: add them\n"
                "  \n  > in macro require_columns (macros/require_columns.sql)",
            },
            {
                "unique_id": "test.pipeline_reports.unique_flights_daily_flight_date.af4cab9b86",
                "status": "fail",
                "message": "Got 2 results, configured to fail if != 0",
            },
        ]
    }
    assert failed_nodes(run_results) == [
        'stg_flights: Binder Error: Referenced column "fare" not found in FROM clause!',
        "settlements_daily needs column(s) fee in raw.settlements: add them",
        "unique_flights_daily_flight_date: Got 2 results, configured to fail if != 0",
    ]


def test_a_model_over_two_datasets_is_named_before_dagster_refuses_it() -> None:
    # Each dataset's job selects the models below its source: one over two datasets was in both,
    # and the code location failed with Dagster's "Duplicate asset key: AssetKey(['zz_cross'])".
    def node(kind: str, name: str) -> str:
        return f"{kind}.{DBT_PACKAGE}.{name}"

    children = {
        node("source", "raw.flights"): [node("model", "stg_flights"), node("model", "ledger_mix")],
        node("model", "stg_flights"): [node("model", "zz_cross"), node("test", "not_null_x")],
        node("source", "raw.settlements"): [node("model", "zz_cross"), node("model", "ledger_mix")],
        node("source", "pipeline.load_ledger"): [node("model", "ledger_mix")],
    }

    shared = models_of_several_datasets(children, ["flights", "settlements"])

    # The ledger's models are built in a job of their own, whatever else they read.
    assert shared == {node("model", "zz_cross"): ["flights", "settlements"]}
    assert models_of_several_datasets(children, ["flights"]) == {}


def test_a_deleted_model_makes_the_manifest_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only newer files counted: a deleted model stayed in the manifest, and every run built it.
    models = tmp_path / "models"
    models.mkdir()
    for name in ("kept.sql", "gone.sql"):
        (models / name).write_text("select 1")
    manifest = tmp_path / "target" / "manifest.json"
    manifest.parent.mkdir()
    manifest.write_text("{}")
    now = time.time()
    for path in (models / "kept.sql", models / "gone.sql", models):
        os.utime(path, (now - 100, now - 100))
    os.utime(manifest, (now - 50, now - 50))
    parsed: list[object] = []
    monkeypatch.setattr(project_module, "_parse", parsed.append)
    project = SimpleNamespace(manifest_path=manifest, project_dir=tmp_path)

    project_module.ensure_manifest(project)
    assert parsed == []  # nothing changed since the parse
    (models / "gone.sql").unlink()
    project_module.ensure_manifest(project)
    assert parsed == [project]


def test_ingest_workers_come_from_the_environment_and_default_to_the_cores(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert build_resources(settings)["files"].workers is None  # stage_file: available_cores()
    monkeypatch.setenv("PIPELINE_INGEST_WORKERS", "3")
    assert build_resources(Settings.from_env())["files"].workers == 3
    monkeypatch.setenv("PIPELINE_INGEST_WORKERS", "0")
    with pytest.raises(ValueError, match="PIPELINE_INGEST_WORKERS=0 must be at least 1"):
        Settings.from_env()


def test_the_sensor_interval_is_a_setting_that_names_its_mistakes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was read by the sensors themselves: `60s` failed the code location with "invalid
    # literal for int()", naming no variable, and 0 was taken.
    monkeypatch.setenv("PIPELINE_SENSOR_INTERVAL_SECONDS", "5")
    sensors = build_definitions(Settings.from_env()).sensors
    assert sensors and {sensor.minimum_interval_seconds for sensor in sensors} == {5}
    for mistake, message in (("60s", "'60s' is not a whole number"), ("0", "0 must be at least 1")):
        monkeypatch.setenv("PIPELINE_SENSOR_INTERVAL_SECONDS", mistake)
        with pytest.raises(ValueError, match=f"PIPELINE_SENSOR_INTERVAL_SECONDS={message}"):
            Settings.from_env()


def test_duckdbs_memory_limit_comes_from_the_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def limit() -> str:
        warehouse = build_resources(Settings.from_env())["warehouse"]
        return warehouse.query("SELECT current_setting('memory_limit') AS limit")[0]["limit"]

    monkeypatch.setenv("PIPELINE_DUCKDB_PATH", str(settings.duckdb_path))
    assert limit() == "244.1 MiB"  # 256MB, as DuckDB prints it
    monkeypatch.setenv("PIPELINE_DUCKDB_MEMORY_LIMIT", "300MB")
    assert limit() == "286.1 MiB"
    # A typo failed every command as a warehouse that "could not be used", with advice on locks.
    monkeypatch.setenv("PIPELINE_DUCKDB_MEMORY_LIMIT", "abc")
    with pytest.raises(ValueError, match="PIPELINE_DUCKDB_MEMORY_LIMIT='abc' is not a size such"):
        Settings.from_env()


@pytest.mark.parametrize("warehouse", ["duckdb", "snowflake"])
def test_every_step_of_a_load_is_in_the_pool_of_its_warehouse(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, warehouse: str
) -> None:
    # Queued runs start when the warehouse's pool has room (pipeline/dagster.yaml): a step left
    # out of the pool would write DuckDB beside another run's.
    monkeypatch.setenv("PIPELINE_WAREHOUSE", warehouse)
    for name in ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_DATABASE", "SNOWFLAKE_PASSWORD"):
        monkeypatch.setenv(name, "x")
    defs = build_definitions(Settings.from_env())

    job = defs.resolve_job_def(load_job_name("flights"))

    pools = {node.name: node.definition.pool for node in job.graph.node_dict.values()}
    assert set(pools.values()) == {warehouse}, pools


def test_a_duckdb_deployment_starts_without_importing_snowflake(settings: Settings) -> None:
    """Snowflake's connector takes 3.5 s to import: every command and run on DuckDB paid it."""
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pipeline.definitions; print('snowflake.connector' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "False"


def test_dbt_runs_without_starting_dbt_to_ask_its_version(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dagster-dbt's resource runs `dbt --version` (3 s) and sets up a dbt adapter in this process
    (1.2 s) before every command; DbtCli needs neither, so each month's dbt step is 4 s shorter."""

    def started(command: list[str], **kwargs: object) -> bytes:
        raise AssertionError(f"started {command}")

    monkeypatch.setattr(dagster_dbt.core.resource, "check_output", started)
    invocation = DbtCli(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE).cli(
        ["parse"], raise_on_error=False
    )
    invocation.wait()
    assert invocation.is_successful()
    assert invocation.adapter is None
