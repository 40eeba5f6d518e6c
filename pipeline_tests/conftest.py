"""Fixtures that create real things: a temp landing folder, a DuckDB file, a Snowflake-protocol
server on 127.0.0.1 (fakesnow), a PostgreSQL server and a Dagster instance."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import fakesnow
import pytest
from aiosmtpd.controller import Controller

from pipeline.definitions import open_warehouse
from pipeline.settings import BUNDLED_DATASETS_DIR, Settings
from pipeline.specs import DatasetSpec, load_specs
from pipeline.warehouse.base import Warehouse
from pipeline_tests.mailserver import PASSWORD, USER, Inbox, free_port
from pipeline_tests.snowflake_server import create_database, environment, remove_stage_folder

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
REPO = Path(__file__).resolve().parent.parent
# Where Debian's `postgresql` package (make system-packages) keeps its programs.
POSTGRES_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A deployment in a temp folder, set through the same environment variables users set."""
    monkeypatch.setenv("PIPELINE_DATASETS_DIR", str(BUNDLED_DATASETS_DIR))
    monkeypatch.setenv("PIPELINE_LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("PIPELINE_STAGING_DIR", str(tmp_path / "staging"))
    monkeypatch.setenv("PIPELINE_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("PIPELINE_REPORTS_DIR", str(tmp_path / "reports"))
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


def pytest_unconfigure(config: pytest.Config) -> None:
    """Every pytest process (each worker, and the one that starts them) imports fakesnow, which
    makes a folder it never removes."""
    remove_stage_folder()


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
    create_database(snowflake_server, database)
    variables = environment(snowflake_server, database)
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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[dict[str, str]]:
    """A PostgreSQL server for the session, in a temp folder, on 127.0.0.1, trusting local logins.

    PostgreSQL will not run as root: as root, its folder belongs to, and it runs as, the
    `postgres` user that Debian's package creates. Durability is off: the data is thrown away.
    """
    if not POSTGRES_BIN:
        pytest.fail("PostgreSQL is not installed: run `make system-packages`")
    folder = Path(tempfile.mkdtemp(prefix="pipeline-postgres-"))
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_owner:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", str(free_port())
    programs = POSTGRES_BIN[-1]

    def postgres(program: str, *args: str) -> None:
        subprocess.run([*as_owner, str(programs / program), *args], check=True, capture_output=True)

    postgres("initdb", "-D", str(data), "-U", "dagster", "--auth=trust", "--no-sync")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"
    postgres("pg_ctl", "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
    try:
        yield {"host": "127.0.0.1", "port": port, "username": "dagster", "programs": str(programs)}
    finally:
        postgres("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_instance(
    settings: Settings, postgres_server: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """The shared deployment's instance (deploy/dagster.yaml): a database of its own on the
    PostgreSQL server, found through the variables the deployment sets."""
    database = f"dagster_{uuid.uuid4().hex[:10]}"
    subprocess.run(
        [
            f"{postgres_server['programs']}/createdb",
            *("-h", postgres_server["host"], "-p", postgres_server["port"]),
            *("-U", postgres_server["username"], database),
        ],
        check=True,
        capture_output=True,
    )
    for name, value in {
        "DAGSTER_PG_HOST": postgres_server["host"],
        "DAGSTER_PG_PORT": postgres_server["port"],
        "DAGSTER_PG_DB": database,
        "DAGSTER_PG_USERNAME": postgres_server["username"],
        "DAGSTER_PG_PASSWORD": "unused",  # the test server trusts local logins
    }.items():
        monkeypatch.setenv(name, value)
    shutil.copyfile(
        REPO / "deploy" / "dagster.yaml", Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    )
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    """An SMTP server on 127.0.0.1 for alerts, and the PIPELINE_SMTP_* settings that reach it."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=inbox.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    for name, value in {
        "PIPELINE_SMTP_HOST": "127.0.0.1",
        "PIPELINE_SMTP_PORT": str(port),
        "PIPELINE_SMTP_USER": USER,
        "PIPELINE_SMTP_PASSWORD": PASSWORD,
        "PIPELINE_SMTP_STARTTLS": "false",
        "PIPELINE_ALERT_FROM": "pipeline@example.test",
        "PIPELINE_ALERT_TO": "data-owner@example.test, ops@example.test",
    }.items():
        monkeypatch.setenv(name, value)
    yield inbox
    controller.stop()
