"""The loads as Prometheus metrics: a textfile for node_exporter's textfile collector, or a push.

Every month's load step, whatever its outcome and whoever started it (`pipeline load`, a UI
backfill, a sensor), ends by rebuilding its dataset's metrics from the warehouse: the load ledger,
the check results and the phase timings of every month of the dataset. So a file always describes
all the months, not only the last one loaded, and two processes writing it in turn cannot leave
it describing less. Prometheus recommends the textfile collector for batch jobs, so that is the
default (`PIPELINE_METRICS_DIR`); `PIPELINE_PUSHGATEWAY_URL` pushes the same metrics, grouped by
dataset, for setups that have a Pushgateway instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

from pipeline.partitions import freshness_deadline
from pipeline.specs import DatasetSpec
from pipeline.warehouse.base import META_SCHEMA, Warehouse
from pipeline.warehouse.ledger import CHECK_RESULTS_TABLE, LEDGER_TABLE, PHASES_TABLE

PUSHGATEWAY_JOB = "pipeline"
# Every metric a textfile holds, with its labels and help: the dashboard and the alert rules may
# only name these (pipeline_tests/test_metrics.py checks them against deploy/).
METRICS: dict[str, tuple[tuple[str, ...], str]] = {
    "pipeline_rows": (
        ("dataset", "month", "outcome"),
        "Lines of the month's latest load: read from the file, loaded (not_published: valid "
        "rows of a refused load), rejected.",
    ),
    "pipeline_load_duration_seconds": (
        ("dataset", "month", "phase"),
        "Seconds each phase of the month's latest load step took.",
    ),
    "pipeline_file_bytes": (("dataset", "month"), "Size of the month's latest file."),
    "pipeline_check_passed": (
        ("dataset", "month", "check", "severity"),
        "1 if the check passed on the month's latest load, else 0.",
    ),
    "pipeline_month_published": (
        ("dataset", "month"),
        "1 if the raw tables serve a published load of the month, else 0.",
    ),
    "pipeline_last_success_timestamp_seconds": (
        ("dataset",),
        "When a month of the dataset was last published (Unix time).",
    ),
    "pipeline_month_lateness_days": (
        ("dataset", "month"),
        "Days from the month's freshness deadline to its first publication (negative: early).",
    ),
}


@dataclass
class MonthLoads:
    """What the ledger says of one month: the attempt the metrics describe, and publication."""

    latest: dict[str, Any] | None = None  # the latest attempt that read the file
    published: bool = False
    first_published_at: dt.datetime | None = None
    phases: dict[str, float] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)


def fold_ledger(ledger: Sequence[Mapping[str, Any]]) -> dict[str, MonthLoads]:
    """Ledger rows (oldest first) into each month's state.

    The metrics describe the month's latest attempt that read its file (a refused one too: its
    rejects are what an operator must see); an attempt that read nothing (a missing file) leaves
    the previous one standing. A purge ends both publication and the figures until the next load.
    """
    months: dict[str, MonthLoads] = {}
    for row in ledger:
        month = months.setdefault(row["month"], MonthLoads())
        if row["status"] == "purged":
            month.latest, month.published = None, False
            continue
        if row["rows_read"] is not None:
            month.latest = dict(row)
        if row["status"] == "loaded":
            month.published = True
            month.first_published_at = month.first_published_at or row["finished_at"]
    return months


def build_registry(
    spec: DatasetSpec,
    ledger: Sequence[Mapping[str, Any]],
    checks: Sequence[Mapping[str, Any]],
    phases: Sequence[Mapping[str, Any]],
) -> CollectorRegistry:
    """A fresh registry with every month of the dataset, from the warehouse's bookkeeping rows
    (each list oldest first)."""
    registry = CollectorRegistry()
    gauges = {
        name: Gauge(name, documentation, labels, registry=registry)
        for name, (labels, documentation) in METRICS.items()
    }
    months = fold_ledger(ledger)
    for row in checks:
        month = months.get(row["month"])
        if month and month.latest and row["load_id"] == month.latest["load_id"]:
            month.checks.append(row)
    for row in phases:
        month = months.get(row["month"])
        if month and month.latest and row["run_id"] == month.latest["run_id"]:
            month.phases[row["phase"]] = row["seconds"]  # a retried step: its last attempt
    dataset = spec.name
    for name, month in sorted(months.items()):
        gauges["pipeline_month_published"].labels(dataset, name).set(int(month.published))
        if spec.checks.freshness is not None and month.first_published_at is not None:
            late = _utc(month.first_published_at) - freshness_deadline(name, spec.checks.freshness)
            gauges["pipeline_month_lateness_days"].labels(dataset, name).set(
                late.total_seconds() / 86400
            )
        if month.latest is None:
            continue
        # A refused load's valid rows were never loaded: labelled so, a dashboard summing
        # `loaded` drew them as served.
        valid = "loaded" if month.latest["status"] == "loaded" else "not_published"
        for outcome, figure in (("read", "read"), (valid, "loaded"), ("rejected", "rejected")):
            gauges["pipeline_rows"].labels(dataset, name, outcome).set(
                month.latest[f"rows_{figure}"]
            )
        gauges["pipeline_file_bytes"].labels(dataset, name).set(month.latest["file_size"])
        for phase, seconds in month.phases.items():
            gauges["pipeline_load_duration_seconds"].labels(dataset, name, phase).set(seconds)
        for check in month.checks:
            gauges["pipeline_check_passed"].labels(
                dataset, name, check["check_name"], check["severity"]
            ).set(int(bool(check["passed"])))
    published = [_utc(row["finished_at"]) for row in ledger if row["status"] == "loaded"]
    if published:
        gauges["pipeline_last_success_timestamp_seconds"].labels(dataset).set(
            max(published).timestamp()
        )
    return registry


def dataset_registry(warehouse: Warehouse, spec: DatasetSpec) -> CollectorRegistry:
    """The dataset's metrics as the warehouse's bookkeeping has them now."""

    def rows(table: str, columns: str, order: str) -> list[dict[str, Any]]:
        return warehouse.query(
            f"select {columns} from {META_SCHEMA}.{table} where dataset = ? order by {order}",
            [spec.name],
        )

    return build_registry(
        spec,
        rows(
            LEDGER_TABLE,
            "month, status, load_id, run_id, file_size, rows_read, rows_loaded, rows_rejected, "
            "finished_at",
            "finished_at",
        ),
        rows(CHECK_RESULTS_TABLE, "month, check_name, severity, passed, load_id", "checked_at"),
        rows(PHASES_TABLE, "month, run_id, phase, seconds", "recorded_at"),
    )


def _utc(moment: dt.datetime) -> dt.datetime:
    """The warehouse's timestamps are written in UTC; a driver may hand them back naive."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class MetricsNotSent(Exception):
    """The textfile could not be written, or the Pushgateway refused or was out of reach (the
    message says whether the textfile was written all the same)."""


