"""A report file per dataset as an asset, and what happens when a month's verdict is known.

`reports/<dataset>` is downstream of `raw/<dataset>` and unpartitioned (one file covers every
month), so the month's load job builds it after a month is published, and the weekly schedule
(off by default) refreshes it. A refused month stops the steps downstream of its load, so for
such a month the load step itself writes the report and records the report's materialization,
before it raises; the alerts go out from the load step too, published or not (see `close_month`).
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from pipeline.alerts.channels import Alerts
from pipeline.alerts.notify import notify_month
from pipeline.assets.loads import raw_asset_key
from pipeline.audit import anchors_file, run_actor
from pipeline.reports.build import report_path, write_report
from pipeline.resources import LandingFiles
from pipeline.specs import DatasetSpec
from pipeline.warehouse.audit import acting_as
from pipeline.warehouse.base import Warehouse

REPORTS_PREFIX = "reports"
WEEKLY_SCHEDULE = "weekly_reports"
WEEKLY_CRON = "0 6 * * 1"  # Mondays 06:00 UTC


def report_asset_key(spec: DatasetSpec) -> dg.AssetKey:
    return dg.AssetKey([REPORTS_PREFIX, spec.name])


def build_report_asset(spec: DatasetSpec, pool: str = "duckdb") -> dg.AssetsDefinition:
    """The dataset's report file, rebuilt whenever one of its months is loaded. It reads the
    warehouse, so it is in the warehouse's `pool`, as the loads are (a DuckDB file cannot be
    read by one process while another writes it)."""

    @dg.asset(
        key=report_asset_key(spec),
        deps=[raw_asset_key(spec)],
        group_name=spec.name,
        kinds={"html"},
        pool=pool,
        description=(
            f"The {spec.name} data quality report: one self-contained HTML file (open it offline) "
            "with every month's checks, findings and what to do, and the load ledger."
        ),
    )
    def report(
        context: dg.AssetExecutionContext, files: LandingFiles, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        # Its audit entry names who started the run (a sensor, a backfill), as the load's do.
        with acting_as(run_actor(context.run.tags)):
            metadata = write_dataset_report(
                files, warehouse, spec, anchors_file(context.instance), context.run.run_id
            )
        return dg.MaterializeResult(metadata=metadata)

    return report


def write_dataset_report(
    files: LandingFiles, warehouse: Warehouse, spec: DatasetSpec, anchors: Path, run_id: str
) -> dict[str, Any]:
    """Write `<reports dir>/<dataset>.html` in run `run_id`; its path, link and size as
    metadata."""
    path = write_report(
        warehouse,
        [spec],
        report_path(files.reports_path, [spec.name]),
        anchors,
        run_id=run_id,
    )
    return {
        "path": dg.MetadataValue.path(str(path)),
        "url": dg.MetadataValue.url(files.report_url(path)),
        "size_mb": round(path.stat().st_size / 1e6, 2),
    }


def build_report_schedule(specs: Sequence[DatasetSpec]) -> dg.ScheduleDefinition:
    """Every dataset's report, weekly; off until turned on, like the sensors."""
    return dg.ScheduleDefinition(
        name=WEEKLY_SCHEDULE,
        cron_schedule=WEEKLY_CRON,
        execution_timezone="UTC",
        target=dg.AssetSelection.assets(*(report_asset_key(spec) for spec in specs)),
        description="Rebuild every dataset's report file (for months that arrived late, purges).",
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )


def close_month(
    context: dg.AssetExecutionContext,
    spec: DatasetSpec,
    files: LandingFiles,
    warehouse: Warehouse,
    alerts: Alerts,
    published: bool,
) -> None:
    """Once the month's verdict is recorded: the report (if its own step will not run because
    the month was not published) and the alerts. Neither may fail the load: a problem here is
    logged and the load's own outcome stands."""
    month, run_id = context.partition_key, context.run.run_id
    report = files.report_url(report_path(files.reports_path, [spec.name]))
    if not published:
        try:
            metadata = write_dataset_report(
                files, warehouse, spec, anchors_file(context.instance), run_id
            )
            context.log_event(
                dg.AssetMaterialization(asset_key=report_asset_key(spec), metadata=metadata)
            )
        except Exception as error:  # the report is a by-product: the load's verdict stands
            context.log.warning(f"{spec.name} {month}: the report could not be written: {error}")
    try:
        records = notify_month(warehouse, alerts, spec, month, run_id, report)
    except Exception as error:  # alerts never fail a load
        context.log.warning(f"{spec.name} {month}: alerts could not be sent: {error}")
        return
    for record in records:
        line = f"alert {record.check_name} {record.verdict} by {record.channel}: {record.status}"
        if record.status == "sent":
            context.log.info(line)
        else:
            context.log.warning(f"{line} after {record.attempts} attempt(s): {record.error}")
