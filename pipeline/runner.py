"""Run and read months through Dagster: the shared core of the CLI and the tests.

Each month is its own run in the instance at DAGSTER_HOME, so each month has its own status and
check results in the UI, and one bad month never blocks the others.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.managers import SyncManager
from pathlib import Path
from typing import Protocol

import dagster as dg
from dagster._core.event_api import EventRecordsResult, PartitionKeyFilter
from dagster._core.execution.plan.objects import ErrorSource
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

from pipeline.assets.checks import LEVEL
from pipeline.assets.freshness import freshness_check_keys
from pipeline.assets.loads import INTERRUPTED, INTERRUPTED_REASON, raw_asset_key
from pipeline.audit import anchor, anchors_file
from pipeline.jobs import load_job_name
from pipeline.orphans import process_tags
from pipeline.progress import EventQueue, Relay, deliver, watched_by
from pipeline.specs import DatasetSpec
from pipeline.warehouse.base import Warehouse, now
from pipeline.warehouse.ledger import LedgerEntry

ROW_FIGURES = ("rows_read", "rows_loaded", "rows_rejected")
CHECK_WORDS = {
    AssetCheckExecutionRecordStatus.SUCCEEDED: "passed",
    AssetCheckExecutionRecordStatus.FAILED: "FAILED",
    AssetCheckExecutionRecordStatus.PLANNED: "not run",
}
NO_MARKING = "none"  # DatasetSpec.sensitive_columns() of a spec that marks no column
UNRECORDED_MARKING = "unrecorded"
FAILED_ERROR = "FAILED (ERROR)"  # the verdict that makes a month unusable (see verdict_word)
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
RECORDS_PAGE = 1000  # event log records asked for at a time
RELAY_SECONDS = 0.2  # how often months run in worker processes have their progress shown
PARENT_POLL_SECONDS = 1.0  # how often a worker process looks whether its parent is alive
EXIT_ORPHANED = 70  # a worker's exit status once its parent is gone
GONE = (OSError, EOFError)  # what a call to the queue's manager raises once it has died


class Stop(Protocol):
    """A manager's event shared by `pipeline load --parallel` and its workers: once it is set, no
    month begins."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...


@dataclass(frozen=True)
class MonthResult:
    """How one month's run went, in the terms of the summary a user reads."""

    month: str
    success: bool
    rows: dict[str, int] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # INFO verdicts: passed without judging, and why
    published: bool = False  # its rows and rejects reached raw (a refused month's did not)
    refusals: int = 0  # how many of `errors`, from the first, are failed ERROR checks
    interrupted: bool = False  # stopped by Ctrl-C or SIGTERM: the months after it are not run

    @property
    def refused(self) -> bool:
        """An ERROR check refused the month's file (not a step failing before or after it)."""
        return FAILED_ERROR in self.checks.values()


def load_months(
    defs: dg.Definitions,
    spec: DatasetSpec,
    months: Sequence[str],
    instance: dg.DagsterInstance,
    on_month: Callable[[MonthResult], None] | None = None,
    run_config: dict | None = None,
    parallel: int = 1,
) -> list[MonthResult]:
    """Materialize each month in its own run (load, checks, reports) and report how it went.

    With `parallel` above 1, the first month runs alone, then that many months at once, each run
    in a worker process that builds the code location from the environment, as a Dagster run
    worker does; `on_month` hears of the months as they finish. Only for a warehouse whose
    `parallel_months` allows it. The results keep the order of `months` either way.
    """
    if parallel > 1 and len(months) > 2:
        # The first month alone: an incremental report model that does not exist yet is created
        # by whichever month builds it, holding that month only; months creating it at once
        # would each replace the others' (README, "Scaling out").
        first = load_months(defs, spec, months[:1], instance, on_month, run_config)
        if first[0].interrupted:
            return first
        return first + _load_in_parallel(spec, months[1:], parallel, on_month, run_config)
    results = []
    for month in months:
        result = _run_month(defs, spec, month, instance, run_config)
        results.append(result)
        if on_month is not None:
            on_month(result)
        if result.interrupted:
            break
    return results