class MetricsExport(dg.ConfigurableResource):
    """Where the metrics go: a folder for `<dataset>.prom` textfiles, a Pushgateway, both or
    neither (PIPELINE_METRICS_DIR, PIPELINE_PUSHGATEWAY_URL)."""

    textfile_dir: str | None = None
    pushgateway_url: str | None = None

    def export(self, warehouse: Warehouse, spec: DatasetSpec) -> list[str]:
        """Rebuild the dataset's metrics and send them where configured; returns where."""
        if not self.textfile_dir and not self.pushgateway_url:
            return []
        registry = dataset_registry(warehouse, spec)
        sent = []
        if self.textfile_dir:
            path = Path(self.textfile_dir) / f"{spec.name}.prom"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_to_textfile(str(path), registry)  # a temp file renamed over the old one
            except OSError as exc:
                raise MetricsNotSent(f"not written to {path}: {exc}") from exc
            sent.append(str(path))
        if self.pushgateway_url:
            try:
                push_to_gateway(
                    self.pushgateway_url,
                    job=PUSHGATEWAY_JOB,
                    registry=registry,
                    grouping_key={"dataset": spec.name},
                )
            except Exception as exc:
                written = f" (written to {sent[0]} all the same)" if sent else ""
                raise MetricsNotSent(
                    f"not pushed to {self.pushgateway_url}: {exc}{written}"
                ) from exc
            sent.append(self.pushgateway_url)
        return sent
