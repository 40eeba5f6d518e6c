"""Operating it: resuming a batch from the partition status, and purging a month."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipeline.assets.loads import build_load_asset, raw_asset_key
from pipeline.definitions import build_definitions, open_warehouse
from pipeline.ingest.files import fingerprint
from pipeline.runner import (
    load_months,
    month_statuses,
    partitioned_downstream,
    plan_months,
    purge_month,
)
from pipeline.sample_data import month_frame, settlements_frame, write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec, load_specs
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
    assert list(lines) == ["2024-01", "2024-02", "2024-03"]  # in month order, skipped or run
    assert "skipped" in lines["2024-01"] and "already loaded from this file" in lines["2024-01"]
    assert "skipped" in lines["2024-03"]
    assert "ok" in lines["2024-02"].split()
    assert "Months: 1 loaded, 2 skipped, 0 failed" in resumed.stdout


def test_files_archived_or_not_yet_landed_make_no_failed_runs(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    # A dataset nothing has landed for: no run per month since its start, each failing.
    nothing = run("load", "flights")
    assert nothing.returncode == 0, nothing.stderr
    assert "Nothing to load: no file of flights has landed in " in nothing.stdout
    assert instance.get_runs() == []

    land(settings, "2024-01", 1)
    land(settings, "2024-02", 2)
    assert run("load", "flights").returncode == 0
    # Delivered files are archived once loaded: the loaded months stay as they are.
    archive = settings.landing_dir.parent / "archive"
    archive.mkdir()
    (settings.landing_dir / "flights_2024-01.tsv").rename(archive / "flights_2024-01.tsv")
    for options in ([], ["--force"]):
        again = run("load", "flights", "--from", "2024-01", "--to", "2024-02", *options)
        assert again.returncode == 0, again.stdout
        assert "loaded earlier from a file no longer in the landing folder" in again.stdout
        assert "FAILED" not in again.stdout
    status = month_lines(run("status", "flights", "--to", "2024-02").stdout)
    assert status["2024-01"].split()[1] == "materialized"

    # A file delivered compressed under a pattern that does not say so: the advice says so.
    land(settings, "2024-03", 3)
    plain = settings.landing_dir / "flights_2024-03.tsv"
    plain.with_name(plain.name + ".gz").write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    compressed = run("load", "flights", "--from", "2024-03", "--to", "2024-03")
    assert compressed.returncode == 1
    assert (
        "flights_2024-03.tsv came compressed: set file_pattern: flights_{month}.tsv.gz in the "
        "spec to load it as delivered (every month of flights is then looked for "
        "gzip-compressed), or deliver it uncompressed; then "
        "`pipeline load flights --from 2024-03 --to 2024-03`."
    ) in compressed.stdout
    assert "Deliver" not in compressed.stdout

    # A file no check refused (its header lacks a column): fix it and load again, no flag.
    write_tsv(
        month_frame("2024-04", 20, seed=4).drop("carrier"), plain.with_name("flights_2024-04.tsv")
    )
    stopped = run("load", "flights", "--from", "2024-04", "--to", "2024-04")
    assert stopped.returncode == 1
    assert (
        "Fix what the reason above names for 2024-04 (the file, the spec, a setting or the "
        "warehouse), then `pipeline load flights --from 2024-04 --to 2024-04`."
    ) in stopped.stdout
    assert "Correct the file" not in stopped.stdout and "Deliver" not in stopped.stdout


def test_a_month_the_warehouse_lost_is_missing_and_loaded_again(
    settings: Settings, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    land(settings, "2024-01", 1)
    assert run("load", "flights").returncode == 0
    # Another, empty warehouse with the same DAGSTER_HOME.
    other = settings.duckdb_path.with_name("other.duckdb")
    duckdb.connect(str(other)).close()
    monkeypatch.setenv("PIPELINE_DUCKDB_PATH", str(other))
    status = run("status", "flights")
    assert month_lines(status.stdout)["2024-01"].split()[1] == "missing"
    assert "missing (Dagster recorded a load, but duckdb:" in status.stdout
    # The database deleted to start over: status names the path, and creates nothing there.
    monkeypatch.setenv("PIPELINE_DUCKDB_PATH", str(settings.duckdb_path))
    Path(settings.duckdb_path).unlink()
    refused = run("status", "flights")
    assert refused.returncode == 2 and refused.stderr == (
        f"Error: {settings.duckdb_path}: no warehouse file there (PIPELINE_DUCKDB_PATH); nothing "
        "was loaded there: check the path, or load a month first\n"
    )
    assert not settings.duckdb_path.exists()

    reloaded = run("load", "flights")
    assert reloaded.returncode == 0, reloaded.stdout
    assert (
        f"duckdb:{settings.duckdb_path} has no load of 2024-01, which Dagster recorded as loaded "
        "(a new or emptied database, or a mistyped path): loading them again."
    ) in reloaded.stdout
    assert month_lines(reloaded.stdout)["2024-01"].split()[1] == "ok"
    assert scalar(settings, "select count(*) from raw.flights") > 0


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
        # Files no longer (or not yet) in the landing folder.
        MonthStatus("2024-08", "materialized", {}, {"schema": "passed"}, "h"),  # archived
        MonthStatus("2024-09", "failed", {}, {}, None),  # its run found no file
        MonthStatus("2024-10", "missing", {}, {}, None),
    ]
    files = {
        **{"2024-01": "a", "2024-02": "b", "2024-03": "c", "2024-04": "new", "2024-05": "e"},
        **{"2024-06": "f", "2024-07": "corrected"},
    }
    plain = plan_months(statuses, files)
    assert plain.run == ["2024-03", "2024-04", "2024-05", "2024-07", "2024-09", "2024-10"]
    assert plain.failing == ["2024-02", "2024-06"]
    # An archived month is kept, even with --force: there is nothing to reload it from.
    archived = "loaded earlier from a file no longer in the landing folder (archived?)"
    assert plain.skipped["2024-08"] == archived
    forced = plan_months(statuses, files, force=True)
    assert forced.run == [s.month for s in statuses if s.month != "2024-08"]
    assert forced.skipped == {"2024-08": archived}
    retry = plan_months(statuses, files, retry_failed=True)
    assert retry.run == ["2024-02", "2024-03", "2024-06", "2024-07"]
    assert retry.skipped["2024-01"] == "did not fail"  # a WARN finding is not a failure
    assert retry.skipped["2024-05"] == "not loaded yet: a load without --retry-failed loads it"
    # A failed month with no file is still failing, but not run to fail the same way again.
    assert retry.skipped["2024-09"].startswith("failed, and its file is not in the landing")
    assert retry.failing == ["2024-09"]


def test_a_month_holding_columns_marked_otherwise_is_loaded_again() -> None:
    # A refused month compared only its refusal's marking, so one still serving rows loaded
    # before a column was marked was not reloaded; refusals from before refusals recorded
    # theirs compared as unknown, and were never reloaded either.
    from pipeline.runner import MonthStatus

    now = "email: hash"
    refused = {"refused_fingerprint": "f"}
    statuses = [
        MonthStatus("2024-01", "materialized", {}, {}, "a", sensitive_columns="none"),
        MonthStatus("2024-02", "materialized", {}, {}, "b", sensitive_columns=now),
        MonthStatus(
            "2024-03",
            "failed",
            {},
            {},
            "c",
            sensitive_columns="none",
            refused_sensitive_columns=now,
            **refused,
        ),
        MonthStatus("2024-04", "failed", {}, {}, None, refused_sensitive_columns="none", **refused),
        MonthStatus("2024-05", "failed", {}, {}, None, **refused),  # refused, marking unrecorded
        MonthStatus("2024-06", "failed", {}, {}, None, refused_sensitive_columns=now, **refused),
        # Its file archived: nothing to reload it from (it was run, to fail for want of a file).
        MonthStatus("2024-07", "failed", {}, {}, None, refused_sensitive_columns="none", **refused),
    ]
    files = {
        status.month: "f" if status.refused_fingerprint else status.fingerprint
        for status in statuses
    }
    del files["2024-07"]
    plan = plan_months(statuses, files, sensitive_columns=now)
    assert plan.run == ["2024-01", "2024-03", "2024-04", "2024-05"]
    assert plan.skipped["2024-07"].endswith("deliver the file again, or purge the month")
    assert (
        plan.reloaded["2024-05"]
        == f"loaded with sensitive columns unrecorded; the spec now says {now}"
    )
    unmarked = plan_months(statuses, files, sensitive_columns="none")
    # 2024-05: nothing to hash now; 2024-07 failed, and runs as any failed month does.
    assert unmarked.run == ["2024-02", "2024-03", "2024-06", "2024-07"]


def test_purge_deletes_the_month_everywhere_and_records_it(
    deployment: Settings, instance: dg.DagsterInstance, flights: DatasetSpec
) -> None:
    settings = deployment
    for seed, month in enumerate(["2024-01", "2024-02"]):
        write_tsv(  # one reject each, under the spec's 0.1%: published with its rejects
            month_frame(month, 40, seed=seed, defect_ratio=0.0008),
            settings.landing_dir / f"flights_{month}.tsv",
        )
    defs = build_definitions(settings)
    assert all(r.success for r in load_months(defs, flights, ["2024-01", "2024-02"], instance))
    rejects = "select count(*) from raw.flights_rejects where _month = '2024-01'"
    assert scalar(settings, rejects) == 1  # so that purging them is seen (0.0005 planted none)
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
    # The quality view for BI tools showed the purged month with every check passed.
    verdicts = "select count(*) from analytics.dq_check_history where month = '{}'"
    assert (
        scalar(settings, verdicts.format("2024-01")),
        scalar(settings, verdicts.format("2024-02")),
    ) == (0, 8)
    # The purge read no file: the month's reject ratio is unknown, not 0%.
    ratio = "select reject_ratio from analytics.dq_load_history where month = '{}'"
    assert scalar(settings, ratio.format("2024-01")) is None
    attempts = "select attempts from analytics.dq_load_history where month = '2024-01'"
    assert scalar(settings, attempts) == 1  # its load: the purge is no attempt to load it
    assert scalar(settings, ratio.format("2024-02")) > 0  # its one reject
    by_month = {
        s.month: s.status for s in month_statuses(defs, flights, instance, ["2024-01", "2024-02"])
    }
    assert by_month == {"2024-01": "missing", "2024-02": "materialized"}

    # The month of the latest run, purged (its status read), then loaded again, is materialized,
    # and a plain load skips it. Dagster's SQLite storage gave the reload's events the purged
    # run's ids, which the status cache had already read past: it stayed `missing`.
    with open_warehouse(settings) as warehouse:
        assert warehouse.served_load("flights", "2024-02") is not None
        purge_month(defs, flights, "2024-02", instance, warehouse)
        assert warehouse.served_load("flights", "2024-02") is None  # loaded, then purged
    assert month_statuses(defs, flights, instance, ["2024-02"])[0].status == "missing"
    assert load_months(defs, flights, ["2024-02"], instance)[0].success
    (reloaded,) = month_statuses(defs, flights, instance, ["2024-02"])
    assert reloaded.status == "materialized"
    landed = fingerprint(settings.landing_dir / "flights_2024-02.tsv")
    assert plan_months([reloaded], {"2024-02": landed}).run == []


# Each way a month of flights gets into the instance, as a run of 2024-01.
Launch = Callable[[dg.Definitions, DatasetSpec, dg.DagsterInstance], object]


def by_the_cli(defs: dg.Definitions, spec: DatasetSpec, instance: dg.DagsterInstance) -> None:
    load_months(defs, spec, ["2024-01"], instance)


def by_materialize(defs: dg.Definitions, spec: DatasetSpec, instance: dg.DagsterInstance) -> None:
    """A script's (or a notebook's) `dg.materialize`: its own ephemeral job."""
    dg.materialize(
        [build_load_asset(spec)],
        partition_key="2024-01",
        instance=instance,
        resources=defs.resources,
    )


def by_a_ui_backfill(defs: dg.Definitions, spec: DatasetSpec, instance: dg.DagsterInstance) -> None:
    """A backfill from the asset graph: the implicit asset job, one run per month, tagged."""
    defs.resolve_implicit_global_asset_job_def().execute_in_process(
        partition_key="2024-01",
        asset_selection=partitioned_downstream(defs, raw_asset_key(spec)),
        instance=instance,
        tags={"dagster/backfill": "flightsbf"},
    )


def by_a_failed_ui_materialization(
    defs: dg.Definitions, spec: DatasetSpec, instance: dg.DagsterInstance
) -> None:
    """*Materialize* on raw/flights for a month whose file is gone: planned, never materialized."""
    (defs.resources["files"].landing_path / spec.file_name("2024-01")).unlink()
    defs.resolve_implicit_global_asset_job_def().execute_in_process(
        partition_key="2024-01",
        asset_selection=[raw_asset_key(spec)],
        instance=instance,
        raise_on_error=False,
    )


def by_the_sensor(defs: dg.Definitions, spec: DatasetSpec, instance: dg.DagsterInstance) -> None:
    """The landing sensor's request, run the way the daemon builds it (job, partition, tags)."""
    sensor = defs.resolve_sensor_def(f"{spec.name}_landing")
    resources = {"files": defs.resources["files"]}
    cursor = None
    for _ in range(2):  # a file is requested once it looks the same on two ticks
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        result = sensor(context)
        cursor = result.cursor
    (request,) = [r for r in result.run_requests if r.partition_key == "2024-01"]
    defs.resolve_job_def(sensor.job_name).execute_in_process(
        partition_key=request.partition_key,
        instance=instance,
        tags={
            **request.tags,
            **dg.DagsterRun.tags_for_sensor(sensor),
            "dagster/run_key": request.run_key,
        },
    )