def _load_in_parallel(
    spec: DatasetSpec,
    months: Sequence[str],
    parallel: int,
    on_month: Callable[[MonthResult], None] | None,
    run_config: dict | None,
) -> list[MonthResult]:
    """The months' runs in worker processes, each reported to `on_month` as it ends.

    Ctrl-C (or a month interrupted in a worker) stops them all: the months running end as
    interrupted and are reported, those not begun are not begun, including the ones the pool had
    already queued to a worker (once a worker held the next month, Ctrl-C did not stop it, and
    it loaded unseen). A Ctrl-C here is raised on once the running months are reported.
    """
    # Each worker imports the code location once and runs months in turn, and sends its
    # months' progress here, to this process's watcher.
    with workers(min(parallel, len(months))) as (pool, manager):
        events, stop = manager.Queue(), manager.Event()
        pending = {
            pool.submit(_run_month_in_worker, spec, month, run_config, events, stop)
            for month in months
        }
        results: dict[str, MonthResult] = {}

        def report(finished: Iterable[Future]) -> None:
            with held_interrupts():
                with suppress(*GONE):  # the progress of months, not their outcome
                    deliver(events)
                for future in finished:
                    result = future.result()
                    if result is not None:  # None: a month the stop reached before it began
                        results[result.month] = result
                        if on_month is not None:
                            on_month(result)

        interrupted = False
        try:
            while pending and not any(result.interrupted for result in results.values()):
                finished, pending = wait(
                    pending, timeout=RELAY_SECONDS, return_when=FIRST_COMPLETED
                )
                report(finished)
        except KeyboardInterrupt:
            interrupted = True
        # Done, a month interrupted, or Ctrl-C here (raised on below): no month begins now;
        # leaving the pool waits for those running, interrupted with the rest of the group, and
        # they are reported. Ctrl-C (or SIGTERM) to the group can also reach a worker still
        # starting, or the queue's manager, before they ignore it: their months were not run.
        try:
            with held_interrupts(), suppress(*GONE):
                stop.set()
        except KeyboardInterrupt:
            interrupted = True
        pool.shutdown(cancel_futures=True)
        ended = [future for future in pending if future.done() and not future.cancelled()]
        try:
            report(
                future
                for future in ended
                if not (interrupted and isinstance(future.exception(), (BrokenProcessPool, *GONE)))
            )
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt
    return [results[month] for month in months if month in results]


@contextmanager
def held_interrupts() -> Iterator[None]:
    """Ctrl-C held until the block ends, then raised. A call to the queue's manager that Ctrl-C
    interrupted between sending and reading left its reply unread on the connection, and the
    next call read it instead of its own: the queue's next item was `stop.set()`'s None, and
    `pipeline load --parallel` ended with a TypeError and exit 1 instead of its summary and 130.
    Only the main thread can take a signal's handler over; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: held.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt


@contextmanager
def workers(count: int) -> Iterator[tuple[ProcessPoolExecutor, SyncManager]]:
    """`count` worker processes and the manager of their progress queue, each ending with this
    process. Spawned, not forked: this process holds threads (gRPC, rich's display) a fork
    would copy mid-operation."""
    context = multiprocessing.get_context("spawn")
    manager = SyncManager(ctx=context)
    manager.start(_end_with, (os.getpid(),))
    with (
        manager,
        ProcessPoolExecutor(
            max_workers=count,
            mp_context=context,
            initializer=_start_worker,
            initargs=(list(warnings.filters), os.getpid()),
        ) as pool,
    ):
        yield pool, manager


def _start_worker(filters: list, parent: int) -> None:
    """Take the parent's warning filters (a spawned worker starts with Python's defaults, and the
    Dagster notes the CLI hides would print in the middle of its table), and end with it.

    A `pipeline load --parallel` killed with SIGKILL left its workers running for good, finishing
    their months unseen, and Dagster's handlers in them ignore SIGINT and SIGTERM. A worker that
    outlives its parent exits at once; its run is then failed like any killed run (orphans.py).

    Ctrl-C reaches the workers with the rest of the terminal's process group. A month's run
    takes it as an interrupt (Dagster installs its own handler for the run); between months a
    worker ignores it, and the parent's stop event decides whether another month begins: an
    idle worker that died of it broke the whole pool.
    """
    warnings.filters[:] = filters
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with(parent)


def _end_with(parent: int) -> None:
    """Exit this process as soon as `parent` is no longer its parent (it died)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _run_month_in_worker(
    spec: DatasetSpec, month: str, run_config: dict | None, events: EventQueue, stop: Stop
) -> MonthResult | None:
    """A month's run in a worker process, against the instance at DAGSTER_HOME; its progress
    goes to `events`. None if `stop` was set before it began; an interrupted month sets it."""
    from pipeline.definitions import defs

    with dg.DagsterInstance.get() as instance, watched_by(Relay(events, month)):
        if stop.is_set():
            return None
        result = _run_month(defs, spec, month, instance, run_config)
    if result.interrupted:
        stop.set()
    return result


