"""One monthly-partitioned asset per dataset: its file written, audited and published.

Write, audit, publish, in one step: the file is streamed, validated and staged; the warehouse
loads the staged parts into the month's candidate tables; every check of the month runs against
the candidate (with the published months as history); only if no ERROR check failed is the month
replaced in the raw tables, in one transaction with its ledger row. A refused month leaves the
published one in place everywhere, and its candidate stays in the warehouse to be inspected.

Why in one step rather than a candidate asset with blocking checks and a publish asset: the
refusal, the ledger row that records it and the partition status must agree, and Dagster's
blocking checks stop downstream steps without failing the asset's partition or writing anything
(see the README, "How a month is published").
"""

import datetime as dt
import errno
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg

from pipeline.alerts.channels import Alerts
from pipeline.assets.catalog import column_schema
from pipeline.assets.checks import MonthCheck, check_specs, month_checks, to_check_result
from pipeline.audit import anchor, anchors_file, record_spec, run_actor
from pipeline.checks.outcome import CheckOutcome
from pipeline.checks.scope import MonthUnderCheck
from pipeline.ingest import staging
from pipeline.ingest.files import fingerprint
from pipeline.ingest.header import LoadError
from pipeline.ingest.stream import StagedLoad, new_load_id, require_file, stage_file
from pipeline.metrics import MetricsExport
from pipeline.orphans import still_running
from pipeline.partitions import dataset_partitions
from pipeline.progress import CHECKS, PUBLISH, READ, STAGE, MonthProgress, enter_phase
from pipeline.reports.build import report_path
from pipeline.resources import LandingFiles
from pipeline.specs import DatasetSpec
from pipeline.warehouse.audit import acting_as
from pipeline.warehouse.base import (
    RAW_SCHEMA,
    Candidate,
    Warehouse,
    now,
    rejects_table,
    statement_context,
)
from pipeline.warehouse.ledger import CheckRecord, LedgerEntry, PhaseRecord

# The run tag Dagster gives a partition's run, and how often a month waiting for an earlier
# one's load to end looks again (see await_earlier_months).
PARTITION_TAG = "dagster/partition"
INTERRUPTED = "interrupted"  # metadata of the failure of a step stopped by Ctrl-C or SIGTERM
INTERRUPTED_REASON = (
    "interrupted (Ctrl-C or SIGTERM), not retried; a load with --retry-failed runs it again"
)
# What the CLI shows of a step that failed and is retried (its retry policy's delay first).
RETRYING = "failed, retried shortly"
EARLIER_MONTHS_POLL_SECONDS = 2
# A run that has logged nothing for this long is taken for dead and not waited for: a run
# worker the daemon launched that died leaves its run STARTED (the load logs every tenth of its
# file, and each phase).
SILENT_RUN_SECONDS = 30 * 60
# The loader's own disk refusing a write: no permission, read-only, full, over quota, a path
# through a file. Final, not retried (see local_storage_error).
LOCAL_STORAGE_ERRNOS = (
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.ENOTDIR,
)

# Transient trouble (a locked warehouse file, a dropped connection) is retried with growing,
# jittered delays, reusing the staged parts; a bad file raises Failure(allow_retries=False).
LOAD_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def raw_asset_key(spec: DatasetSpec) -> dg.AssetKey:
    """The key of a dataset's raw table asset, matching the dbt source `raw.<dataset>`."""
    return dg.AssetKey([RAW_SCHEMA, spec.name])


