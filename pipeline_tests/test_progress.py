"""Progress as a load reports it (progress.py) and as `pipeline load` shows it (terminal.py)."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from pipeline.assets import reports
from pipeline.assets.loads import RETRYING
from pipeline.cli import HEADER
from pipeline.progress import (
    CHECKS,
    PHASES,
    PUBLISH,
    READ,
    REPORTS,
    STAGE,
    MonthProgress,
    Reading,
    Relay,
    deliver,
    watched_by,
)
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline.terminal import LiveDisplay, PlainDisplay
from pipeline.warehouse.base import Warehouse
from pipeline_tests.support import PIPELINE, materialize_load, scalar

MB = 1_000_000
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but tab and newline


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.events: list[object] = []

    def phase(self, phase: str, month: str | None = None) -> None:
        self.events.append(phase if month is None else (month, phase))

    def reading(self, reading: Reading, month: str | None = None) -> None:
        self.events.append(reading if month is None else (month, reading))


def test_a_month_logs_each_phase_and_each_tenth_with_rate_and_eta() -> None:
    clock, logged, watcher = Clock(), [], Recorder()
    progress = MonthProgress("flights 2024-03", logged.append, clock)

    progress.phase(READ, "/landing/flights_2024-03.tsv")  # unwatched: only the log
    with watched_by(watcher):
        for block in range(1, 21):  # 20 blocks of 5 MB, one a second
            clock.now += 1
            progress.read(block * 5 * MB, 100 * MB, block * 50_000, block)
        progress.phase(STAGE)
        clock.now += 3
        progress.phase(CHECKS)
        clock.now += 2
    durations = progress.durations()

    assert logged[0] == "flights 2024-03: read and validate /landing/flights_2024-03.tsv"
    tenths = [line for line in logged if "MB (" in line]
    assert len(tenths) == 10  # every 10%, not every block
    assert tenths[0] == (
        "flights 2024-03: read and validate 10.0 of 100.0 MB (10%), 50,000 rows/s, 2 rejects, "
        "ETA 0:00:18"
    )
    assert tenths[-1].endswith("(100%), 50,000 rows/s, 20 rejects, ETA 0:00:00")
    assert logged[-2:] == ["flights 2024-03: stage", "flights 2024-03: checks"]
    readings = [event for event in watcher.events if isinstance(event, Reading)]
    assert len(readings) == 20  # the watcher gets every block
    assert watcher.events[-2:] == [STAGE, CHECKS]
    assert durations == {READ: 20.0, STAGE: 3.0, CHECKS: 2.0}

    # A refused month's report and alerts come after its checks, and are not part of them.
    progress.stop()
    clock.now += 8
    assert progress.durations() == durations


def feed(display: PlainDisplay | LiveDisplay) -> None:
    """Two months as the load step and the CLI report them."""
    for month, rows, rejects in (("2024-01", 800_000, 4), ("2024-02", 900_000, 0)):
        display.phase(READ)
        for step in range(1, 5):
            display.reading(Reading(step * 30 * MB, 120 * MB, step * rows // 4, rejects, step))
        for phase in (STAGE, CHECKS, REPORTS, REPORTS):  # two dbt steps: said once
            display.phase(phase)
        display.line(f"{month}  ok  {rows:,}")
        display.month_done(month, True, {"rows_read": rows, "rows_rejected": rejects})


def test_plain_lines_for_a_pipe_say_each_phase_and_tenth_without_control_characters() -> None:
    out = io.StringIO()

    feed(PlainDisplay(out, "flights", ["2024-01", "2024-02"]))

    lines = out.getvalue().splitlines()
    assert not CONTROL.search(out.getvalue())
    assert lines[:4] == [
        "[1/2] 2024-01 read and validate",
        "[1/2] 2024-01 read and validate: 30.0 of 120.0 MB (25%), 200,000 rows/s, 4 rejects, "
        "ETA 0:00:03",
        "[1/2] 2024-01 read and validate: 60.0 of 120.0 MB (50%), 200,000 rows/s, 4 rejects, "
        "ETA 0:00:02",
        "[1/2] 2024-01 read and validate: 90.0 of 120.0 MB (75%), 200,000 rows/s, 4 rejects, "
        "ETA 0:00:01",
    ]
    assert lines.count("[1/2] 2024-01 reports") == 1
    assert lines[8:10] == [
        "2024-01  ok  800,000",
        "[1/2 months, 800,000 rows read, 4 rejected, 0 failed so far]",
    ]
    assert lines[-1] == "[2/2 months, 1,700,000 rows read, 4 rejected, 0 failed so far]"


def test_months_run_at_once_are_each_shown_under_their_own_name() -> None:
    out = io.StringIO()
    display = PlainDisplay(out, "flights", ["2024-01", "2024-02", "2024-03"])
    display.phase(PUBLISH)  # the first month runs alone, in this process
    display.line("2024-01  ok")
    display.month_done("2024-01", True, {"rows_read": 10})

    # The other two in worker processes: their events arrive interleaved, each naming its month.
    display.phase(READ, "2024-03")
    display.phase(READ, "2024-02")
    display.reading(Reading(60 * MB, 120 * MB, 500, 1, 1), "2024-03")
    display.phase(STAGE, "2024-02")
    display.month_done("2024-02", True, {"rows_read": 20})
    display.phase(REPORTS, "2024-02")  # late: relayed after its month was done
    display.reading(Reading(120 * MB, 120 * MB, 1000, 2, 2), "2024-03")

    assert out.getvalue().splitlines() == [
        "[1/3] 2024-01 publish",
        "2024-01  ok",
        "[1/3 months, 10 rows read, 0 rejected, 0 failed so far]",
        "[3/3] 2024-03 read and validate",
        "[2/3] 2024-02 read and validate",
        "[3/3] 2024-03 read and validate: 60.0 of 120.0 MB (50%), 500 rows/s, 1 rejects, "
        "ETA 0:00:01",
        "[2/3] 2024-02 stage",
        "[2/3 months, 30 rows read, 0 rejected, 0 failed so far]",
        "[3/3] 2024-03 read and validate: 120.0 of 120.0 MB (100%), 500 rows/s, 2 rejects, "
        "ETA 0:00:00",
    ]


def test_live_bars_show_a_bar_for_each_month_running_at_once() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=150, color_system=None)
    display = LiveDisplay(console, "flights", ["2024-01", "2024-02", "2024-03"])

    with display.bars:
        display.phase(READ, "2024-02")
        display.reading(Reading(30 * MB, 120 * MB, 500, 0, 1), "2024-02")
        display.phase(STAGE, "2024-03")
        running = [task.description.rstrip() for task in display.bars.tasks]
        display.month_done("2024-02", True, {"rows_read": 500})
        left = [task.description.rstrip() for task in display.bars.tasks]

    assert running == [
        "flights 2024-01..2024-03",
        "2024-02 (2/3) read and validate",
        "2024-03 (3/3) stage",
    ]
    assert left == ["flights 2024-01..2024-03", "2024-03 (3/3) stage"]
    assert "2024-02 (2/3) read and validate" in out.getvalue() and "(25%)" in out.getvalue()


def test_a_worker_process_relays_its_months_progress_to_the_loaders_watcher() -> None:
    import multiprocessing

    with multiprocessing.get_context("spawn").Manager() as manager:
        events, watcher = manager.Queue(), Recorder()
        relay = Relay(events, "2024-02")
        with watched_by(relay):  # as in the worker: the load step's progress goes to the queue
            MonthProgress("flights 2024-02", lambda line: None).read(1, 2, 3, 0)
        relay.phase(STAGE)

        with watched_by(watcher):
            deliver(events)

    (month, reading), stage = watcher.events  # type: ignore[misc]
    assert month == "2024-02" and isinstance(reading, Reading)
    assert (reading.bytes_done, reading.bytes_total, reading.rows) == (1, 2, 3)
    assert stage == ("2024-02", STAGE)


def test_live_bars_redraw_as_the_read_advances_and_leave_the_summary_lines() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=150, color_system=None)
    display = LiveDisplay(console, "flights", ["2024-01", "2024-02"])

    with display.bars:
        feed(display)

    text = out.getvalue()
    assert "\x1b[" in text  # redrawn in place
    percents = re.findall(r"MB \((\d+)%\)", text)
    assert sorted(set(percents), key=int) == ["25", "50", "75", "100"]
    assert "2024-02 (2/2) reports" in text
    assert "1/2 months, 800,000 rows read, 4 rejected, 0 failed" in text
    # Once the bars are gone (transient), what stays is the summary table, in order.
    assert "2024-01  ok  800,000" in text
    assert text.index("2024-01  ok  800,000") < text.index("2024-02  ok  900,000")


def test_pipeline_load_in_a_terminal_draws_live_bars_then_leaves_the_summary_and_metrics(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real CLI in tmux, a terminal emulator: its screen is polled while the month loads."""
    assert shutil.which("tmux"), "tmux is needed for this test: `make system-packages`"
    write_tsv(
        month_frame("2024-01", 300, seed=1, defect_ratio=0.001),
        settings.landing_dir / "flights_2024-01.tsv",
    )
    monkeypatch.setenv("PIPELINE_METRICS_DIR", str(tmp_path / "metrics"))
    command = f"{PIPELINE} load flights --from 2024-01 --to 2024-01; echo EXIT=$?; sleep 600"
    screens = run_in_tmux(command, until="EXIT=")

    final = screens[-1]
    bars = [screen for screen in screens if "2024-01 (1/1)" in screen]
    phases = {phase for screen in bars for phase in PHASES if f"(1/1) {phase}" in screen}
    assert REPORTS in phases and len(phases) >= 2, phases  # redrawn as the month moved on
    assert any("0/1 months, 0 rows read" in screen for screen in bars)
    lines = [line.rstrip() for line in final.splitlines() if line.strip()]
    assert lines[:2] == ["Loading flights: 2024-01..2024-01 (1 month)", HEADER]
    assert re.match(r"2024-01  ok +8,400 +8,3\d\d +\d+  8 passed$", lines[2]), lines[2]
    assert lines[-2].startswith("Months: 1 loaded, 0 skipped, 0 failed; 8,400 rows read")
    assert lines[-1] == "EXIT=0"
    assert "━" not in final  # the bars are gone once the range is done

    found = samples((tmp_path / "metrics" / "flights.prom").read_text())
    ledger = scalar(settings, "select rows_rejected from pipeline.load_ledger")
    assert found[("pipeline_rows", "2024-01", "rejected")] == ledger
    with dg.DagsterInstance.get() as instance:
        (daily,) = instance.fetch_materializations(dg.AssetKey("flights_daily"), limit=1).records
    row_count = daily.asset_materialization.metadata["dagster/row_count"].value
    assert row_count == scalar(settings, "select count(*) from analytics.flights_daily") == 31