def _run_month(
    defs: dg.Definitions,
    spec: DatasetSpec,
    month: str,
    instance: dg.DagsterInstance,
    run_config: dict | None,
) -> MonthResult:
    """One month's run of the dataset's load job, in this process."""
    run = defs.resolve_job_def(load_job_name(spec.name)).execute_in_process(
        partition_key=month,
        instance=instance,
        raise_on_error=False,
        run_config=run_config,
        tags=process_tags(),  # so that a run whose process dies is marked failed (orphans.py)
    )
    return _month_result(month, run, raw_asset_key(spec))


def _month_result(month: str, run: dg.ExecuteInProcessResult, raw_key: dg.AssetKey) -> MonthResult:
    rows: dict[str, int] = {}
    # A published month's figures are on its materialization, a refused one's on its failure.
    materialized = [
        event.step_materialization_data.materialization.metadata
        for event in run.get_asset_materialization_events()
        if event.step_materialization_data.materialization.asset_key == raw_key
    ]
    failures = [
        event.step_failure_data.user_failure_data.metadata
        for event in run.get_step_failure_events()
        if event.step_failure_data.user_failure_data is not None
    ]
    metadata_sets = materialized + failures
    for metadata in metadata_sets:
        if all(name in metadata for name in ROW_FIGURES):
            rows = {name: metadata[name].value for name in ROW_FIGURES}
    evaluations = [e for e in run.get_asset_check_evaluations() if e.asset_key == raw_key]
    checks = {
        f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}": (
            verdict_word(evaluation.passed, evaluation.severity)
        )
        for evaluation in evaluations
    }
    # What failed the month comes first (ERROR checks, failed steps), then WARN findings: the
    # summary gives a failed month's refusing ERROR checks (`refusals`), or else its first error,
    # as its reason.
    refusals = _failed_checks(evaluations, dg.AssetCheckSeverity.ERROR)
    errors = (
        refusals
        + step_errors(run.get_step_failure_events())
        + _failed_checks(evaluations, dg.AssetCheckSeverity.WARN)
    )
    notes = [
        f"check {evaluation.check_name} (INFO): {evaluation.description}"
        for evaluation in evaluations
        if evaluation.passed and _level(evaluation) == "INFO"
    ]
    return MonthResult(
        month=month,
        success=run.success,
        rows=rows,
        checks=checks,
        errors=tuple(errors),
        notes=tuple(notes),
        published=bool(materialized),
        refusals=len(refusals),
        # The load step says so (it is not retried); any other step is failed by the interrupt.
        interrupted=any(INTERRUPTED in metadata for metadata in failures)
        or any(
            event.step_failure_data.error_source == ErrorSource.INTERRUPT
            for event in run.get_step_failure_events()
        ),
    )


def _failed_checks(
    evaluations: Sequence[dg.AssetCheckEvaluation], severity: dg.AssetCheckSeverity
) -> list[str]:
    """The failed checks of one severity, each with its own explanation."""
    return [
        f"check {evaluation.check_name}: {evaluation.description}"
        for evaluation in evaluations
        if not evaluation.passed and evaluation.severity == severity
    ]


def _level(evaluation: dg.AssetCheckEvaluation) -> str | None:
    """ERROR, WARN or INFO as the check gave it (metadata `level`), if it did."""
    level = evaluation.metadata.get(LEVEL)
    return level.value if level is not None else None


