"""Months in parallel where the warehouse allows it: Snowflake yes, DuckDB no (one writer)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from pipeline.assets import loads
from pipeline.cli import main
from pipeline.progress import PUBLISH, READ, REPORTS
from pipeline.runner import held_interrupts
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline_tests.support import CliRun, run, run_time, scalar

# The first month of a range runs alone (it creates the report tables), the other three at once.
MONTHS = ("2024-01", "2024-02", "2024-03", "2024-04")


@pytest.mark.parametrize("how", ["option", "environment"])
def test_duckdb_refuses_parallel_months_and_says_why(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "environment":
        monkeypatch.setenv("PIPELINE_PARALLEL_MONTHS", "2")
    args = ["--parallel", "2"] if how == "option" else []

    # In process: refused before any month runs, so a subprocess would only add Dagster's import.
    refused = CliRunner().invoke(
        main, ["load", "flights", "--from", "2024-01", "--to", "2024-02", *args]
    )

    assert refused.exit_code == 2
    assert "--parallel 2: duckdb lets one process write its database at a time" in refused.stderr
    assert "PIPELINE_WAREHOUSE=snowflake" in refused.stderr


def test_three_months_at_once_on_snowflake_are_each_exact(
    snowflake_deployment: Settings, instance: dg.DagsterInstance
) -> None:
    settings = snowflake_deployment
    frames = {month: month_frame(month, 3, seed=n) for n, month in enumerate(MONTHS, start=1)}
    for month, frame in frames.items():
        write_tsv(frame, settings.landing_dir / f"flights_{month}.tsv")

    loaded = run("load", "flights", "--from", MONTHS[0], "--to", MONTHS[-1], "--parallel", "3")

    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert "Months: 4 loaded, 0 skipped, 0 failed" in loaded.stdout
    assert "Warning" not in loaded.stderr, loaded.stderr  # the workers hide what the CLI hides
    # Each month's checks waited for the months before it: only the first two lack the history
    # the volume check needs (two earlier months), as when months load one at a time.
    assert loaded.stdout.count("not enough history to judge volume") == 2, loaded.stdout
    for position, month in enumerate(MONTHS, start=1):
        # Each month is shown as it goes, the three at once too, under its own name.
        for phase in (PUBLISH, REPORTS):
            assert f"[{position}/4] {month} {phase}\n" in loaded.stdout, loaded.stdout
    runs = sorted(instance.get_run_records(), key=lambda r: r.dagster_run.tags["dagster/partition"])
    assert [record.dagster_run.tags["dagster/partition"] for record in runs] == list(MONTHS)
    together = runs[1:]
    # They did run together: each of the three started before any of them ended.
    assert max(run_time(r.start_time) for r in together) < min(
        run_time(r.end_time) for r in together
    )
    assert run_time(runs[0].end_time) < min(run_time(r.start_time) for r in together)
    ledger = {
        row["month"]: row
        for row in _rows(settings, "select * from pipeline.load_ledger where status = 'loaded'")
    }
    for month, frame in frames.items():
        rows = _rows(
            settings,
            "select _line_number, carrier, flight, fare, _load_id from raw.flights "
            f"where _month = '{month}' order by _line_number",
        )
        # Every line of the file, in order, value for value, all stamped with the month's load.
        assert [
            (r["_line_number"], r["carrier"], r["flight"], Decimal(str(r["fare"]))) for r in rows
        ] == [
            (line, carrier, int(flight), Decimal(fare))
            for line, (carrier, flight, fare) in enumerate(
                frame.select("carrier", "flight", "fare").iter_rows(), start=2
            )
        ]
        assert {r["_load_id"] for r in rows} == {ledger[month]["load_id"]}
        assert ledger[month]["rows_loaded"] == frame.height
        monthly = f"select flights from analytics.flights_monthly where month = '{month}'"
        assert scalar(settings, monthly) == frame.height
    # Publishes at once read the same audit head and forked the chain (`entry 3: duplicated`)
    # until each took the log's lock first (warehouse/audit.py). Whether they collide here
    # depends on timing; test_audit.py's threads make them collide every time.
    verified = CliRunner().invoke(main, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith("OK: "), verified.output
    published = _rows(
        settings, "select month, load_id from pipeline.audit_log where kind = 'published'"
    )
    assert sorted((r["month"], r["load_id"]) for r in published) == [
        (month, ledger[month]["load_id"]) for month in MONTHS
    ]


def test_ctrl_c_stops_the_months_running_at_once_and_begins_no_other(
    snowflake_deployment: Settings, instance: dg.DagsterInstance
) -> None:
    # Ctrl-C stopped the two months running in workers, but the month the pool had already
    # handed a worker then loaded, unseen; and the closing "Interrupted." was written to the
    # stdout the CLI hides while months run, so it ended with tracebacks and no word.
    settings = snowflake_deployment
    for n, month in enumerate(MONTHS, start=1):
        write_tsv(month_frame(month, 400, seed=n), settings.landing_dir / f"flights_{month}.tsv")
    load = ("load", "flights", "--from", MONTHS[0], "--to", MONTHS[-1], "--parallel", "2")

    with CliRun.start(*load) as run:
        for position, month in ((2, MONTHS[1]), (3, MONTHS[2])):
            assert run.wait_for(f"[{position}/4] {month} {READ}") is not None, run.log()
        os.killpg(run.process.pid, signal.SIGINT)  # what Ctrl-C sends the terminal's group
        code = run.finish()

    assert code == 130, run.log()
    assert (
        "Interrupted. Not run: 2024-04. To go on: `pipeline load flights --from 2024-02 "
        "--to 2024-04 --parallel 2`." in run.log()
    ), run.log()
    for month in MONTHS[1:3]:
        assert f"{month}  FAILED" in run.log(), run.log()
        assert f"raw__flights: flights {month}: interrupted (Ctrl-C or SIGTERM)" in run.log()
    runs = {
        record.dagster_run.tags["dagster/partition"]: record.dagster_run.status
        for record in instance.get_run_records()
    }
    assert runs == {
        MONTHS[0]: dg.DagsterRunStatus.SUCCESS,
        MONTHS[1]: dg.DagsterRunStatus.FAILURE,
        MONTHS[2]: dg.DagsterRunStatus.FAILURE,
    }
    assert scalar(settings, "select count(*) from raw.flights where _month = '2024-04'") == 0


def test_ctrl_c_during_a_call_to_the_progress_manager_waits_for_the_call_to_end() -> None:
    # Taken half-way through a call (sent, its reply unread), it left the reply on the
    # connection for the next call to read as its own: a TypeError and exit 1, now and then,
    # from the Ctrl-C test above.
    ended = []
    with pytest.raises(KeyboardInterrupt), held_interrupts():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # where the reply would be read
        ended.append("the call")
    assert ended == ["the call"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _rows(settings: Settings, sql: str) -> list[dict]:
    from pipeline.definitions import open_warehouse

    with open_warehouse(settings) as warehouse:
        return warehouse.query(sql)


def test_a_run_that_logs_nothing_for_the_limit_is_taken_for_dead(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run worker the daemon launched that died leaves its run STARTED for ever: the months
    # after it would wait for it for ever too.
    @dg.op
    def work() -> None:
        pass

    @dg.job
    def worker() -> None:
        work()

    run = instance.create_run_for_job(worker)
    instance.report_engine_event("the worker started", run)
    assert not loads.silent(instance, run)
    monkeypatch.setattr(loads, "SILENT_RUN_SECONDS", -1)
    assert loads.silent(instance, run)


# `pipeline load --parallel`'s worker processes: a worker and the manager of their queue.
PARENT = """
import os, time
from pipeline.runner import workers