@pytest.mark.parametrize(
    "launch",
    [by_the_cli, by_materialize, by_a_ui_backfill, by_a_failed_ui_materialization, by_the_sensor],
)
def test_purge_forgets_the_month_whichever_way_it_was_run(
    launch: Launch, settings: Settings, instance: dg.DagsterInstance, flights: DatasetSpec
) -> None:
    # Purge used to delete only runs of the load job: a month loaded from the UI or by a script
    # stayed materialized after its rows were gone.
    settlements = load_specs(settings.datasets_dir)["settlements"]
    land(settings, "2024-01", 1)
    land(settings, "2024-02", 2)
    write_tsv(
        settlements_frame("2024-01", 5, seed=1), settings.landing_dir / "settlements_2024-01.tsv"
    )
    defs = build_definitions(settings)
    job = defs.resolve_implicit_global_asset_job_def()
    others = [  # the same month of another dataset, another month of this one
        job.execute_in_process(
            partition_key=month, asset_selection=[raw_asset_key(spec)], instance=instance
        ).run_id
        for spec, month in [(settlements, "2024-01"), (flights, "2024-02")]
    ]
    launch(defs, flights, instance)
    assert month_statuses(defs, flights, instance, ["2024-01"])[0].status != "missing"

    with open_warehouse(settings) as warehouse:
        purge_month(defs, flights, "2024-01", instance, warehouse)

    by_month = {
        s.month: s.status for s in month_statuses(defs, flights, instance, ["2024-01", "2024-02"])
    }
    assert by_month == {"2024-01": "missing", "2024-02": "materialized"}
    (other_dataset,) = month_statuses(defs, settlements, instance, ["2024-01"])
    assert other_dataset.status == "materialized"
    assert all(instance.get_run_by_id(run_id) is not None for run_id in others)
    left = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": "2024-01"}))
    assert [run.run_id for run in left] == [others[0]]  # settlements' 2024-01 alone


def test_a_statement_the_database_refuses_fails_the_month_once_not_four_times(
    settings: Settings, instance: dg.DagsterInstance, flights: DatasetSpec
) -> None:
    """A refused statement would be refused again: no retries (10 s, 20 s, 40 s of backoff)."""
    with open_warehouse(settings) as warehouse:
        # An object where the raw table goes: the insert into it is refused, every time.
        warehouse.query("create schema if not exists raw")
        warehouse.query("create view raw.flights as select 1 as flight")
    land(settings, "2024-01", 1)

    (result,) = load_months(build_definitions(settings), flights, ["2024-01"], instance)

    assert not result.success
    assert "flights" in result.errors[0] and "Exceeded max_retries" not in result.errors[0]
    attempts = scalar(settings, "select count(*) from pipeline.load_ledger where month = '2024-01'")
    assert attempts == 1
    assert not any(settings.staging_dir.rglob("*.parquet")), "its parts are not kept for a retry"
