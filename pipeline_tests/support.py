"""Helpers shared by tests: run the CLI as a user does, load a month, read the warehouse."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import polars as pl

from pipeline.checks.scope import MonthUnderCheck
from pipeline.definitions import open_warehouse
from pipeline.ingest.stream import StagedLoad, ingest_file, new_load_id
from pipeline.sample_data import write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline.warehouse.base import Warehouse, statement_context

PIPELINE = str(Path(sys.executable).with_name("pipeline"))
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKSPACE = ("-w", str(REPO / "workspace.yaml"))
CLI_RUN_TIMEOUT = 300


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """`pipeline ARGS` in a subprocess with the test's environment."""
    return subprocess.run(
        [PIPELINE, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=600
    )


def scalar(settings: Settings, sql: str) -> object:
    """The first value of a query on the deployment's warehouse."""
    with open_warehouse(settings) as warehouse:
        rows = warehouse.query(sql)
    return next(iter(rows[0].values())) if rows else None


def stage_month(
    settings: Settings, spec: DatasetSpec, month: str, frame: pl.DataFrame
) -> StagedLoad:
    """Land `frame` as the month's file and stage it the way the load asset does."""
    path = settings.landing_dir / spec.file_name(month)
    write_tsv(frame, path)
    return ingest_file(spec, path, month, settings.staging_dir / spec.name / month)


def load_month(
    settings: Settings, warehouse: Warehouse, spec: DatasetSpec, month: str, frame: pl.DataFrame
) -> None:
    """Land `frame` as the month's file and publish it, unchecked."""
    warehouse.replace_month(stage_month(settings, spec, month, frame), "test")


def materialize_load(
    spec: DatasetSpec,
    month: str,
    settings: Settings,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    """The dataset's load asset for the month, as a run does it, failures returned."""
    from pipeline.assets.loads import build_load_asset
    from pipeline.definitions import build_resources

    return dg.materialize(
        [build_load_asset(spec)],
        partition_key=month,
        resources=build_resources(settings),
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def candidate_month(
    settings: Settings, warehouse: Warehouse, spec: DatasetSpec, month: str, frame: pl.DataFrame
) -> MonthUnderCheck:
    """Land `frame` as the month's file and load it as a candidate, as the checks see it."""
    staged = stage_month(settings, spec, month, frame)
    with statement_context(spec.name, month, "test"):
        return MonthUnderCheck(warehouse, staged, warehouse.stage_candidate(staged, new_load_id()))


def dagster(*args: str) -> subprocess.CompletedProcess[str]:
    """`dagster ARGS` from the repository, with the test's environment (DAGSTER_HOME...)."""
    return subprocess.run(
        [BIN / "dagster", *args], cwd=REPO, check=True, capture_output=True, text=True
    )


@contextmanager
def daemon_running(*sensors: str) -> Iterator[subprocess.Popen]:
    """The real Dagster daemon on the workspace, with `sensors` turned on, until the block ends."""
    for sensor in sensors:
        dagster("sensor", "start", sensor, *WORKSPACE)
    daemon = subprocess.Popen(
        [BIN / "dagster-daemon", "run", *WORKSPACE],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield daemon
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)


def finished_runs(
    instance: dg.DagsterInstance, count: int, timeout_seconds: float = 240
) -> list[dg.DagsterRun]:
    """The first `count` runs of the instance to finish, oldest first, waiting for them."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        finished = [run for run in instance.get_runs() if run.is_finished]
        if len(finished) >= count:
            return finished[::-1][:count]
        time.sleep(2)
    raise AssertionError(
        f"{count} run(s) did not finish in {timeout_seconds}s: {instance.get_runs()}"
    )


def run_time(stamp: float | None) -> float:
    """A run's start or end time, which must have been recorded (not taken as 0)."""
    assert stamp is not None
    return stamp


@dataclass
class CliRun:
    """A `pipeline` command in a process group of its own, as a terminal runs it (Ctrl-C goes
    to the whole group), its output read as it comes. Leaving the block kills what is left of it.
    """

    process: subprocess.Popen[str]
    started: float
    lines: list[tuple[float, str]] = field(default_factory=list)
    reader: threading.Thread | None = None

    @classmethod
    def start(cls, *args: str) -> CliRun:
        started = time.monotonic()
        process = subprocess.Popen(
            [PIPELINE, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=os.environ.copy(),
            start_new_session=True,  # its own process group: dbt and log tails die with it
        )
        run = cls(process, started)
        run.reader = threading.Thread(target=run._read, daemon=True)
        run.reader.start()
        return run

    def __enter__(self) -> CliRun:
        return self

    def __exit__(self, *_: object) -> None:
        self.kill()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic() - self.started, line))

    def seen(self, text: str) -> float | None:
        """When the first line with `text` was logged, in seconds after the start."""
        return next((at for at, line in self.lines if text in line), None)

    def wait_for(self, text: str) -> float | None:
        """Wait until a line with `text` is logged (its time) or the run ends (None)."""
        deadline = time.monotonic() + CLI_RUN_TIMEOUT
        while self.seen(text) is None and self.process.poll() is None:
            assert time.monotonic() < deadline, f"no {text!r} in {CLI_RUN_TIMEOUT}s"
            time.sleep(0.01)
        return self.seen(text)

    def finish(self) -> int:
        """Wait for the run to end by itself, and for the last of its log; its exit code."""
        code = self.process.wait(timeout=CLI_RUN_TIMEOUT)
        self._read_to_the_end()
        return code

    def kill(self) -> int:
        """SIGKILL the whole group and wait until none of it is alive (its locks are gone);
        the run's exit code: -SIGKILL, or what it ended with before."""
        group = self.process.pid
        with suppress(ProcessLookupError):  # all of it had ended
            os.killpg(group, signal.SIGKILL)
        code = self.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while alive_in_group(group):
            assert time.monotonic() < deadline, f"process group {group} outlived SIGKILL"
            time.sleep(0.05)
        self._read_to_the_end()
        return code

    def _read_to_the_end(self) -> None:
        assert self.reader is not None
        self.reader.join(timeout=30)

    def log(self) -> str:
        return "".join(line for _, line in self.lines)


def alive_in_group(group: int) -> bool:
    """Whether a process of the group still runs (zombies hold no locks and do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False
