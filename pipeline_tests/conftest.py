"""Fixtures that create real things: a temp landing folder, a DuckDB file, a Snowflake-protocol
server on 127.0.0.1 (fakesnow) and a Dagster instance."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import fakesnow
import pytest
import snowflake.connector

from pipeline.definitions import open_warehouse
from pipeline.settings import BUNDLED_DATASETS_DIR, Settings
from pipeline.specs import DatasetSpec, load_specs
from pipeline.warehouse.base import Warehouse

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A deployment in a temp folder, set through the same environment variables users set."""
    monkeypatch.setenv("PIPELINE_DATASETS_DIR", str(BUNDLED_DATASETS_DIR))
    monkeypatch.setenv("PIPELINE_LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("PIPELINE_STAGING_DIR", str(tmp_path / "staging"))
    monkeypatch.setenv("PIPELINE_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("PIPELINE_WAREHOUSE", raising=False)
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "landing").mkdir()
    return Settings.from_env()


@pytest.fixture
def instance(settings: Settings) -> Iterator[dg.DagsterInstance]:
    """A real, persistent Dagster instance in the temp DAGSTER_HOME."""
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture(scope="session")
def snowflake_server() -> Iterator[dict[str, Any]]:
    """One Snowflake-protocol server for the session (fakesnow keeps it in memory); every test
    gets a database of its own on it. The real connector, dbt-snowflake, the CLI and Dagster's
    run workers all reach it over HTTP on 127.0.0.1."""
    with fakesnow.server(port=0) as connection:
        yield connection


@pytest.fixture(params=["duckdb", "snowflake"])
def deployment(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """`settings` on each warehouse: tests that take it run once on DuckDB, once on Snowflake."""
    if request.param == "snowflake":
        return request.getfixturevalue("snowflake_deployment")
    return settings


@pytest.fixture
def snowflake_deployment(
    settings: Settings, snowflake_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """`settings` on Snowflake: a fresh database on the test server, set through the variables
    a user sets."""
    database = f"TEST_{uuid.uuid4().hex[:10].upper()}"
    with snowflake.connector.connect(
        **{k: snowflake_server[k] for k in ("user", "password", "account", "host", "port")},
        protocol=snowflake_server["protocol"],
        login_timeout=20,
        network_timeout=20,
    ) as connection:
        connection.cursor().execute(f"CREATE DATABASE {database}")
    variables = {
        "PIPELINE_WAREHOUSE": "snowflake",
        "SNOWFLAKE_ACCOUNT": snowflake_server["account"],
        "SNOWFLAKE_USER": snowflake_server["user"],
        "SNOWFLAKE_PASSWORD": snowflake_server["password"],
        "SNOWFLAKE_DATABASE": database,
        "SNOWFLAKE_ROLE": "PIPELINE_LOADER",
        "SNOWFLAKE_WAREHOUSE": "PIPELINE_WH",
        "SNOWFLAKE_HOST": snowflake_server["host"],
        "SNOWFLAKE_PORT": str(snowflake_server["port"]),
        "SNOWFLAKE_PROTOCOL": snowflake_server["protocol"],
        # What fakesnow lacks: ALTER SESSION SET QUERY_TAG, REMOVE, temporary tables in a
        # schema (dbt's incremental models).
        "PIPELINE_SNOWFLAKE_DISABLE": "query_tag,stage_cleanup,temporary_tables",
        # Its bugs come back as HTTP 500, which the connector would retry for minutes.
        "PIPELINE_SNOWFLAKE_TIMEOUT_SECONDS": "30",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


@pytest.fixture
def warehouse(deployment: Settings) -> Iterator[Warehouse]:
    """The deployment's warehouse, built as the code location builds it."""
    with open_warehouse(deployment) as warehouse:
        yield warehouse


@pytest.fixture(scope="session")
def flights() -> DatasetSpec:
    """The bundled example spec."""
    return load_specs(BUNDLED_DATASETS_DIR)["flights"]
