"""Operating it: resuming a batch from the partition status, and purging a month."""

from __future__ import annotations

import dagster as dg

from pipeline.definitions import build_definitions, open_warehouse
from pipeline.runner import load_months, month_statuses, plan_months, purge_month
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline_tests.support import run, scalar


def land(settings: Settings, month: str, seed: int) -> None:
    write_tsv(month_frame(month, 20, seed=seed), settings.landing_dir / f"flights_{month}.tsv")


def month_lines(output: str) -> dict[str, str]:
    return {line.split()[0]: line for line in output.splitlines() if line[:4] == "2024"}


def test_a_resumed_batch_runs_only_the_month_that_failed(settings: Settings) -> None:
    land(settings, "2024-01", 1)
    land(settings, "2024-03", 3)  # 2024-02 has not arrived yet

    first = run("load", "flights", "--from", "2024-01", "--to", "2024-03")
    assert first.returncode == 1
    assert "FAILED" in month_lines(first.stdout)["2024-02"]
    assert "no file for flights 2024-02" in first.stdout

    land(settings, "2024-02", 2)
    resumed = run("load", "flights", "--from", "2024-01", "--to", "2024-03")

    assert resumed.returncode == 0, resumed.stderr
    lines = month_lines(resumed.stdout)
    assert "skipped" in lines["2024-01"] and "already loaded from this file" in lines["2024-01"]
    assert "skipped" in lines["2024-03"]
    assert "ok" in lines["2024-02"].split()
    assert "Months: 1 loaded, 2 skipped, 0 failed" in resumed.stdout


def test_plan_skips_what_is_done_and_retries_what_failed() -> None:
    from pipeline.runner import MonthStatus

    statuses = [
        MonthStatus("2024-01", "materialized", {}, {"volume": "FAILED (WARN)"}, "a"),
        MonthStatus("2024-02", "materialized", {}, {"schema": "FAILED (ERROR)"}, "b"),
        MonthStatus("2024-03", "failed", {}, {}, None),
        MonthStatus("2024-04", "materialized", {}, {"schema": "passed"}, "old"),
        MonthStatus("2024-05", "missing", {}, {}, None),
        # Refused by an ERROR check: not read again from the same file, but from a new one.
        MonthStatus("2024-06", "failed", {}, {}, "f", refused_fingerprint="f"),
        MonthStatus("2024-07", "failed", {}, {}, "g", refused_fingerprint="g"),
    ]
    files = {
        **{"2024-01": "a", "2024-02": "b", "2024-03": "c", "2024-04": "new", "2024-05": "e"},
        **{"2024-06": "f", "2024-07": "corrected"},
    }
    assert plan_months(statuses, files).run == ["2024-03", "2024-04", "2024-05", "2024-07"]
    assert plan_months(statuses, files, force=True).run == [s.month for s in statuses]
    retry = plan_months(statuses, files, retry_failed=True)
    assert retry.run == ["2024-02", "2024-03", "2024-06", "2024-07"]
    assert retry.skipped["2024-01"] == "did not fail"  # a WARN finding is not a failure
    assert plan_months(statuses, files).failing == ["2024-02", "2024-06"]


def test_purge_deletes_the_month_everywhere_and_records_it(
    deployment: Settings, instance: dg.DagsterInstance, flights: DatasetSpec
) -> None:
    settings = deployment
    for seed, month in enumerate(["2024-01", "2024-02"]):
        write_tsv(
            month_frame(month, 20, seed=seed, defect_ratio=0.0005),
            settings.landing_dir / f"flights_{month}.tsv",
        )
    defs = build_definitions(settings)
    assert all(r.success for r in load_months(defs, flights, ["2024-01", "2024-02"], instance))
    # Reading the status fills Dagster's partition status cache, as the UI and the CLI do.
    assert month_statuses(defs, flights, instance, ["2024-01"])[0].status == "materialized"

    with open_warehouse(settings) as warehouse:
        deleted = purge_month(defs, flights, "2024-01", instance, warehouse)
        statuses = warehouse.query(
            "select status from pipeline.load_ledger where month = '2024-01' order by finished_at"
        )

    assert deleted["raw.flights"] > 0 and deleted["analytics.flights_daily"] == 31
    for table, column in [
        ("raw.flights", "_month"),
        ("raw.flights_rejects", "_month"),
        ("analytics.flights_daily", "month"),
        ("analytics.flights_monthly", "month"),
    ]:
        assert scalar(settings, f"select count(*) from {table} where {column} = '2024-01'") == 0
    assert scalar(settings, "select count(*) from raw.flights where _month = '2024-02'") > 0
    assert [row["status"] for row in statuses] == ["loaded", "purged"]
    by_month = {
        s.month: s.status for s in month_statuses(defs, flights, instance, ["2024-01", "2024-02"])
    }
    assert by_month == {"2024-01": "missing", "2024-02": "materialized"}
