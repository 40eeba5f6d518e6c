"""Atomic month replace on both warehouses: old month or new month, never a mix or a double."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from snowflake.connector import errors as sf_errors
from snowflake.connector.cursor import SnowflakeCursorBase as SnowflakeCursor

from pipeline.assets.loads import build_load_asset
from pipeline.definitions import build_resources, build_warehouse
from pipeline.ingest.stream import StagedLoad, ingest_file
from pipeline.resources import LandingFiles
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline.warehouse import base
from pipeline.warehouse.base import Warehouse
from pipeline.warehouse.snowflake import SnowflakeWarehouse


def stage(
    settings: Settings,
    spec: DatasetSpec,
    month: str,
    seed: int,
    defects: float,
    part_bytes: int = 0,
) -> StagedLoad:
    path = settings.landing_dir / spec.file_name(month)
    write_tsv(month_frame(month, rows_per_day=40, seed=seed, defect_ratio=defects), path)
    return ingest_file(
        spec, path, month, settings.staging_dir, block_bytes=50_000, part_bytes=part_bytes
    )


def counts(warehouse: Warehouse, month: str) -> tuple[int, int, list[str]]:
    def count(table: str) -> int:
        return warehouse.query(f"select count(*) as n from {table} where _month = ?", [month])[0][
            "n"
        ]

    statuses = warehouse.query(
        "select status from pipeline.load_ledger where month = ? order by finished_at", [month]
    )
    return count("raw.flights"), count("raw.flights_rejects"), [r["status"] for r in statuses]


def test_reloading_a_month_replaces_it(
    settings: Settings, warehouse: Warehouse, flights: DatasetSpec
) -> None:
    first = stage(settings, flights, "2024-03", seed=1, defects=0.01)
    warehouse.replace_month(first, run_id="run-1")
    other = stage(settings, flights, "2024-04", seed=2, defects=0.0)
    warehouse.replace_month(other, run_id="run-2")
    # Larger parts, as Snowflake asks for: several blocks appended to one part.
    again = stage(settings, flights, "2024-03", seed=3, defects=0.02, part_bytes=60_000)
    assert len(again.row_parts) < len(first.row_parts)
    warehouse.replace_month(again, run_id="run-3")

    loaded, rejected, statuses = counts(warehouse, "2024-03")
    assert (loaded, rejected) == (again.rows_loaded, again.rows_rejected)
    assert loaded + rejected == again.rows_read
    assert statuses == ["loaded", "loaded"]
    assert counts(warehouse, "2024-04")[:2] == (other.rows_loaded, 0)
    assert warehouse.served_load("flights", "2024-03")["run_id"] == "run-3"
    # Typed as the spec says, whichever warehouse: a decimal fare, a real date.
    types = {
        row["column_name"].lower(): row
        for row in warehouse.query(
            "select column_name, data_type, numeric_scale from information_schema.columns "
            "where lower(table_schema) = 'raw' and lower(table_name) = 'flights'"
        )
    }
    assert types["fare"]["data_type"].startswith(("DECIMAL", "NUMBER"))  # not a float
    assert types["fare"]["numeric_scale"] == 2 and types["flight_date"]["data_type"] == "DATE"
    row = warehouse.query("select min(flight_date) as first_day from raw.flights")[0]
    assert row["first_day"] == dt.date(2024, 3, 1)  # a date, not its text


def test_a_failure_between_delete_and_insert_leaves_the_previous_month(
    settings: Settings,
    warehouse: Warehouse,
    flights: DatasetSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = stage(settings, flights, "2024-03", seed=1, defects=0.01)
    warehouse.replace_month(good, run_id="run-1")
    broken = stage(settings, flights, "2024-03", seed=2, defects=0.02)
    delete_month = base.delete_month

    def delete_then_fail(*args: object) -> int:
        delete_month(*args)
        raise RuntimeError("injected: the connection died after the DELETE")

    monkeypatch.setattr(base, "delete_month", delete_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        warehouse.replace_month(broken, run_id="run-2")
    monkeypatch.undo()

    loaded, rejected, statuses = counts(warehouse, "2024-03")
    assert (loaded, rejected) == (good.rows_loaded, good.rows_rejected)
    assert statuses == ["loaded", "failed"]
    assert warehouse.served_load("flights", "2024-03")["run_id"] == "run-1"
    # The audit entry of the rolled-back publish rolled back with it.
    kinds = warehouse.query("select kind from pipeline.audit_log order by seq")
    assert [row["kind"] for row in kinds] == ["published", "load_failed"]


def test_transient_snowflake_errors_are_retried_and_sql_errors_are_not(
    snowflake_deployment: Settings, flights: DatasetSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = snowflake_deployment
    configured = build_warehouse(settings)
    assert isinstance(configured, SnowflakeWarehouse)
    # Short delays: the backoff itself is not under test, the retrying is.
    faster = configured.model_copy(update={"retry_base_seconds": 0.01})
    with dg.build_resources({"warehouse": faster}) as resources:
        warehouse = resources.warehouse
        staged = stage(settings, flights, "2024-06", seed=4, defects=0.01)
        failures = {"left": 3}
        execute = SnowflakeCursor.execute
        statements: list[str] = []

        def flaky(self: SnowflakeCursor, command: str, *args: object, **kwargs: object) -> object:
            statements.append(command)
            if "DELETE FROM" in command and failures["left"] > 0:
                failures["left"] -= 1
                raise sf_errors.OperationalError(msg="injected: connection reset", errno=250003)
            return execute(self, command, *args, **kwargs)

        monkeypatch.setattr(SnowflakeCursor, "execute", flaky)
        warehouse.replace_month(staged, run_id="run-1")
        load_statements = list(statements)

        assert failures["left"] == 0
        loaded, rejected, statuses = counts(warehouse, "2024-06")
        assert (loaded, rejected) == (staged.rows_loaded, staged.rows_rejected)
        assert loaded + rejected == staged.rows_read
        assert statuses == ["loaded"]
        # Every statement of the load, the uploads' included, says whose it is.
        comment = "/* pipeline dataset=flights month=2024-06 run_id=run-1 */ "
        assert any(statement.startswith(comment + "PUT ") for statement in load_statements)
        assert [s for s in load_statements if not s.startswith(comment)] == []

        sent: list[str] = []

        def record(self: SnowflakeCursor, command: str, *args: object, **kwargs: object) -> object:
            sent.append(command)
            return execute(self, command, *args, **kwargs)

        monkeypatch.setattr(SnowflakeCursor, "execute", record)
        with pytest.raises(sf_errors.ProgrammingError):
            warehouse.query("select no_such_column from raw.flights")
        tries = [command for command in sent if "no_such_column" in command]
        assert len(tries) == 1, "a SQL error must fail at once, not be retried"


def test_a_month_through_dagster_uploads_large_parts_and_every_statement_names_it(
    snowflake_deployment: Settings, flights: DatasetSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = snowflake_deployment
    monkeypatch.setenv("PIPELINE_SNOWFLAKE_PART_MB", "1")
    path = settings.landing_dir / flights.file_name("2024-05")
    write_tsv(month_frame("2024-05", rows_per_day=600, seed=5, defect_ratio=0.0008), path)
    resources = build_resources(Settings.from_env())
    # 50 kB blocks: about 30 of them, so without rolling there would be about 30 parts each.
    resources["files"] = LandingFiles(
        landing_dir=str(settings.landing_dir),
        staging_dir=str(settings.staging_dir),
        block_bytes=50_000,
    )
    sent: list[str] = []
    execute = SnowflakeCursor.execute

    def record(self: SnowflakeCursor, command: str, *args: object, **kwargs: object) -> object:
        sent.append(command)
        return execute(self, command, *args, **kwargs)

    monkeypatch.setattr(SnowflakeCursor, "execute", record)
    result = dg.materialize(
        [build_load_asset(flights)],
        partition_key="2024-05",
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )

    assert result.success and result.get_asset_check_evaluations()  # published, checks queried
    puts = [command for command in sent if "PUT 'file://" in command]
    assert len(puts) == 2  # one rolled part of rows, one of rejects
    comment = f"/* pipeline dataset=flights month=2024-05 run_id={result.run_id} */ "
    assert [command for command in sent if not command.startswith(comment)] == []