def build_load_asset(spec: DatasetSpec, warehouse_name: str = "duckdb") -> dg.AssetsDefinition:
    """The asset that loads `spec`'s monthly files, with the month's checks as its check specs;
    `warehouse_name` (PIPELINE_WAREHOUSE) is shown among its kinds and names its pool: a queued
    run starts when the warehouse's pool has room (README, "Scaling out")."""
    key = raw_asset_key(spec)
    partitions_def = dataset_partitions(spec)
    checks = month_checks(spec)

    @dg.asset(
        key=key,
        partitions_def=partitions_def,
        group_name=spec.name,
        description=spec.description or f"Monthly files {spec.file_pattern}, validated.",
        kinds={"python", "parquet", warehouse_name},
        owners=spec.owners,
        tags=spec.tags,
        check_specs=check_specs(spec, key, partitions_def),
        # No backfill policy: without one, a backfill runs each month as a partition of its own.
        # `BackfillPolicy.multi_run(1)` ran it as a one-month range, which Dagster records check
        # results for without their month.
        retry_policy=LOAD_RETRY_POLICY,
        pool=warehouse_name,
        metadata={
            "file_pattern": spec.file_pattern,
            "dagster/column_schema": column_schema(spec),
        },
    )
    def load(
        context: dg.AssetExecutionContext,
        files: LandingFiles,
        warehouse: Warehouse,
        metrics: MetricsExport,
        alerts: Alerts,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        from pipeline.assets.reports import close_month  # it imports this module

        month = context.partition_key
        progress = MonthProgress(f"{spec.name} {month}", context.log.info)
        with (
            statement_context(spec.name, month, context.run.run_id),
            acting_as(run_actor(context.run.tags)),
            stopping_for_good(f"{spec.name} {month}"),
        ):
            try:
                yield from load_month(context, spec, checks, files, warehouse, progress)
            except Exception as error:
                progress.stop()
                if _final(context, error):
                    close_month(context, spec, files, warehouse, alerts, published=False)
                else:
                    # The CLI shows phases, not Dagster's log: a retry was the same phases again.
                    enter_phase(f"{RETRYING}: {_first_line(error)}")
                raise
            finally:
                _account(context, spec, warehouse, metrics, progress)
            close_month(context, spec, files, warehouse, alerts, published=True)

    return load


@contextmanager
def stopping_for_good(what: str) -> Iterator[None]:
    """Ctrl-C or SIGTERM inside the block fails the step for good.

    Under a retry policy Dagster retries an interrupted step (meant for a preempted worker):
    Ctrl-C loaded the month again, then the months after it. Stopping means stop; the staged
    parts stay for `--retry-failed` to reuse.
    """
    try:
        yield
    except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
        raise dg.Failure(
            description=f"{what}: {INTERRUPTED_REASON}",
            allow_retries=False,
            metadata={INTERRUPTED: True},
        ) from None


def load_month(
    context: dg.AssetExecutionContext,
    spec: DatasetSpec,
    checks: list[MonthCheck],
    files: LandingFiles,
    warehouse: Warehouse,
    progress: MonthProgress,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Stage, check and publish (or refuse) one month; see the module's docstring."""
    month = context.partition_key
    path = files.landing_path / spec.file_name(month)
    attempt = _Attempt(
        warehouse, spec, month, context.run.run_id, path, anchors_file(context.instance)
    )
    staging.sweep(files.staging_path, older_than=staging.ORPHAN_AGE_SECONDS)
    with attempt.recorded():
        # The month's first statement: a database that refuses it fails the month at once.
        record_spec(warehouse, spec, attempt.run_id)
        require_file(spec, path, month)
        delivered = fingerprint(path)  # a LoadError if it cannot be read
        warehouse.require_column_types(spec, month, attempt.load_id)
    month_dir = staging.month_staging(files.staging_path, spec.name, month)
    directory = month_dir / staging.staging_key(spec, delivered, files.pii_key)
    # One run per month at a time: another staging of this month is a killed run's leftover.
    staging.sweep(month_dir, keep=directory)
    # Recorded first: a staging folder that cannot be made fails the month like any error.
    with attempt.recorded(directory), staging.claimed(directory):
        progress.phase(READ, str(path))
        staged = attempt.staged = stage_file(
            spec,
            path,
            month,
            directory,
            block_bytes=files.block_bytes,
            workers=files.workers,
            part_bytes=warehouse.part_bytes,  # Snowflake wants 100-250 MB uploads
            progress=progress.read,
            pii_key=files.pii_key,
        )
        progress.phase(STAGE)
        candidate = warehouse.stage_candidate(staged, attempt.load_id)
        progress.phase(CHECKS)
        await_earlier_months(context, spec, warehouse)
        # One scope for every check: figures several use (rows per day) are computed once.
        under_check = MonthUnderCheck(warehouse, staged, candidate)
        outcomes = {check.name: check.evaluate(under_check) for check in checks}
        for name, outcome in outcomes.items():
            warehouse.record_check(_check_record(attempt, name, outcome))
        refused = {name: o for name, o in outcomes.items() if _refuses(o)}
        if refused:
            yield from _results(
                outcomes, {"candidate": candidate.names(), "load_id": attempt.load_id}
            )
            # The refused file, in the asset's history: a landing sensor does not load it again.
            yield dg.AssetObservation(
                raw_asset_key(spec),
                partition=month,
                metadata={
                    "refused": f"load {attempt.load_id}",
                    "fingerprint": staged.fingerprint,
                    # Its candidate holds the columns so: a spec marking more reloads it.
                    "sensitive_columns": spec.sensitive_columns(),
                    # On the asset's page, where the run's failure is a click away.
                    **_figures(staged, candidate),
                    **_report_link(files, spec, month),
                },
            )
            _refuse(warehouse, staged, candidate, attempt.run_id, refused)
            staging.remove(directory)
            raise dg.Failure(
                description=_refusal(
                    staged, candidate, refused, warehouse.served_load(staged.dataset, staged.month)
                ),
                allow_retries=False,
                metadata=_figures(staged, candidate)
                | attempt.anchored()
                | _report_link(files, spec, month),
            )
        entry = LedgerEntry.for_staged(
            staged, attempt.load_id, attempt.run_id, "loaded", candidate.counts
        )
        progress.phase(PUBLISH)
        warehouse.publish(staged, candidate, entry)
        staging.remove(directory)
    context.log.info(
        f"{spec.name} {month}: published {candidate.rows:,} rows and {candidate.rejects:,} "
        f"rejects from {staged.source_file}"
    )
    yield dg.MaterializeResult(
        metadata=_published_metadata(staged, candidate)
        | attempt.anchored()
        | _report_link(files, spec, month)
    )
    yield from _results(outcomes, {"load_id": attempt.load_id})


def await_earlier_months(
    context: dg.AssetExecutionContext, spec: DatasetSpec, warehouse: Warehouse
) -> None:
    """Where months load in parallel, wait until no run loading an earlier month of the dataset
    is still going: this month's checks compare it with the months published before it (volume
    history, keys across months), so those must be published (or refused) first. The reading,
    staging and copying of the months still overlap; a run waits only for runs that started
    (never for a queued one, so no two runs wait for each other), and not for one that is dead
    (a CLI run whose process is gone, or a run silent for SILENT_RUN_SECONDS)."""
    from pipeline.jobs import load_job_name  # it imports this module

    if not warehouse.parallel_months:
        return
    month, key = context.partition_key, raw_asset_key(spec)

    def earlier_runs() -> list[dg.DagsterRun]:
        return [
            run
            for run in context.instance.get_runs(
                filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
            )
            if run.run_id != context.run.run_id
            and run.tags.get(PARTITION_TAG, month) < month
            and (run.job_name == load_job_name(spec.name) or key in (run.asset_selection or ()))
            and still_running(run)
            and not silent(context.instance, run)
        ]

    announced: set[str] = set()
    while runs := earlier_runs():
        for run in runs:
            if run.run_id not in announced:
                announced.add(run.run_id)
                context.log.info(
                    f"{spec.name} {month}: waiting for the load of {run.tags[PARTITION_TAG]} "
                    f"(run {run.run_id[:8]}) to end: this month's checks compare the months "
                    "before it"
                )
        time.sleep(EARLIER_MONTHS_POLL_SECONDS)


def silent(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether `run` has logged nothing for SILENT_RUN_SECONDS."""
    latest = instance.get_records_for_run(run.run_id, ascending=False, limit=1).records
    last = latest[0].event_log_entry.timestamp if latest else 0.0
    return time.time() - last > SILENT_RUN_SECONDS


def _account(
    context: dg.AssetExecutionContext,
    spec: DatasetSpec,
    warehouse: Warehouse,
    metrics: MetricsExport,
    progress: MonthProgress,
) -> None:
    """After every attempt, published, refused or failed: keep its phase timings and rebuild the
    dataset's metrics. The month's outcome is already recorded and must not change because of
    either, so their trouble is a warning in the run's log."""
    month, run_id = context.partition_key, context.run.run_id
    timings = [
        PhaseRecord(spec.name, month, run_id, phase, seconds, now())
        for phase, seconds in progress.durations().items()
    ]
    try:
        if timings:  # none when the file was missing
            warehouse.record_phases(timings)
    except Exception as exc:
        context.log.warning(f"{spec.name} {month}: phase timings not recorded: {exc}")
    try:
        for destination in metrics.export(warehouse, spec):
            context.log.info(f"{spec.name}: metrics of every month sent to {destination}")
    except Exception as exc:
        context.log.warning(f"{spec.name} {month}: metrics {exc}")


def _report_link(files: LandingFiles, spec: DatasetSpec, month: str) -> dict[str, Any]:
    """A link from the month's materialization (or refusal) to its section of the dataset's
    report, which the run writes (reports/<dataset>) after this step."""
    url = files.report_url(report_path(files.reports_path, [spec.name]))
    return {"report": dg.MetadataValue.url(f"{url}#{spec.name}={month}")}


@dataclass
class _Attempt:
    """One attempt to load a month: how a failure of it is recorded and whether it is final."""

    warehouse: Warehouse
    spec: DatasetSpec
    month: str
    run_id: str
    path: Path
    anchors: Path
    load_id: str = field(default_factory=new_load_id)
    started_at: dt.datetime = field(default_factory=now)
    staged: StagedLoad | None = None

    @contextmanager
    def recorded(self, staging_dir: Path | None = None) -> Iterator[None]:
        """Record a failure inside the block in the ledger.

        A LoadError (a file that cannot load, counts that do not reconcile) fails for good: the
        staged parts go and Dagster does not retry. So does a statement the database refused (a
        name, a type, a feature it lacks), which it would refuse again, and the loader's own disk
        refusing a write (`local_storage_error`). Any other error is the warehouse's trouble: the
        step's retry policy tries again, reusing the staged parts. A refusal (dg.Failure) was
        recorded already.
        """
        try:
            yield
        except dg.Failure:
            raise
        except Exception as exc:
            # The warehouse that failed a statement of the block may fail these too (a session
            # setting it lacks): the failure to report is still the block's.
            unrecorded = self._statement_error(partial(self._record, str(exc)))
            final = (
                isinstance(exc, LoadError)
                or self.warehouse.is_statement_error(exc)
                or local_storage_error(exc)
            )
            if not final:
                raise
            if staging_dir is not None:
                staging.remove(staging_dir)
            anchored: dict[str, Any] = {}  # if not, the next run's anchor covers these entries
            self._statement_error(lambda: anchored.update(self.anchored()))
            said = f" (the ledger could not record it: {unrecorded})" if unrecorded else ""
            raise dg.Failure(
                description=f"{exc}{said}", allow_retries=False, metadata=anchored
            ) from None

    def _statement_error(self, write: Callable[[], object]) -> str | None:
        """Run `write`; the first line of a statement error it raised, or None. Any other error
        (the warehouse out of reach) is raised, and the step retried."""
        try:
            write()
        except Exception as error:
            if not self.warehouse.is_statement_error(error):
                raise
            return str(error).splitlines()[0]
        return None

    def anchored(self) -> dict[str, Any]:
        """Anchor the audit log's head after this run's entries outside the warehouse, in the
        anchors file and (returned) in the run's metadata. A run that ends in a warehouse error
        anchors nothing: the warehouse may be out of reach, and the next run's anchor covers its
        entries."""
        return anchor(self.warehouse, self.anchors, self.run_id)

    def _record(self, error: str) -> None:
        if self.staged is None:
            entry = LedgerEntry.without_rows(
                self.spec.name,
                self.month,
                self.run_id,
                "failed",
                self.started_at,
                now(),
                str(self.path),
                error,
            )
            # Refused before staging: it did arrive (the report asks), unless it cannot be read.
            with suppress(LoadError):
                if self.path.is_file():
                    entry = replace(
                        entry,
                        file_size=self.path.stat().st_size,
                        fingerprint=fingerprint(self.path),
                    )
        else:
            entry = LedgerEntry.for_staged(
                self.staged, self.load_id, self.run_id, "failed", error=error
            )
        self.warehouse.record_load(entry)


def local_storage_error(error: Exception) -> bool:
    """Whether `error` is the loader's own disk refusing it: a staging folder it may not write,
    or a full disk. Retried, such a load failed the same way for two minutes, unrecorded, the
    parts it had written still filling the disk. polars reports the system's error in its
    message (`… (os error 28)`)."""
    if isinstance(error, OSError) and error.errno in LOCAL_STORAGE_ERRNOS:
        return True
    return any(f"(os error {number})" in str(error) for number in LOCAL_STORAGE_ERRNOS)


def _first_line(error: Exception, limit: int = 160) -> str:
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return line if len(line) <= limit else f"{line[:limit]}…"


def _final(context: dg.AssetExecutionContext, error: Exception) -> bool:
    """Whether this failure ends the month's run: a refusal or a bad file (no retries), or the
    last retry of the step's policy. Alerts wait for it, so a retried blip sends nothing."""
    if isinstance(error, dg.Failure) and not error.allow_retries:
        return True
    return context.retry_number >= LOAD_RETRY_POLICY.max_retries


def _refuses(outcome: CheckOutcome) -> bool:
    """An ERROR verdict that failed keeps the month from being published; WARN never does."""
    return not outcome.passed and outcome.severity == "ERROR"


def _results(
    outcomes: dict[str, CheckOutcome], extra: dict[str, Any]
) -> Iterator[dg.AssetCheckResult]:
    for name, outcome in outcomes.items():
        yield to_check_result(name, outcome, extra)


def _refuse(
    warehouse: Warehouse,
    staged: StagedLoad,
    candidate: Candidate,
    run_id: str,
    refused: dict[str, CheckOutcome],
) -> None:
    """Record the refusal with the candidate it left to inspect; drop older candidates."""
    warehouse.keep_candidate(candidate)
    warehouse.record_load(
        LedgerEntry.for_staged(
            staged,
            candidate.load_id,
            run_id,
            "failed",
            candidate.counts,
            error=f"refused by check {', '.join(refused)}: "
            + "; ".join(outcome.summary for outcome in refused.values()),
            candidate=candidate.names(),
        )
    )
    warehouse.drop_candidates(staged.dataset, staged.month, keep=candidate)


def _refusal(
    staged: StagedLoad,
    candidate: Candidate,
    refused: dict[str, CheckOutcome],
    served: dict[str, Any] | None,
) -> str:
    """Why the month was not published, what readers still get, and where the refused rows are."""
    checks = "; ".join(f"check {name}: {outcome.summary}" for name, outcome in refused.items())
    still = (
        f"The load of {served['finished_at']:%Y-%m-%d %H:%M} UTC is still served"
        if served
        else f"Nothing of {staged.month} is served"
    )
    return (
        f"{staged.dataset} {staged.month} not published, {checks}. {still}; this load's rows "
        f"and rejects are in {candidate.names()}"
    )


def _check_record(attempt: _Attempt, name: str, outcome: CheckOutcome) -> CheckRecord:
    return CheckRecord(
        dataset=attempt.spec.name,
        month=attempt.month,
        check_name=name,
        severity=outcome.severity,
        passed=outcome.passed,
        observed=outcome.observed,
        threshold=outcome.threshold,
        summary=outcome.summary,
        run_id=attempt.run_id,
        checked_at=now(),
        load_id=attempt.load_id,
    )


def _figures(staged: StagedLoad, candidate: Candidate) -> dict[str, int]:
    """Lines counted in the file, and rows and rejects as the warehouse counted them."""
    return {
        "rows_read": staged.rows_read,
        "rows_loaded": candidate.rows,
        "rows_rejected": candidate.rejects,
    }


def _published_metadata(staged: StagedLoad, candidate: Candidate) -> dict[str, Any]:
    return {
        "source_file": dg.MetadataValue.path(staged.source_file),
        "file_size": staged.file_size,
        "fingerprint": staged.fingerprint,
        **_figures(staged, candidate),
        "dagster/row_count": candidate.rows,
        "blank_lines": staged.blank_lines,
        "extra_columns": ", ".join(staged.extra_columns) or "none",
        "sensitive_columns": staged.spec.sensitive_columns(),
        "load_id": candidate.load_id,
        "rejects_table": f"{RAW_SCHEMA}.{rejects_table(staged.dataset)}",
    }
