"""Write, audit, publish: counts that must agree are measured and compared, staged parts do not
outlive their month, checks read only the candidate month, and names from a spec are quoted."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pipeline.assets.loads import build_load_asset
from pipeline.checks.rules import check_rule
from pipeline.definitions import build_resources, open_warehouse
from pipeline.doctor import examine_staging
from pipeline.ingest import staging, stream
from pipeline.ingest.batches import ValidatedBatch
from pipeline.ingest.parts import PartWriter
from pipeline.ingest.stream import ReconciliationError, ingest_file, stage_file
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec, RuleSpec
from pipeline.warehouse.base import Warehouse
from pipeline_tests.support import candidate_month, load_month, materialize_load, stage_month


def test_a_block_lost_between_reading_and_staging_is_refused(
    settings: Settings, flights: DatasetSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = settings.landing_dir / flights.file_name("2024-01")
    frame = month_frame("2024-01", rows_per_day=20, seed=1)
    write_tsv(frame, path)
    validate = stream.validate_block

    def losing_the_second_block(block, **kwargs) -> ValidatedBatch:
        batch = validate(block, **kwargs)
        if block.first_line == 2 or block.first_line > 200:
            return batch
        return ValidatedBatch(rows=batch.rows.clear(), rejects=batch.rejects.clear())

    monkeypatch.setattr(stream, "validate_block", losing_the_second_block)
    directory = settings.staging_dir / "lost"
    with pytest.raises(ReconciliationError, match=f"{frame.height} data lines counted in the file"):
        ingest_file(flights, path, "2024-01", directory, block_bytes=10_000)
    assert staging.read_manifest(directory) is None  # nothing a retry could reuse


def test_a_part_the_warehouse_did_not_take_whole_is_refused(
    settings: Settings, warehouse: Warehouse, flights: DatasetSpec
) -> None:
    load_month(settings, warehouse, flights, "2024-01", month_frame("2024-01", 10, seed=1))
    count = "select count(*) as n from raw.flights"
    served = warehouse.query(count)
    staged = stage_month(settings, flights, "2024-01", month_frame("2024-01", 20, seed=2))
    part = Path(staged.row_parts[0])
    pl.read_parquet(part).head(5).write_parquet(part)  # a part truncated on its way

    with pytest.raises(ReconciliationError, match="nothing was published"):
        warehouse.replace_month(staged, run_id="truncated")

    assert warehouse.query(count) == served
    assert warehouse.latest_attempt("flights", "2024-01")["status"] == "failed"
    assert warehouse.drop_candidates("flights", "2024-01") == []


def test_every_published_row_carries_its_load(
    settings: Settings, warehouse: Warehouse, flights: DatasetSpec
) -> None:
    load_month(
        settings,
        warehouse,
        flights,
        "2024-01",
        month_frame("2024-01", 10, seed=1, defect_ratio=0.05),
    )
    ledger = warehouse.served_load("flights", "2024-01")
    for table, counted in (("flights", "rows_loaded"), ("flights_rejects", "rows_rejected")):
        rows = warehouse.query(f"select _load_id, count(*) as n from raw.{table} group by 1")
        assert rows == [{"_load_id": ledger["load_id"], "n": ledger[counted]}]
    assert ledger["rows_read"] == ledger["rows_loaded"] + ledger["rows_rejected"]


def test_a_complete_staging_is_reused_and_orphans_are_swept(
    settings: Settings, flights: DatasetSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = settings.landing_dir / flights.file_name("2024-01")
    write_tsv(month_frame("2024-01", rows_per_day=5, seed=1), path)
    directory = settings.staging_dir / "flights" / "2024-01" / "current"
    first = stage_file(flights, path, "2024-01", directory)

    def no_second_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("a complete staging must be reused, not read again")

    monkeypatch.setattr(stream, "ingest_file", no_second_read)
    assert stage_file(flights, path, "2024-01", directory) == first

    reading = settings.staging_dir / "flights" / "2024-02" / "reading"
    with staging.claimed(reading):  # a load still on its first block: nothing written yet
        assert staging.stale(settings.staging_dir) == []  # was dated 1970, "older than a day"
        assert examine_staging(settings.staging_dir, fix=False).ok
    staging.remove(reading)

    orphan = settings.staging_dir / "flights" / "2024-01" / "killed"
    with staging.claimed(orphan):
        (orphan / "rows-00000.parquet").write_bytes(b"half a part")
        assert staging.sweep(settings.staging_dir, keep=directory) == []  # in use: kept
        assert examine_staging(settings.staging_dir, fix=False).ok
    # Its process gone, doctor names it at once (it said "no stale staged parts" for a day);
    # the complete staging, kept for a retry, is no finding.
    left = examine_staging(settings.staging_dir, fix=False)
    assert not left.ok and "1 left half-written by a killed load" in left.message
    week_old = os.path.getmtime(orphan) - 7 * 24 * 3600
    for path in (orphan / "rows-00000.parquet", orphan):
        os.utime(path, (week_old, week_old))
    assert staging.sweep(settings.staging_dir, older_than=staging.ORPHAN_AGE_SECONDS) == [orphan]
    assert not orphan.exists() and (directory / staging.MANIFEST).is_file()
    # Kept for a retry, the complete one is no problem, but doctor says --fix would remove it
    # (it said "no stale staged parts", and --fix then removed one).
    with staging.claimed(directory):
        pass  # as a load that was killed after staging leaves it
    kept = examine_staging(settings.staging_dir, fix=False)
    assert kept.ok
    assert "1 complete staging(s) kept for a retry (flights 2024-01)" in kept.message


def test_a_month_leaves_no_staged_parts_once_published(
    deployment: Settings, flights: DatasetSpec
) -> None:
    write_tsv(
        month_frame("2024-02", rows_per_day=10, seed=3),
        deployment.landing_dir / flights.file_name("2024-02"),
    )
    result = dg.materialize(
        [build_load_asset(flights)],
        partition_key="2024-02",
        resources=build_resources(deployment),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    assert list(deployment.staging_dir.rglob("*.parquet")) == []


@pytest.mark.parametrize("fault", ["the disk is full", "the staging folder is under a file"])
def test_a_disk_that_refuses_the_staging_fails_the_month_once_and_keeps_no_parts(
    settings: Settings,
    flights: DatasetSpec,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fault: str,
) -> None:
    # Taken for the warehouse's passing trouble, such a load was retried for two minutes, its
    # parts left filling the disk, and (when the folder could not be made) nothing recorded.
    write_tsv(month_frame("2024-01", 10, seed=1), settings.landing_dir / "flights_2024-01.tsv")
    if fault == "the disk is full":
        write = PartWriter.write

        def full(writer: PartWriter, frame: pl.DataFrame) -> None:
            if writer.prefix == "rejects":  # the month's rows part is written by then
                raise pl.exceptions.ComputeError("parquet: No space left on device (os error 28)")
            write(writer, frame)

        monkeypatch.setattr(PartWriter, "write", full)
    else:
        (tmp_path / "a-file").write_text("")
        monkeypatch.setenv("PIPELINE_STAGING_DIR", str(tmp_path / "a-file" / "staging"))
        settings = Settings.from_env()

    result = materialize_load(flights, "2024-01", settings)

    assert not result.success
    assert "STEP_UP_FOR_RETRY" not in [event.event_type_value for event in result.all_events]
    (error,) = [
        row["error"] for row in load_month_rows(settings, "2024-01") if row["status"] == "failed"
    ]
    assert ("os error 28" if fault == "the disk is full" else "Not a directory") in error
    assert not (tmp_path / "staging").exists() or not any((tmp_path / "staging").rglob("*.parquet"))


def load_month_rows(settings: Settings, month: str) -> list[dict]:
    with open_warehouse(settings) as warehouse:
        return warehouse.query("select * from pipeline.load_ledger where month = ?", [month])


def test_a_rule_cannot_reach_beyond_its_month(
    settings: Settings, warehouse: Warehouse, flights: DatasetSpec
) -> None:
    load_month(settings, warehouse, flights, "2024-01", month_frame("2024-01", 5, seed=1))
    month = candidate_month(settings, warehouse, flights, "2024-02", month_frame("2024-02", 5, 2))
    escaping = RuleSpec(name="escape", where="dep_delay > 0) or (1=1", severity="WARNING")

    outcome = check_rule(month, escaping)

    assert outcome.observed == month.candidate.rows  # February's rows only, not January's


def test_a_warehouse_error_in_a_rule_fails_the_check_instead_of_being_its_finding(
    settings: Settings, warehouse: Warehouse, flights: DatasetSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    month = candidate_month(settings, warehouse, flights, "2024-01", month_frame("2024-01", 5, 1))
    query = type(month).query

    def connection_lost_on_the_rule(self, sql: str, parameters=()) -> list:
        if "dep_delay" in sql:
            raise ConnectionError("injected: connection reset by peer")
        return query(self, sql, parameters)

    monkeypatch.setattr(type(month), "query", connection_lost_on_the_rule)
    with pytest.raises(ConnectionError, match="injected"):
        check_rule(month, RuleSpec(name="late", where="dep_delay > 0", severity="WARNING"))


KEYWORDS_SPEC = {
    "name": "orders",
    "file_pattern": "orders_{month}.tsv",
    "start_month": "2024-01",
    "date_column": "date",
    "columns": {
        "date": {"type": "date", "nullable": False},
        "order": {"type": "int", "nullable": False, "min": 1},
        "group": {"type": "string", "allowed": ["a", "b"]},
        "select": {"type": "decimal", "precision": 10, "scale": 2},
    },
    "checks": {
        "completeness": {"calendar": "every_day"},
        "volume": {"lookback_months": 3},
        "unique": {"columns": ["order", "group"], "across_months": True},
    },
    "rules": [{"name": "big", "where": "1 = 0", "severity": "CRITICAL"}],
}


def test_columns_named_like_sql_keywords_load_and_pass_every_check(deployment: Settings) -> None:
    spec = DatasetSpec.model_validate(KEYWORDS_SPEC)
    days = pl.date_range(pl.date(2024, 1, 1), pl.date(2024, 1, 31), eager=True)
    frame = pl.DataFrame(
        {
            "date": days.dt.strftime("%Y-%m-%d"),
            "order": pl.int_range(1, len(days) + 1, eager=True).cast(pl.String),
            "group": ["a", "b"] * 15 + ["a"],
            "select": ["12.50"] * len(days),
        }
    )
    write_tsv(frame, deployment.landing_dir / spec.file_name("2024-01"))

    result = materialize_load(spec, "2024-01", deployment)

    failed = {
        e.check_name: e.description for e in result.get_asset_check_evaluations() if not e.passed
    }
    assert result.success and failed == {}
    with open_warehouse(deployment) as warehouse:
        order = warehouse.dialect.quote("order")
        rows = warehouse.query(f"select sum({order}) as total from raw.orders")
    assert rows == [{"total": sum(range(1, 32))}]