def run_in_tmux(command: str, until: str, timeout: float = 600) -> list[str]:
    """Run `command` in a detached tmux session of its own (160x40, this environment) and return
    each distinct screen seen until one shows `until`."""
    server = ["tmux", "-L", f"pipeline-test-{os.getpid()}-{time.monotonic_ns()}"]
    subprocess.run(
        [*server, "new-session", "-d", "-x", "160", "-y", "40", command],
        check=True,
        env=os.environ.copy(),
    )
    screens: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = subprocess.run(
                [*server, "capture-pane", "-p"], capture_output=True, text=True, check=True
            ).stdout
            if not screens or screen != screens[-1]:
                screens.append(screen)
            if until in screen:
                return screens
            time.sleep(0.2)
        raise AssertionError(f"no {until!r} within {timeout}s; last screen:\n{screens[-1]}")
    finally:
        subprocess.run([*server, "kill-server"], check=False)


def samples(text: str) -> dict[tuple[str, str, str], float]:
    """pipeline_rows samples by month and outcome, as prometheus_client parses them."""
    return {
        (sample.name, sample.labels["month"], sample.labels["outcome"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "pipeline_rows"
    }


def test_a_step_that_is_retried_says_why_where_the_cli_shows_phases(
    settings: Settings, flights: DatasetSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A locked warehouse or a dropped connection made the CLI show the month's phases again,
    # unexplained (Dagster's retry is in its log, which the CLI hides).
    write_tsv(month_frame("2024-01", 5, seed=1), settings.landing_dir / "flights_2024-01.tsv")
    stage_candidate = Warehouse.stage_candidate
    failures = iter([ConnectionResetError("the warehouse closed the connection")])

    def flaky(warehouse: Warehouse, *args: object) -> object:
        for error in failures:
            raise error
        return stage_candidate(warehouse, *args)

    monkeypatch.setattr(Warehouse, "stage_candidate", flaky)
    watcher = Recorder()
    with watched_by(watcher):
        assert materialize_load(flights, "2024-01", settings).success
    retried = f"{RETRYING}: the warehouse closed the connection"
    assert watcher.events.count(retried) == 1
    assert watcher.events.count(READ) == 2  # the retry read the month again (its parts reused)


def test_a_refused_months_report_and_alerts_are_not_timed_as_its_checks(
    settings: Settings, flights: DatasetSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # They ran after its checks, inside the phase: the checks of a refused month read four
    # times their length in load_phases and the metrics.
    write_tsv(
        month_frame("2024-01", 5, seed=1, defect_ratio=0.05),
        settings.landing_dir / "flights_2024-01.tsv",
    )
    close_month = reports.close_month

    def slow(*args: object, **kwargs: object) -> None:
        time.sleep(3)
        close_month(*args, **kwargs)

    monkeypatch.setattr(reports, "close_month", slow)
    assert not materialize_load(flights, "2024-01", settings).success
    seconds = "select seconds from pipeline.load_phases where phase = 'checks'"
    assert scalar(settings, seconds) < 3
