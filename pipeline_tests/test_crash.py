"""Crash safety: `pipeline load` killed with SIGKILL at random moments serves the old month or the
new one, never a mix, a double or a half; the next run completes and leaves no staged parts.

The landed file alternates between two versions of the month. Each run is killed, with its whole
process group (dbt too), at a moment drawn with a fixed seed inside one phase of a run: start-up,
the load step (ingest, candidate, checks, publish) or dbt building the month's models. A run that
is not killed times the phases from its log, and each kill waits for its phase to begin in the
killed run's log: imports and dbt's own start-up take nearly all of a run (the load step of a small
month takes a few seconds of a minute or more), so delays over the whole run would seldom meet the
load step.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from pipeline.definitions import open_warehouse
from pipeline.ingest.files import fingerprint
from pipeline.ingest.stream import ingest_file
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline_tests.support import CliRun

MONTH = "2024-01"
SEED = 20240101
# Where kills land: mostly the load step, where the raw tables change; one in start-up (the run
# is created in the Dagster instance) and one while dbt writes the month's models (a kill there
# costs a whole run's time: dbt starts twice).
KILL_PHASES = ["load"] * 8 + ["startup", "dbt"]
# The log lines a phase begins and ends with (start-up begins with the process).
PHASES = {
    "startup": (None, "raw__flights - STEP_START"),
    "load": ("raw__flights - STEP_START", f"flights {MONTH}: published"),
    "dbt": (" START sql ", "Finished running"),
}
RUN_ID = re.compile(r"load_flights - ([0-9a-f-]{36}) - ")


@dataclass(frozen=True)
class Version:
    """One delivery of the month: its file, and what a load of it publishes."""

    path: Path
    rows: int
    rejects: int
    fingerprint: str


def start_load(last: str = MONTH) -> CliRun:
    """`pipeline load` of the month (to `last`), forced, with Dagster's log."""
    return CliRun.start("load", "flights", "--from", MONTH, "--to", last, "--force", "--verbose")


def run_id(run: CliRun) -> str | None:
    """The Dagster run's id, once the run has started."""
    found = next((RUN_ID.search(line) for _, line in run.lines if RUN_ID.search(line)), None)
    return found[1] if found else None


def deliver(version: Version, settings: Settings, spec: DatasetSpec) -> None:
    """Land a version's file, keeping its modification time so its fingerprint stays its own."""
    landed = settings.landing_dir / spec.file_name(MONTH)
    arriving = landed.with_suffix(".arriving")
    shutil.copy2(version.path, arriving)
    os.replace(arriving, landed)


def served(settings: Settings, versions: list[Version]) -> tuple[Version, str]:
    """The version the month holds and its load id, after asserting that the month holds
    exactly one version, once and whole, with its ledger row."""
    with open_warehouse(settings) as warehouse:
        rows, rejects = (
            warehouse.query(
                "select count(*) as n, count(distinct _line_number) as lines, "
                "count(distinct _load_id) as loads, max(_load_id) as load_id "
                f"from {table} where _month = ?",
                [MONTH],
            )[0]
            for table in ("raw.flights", "raw.flights_rejects")
        )
        ledger = warehouse.query(
            "select rows_loaded, rows_rejected, fingerprint from pipeline.load_ledger "
            "where load_id = ? and status = 'loaded'",
            [rows["load_id"]],
        )
    assert rows["loads"] == 1 and rows["lines"] == rows["n"], rows
    assert (rejects["loads"], rejects["load_id"]) == (1, rows["load_id"]), rejects
    assert rejects["lines"] == rejects["n"], rejects
    matching = [v for v in versions if (v.rows, v.rejects) == (rows["n"], rejects["n"])]
    assert len(matching) == 1, f"{rows['n']} rows and {rejects['n']} rejects: no version"
    version = matching[0]
    assert ledger == [
        {
            "rows_loaded": version.rows,
            "rows_rejected": version.rejects,
            "fingerprint": version.fingerprint,
        }
    ]
    return version, rows["load_id"]


def what_the_kill_stopped(settings: Settings, run: CliRun, published: bool) -> str:
    """How far a killed run had come, as the warehouse shows it (a kill aimed at a phase may
    land after it when the run is faster than the one that was timed)."""
    if published:
        return "after the commit"
    with open_warehouse(settings) as warehouse:
        checked = warehouse.query(
            "select count(*) as n from pipeline.check_results where run_id = ?", [run_id(run)]
        )[0]["n"]
    return "check results recorded, not committed" if checked else "before its check results"


def kill_schedule(durations: dict[str, float]) -> list[tuple[str, float]]:
    """(phase, seconds after the phase begins) for each kill, drawn with a fixed seed."""
    draw = random.Random(SEED)
    phases = draw.sample(KILL_PHASES, len(KILL_PHASES))
    return [(phase, draw.uniform(0, durations[phase])) for phase in phases]