with workers(1) as (pool, manager):
    print(pool.submit(os.getpid).result(), manager._process.pid, flush=True)
    time.sleep(600)
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


def test_workers_of_a_killed_parallel_load_end_with_it() -> None:
    # Re-parented to init, they ran on for good, finishing their months unseen, deaf to SIGTERM.
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert parent.stdout is not None
    children = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(children) == 2 and all(map(_running, children))
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 15
    while any(map(_running, children)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(_running, children))


def test_an_interrupted_first_month_starts_no_parallel_months(
    monkeypatch: pytest.MonkeyPatch, flights: DatasetSpec
) -> None:
    # `--parallel` ran the first month alone, ignored that Ctrl-C had stopped it, and started
    # all the others.
    from pipeline import runner

    def interrupted(*_: object, **__: object) -> runner.MonthResult:
        return runner.MonthResult("2024-01", success=False, interrupted=True)

    def started(*_: object) -> list[runner.MonthResult]:
        raise AssertionError("the months after an interrupted one were started")

    monkeypatch.setattr(runner, "_run_month", interrupted)
    monkeypatch.setattr(runner, "_load_in_parallel", started)
    results = runner.load_months(None, flights, ["2024-01", "2024-02", "2024-03"], None, parallel=2)
    assert [result.month for result in results] == ["2024-01"]
