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
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from pipeline.assets.checks import MonthCheck, check_specs, month_checks, to_check_result
from pipeline.audit import anchor, anchors_file, record_spec, run_actor
from pipeline.checks.outcome import CheckOutcome
from pipeline.checks.scope import MonthUnderCheck
from pipeline.ingest import staging
from pipeline.ingest.files import fingerprint
from pipeline.ingest.header import LoadError
from pipeline.ingest.stream import StagedLoad, new_load_id, require_file, stage_file
from pipeline.partitions import dataset_partitions
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
from pipeline.warehouse.ledger import CheckRecord, LedgerEntry

PROGRESS_STEPS = 10
# Transient trouble (a locked warehouse file, a dropped connection) is retried with growing,
# jittered delays, reusing the staged parts; a bad file raises Failure(allow_retries=False).
LOAD_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def raw_asset_key(spec: DatasetSpec) -> dg.AssetKey:
    """The key of a dataset's raw table asset, matching the dbt source `raw.<dataset>`."""
    return dg.AssetKey([RAW_SCHEMA, spec.name])


def build_load_asset(spec: DatasetSpec) -> dg.AssetsDefinition:
    """The asset that loads `spec`'s monthly files, with the month's checks as its check specs."""
    key = raw_asset_key(spec)
    partitions_def = dataset_partitions(spec)
    checks = month_checks(spec)

    @dg.asset(
        key=key,
        partitions_def=partitions_def,
        group_name=spec.name,
        description=spec.description or f"Monthly files {spec.file_pattern}, validated.",
        kinds={"python", "parquet"},
        check_specs=check_specs(spec, key, partitions_def),
        # One month per run: each month gets its own check results and status (see the README).
        backfill_policy=dg.BackfillPolicy.multi_run(1),
        retry_policy=LOAD_RETRY_POLICY,
        metadata={"file_pattern": spec.file_pattern, "columns": ", ".join(spec.columns)},
    )
    def load(
        context: dg.AssetExecutionContext, files: LandingFiles, warehouse: Warehouse
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        month = context.partition_key
        with (
            statement_context(spec.name, month, context.run.run_id),
            acting_as(run_actor(context.run.tags)),
        ):
            yield from load_month(context, spec, checks, files, warehouse)

    return load


def load_month(
    context: dg.AssetExecutionContext,
    spec: DatasetSpec,
    checks: list[MonthCheck],
    files: LandingFiles,
    warehouse: Warehouse,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Stage, check and publish (or refuse) one month; see the module's docstring."""
    month, run_id = context.partition_key, context.run.run_id
    path = files.landing_path / spec.file_name(month)
    started_at = now()
    staging.sweep(files.staging_path, older_than=staging.ORPHAN_AGE_SECONDS)
    record_spec(warehouse, spec, run_id)
    try:
        require_file(spec, path, month)
    except LoadError as exc:
        warehouse.record_load(
            LedgerEntry.without_rows(
                spec.name, month, run_id, "failed", started_at, now(), str(path), str(exc)
            )
        )
        raise dg.Failure(
            description=str(exc), allow_retries=False, metadata=_anchored(context, warehouse)
        ) from None
    month_dir = staging.month_staging(files.staging_path, spec.name, month)
    directory = month_dir / staging.staging_key(spec, fingerprint(path))
    # One run per month at a time: another staging of this month is a killed run's leftover.
    staging.sweep(month_dir, keep=directory)
    with staging.claimed(directory):
        load_id = new_load_id()
        staged: StagedLoad | None = None
        try:
            staged = stage_file(
                spec,
                path,
                month,
                directory,
                block_bytes=files.block_bytes,
                part_bytes=warehouse.part_bytes,  # Snowflake wants 100-250 MB uploads
                progress=_progress_logger(context, str(path)),
                pii_key=files.pii_key,
            )
            candidate = warehouse.stage_candidate(staged, load_id)
            outcomes = _evaluate(checks, MonthUnderCheck(warehouse, staged, candidate))
        except LoadError as exc:  # a file that cannot load, or counts that do not reconcile
            _record_failure(warehouse, spec, month, run_id, staged, load_id, started_at, str(exc))
            staging.remove(directory)
            raise dg.Failure(
                description=str(exc), allow_retries=False, metadata=_anchored(context, warehouse)
            ) from None
        except Exception as exc:  # the warehouse's trouble: retried, reusing the staged parts
            _record_failure(warehouse, spec, month, run_id, staged, load_id, started_at, str(exc))
            raise
        for name, outcome in outcomes.items():
            warehouse.record_check(_check_record(spec, month, name, outcome, run_id, load_id))
        refused = {name: o for name, o in outcomes.items() if _refuses(o)}
        if refused:
            yield from _results(outcomes, {"candidate": candidate.names(), "load_id": load_id})
            _refuse(warehouse, staged, candidate, run_id, refused)
            staging.remove(directory)
            raise dg.Failure(
                description=_refusal(staged, candidate, refused),
                allow_retries=False,
                metadata=_figures(staged, candidate) | _anchored(context, warehouse),
            )
        entry = LedgerEntry.for_staged(staged, load_id, run_id, "loaded", candidate.counts)
        try:
            warehouse.publish(staged, candidate, entry)
        except Exception as exc:
            _record_failure(warehouse, spec, month, run_id, staged, load_id, started_at, str(exc))
            raise
        staging.remove(directory)
    context.log.info(
        f"{spec.name} {month}: published {candidate.rows:,} rows and {candidate.rejects:,} "
        f"rejects from {staged.source_file}"
    )
    yield dg.MaterializeResult(
        metadata=_published_metadata(staged, candidate) | _anchored(context, warehouse)
    )
    yield from _results(outcomes, {"load_id": load_id})


def _anchored(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dict[str, Any]:
    """Anchor the audit log's head after this run's entries outside the warehouse, in the anchors
    file and (returned) in the run's metadata. A run that ends in a warehouse error anchors
    nothing: the warehouse may be out of reach, and the next run's anchor covers its entries."""
    return anchor(warehouse, anchors_file(context.instance), context.run.run_id)


def _evaluate(checks: list[MonthCheck], month: MonthUnderCheck) -> dict[str, CheckOutcome]:
    return {check.name: check.evaluate(month) for check in checks}


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


def _refusal(staged: StagedLoad, candidate: Candidate, refused: dict[str, CheckOutcome]) -> str:
    checks = "; ".join(f"check {name}: {outcome.summary}" for name, outcome in refused.items())
    return (
        f"{staged.dataset} {staged.month} not published, {checks}. The month's published rows, "
        f"if any, are still served; this load's rows and rejects are in {candidate.names()}"
    )


def _record_failure(
    warehouse: Warehouse,
    spec: DatasetSpec,
    month: str,
    run_id: str,
    staged: StagedLoad | None,
    load_id: str,
    started_at: dt.datetime,
    error: str,
) -> None:
    if staged is None:
        entry = LedgerEntry.without_rows(
            spec.name, month, run_id, "failed", started_at, now(), "", error
        )
    else:
        entry = LedgerEntry.for_staged(staged, load_id, run_id, "failed", error=error)
    warehouse.record_load(entry)


def _check_record(
    spec: DatasetSpec, month: str, name: str, outcome: CheckOutcome, run_id: str, load_id: str
) -> CheckRecord:
    return CheckRecord(
        dataset=spec.name,
        month=month,
        check_name=name,
        severity=outcome.severity,
        passed=outcome.passed,
        observed=outcome.observed,
        threshold=outcome.threshold,
        summary=outcome.summary,
        run_id=run_id,
        checked_at=now(),
        load_id=load_id,
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
        "load_id": candidate.load_id,
        "rejects_table": f"{RAW_SCHEMA}.{rejects_table(staged.dataset)}",
    }


def _progress_logger(context: dg.AssetExecutionContext, path: str) -> Callable[[int, int], None]:
    """Log every tenth of the file, so a long month shows it is moving."""
    logged = 0

    def report(done: int, size: int) -> None:
        nonlocal logged
        step = done * PROGRESS_STEPS // max(size, 1)
        if step > logged:
            logged = step
            context.log.info(f"{path}: {done / 1e6:,.0f} of {size / 1e6:,.0f} MB read")

    return report
