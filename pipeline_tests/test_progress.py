"""Progress as a load reports it (progress.py) and as `pipeline load` shows it (terminal.py)."""

from __future__ import annotations

import io
import re

from rich.console import Console

from pipeline.progress import CHECKS, READ, REPORTS, STAGE, MonthProgress, Reading, watched_by
from pipeline.terminal import LiveDisplay, PlainDisplay

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

    def phase(self, phase: str) -> None:
        self.events.append(phase)

    def reading(self, reading: Reading) -> None:
        self.events.append(reading)


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


def feed(display: PlainDisplay | LiveDisplay) -> None:
    """Two months as the load step and the CLI report them."""
    for month, rows, rejects in (("2024-01", 800_000, 4), ("2024-02", 900_000, 0)):
        display.phase(READ)
        for step in range(1, 5):
            display.reading(Reading(step * 30 * MB, 120 * MB, step * rows // 4, rejects, step))
        for phase in (STAGE, CHECKS, REPORTS, REPORTS):  # two dbt steps: said once
            display.phase(phase)
        display.line(f"{month}  ok  {rows:,}")
        display.month_done(True, {"rows_read": rows, "rows_rejected": rejects})


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
