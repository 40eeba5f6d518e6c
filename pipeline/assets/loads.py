"""One monthly-partitioned asset per dataset: its file, streamed, validated and staged.

The asset decides everything that must keep a bad file from replacing a good month (missing file,
unreadable header) before the warehouse is touched; the IO manager then swaps the month in.
"""

from collections.abc import Callable

import dagster as dg

from pipeline.ingest.header import LoadError
from pipeline.ingest.stream import StagedLoad, ingest_file
from pipeline.partitions import dataset_partitions
from pipeline.resources import LandingFiles
from pipeline.specs import DatasetSpec
from pipeline.warehouse.base import RAW_SCHEMA, Warehouse, now, statement_context
from pipeline.warehouse.ledger import LedgerEntry

PROGRESS_STEPS = 10
# Transient trouble (a locked warehouse file, a dropped connection) is retried with growing,
# jittered delays; a bad file raises Failure(allow_retries=False) and fails once.
LOAD_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
IO_MANAGER_KEY = "warehouse_io_manager"


def raw_asset_key(spec: DatasetSpec) -> dg.AssetKey:
    """The key of a dataset's raw table asset, matching the dbt source `raw.<dataset>`."""
    return dg.AssetKey([RAW_SCHEMA, spec.name])


def build_load_asset(spec: DatasetSpec) -> dg.AssetsDefinition:
    """The asset that loads `spec`'s monthly files."""

    @dg.asset(
        key=raw_asset_key(spec),
        partitions_def=dataset_partitions(spec),
        io_manager_key=IO_MANAGER_KEY,
        group_name=spec.name,
        description=spec.description or f"Monthly files {spec.file_pattern}, validated.",
        kinds={"python", "parquet"},
        # One month per run: each month gets its own check results and status (see the README).
        backfill_policy=dg.BackfillPolicy.multi_run(1),
        retry_policy=LOAD_RETRY_POLICY,
        metadata={"file_pattern": spec.file_pattern, "columns": ", ".join(spec.columns)},
    )
    def load(
        context: dg.AssetExecutionContext, files: LandingFiles, warehouse: Warehouse
    ) -> dg.Output[StagedLoad]:
        month = context.partition_key
        path = files.landing_path / spec.file_name(month)
        started_at = now()
        try:
            staged = ingest_file(
                spec,
                path,
                month,
                files.staging_path,
                block_bytes=files.block_bytes,
                part_bytes=warehouse.part_bytes,  # Snowflake wants 100-250 MB uploads
                progress=_progress_logger(context, str(path)),
            )
        except LoadError as exc:
            with statement_context(spec.name, month, context.run_id):
                warehouse.record_load(
                    LedgerEntry.without_rows(
                        spec.name,
                        month,
                        context.run_id,
                        "failed",
                        started_at,
                        now(),
                        str(path),
                        str(exc),
                    )
                )
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        return dg.Output(
            staged,
            metadata={
                "source_file": dg.MetadataValue.path(staged.source_file),
                "file_size": staged.file_size,
                "fingerprint": staged.fingerprint,
                "rows_read": staged.rows_read,
                "rows_loaded": staged.rows_loaded,
                "rows_rejected": staged.rows_rejected,
                "blank_lines": staged.blank_lines,
                "extra_columns": ", ".join(staged.extra_columns) or "none",
                "load_id": staged.load_id,
            },
        )

    return load


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
