"""Atomic month replace in a real DuckDB file: old month or new month, never a mix."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipeline.ingest.stream import StagedLoad, ingest_file
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline.warehouse.duckdb import DuckDBWarehouse


def stage(
    settings: Settings, spec: DatasetSpec, month: str, seed: int, defects: float
) -> StagedLoad:
    path = settings.landing_dir / spec.file_name(month)
    write_tsv(month_frame(month, rows_per_day=40, seed=seed, defect_ratio=defects), path)
    return ingest_file(spec, path, month, settings.staging_dir, block_bytes=50_000)


def counts(warehouse: DuckDBWarehouse, month: str) -> tuple[int, int, list[str]]:
    with duckdb.connect(warehouse.path, read_only=True) as connection:
        rows = connection.execute("select count(*) from raw.flights where _month = ?", [month])
        loaded = rows.fetchone()[0]
        rejected = connection.execute(
            "select count(*) from raw.flights_rejects where _month = ?", [month]
        ).fetchone()[0]
        statuses = connection.execute(
            "select status from pipeline.load_ledger where month = ? order by finished_at", [month]
        ).fetchall()
    return loaded, rejected, [status for (status,) in statuses]


def test_reloading_a_month_replaces_it(
    settings: Settings, warehouse: DuckDBWarehouse, flights: DatasetSpec
) -> None:
    first = stage(settings, flights, "2024-03", seed=1, defects=0.01)
    warehouse.replace_month(first, run_id="run-1")
    other = stage(settings, flights, "2024-04", seed=2, defects=0.0)
    warehouse.replace_month(other, run_id="run-2")
    again = stage(settings, flights, "2024-03", seed=3, defects=0.02)
    warehouse.replace_month(again, run_id="run-3")

    loaded, rejected, statuses = counts(warehouse, "2024-03")
    assert (loaded, rejected) == (again.rows_loaded, again.rows_rejected)
    assert loaded + rejected == again.rows_read
    assert statuses == ["loaded", "loaded"]
    assert counts(warehouse, "2024-04")[:2] == (other.rows_loaded, 0)
    assert warehouse.latest_load("flights", "2024-03")["run_id"] == "run-3"


def test_a_failure_mid_load_leaves_the_previous_month(
    settings: Settings, warehouse: DuckDBWarehouse, flights: DatasetSpec
) -> None:
    good = stage(settings, flights, "2024-03", seed=1, defects=0.01)
    warehouse.replace_month(good, run_id="run-1")
    broken = stage(settings, flights, "2024-03", seed=2, defects=0.02)
    # The rows are inserted before the rejects: a corrupt rejects part fails after the month's
    # rows were already deleted and re-inserted inside the transaction.
    Path(broken.reject_parts[0]).write_bytes(b"not parquet")

    with pytest.raises(duckdb.Error):
        warehouse.replace_month(broken, run_id="run-2")

    loaded, rejected, statuses = counts(warehouse, "2024-03")
    assert (loaded, rejected) == (good.rows_loaded, good.rows_rejected)
    assert statuses == ["loaded", "failed"]
    assert warehouse.latest_load("flights", "2024-03")["run_id"] == "run-1"