def phase_durations(run: CliRun) -> dict[str, float]:
    """How long each phase of an uninterrupted run took, in seconds."""
    durations = {}
    for phase, (first, last) in PHASES.items():
        begun = 0.0 if first is None else run.seen(first)
        ended = run.seen(last)
        assert begun is not None and ended is not None, f"no {phase} in the log:\n{run.log()}"
        durations[phase] = ended - begun
    return durations


@pytest.fixture
def versions(settings: Settings, flights: DatasetSpec, tmp_path: Path) -> list[Version]:
    """Two deliveries of the month with different row counts and one reject each."""
    found = []
    for seed, rows_per_day in ((1, 36), (2, 40)):
        path = tmp_path / "deliveries" / f"v{seed}" / flights.file_name(MONTH)
        write_tsv(month_frame(MONTH, rows_per_day, seed=seed, defect_ratio=0.001), path)
        staged = ingest_file(flights, path, MONTH, path.parent / "staged")
        found.append(Version(path, staged.rows_loaded, staged.rows_rejected, fingerprint(path)))
    assert found[0].rows != found[1].rows and all(v.rejects == 1 for v in found)
    return found


def load_to_the_end() -> CliRun:
    with start_load() as run:
        code = run.finish()
    assert code == 0, run.log()
    return run


def load_killed(phase: str, delay: float) -> tuple[CliRun, int]:
    """A run killed `delay` seconds into `phase`, and its exit code (0: it ended before)."""
    with start_load() as run:
        first = PHASES[phase][0]
        begun = 0.0 if first is None else run.wait_for(first)
        if begun is not None:
            time.sleep(max(0.0, run.started + begun + delay - time.monotonic()))
        code = run.kill()
    assert code in (-signal.SIGKILL, 0), f"the run failed before its kill:\n{run.log()}"
    return run, code


def test_a_killed_load_serves_the_old_or_the_new_month_and_the_next_run_completes(
    settings: Settings, flights: DatasetSpec, versions: list[Version]
) -> None:
    deliver(versions[0], settings, flights)
    durations = phase_durations(load_to_the_end())
    assert served(settings, versions)[0] == versions[0]

    outcomes: Counter[str] = Counter()
    killed: list[str] = []
    for number, (phase, delay) in enumerate(kill_schedule(durations)):
        before = served(settings, versions)
        landed = versions[(number + 1) % 2]
        deliver(landed, settings, flights)
        run, code = load_killed(phase, delay)
        if code != 0 and (started := run_id(run)) is not None:
            killed.append(started)

        now = served(settings, versions)
        assert now == before or now[0] == landed, f"kill {number} in {phase}: {now}, {before}"
        stopped = "completed" if code == 0 else what_the_kill_stopped(settings, run, now != before)
        outcomes[f"aimed at {phase}, {stopped}"] += 1

    load_to_the_end()
    assert served(settings, versions)[0] == landed
    assert list(settings.staging_dir.rglob("*.parquet")) == []
    with open_warehouse(settings) as warehouse:
        candidates = warehouse.query(
            "select table_name from information_schema.tables where table_schema = 'candidates'"
        )
    assert candidates == []
    # The killed runs read as failed, saying why, once the next `pipeline load` opened the instance.
    with dg.DagsterInstance.get() as instance:
        runs = Counter(run.status.value for run in instance.get_runs())
        assert set(runs) <= {"SUCCESS", "FAILURE"}, runs
        for killed_id in killed:
            (run,) = instance.get_runs(filters=dg.RunsFilter(run_ids=[killed_id]))
            assert run.status == dg.DagsterRunStatus.FAILURE, killed_id
            (failure,) = instance.all_logs(killed_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert "killed or crashed" in failure.message, failure.message
    print(f"phases (s): {durations}; kills: {dict(outcomes)}; runs: {dict(runs)}")


def test_ctrl_c_stops_the_load_for_good_with_the_months_after_it(
    settings: Settings, flights: DatasetSpec, versions: list[Version]
) -> None:
    # Under the asset's retry policy Dagster retried the interrupted step: Ctrl-C loaded the
    # month again, then the months after it, and `pipeline load` exited 0.
    deliver(versions[0], settings, flights)
    write_tsv(
        month_frame("2024-02", 10, seed=3), settings.landing_dir / flights.file_name("2024-02")
    )
    with start_load(last="2024-02") as run:
        assert run.wait_for(PHASES["load"][0]) is not None, run.log()
        os.killpg(run.process.pid, signal.SIGINT)  # what Ctrl-C sends the terminal's group
        code = run.finish()

    assert code == 130, run.log()
    assert "STEP_UP_FOR_RETRY" not in run.log()
    # With the run's --force: a plain load would skip the months it was reloading.
    assert (
        "Interrupted. Not run: 2024-02. To go on: `pipeline load flights --from 2024-01 --to "
        "2024-02 --force`." in run.log()
    )
    assert "Fix what the reason above names" not in run.log()  # an interrupt is no fault
    with open_warehouse(settings) as warehouse:
        assert warehouse.served_load("flights", MONTH) is None  # nothing published
    with dg.DagsterInstance.get() as instance:
        assert [r.status for r in instance.get_runs()] == [dg.DagsterRunStatus.FAILURE]
