"""How `pipeline load` shows its months as they load.

On a terminal: live bars drawn by rich, the range (months done, rows read and rejected so far)
and under it each month being loaded (its phase; while the file is read, bytes done of its size,
rows/s, rejects so far and the time left); the summary table prints above them, and the bars go
when the last month is done. Anywhere else (CI, cron, a pipe): plain lines, one per phase and per
tenth of the file, with no control characters. Both are `progress.Watcher`s fed by the load step,
and by the months that run at once in other processes (`progress.deliver`), which name their
month.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from pipeline.progress import LOG_STEPS, READ, Reading, clock_time


class LoadDisplay(ABC):
    """What every display keeps: the running months' phases, and the totals so far."""

    def __init__(self, dataset: str, months: Sequence[str]):
        self.dataset = dataset
        self.months = list(months)
        self.done = 0
        self.rows_read = 0
        self.rejected = 0
        self.failed = 0
        self._phases: dict[str, str] = {}  # the running months'
        self._finished: set[str] = set()

    @property
    def month(self) -> str | None:
        """The month an event without one is about: months run one at a time, so the first one
        not yet done (None once all are)."""
        return next((month for month in self.months if month not in self._finished), None)

    def position(self, month: str) -> str:
        """`3/12`: where `month` is in the range."""
        return f"{self.months.index(month) + 1}/{len(self.months)}"

    def totals(self) -> str:
        return (
            f"{self.done}/{len(self.months)} months, {self.rows_read:,} rows read, "
            f"{self.rejected:,} rejected, {self.failed} failed"
        )

    def month_done(self, month: str, success: bool, rows: Mapping[str, int]) -> None:
        """Count a finished month into the totals; its events from now on are late, and dropped."""
        self.done += 1
        self.rows_read += rows.get("rows_read", 0)
        self.rejected += rows.get("rows_rejected", 0)
        self.failed += not success
        self._finished.add(month)
        self._phases.pop(month, None)

    @abstractmethod
    def line(self, text: str) -> None:
        """A line of the summary table."""

    def phase(self, phase: str, month: str | None = None) -> None:
        """`month` (default: the one running) has reached `phase` (progress.PHASES); said once
        per phase."""
        month = month or self.month
        if month is not None and month not in self._finished and self._phases.get(month) != phase:
            self._phases[month] = phase
            self.show_phase(month, phase)

    def reading(self, reading: Reading, month: str | None = None) -> None:
        """`month`'s file (default: the running month's) is read this far."""
        month = month or self.month
        if month is not None and month not in self._finished:
            self.show_reading(month, reading)

    @abstractmethod
    def show_phase(self, month: str, phase: str) -> None:
        """Show that `month` has entered `phase`."""

    @abstractmethod
    def show_reading(self, month: str, reading: Reading) -> None:
        """Show how far `month`'s file is read."""


class PlainDisplay(LoadDisplay):
    """Lines for a log: `[3/12] 2024-03 stage`, the read every tenth, the totals after a month."""

    def __init__(self, out: TextIO, dataset: str, months: Sequence[str]):
        super().__init__(dataset, months)
        self.out = out
        self._steps: dict[str, int] = {}  # tenths of each month's file said so far

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def show_phase(self, month: str, phase: str) -> None:
        if phase == READ:
            self._steps[month] = 0
        self.line(f"[{self.position(month)}] {month} {phase}")

    def show_reading(self, month: str, reading: Reading) -> None:
        steps = int(reading.fraction * LOG_STEPS)
        if steps > self._steps.get(month, 0):
            self._steps[month] = steps
            self.line(f"[{self.position(month)}] {month} {READ}: {reading.describe()}")

    def month_done(self, month: str, success: bool, rows: Mapping[str, int]) -> None:
        super().month_done(month, success, rows)
        self.line(f"[{self.totals()} so far]")


class LiveDisplay(LoadDisplay):
    """rich's progress bars on a terminal, for a range of one month or more: the range's, then a
    bar per running month from its first event to its end. The summary table prints above them."""

    def __init__(self, console: Console, dataset: str, months: Sequence[str]):
        super().__init__(dataset, months)
        self.console = console
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[detail]}"),
            console=console,
            transient=True,
            # dbt's log goes to sys.stdout, which `pipeline load` hides unless --verbose: rich
            # would otherwise catch it and print it above the bars.
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._range = self.bars.add_task(
            f"{dataset} {months[0]}..{months[-1]}", total=len(self.months), detail=self.totals()
        )
        self._bars: dict[str, TaskID] = {}  # the running months'
        self._read: dict[str, str] = {}  # what each running month's read came to

    def _label(self, month: str, phase: str) -> str:
        return f"{month} ({self.position(month)}) {phase:<17}"

    def _bar(self, month: str) -> TaskID:
        if month not in self._bars:
            self._bars[month] = self.bars.add_task(self._label(month, ""), total=None, detail="")
        return self._bars[month]

    def line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)

    def show_phase(self, month: str, phase: str) -> None:
        bar, label = self._bar(month), self._label(month, phase)
        if phase == READ:
            self._read[month] = ""
            self.bars.reset(bar, total=None, description=label, detail="")
        else:  # no measure of how far these phases are: the bar pulses
            detail = self._read.get(month, "")
            self.bars.update(bar, total=None, description=label, detail=detail)
        self.bars.refresh()

    def show_reading(self, month: str, reading: Reading) -> None:
        self._read[month] = (
            f"read {reading.bytes_done / 1e6:,.1f} MB, {reading.rows:,} rows, "
            f"{reading.rejects:,} rejects in {clock_time(reading.seconds)}"
        )
        self.bars.update(
            self._bar(month),
            total=reading.bytes_total,
            completed=reading.bytes_done,
            detail=reading.describe(),
        )
        self.bars.refresh()

    def month_done(self, month: str, success: bool, rows: Mapping[str, int]) -> None:
        super().month_done(month, success, rows)
        self.bars.update(self._range, completed=self.done, detail=self.totals())
        if month in self._bars:
            self.bars.remove_task(self._bars.pop(month))
        self._read.pop(month, None)
        self.bars.refresh()


@contextmanager
def load_display(
    out: TextIO, dataset: str, months: Sequence[str], *, live: bool = True
) -> Iterator[LoadDisplay]:
    """The display for `out`: live bars if it is a terminal (and `live`) and there are months to
    run, else plain lines."""
    if not (live and months and out.isatty() and os.environ.get("TERM") != "dumb"):
        yield PlainDisplay(out, dataset, months)
        return
    display = LiveDisplay(Console(file=out), dataset, months)
    with display.bars:
        yield display
