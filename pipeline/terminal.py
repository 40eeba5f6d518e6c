"""How `pipeline load` shows its months as they load.

On a terminal: two live bars drawn by rich, the month being loaded (its phase; while the file is
read, bytes done of its size, rows/s, rejects so far and the time left) and the range (months
done, rows read and rejected so far); the summary table prints above them, and the bars go when
the last month is done. Anywhere else (CI, cron, a pipe): plain lines, one per phase and per tenth
of the file, with no control characters. Both are `progress.Watcher`s fed by the load step.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from pipeline.progress import LOG_STEPS, READ, Reading, clock_time


class LoadDisplay(ABC):
    """What every display keeps: which month of the range is running, and the totals so far."""

    def __init__(self, dataset: str, months: Sequence[str]):
        self.dataset = dataset
        self.months = list(months)
        self.done = 0
        self.rows_read = 0
        self.rejected = 0
        self.failed = 0
        self._phase: str | None = None

    @property
    def month(self) -> str:
        """The month being run: the first one not yet done."""
        return self.months[min(self.done, len(self.months) - 1)] if self.months else ""

    @property
    def position(self) -> str:
        return f"{min(self.done + 1, len(self.months))}/{len(self.months)}"

    def totals(self) -> str:
        return (
            f"{self.done}/{len(self.months)} months, {self.rows_read:,} rows read, "
            f"{self.rejected:,} rejected, {self.failed} failed"
        )

    def month_done(self, success: bool, rows: Mapping[str, int]) -> None:
        """Count a finished month into the totals."""
        self.done += 1
        self.rows_read += rows.get("rows_read", 0)
        self.rejected += rows.get("rows_rejected", 0)
        self.failed += not success
        self._phase = None

    @abstractmethod
    def line(self, text: str) -> None:
        """A line of the summary table."""

    def phase(self, phase: str) -> None:
        """The running month has reached `phase` (progress.PHASES); said once per month."""
        if phase != self._phase:
            self._phase = phase
            self.show_phase(phase)

    @abstractmethod
    def show_phase(self, phase: str) -> None:
        """Show that the running month has entered `phase`."""

    @abstractmethod
    def reading(self, reading: Reading) -> None:
        """The running month's file is read this far."""


class PlainDisplay(LoadDisplay):
    """Lines for a log: `[3/12] 2024-03 stage`, the read every tenth, the totals after a month."""

    def __init__(self, out: TextIO, dataset: str, months: Sequence[str]):
        super().__init__(dataset, months)
        self.out = out
        self._steps = 0

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def show_phase(self, phase: str) -> None:
        if phase == READ:
            self._steps = 0
        self.line(f"[{self.position}] {self.month} {phase}")

    def reading(self, reading: Reading) -> None:
        steps = int(reading.fraction * LOG_STEPS)
        if steps > self._steps:
            self._steps = steps
            self.line(f"[{self.position}] {self.month} {READ}: {reading.describe()}")

    def month_done(self, success: bool, rows: Mapping[str, int]) -> None:
        super().month_done(success, rows)
        self.line(f"[{self.totals()} so far]")


class LiveDisplay(LoadDisplay):
    """rich's progress bars on a terminal, for a range of one month or more; the summary table
    prints above them."""

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
        self._month = self.bars.add_task(self._label("waiting"), total=None, detail="")
        self._range = self.bars.add_task(
            f"{dataset} {months[0]}..{months[-1]}", total=len(self.months), detail=self.totals()
        )
        self._read = ""

    def _label(self, phase: str) -> str:
        return f"{self.month} ({self.position}) {phase:<17}"

    def line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)

    def show_phase(self, phase: str) -> None:
        if phase == READ:
            self._read = ""
            self.bars.reset(self._month, total=None, description=self._label(phase), detail="")
        else:  # no measure of how far these phases are: the bar pulses
            self.bars.update(
                self._month, total=None, description=self._label(phase), detail=self._read
            )
        self.bars.refresh()

    def reading(self, reading: Reading) -> None:
        self._read = (
            f"read {reading.bytes_done / 1e6:,.1f} MB, {reading.rows:,} rows, "
            f"{reading.rejects:,} rejects in {clock_time(reading.seconds)}"
        )
        self.bars.update(
            self._month,
            total=reading.bytes_total,
            completed=reading.bytes_done,
            detail=reading.describe(),
        )
        self.bars.refresh()

    def month_done(self, success: bool, rows: Mapping[str, int]) -> None:
        super().month_done(success, rows)
        self.bars.update(self._range, completed=self.done, detail=self.totals())
        self.bars.reset(self._month, total=None, description=self._label("waiting"), detail="")
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