# Dagster's wrappers around the exception a step raised.
WRAPPING_ERRORS = {"DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError"}


def step_errors(events: Iterable[dg.DagsterEvent]) -> list[str]:
    """`<step>: <reason>` for each failed step of a run: the summary's and `status`'s words.

    A failed blocking check is left out: its verdict explains itself, and the step failure it
    causes would only repeat its name. A `Failure`'s description is written for people, so all of
    its first paragraph is shown (the dbt step lists each failed model on a line of its own);
    any other error shows its first line.
    """
    errors = []
    for event in events:
        failure = event.step_failure_data
        if failure.error is None or failure.error.cls_name == "DagsterAssetCheckFailedError":
            continue
        if failure.user_failure_data is not None and failure.user_failure_data.description:
            lines = failure.user_failure_data.description.strip().split("\n\n")[0].splitlines()
        elif failure.error_source == ErrorSource.INTERRUPT:
            # Outside the load's own handler (Dagster's code between two of its events) the
            # error is a bare class name.
            lines = [INTERRUPTED_REASON]
        else:
            error, retried = failure.error, ""
            # A step out of retries says only "Exceeded max_retries of 3": add the last cause.
            if error.cls_name.startswith("RetryRequested") and error.cause is not None:
                error, retried = error.cause, f"{_readable(error.message)}; the last attempt: "
            # "Error occurred while executing op ..." says nothing: the reason is its cause.
            while error.cls_name in WRAPPING_ERRORS and error.cause is not None:
                error = error.cause
            lines = [retried + _readable(error.message)]
        errors.extend(f"{event.step_key}: {line.strip()}" for line in lines)
    return errors


def _readable(message: str) -> str:
    """The first line of an error, without the exception's module path in front."""
    first = message.strip().splitlines()[0]
    return re.sub(r"^[\w.]+\.(\w+): ", "", first)


@dataclass(frozen=True)
class MonthStatus:
    """A month as the instance records it: materialized, failed or missing."""

    month: str
    status: str
    rows: dict[str, int]
    checks: dict[str, str]
    fingerprint: str | None = None
    detail: str = ""  # what a failed month's readers get instead, and where its rows wait
    lost: bool = False  # Dagster recorded it as loaded, the warehouse has no load of it
    refused_fingerprint: str | None = None  # the file an ERROR check refused in the last attempt
    errors: tuple[str, ...] = ()  # why the month's latest run failed, as the load summary says it
    sensitive_columns: str | None = None  # as its spec marked them when it was loaded, if known
    refused_sensitive_columns: str | None = None  # as they were when its candidate was refused
    # Spec columns its file has that its load did not take: added to the spec since (a column
    # the spec lacks is ignored), so they are null in the month until it is loaded again.
    columns_added: tuple[str, ...] = ()

    def marked_otherwise(self, now: str | None) -> str | None:
        """How the month's data marks its sensitive columns where the spec now says `now`:
        its served rows' marking, or its refused candidate's; None if they agree or nothing is
        known. A refusal recorded before refusals noted theirs counts as other when the spec
        marks any."""
        if now is None:
            return None
        held = [self.sensitive_columns]
        if self.refused_fingerprint is not None:
            unrecorded = UNRECORDED_MARKING if now != NO_MARKING else None
            held.append(self.refused_sensitive_columns or unrecorded)
        return next((marking for marking in held if marking not in (None, now)), None)

    @property
    def failed(self) -> bool:
        """The month's last run failed, or its data failed an ERROR check.

        A failed WARN check is a finding to read, not a reason to call the month unusable, to
        reload it with --retry-failed, or to exit 1.
        """
        return self.status == "failed" or FAILED_ERROR in self.checks.values()

    def fingerprint_matches(self, fingerprint: str | None) -> str | None:
        """`refused` or `materialized` if the last load of this very file ended so, else None."""
        if fingerprint is None:
            return None
        if self.status == "failed" and self.refused_fingerprint == fingerprint:
            return "refused"
        if self.status == "materialized" and self.fingerprint == fingerprint:
            return "materialized"
        return None


