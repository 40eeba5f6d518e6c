"""`pipeline doctor` says what is wrong with a deployment, one line each, with a hint."""

from __future__ import annotations

import os

import pytest

from pipeline.settings import Settings
from pipeline_tests.support import run

HEADER = (
    "flight_date\tcarrier\tflight\torigin\tdest\tdistance\tdep_delay\tfare\tcancelled\ttime_hour"
)


def test_a_healthy_deployment_is_all_ok(settings: Settings) -> None:
    (settings.landing_dir / "flights_2024-01.tsv").write_text(HEADER + "\r\n")
    result = run("doctor")
    assert result.returncode == 0, result.stdout
    assert "OK      landing flights: 1 month(s) from 2024-01 to 2024-01" in result.stdout
    assert "UTF-8; CRLF line endings" in result.stdout
    assert "OK      warehouse: duckdb" in result.stdout


def test_problems_are_named_with_hints(settings: Settings) -> None:
    (settings.landing_dir / "flights_2024-01.tsv").write_text(HEADER.replace("\t", ",") + "\n")
    (settings.landing_dir / "flights_2024-02.tsv").write_text(HEADER.replace("\tfare", "") + "\n")
    (settings.landing_dir / "flights-march.tsv").write_text("x\n")
    result = run("doctor")
    assert result.returncode == 1
    assert "PROBLEM file flights_2024-02.tsv: header lacks fare" in result.stdout
    assert "PROBLEM landing: 1 file(s) match no dataset: flights-march.tsv" in result.stdout
    assert "hint:" in result.stdout
    assert "Traceback" not in result.stderr


def test_snowflake_connection_role_warehouse_database_and_schemas(
    snowflake_deployment: Settings,
) -> None:
    result = run("doctor")
    assert result.returncode == 0, result.stdout
    for line in [
        "OK      snowflake connection: logged in to account fakesnow at http://127.0.0.1:",
        "OK      snowflake warehouse: PIPELINE_WH",
        f"OK      snowflake database: {os.environ['SNOWFLAKE_DATABASE']}",
        "OK      snowflake schema RAW: will be created by the first load or dbt run",
    ]:
        assert line in result.stdout


def test_snowflake_problems_name_the_variable_never_the_secret(
    snowflake_deployment: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SNOWFLAKE_PASSWORD", "never-print-me")
    monkeypatch.setenv("SNOWFLAKE_PORT", "9")  # nothing listens there
    monkeypatch.setenv("PIPELINE_SNOWFLAKE_TIMEOUT_SECONDS", "3")
    unreachable = run("doctor")
    monkeypatch.delenv("SNOWFLAKE_USER")
    unset = run("doctor")

    assert unreachable.returncode == 1
    assert (
        "PROBLEM snowflake connection: account fakesnow at http://127.0.0.1:9" in unreachable.stdout
    )
    assert "PROBLEM snowflake variables: not set: SNOWFLAKE_USER" in unset.stdout
    for result in (unreachable, unset):
        assert "never-print-me" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
