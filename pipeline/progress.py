"""A month's load as it goes: its phases, and how far the read of its file has come.

The load step reports here; whoever watches decides how it is shown. The run's log always gets a
line per phase and per tenth of the file (the Dagster UI shows them). `pipeline load` runs its
months in its own process (`execute_in_process`), so it also installs a watcher for the duration
of its runs (`watched_by`) and draws a progress bar from the same events; months it runs at once
in worker processes send theirs back through a queue (`Relay`, `deliver`). With no watcher (a
run launched from the UI or a sensor) only the log lines are written. Nothing here knows how a bar
looks.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from queue import Empty
from typing import Protocol

READ = "read and validate"
STAGE = "stage"
CHECKS = "checks"
PUBLISH = "publish"
REPORTS = "reports"
PHASES = (READ, STAGE, CHECKS, PUBLISH, REPORTS)
LOG_STEPS = 10  # the run's log gets a line per tenth of the file


@dataclass(frozen=True)
class Reading:
    """How far the read of a month's file has come, `seconds` after it started."""

    bytes_done: int
    bytes_total: int
    rows: int  # lines read so far: rows and rejects
    rejects: int
    seconds: float

    @property
    def fraction(self) -> float:
        return min(self.bytes_done / self.bytes_total, 1.0) if self.bytes_total else 1.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """The time left at the bytes rate so far; None before there is a rate."""
        if self.bytes_done <= 0 or self.seconds <= 0:
            return None
        return max(self.bytes_total - self.bytes_done, 0) * self.seconds / self.bytes_done

    def describe(self) -> str:
        """`12.0 of 120.0 MB (10%), 350,000 rows/s, 12 rejects, ETA 0:00:09`."""
        eta = self.eta_seconds
        return (
            f"{self.bytes_done / 1e6:,.1f} of {self.bytes_total / 1e6:,.1f} MB "
            f"({self.fraction:.0%}), {self.rows_per_second:,.0f} rows/s, "
            f"{self.rejects:,} rejects, ETA {'?' if eta is None else clock_time(eta)}"
        )


def clock_time(seconds: float) -> str:
    """`0:01:05`: a duration as a person reads it."""
    return str(dt.timedelta(seconds=round(seconds)))


class Watcher(Protocol):
    """Whoever shows a load's progress: told each phase, and each step of the read, of the month
    being run in this process, or of `month` when its run is in another."""

    def phase(self, phase: str, month: str | None = None) -> None: ...

    def reading(self, reading: Reading, month: str | None = None) -> None: ...


class EventQueue(Protocol):
    """The part of a queue (multiprocessing's, or a manager's proxy of one) that relaying uses."""

    def put(self, item: object) -> None: ...

    def get_nowait(self) -> object: ...


@dataclass(frozen=True)
class Relay:
    """The watcher of a month run in a worker process: its events go to `queue`, named by
    `month`, for the process that started the run to `deliver` to its own watcher."""

    queue: EventQueue
    month: str

    def phase(self, phase: str, month: str | None = None) -> None:
        self.queue.put((month or self.month, phase))

    def reading(self, reading: Reading, month: str | None = None) -> None:
        self.queue.put((month or self.month, reading))


def deliver(queue: EventQueue) -> None:
    """Hand the events `Relay`s have sent so far to this process's watcher (none: dropped)."""
    watcher = _WATCHER.get()
    while True:
        try:
            month, event = queue.get_nowait()  # type: ignore[misc]
        except Empty:
            return
        if watcher is None:
            continue
        if isinstance(event, Reading):
            watcher.reading(event, month)
        else:
            watcher.phase(event, month)


_WATCHER: ContextVar[Watcher | None] = ContextVar("pipeline_progress_watcher", default=None)


@contextmanager
def watched_by(watcher: Watcher) -> Iterator[None]:
    """Send the progress of the runs made inside the block (in this process) to `watcher`."""
    token = _WATCHER.set(watcher)
    try:
        yield
    finally:
        _WATCHER.reset(token)


def enter_phase(phase: str) -> None:
    """Tell the watcher, if any, that the month being run has reached `phase`."""
    watcher = _WATCHER.get()
    if watcher is not None:
        watcher.phase(phase)


class MonthProgress:
    """One month's load step: times its phases and reports them, and the read, as they go.

    `log` gets a line per phase and per tenth of the file; the watcher, if one is installed, every
    event. `durations` are the seconds each phase took, the last one until now.
    """

    def __init__(
        self, label: str, log: Callable[[str], None], clock: Callable[[], float] = time.monotonic
    ):
        self.label = label
        self.log = log
        self.clock = clock
        self._phase: str | None = None
        self._started = 0.0
        self._durations: dict[str, float] = {}
        self._logged_steps = 0

    def phase(self, phase: str, detail: str = "") -> None:
        """The step has reached `phase` (one of PHASES); `detail` is added to the log line."""
        self._close_phase()
        self._phase, self._started = phase, self.clock()
        self.log(f"{self.label}: {phase}" + (f" {detail}" if detail else ""))
        enter_phase(phase)

    def read(self, bytes_done: int, bytes_total: int, rows: int, rejects: int) -> None:
        """The ingest's callback after each block: how much of the file is read, and its lines."""
        reading = Reading(bytes_done, bytes_total, rows, rejects, self.clock() - self._started)
        steps = int(reading.fraction * LOG_STEPS)
        if steps > self._logged_steps:
            self._logged_steps = steps
            self.log(f"{self.label}: {READ} {reading.describe()}")
        watcher = _WATCHER.get()
        if watcher is not None:
            watcher.reading(reading)

    def stop(self) -> None:
        """The month's phases are over: what the step does next (a refused month's report and
        alerts) is timed as none of them. It was counted in `checks`, four times its length."""
        self._close_phase()
        self._phase = None

    def durations(self) -> dict[str, float]:
        """Seconds per phase so far, in the order they ran."""
        self._close_phase()
        return dict(self._durations)

    def _close_phase(self) -> None:
        if self._phase is not None:
            now = self.clock()
            self._durations[self._phase] = self._durations.get(self._phase, 0.0) + (
                now - self._started
            )
            self._started = now