def month_statuses(
    defs: dg.Definitions,
    spec: DatasetSpec,
    instance: dg.DagsterInstance,
    months: Sequence[str],
    warehouse: Warehouse | None = None,
) -> list[MonthStatus]:
    """The checkpoint: what Dagster knows of each month of a dataset.

    With the `warehouse`, a failed month also says which load is still served, from the ledger.
    """
    key = raw_asset_key(spec)
    assets_def = defs.resolve_assets_def(key)
    partitions_def = assets_def.partitions_def
    assert partitions_def is not None
    by_partition = instance.get_status_by_partition(key, list(months), partitions_def) or {}
    # The month's checks. Not freshness: it is about the dataset's latest month, and a backfill
    # from the UI plans it in each month's run without running it there.
    check_keys = sorted(
        defs.resolve_asset_graph().get_check_keys_for_assets([key])
        - set(freshness_check_keys(spec))
    )
    statuses = []
    for month in months:
        status = by_partition.get(month)
        attempt = warehouse.latest_attempt(spec.name, month) if warehouse else None
        if status is None:  # never loaded, or purged: older check results no longer apply
            purged = attempt is not None and attempt["status"] == "purged"
            detail = f"purged {attempt['finished_at']:%Y-%m-%d %H:%M} UTC" if purged else ""
            statuses.append(MonthStatus(month, "missing", rows={}, checks={}, detail=detail))
            continue
        metadata = latest_metadata(instance, key, month)
        errors = latest_run_errors(instance, month_runs(defs, spec, month, instance))
        # The raw rows can be materialized while the month's reports failed to build.
        word = "failed" if errors else status.value.lower()
        failed_load = attempt is not None and attempt["status"] == "failed"
        refused = failed_load and attempt["candidate"]
        # A refused load materialized nothing: its figures are the ledger's, with its candidate.
        figures = attempt if refused else metadata
        if word == "materialized" and warehouse is not None and not _in(warehouse, attempt):
            statuses.append(_not_in_warehouse(month, warehouse))
            continue
        if failed_load:
            detail = _served(warehouse, spec, month, attempt, errors)
        elif word == "failed" and attempt is not None and attempt["status"] == "loaded":
            # The run failed after publishing (its models), or died before recording anything:
            # the figures shown are those of the load still served.
            detail = f"serving {_load_words(attempt)}"
        else:
            detail = ""
        statuses.append(
            MonthStatus(
                month=month,
                status=word,
                rows={name: figures[name] for name in ROW_FIGURES if figures.get(name) is not None},
                checks=_latest_checks(instance, check_keys, month),
                fingerprint=metadata.get("fingerprint"),
                detail=detail,
                refused_fingerprint=attempt["fingerprint"] if refused else None,
                errors=tuple(errors),
                sensitive_columns=metadata.get("sensitive_columns"),
                # A refused month's candidate holds the columns as that load marked them.
                refused_sensitive_columns=latest_metadata(instance, key, month, observed=True).get(
                    "sensitive_columns"
                )
                if refused
                else None,
                columns_added=_columns_added(spec, metadata),
            )
        )
    return statuses


def _columns_added(spec: DatasetSpec, metadata: dict) -> tuple[str, ...]:
    """The spec's columns that the month's file held but its load ignored, the spec lacking
    them then (its materialization's `extra_columns`)."""
    ignored = set((metadata.get("extra_columns") or "none").split(", "))
    return tuple(name for name in spec.columns if name in ignored)


def _in(warehouse: Warehouse, attempt: dict | None) -> bool:
    """Whether the warehouse serves a load of the month whose last ledger entry is `attempt`."""
    if attempt is None or attempt["status"] == "purged":
        return False
    return attempt["status"] == "loaded" or (
        warehouse.served_load(attempt["dataset"], attempt["month"]) is not None
    )


def _not_in_warehouse(month: str, warehouse: Warehouse) -> MonthStatus:
    """A month Dagster recorded as loaded that the warehouse has no load of: a new or emptied
    database, or the instance of another warehouse. Missing, so the next load loads it."""
    return MonthStatus(
        month=month,
        status="missing",
        rows={},
        checks={},
        detail=(
            f"Dagster recorded a load, but {warehouse.location()} has none: a new or emptied "
            "database, or another warehouse's DAGSTER_HOME; the next load loads it"
        ),
        lost=True,
    )


