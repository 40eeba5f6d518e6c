"""Runs whose process died: a `pipeline load` killed mid-run leaves its run STARTED for ever.

`pipeline load` runs each month in its own process (`execute_in_process`). A SIGKILL, an OOM kill
or a lost machine ends the process before Dagster can write the run's end, so the instance keeps
showing the month as in progress: `status` says so, and `--retry-failed` skips it. A run the
daemon launched is failed by the code server that started it when its process dies (the README's
"What survives a crash" says when not); a CLI run has no such server, so the CLI tags each run
with its host and process id, and the next CLI command on that host that opens the instance marks
the runs whose process is gone as failed, saying why. The month then reads as failed and a retry
picks it up. (The warehouse needs nothing: a killed load publishes its month whole or not at
all, see the README's "What survives a crash".)
"""

from __future__ import annotations

import os
import socket

import dagster as dg

HOST_TAG = "pipeline/host"
PID_TAG = "pipeline/pid"
UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def process_tags() -> dict[str, str]:
    """The tags that let a later command tell whether this process still runs the run."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Mark this host's unfinished CLI runs whose process is gone as failed; return them.

    Only runs tagged by `process_tags` on this host are looked at: a run of another machine, or
    one the daemon launched, is not ours to judge.
    """
    runs = instance.get_runs(
        filters=dg.RunsFilter(statuses=UNFINISHED, tags={HOST_TAG: socket.gethostname()})
    )
    orphaned = [run for run in runs if not _alive(int(run.tags[PID_TAG]))]
    for run in orphaned:
        instance.report_run_failed(
            run,
            f"the process that ran it (pid {run.tags[PID_TAG]}) ended before the run did: killed "
            "or crashed. A month is published whole or not at all (`pipeline status` says which "
            "load is served); load it again to finish its checks, models and report",
        )
    return orphaned


def still_running(run: dg.DagsterRun) -> bool:
    """False for a run this host's CLI started whose process is gone (not marked failed yet);
    True otherwise, as far as this host can tell."""
    if run.tags.get(HOST_TAG) != socket.gethostname() or PID_TAG not in run.tags:
        return True
    return _alive(int(run.tags[PID_TAG]))


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists (a pid reused since is taken as alive: the run is
    marked at a later command instead of wrongly now)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