def _served(
    warehouse: Warehouse, spec: DatasetSpec, month: str, attempt: dict, errors: Sequence[str]
) -> str:
    """`not published; serving the load of <date> from <file>: <its figures>` or `never
    published`, and where the refused load's rows can be inspected (the status line's figures
    are the refused load's) unless the run's error, shown beside it, already names them."""
    served = warehouse.served_load(spec.name, month)
    text = (
        f"not published; serving {_load_words(served)}: {served['rows_loaded']:,} rows, "
        f"{served['rows_rejected']:,} rejected"
        if served is not None
        else "never published"
    )
    candidate = attempt.get("candidate")
    if candidate and not any(candidate.split(",")[0] in error for error in errors):
        text += f"; the refused load's rows are in {candidate}"
    return text


def _load_words(load: dict) -> str:
    """`the load of <date> UTC from <file>`, for a ledger row."""
    source = Path(load["source_file"]).name
    return f"the load of {load['finished_at']:%Y-%m-%d %H:%M} UTC from {source}"


def latest_run_errors(instance: dg.DagsterInstance, runs: Sequence[dg.DagsterRun]) -> list[str]:
    """Why the latest finished of `runs` (newest first) failed; nothing if it succeeded."""
    finished = [run for run in runs if run.status in FINISHED]
    if not finished or finished[0].status != dg.DagsterRunStatus.FAILURE:
        return []
    records = instance.all_logs(finished[0].run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    errors = step_errors(record.dagster_event for record in records if record.dagster_event)
    if errors:
        return errors
    # No step failed: the run was failed from outside (its process died, see pipeline.orphans).
    records = instance.all_logs(finished[0].run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return [_explained(record.dagster_event.message) for record in records if record.dagster_event]


# What Dagster's code server says of a run whose worker process it launched died.
FAILED_FROM_OUTSIDE = "marked as failed from outside the execution context"


def _explained(message: str) -> str:
    """Dagster's words for a run whose process died, with what they mean and what to do."""
    if FAILED_FROM_OUTSIDE not in message:
        return message
    return (
        f"{message.rstrip('.')}: its process ended before the run did (killed or crashed); "
        "`pipeline load --retry-failed` loads the month again"
    )


def month_runs(
    defs: dg.Definitions, spec: DatasetSpec, month: str, instance: dg.DagsterInstance
) -> list[dg.DagsterRun]:
    """Every run that materialized, or planned to materialize, one of the dataset's partitioned
    assets for `month`, newest first.

    Whatever launched it: `pipeline load` (the load job), a sensor (the load job with its own
    tags), a UI materialization or backfill (the asset graph's own job), a script's
    `materialize`. Asking the event log by asset and month, not runs by job name and tag, finds
    them all, and no run of another dataset or month.
    """
    run_ids: set[str] = set()
    for key in partitioned_downstream(defs, raw_asset_key(spec)):
        records_filter = dg.AssetRecordsFilter(asset_key=key, asset_partitions=[month])
        for fetch in (instance.fetch_planned_materializations, instance.fetch_materializations):
            run_ids.update(record.run_id for record in _every_record(fetch, records_filter))
    run_ids.discard("")  # a materialization reported without a run
    if not run_ids:
        return []
    return list(instance.get_runs(filters=dg.RunsFilter(run_ids=sorted(run_ids))))


def _every_record(
    fetch: Callable[..., EventRecordsResult], records_filter: dg.AssetRecordsFilter
) -> Iterator[dg.EventLogRecord]:
    """All records a paginated `instance.fetch_*` call returns, page by page."""
    cursor = None
    while True:
        page = fetch(records_filter, limit=RECORDS_PAGE, cursor=cursor)
        yield from page.records
        if not page.has_more:
            return
        cursor = page.cursor


def latest_metadata(
    instance: dg.DagsterInstance, key: dg.AssetKey, month: str, observed: bool = False
) -> dict:
    """The metadata values of the month's latest materialization (none after a purge), or with
    `observed` of its latest observation (a refused file, a purge)."""
    fetch = instance.fetch_observations if observed else instance.fetch_materializations
    records = fetch(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[month]), limit=1).records
    event = records[0].asset_event if records else None
    return {name: value.value for name, value in event.metadata.items()} if event else {}


def handled_file(instance: dg.DagsterInstance, key: dg.AssetKey, month: str) -> str | None:
    """The fingerprint of the file the month's latest outcome was about: the file it is
    materialized from, the file its last load refused, or the file it was loaded from when it
    was purged (the load step and `purge_month` observe the last two); None if there is none."""
    records_filter = dg.AssetRecordsFilter(asset_key=key, asset_partitions=[month])
    latest = [
        record
        for fetch in (instance.fetch_materializations, instance.fetch_observations)
        for record in fetch(records_filter, limit=1).records
    ]
    if not latest:
        return None
    newest = max(latest, key=lambda record: record.storage_id)
    event = newest.asset_materialization or newest.asset_observation
    value = event.metadata.get("fingerprint") if event is not None else None
    return value.value if value is not None else None


@dataclass(frozen=True)
class Plan:
    """Which months a `load` runs, and why it leaves the others."""

    run: list[str]
    skipped: dict[str, str]
    failing: list[str] = field(default_factory=list)  # skipped, but their last verdict failed
    # Run although loaded from the same file: why (their sensitive columns changed).
    reloaded: dict[str, str] = field(default_factory=dict)


def plan_months(
    statuses: Sequence[MonthStatus],
    fingerprints: dict[str, str | None],
    *,
    force: bool = False,
    retry_failed: bool = False,
    sensitive_columns: str | None = None,
) -> Plan:
    """Partition status as the checkpoint: re-running a half-finished batch does only the rest.

    A month already materialized from a file with the same fingerprint is skipped unless `force`;
    with `retry_failed` only months whose last run or check failed are run. A materialized month
    whose file has left the landing folder (archived) is skipped: there is nothing to reload it
    from, and a run would only fail it. With `retry_failed`, so is a failed month with no file.
    A month loaded while the spec marked other `sensitive_columns` (`pii`) than it does now is
    loaded again, file unchanged or not: it may hold a newly marked column in clear, in its
    published rows or, refused, in the candidate kept for inspection.
    """
    run: list[str] = []
    skipped: dict[str, str] = {}
    failing: list[str] = []
    reloaded: dict[str, str] = {}
    for status in statuses:
        delivered = fingerprints.get(status.month) is not None
        same_file = status.fingerprint_matches(fingerprints.get(status.month))
        remarked = status.marked_otherwise(sensitive_columns)
        if retry_failed and not status.failed:
            skipped[status.month] = (
                "not loaded yet: a load without --retry-failed loads it"
                if status.status == "missing"
                else "did not fail"
            )
        elif not delivered and (status.status == "materialized" or retry_failed or remarked):
            if status.failed:
                failing.append(status.month)
            skipped[status.month] = (
                "failed, and its file is not in the landing folder: deliver it to load again"
                if status.failed
                else "loaded earlier from a file no longer in the landing folder (archived?)"
            )
            if remarked:
                skipped[status.month] += (
                    f"; loaded with sensitive columns {remarked}, the spec now "
                    f"says {sensitive_columns}: deliver the file again, or purge the month"
                )
        elif remarked and not retry_failed:
            run.append(status.month)
            reloaded[status.month] = (
                f"loaded with sensitive columns {remarked}; the spec now says {sensitive_columns}"
            )
        elif not force and not retry_failed and same_file == "refused":
            failing.append(status.month)
            skipped[status.month] = (
                "an ERROR check refused this file in the last load: a corrected file is loaded "
                "as is; after correcting the spec, --retry-failed reloads it"
            )
        elif not force and not retry_failed and same_file == "materialized":
            if status.failed:
                failing.append(status.month)
                skipped[status.month] = (
                    "already loaded from this file, and its checks FAILED: a corrected file is "
                    "loaded as is; after correcting the spec, --retry-failed reloads it"
                )
            elif status.columns_added:
                skipped[status.month] = (
                    f"already loaded from this file, before the spec had "
                    f"{', '.join(status.columns_added)}, which the file holds: null in this "
                    "month until --force reloads it"
                )
            else:
                skipped[status.month] = "already loaded from this file (--force reloads it)"
        else:
            run.append(status.month)
    return Plan(run=run, skipped=skipped, failing=failing, reloaded=reloaded)


def partitioned_downstream(defs: dg.Definitions, key: dg.AssetKey) -> list[dg.AssetKey]:
    """`key` and the partitioned assets built from it: what a month's purge un-materializes."""
    graph = defs.resolve_asset_graph()
    found = [key]
    for child in sorted(graph.get(key).child_keys):
        if graph.get(child).partitions_def is not None:
            found.extend(k for k in partitioned_downstream(defs, child) if k not in found)
    return found


def _latest_checks(
    instance: dg.DagsterInstance, check_keys: Sequence[dg.AssetCheckKey], month: str
) -> dict[str, str]:
    outcomes = {}
    for check_key in check_keys:
        history = instance.event_log_storage.get_asset_check_execution_history(
            check_key, limit=1, partition_filter=PartitionKeyFilter(key=month)
        )
        if history:
            outcomes[check_key.name] = _check_word(history[0])
    return outcomes


def _check_word(record: AssetCheckExecutionRecord) -> str:
    """A recorded verdict in the load summary's words; `not run` if it was only planned."""
    evaluation = record.evaluation
    if record.status == AssetCheckExecutionRecordStatus.FAILED and evaluation is not None:
        return verdict_word(False, evaluation.severity)
    return CHECK_WORDS.get(record.status, record.status.value)


def verdict_word(passed: bool, severity: dg.AssetCheckSeverity) -> str:
    """`passed`, `FAILED (ERROR)` or `FAILED (WARN)`: one wording for the summary and `status`."""
    return "passed" if passed else f"FAILED ({severity.value})"


def purge_month(
    defs: dg.Definitions,
    spec: DatasetSpec,
    month: str,
    instance: dg.DagsterInstance,
    warehouse: Warehouse,
) -> dict[str, int]:
    """Delete a month everywhere it was loaded and show it as not materialized again.

    The warehouse deletes the raw rows, the rejects and the month's rows of the dataset's report
    tables in one transaction and records a `purged` ledger row. Then the month's runs are deleted
    from the instance, so its status is `missing` and a sensor or `pipeline load` loads it anew:
    Dagster's SQLite and Postgres storages cannot wipe one partition of an asset, and every month
    runs on its own, so the month's runs are exactly its history, whichever way they were
    launched (`month_runs`). The ledger and the audit log (its entry anchored like a run's) keep
    the record.
    """
    keys = partitioned_downstream(defs, raw_asset_key(spec))
    last = warehouse.latest_attempt(spec.name, month)
    # The file the purged month came from: a landing sensor does not load it again (handled_file).
    purged_file = {"fingerprint": last["fingerprint"]} if last and last["fingerprint"] else {}
    stamp = now()
    entry = LedgerEntry.without_rows(spec.name, month, "pipeline purge", "purged", stamp, stamp)
    deleted = warehouse.purge_month(spec, month, [key.path[-1] for key in keys[1:]], entry)
    anchor(warehouse, anchors_file(instance), entry.run_id)
    # Recorded in each asset's history before its runs go, and needed there: Dagster's SQLite
    # storage gives a new event the id after the highest one left, while the status cache only
    # reads events past the asset's last materialization id, which deleting runs does not move
    # back. Without a later event, the reload's materialization reused a deleted id and the
    # month stayed `missing` (and was loaded again by the next plain load).
    for key in keys:
        instance.report_runless_asset_event(
            dg.AssetObservation(
                key,
                partition=month,
                metadata={"purged": f"pipeline purge, load {entry.load_id}"} | purged_file,
            )
        )
    for run in month_runs(defs, spec, month, instance):
        instance.delete_run(run.run_id)
    # The partition status cache (kept by the UI and `status`) only ever adds events; rebuilt from
    # the remaining ones, it no longer counts the month.
    instance.wipe_asset_cached_status(keys)
    return deleted
