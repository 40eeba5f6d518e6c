"""File-arrival sensors: a landed month file starts that month's load job.

The run key is the file's fingerprint (size, mtime, head/tail hash), so Dagster never starts a
second run for an unchanged file and always starts one for a corrected file. A file the month's
latest outcome was about, however it was reached (`pipeline load`, the UI, before the sensor was
turned on), is not loaded again: the file the month is materialized from, the file its last load
refused, and the file a purged month had been loaded from (the purge keeps it out until a new
file lands or `pipeline load` loads it). A file is picked up only once it is stable: the same
size and mtime on two ticks in a row, or, if the spec names a `ready_marker`, once the marker file
exists beside it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from pipeline.alerts.channels import Alerts
from pipeline.alerts.notify import notify_late
from pipeline.assets.freshness import FRESHNESS_CHECK, superseded_freshness_api
from pipeline.assets.loads import raw_asset_key
from pipeline.ingest.files import DECOMPRESSORS, fingerprint
from pipeline.ingest.header import LoadError
from pipeline.jobs import load_job_name
from pipeline.partitions import dataset_partitions
from pipeline.reports.build import report_path
from pipeline.resources import LandingFiles
from pipeline.runner import handled_file
from pipeline.sizing import k8s_run_tags
from pipeline.specs import MONTH_PLACEHOLDER, DatasetSpec
from pipeline.warehouse.base import Warehouse

FRESHNESS_SENSOR = "freshness"
FRESHNESS_ALERTS_SENSOR = "freshness_alerts"


@dataclass(frozen=True)
class Scan:
    """What one look at the landing folder found for a dataset."""

    requests: list[dg.RunRequest]
    files: dict[str, dict[str, str]]  # file name -> {"seen": size:mtime, "fingerprint": ...}
    skipped: list[str]  # files that look like the dataset's but cannot be loaded, and why


def scan_landing(
    spec: DatasetSpec,
    landing_dir: Path,
    previous: dict[str, dict[str, str]],
    months: set[str],
    handled: Callable[[str], str | None],
) -> Scan:
    """Decide which files to load now, from the folder and `handled(month)`: the fingerprint of
    the file the month's latest outcome was about (loaded, refused or purged), if any.

    A stable file is requested on every tick with the same run key, which Dagster runs once,
    unless the month is materialized from it already; its fingerprint is kept in the cursor so
    it is hashed once, not on every tick.
    """
    prefix, suffix = spec.file_pattern.split(MONTH_PLACEHOLDER)
    requests: list[dg.RunRequest] = []
    files: dict[str, dict[str, str]] = {}
    skipped: list[str] = []
    listed = landing_dir.is_dir()
    candidates = sorted(landing_dir.glob(f"{prefix}*{suffix}")) if listed else []
    # Delivered compressed under a pattern that does not say so: the glob above never sees them.
    skipped += [
        f"{path.name} is compressed, but file_pattern {spec.file_pattern} does not end in "
        f"{path.suffix}: add it to the pattern to load the file as delivered"
        for path in (sorted(landing_dir.glob(f"{prefix}*{suffix}.*")) if listed else [])
        if path.suffix.lower() in DECOMPRESSORS and spec.month_of(path.stem) in months
    ]
    for path in candidates:
        month = spec.month_of(path.name)
        if month is None:
            skipped.append(f"{path.name}: name does not fit {spec.file_pattern} (month YYYY-MM)")
            continue
        if month not in months:
            skipped.append(f"{path.name}: {month} is outside the months of {spec.name}")
            continue
        try:
            stat = path.stat()
        except OSError as error:  # archived since the glob, or a link to nothing
            skipped.append(f"{path.name}: {error.strerror}")
            continue
        seen = f"{stat.st_size}:{stat.st_mtime_ns}"
        before = previous.get(path.name, {})
        unchanged = before.get("seen") == seen
        if spec.ready_marker:
            stable = path.with_name(path.name + spec.ready_marker).exists()
        else:
            stable = unchanged
        state = {"seen": seen}
        if stable:
            known = before.get("fingerprint") if unchanged else None
            try:
                state["fingerprint"] = known or fingerprint(path)
            except LoadError as error:  # one unreadable file must not stop the others
                skipped.append(f"{path.name}: {error}")
                files[path.name] = state
                continue
        # Asked on every tick, not kept: the CLI loads and purges months between ticks.
        if stable and handled(month) != state["fingerprint"]:
            requests.append(
                dg.RunRequest(
                    run_key=f"{spec.name}:{month}:{state['fingerprint']}",
                    partition_key=month,
                    # The month's pod sized from its file, where runs are launched on Kubernetes.
                    tags={"pipeline/source_file": str(path)} | k8s_run_tags(stat.st_size),
                )
            )
        files[path.name] = state
    return Scan(requests=requests, files=files, skipped=skipped)


def build_landing_sensor(spec: DatasetSpec, interval_seconds: int) -> dg.SensorDefinition:
    """The sensor that loads `spec`'s months as their files land."""

    @dg.sensor(
        name=f"{spec.name}_landing",
        job_name=load_job_name(spec.name),
        minimum_interval_seconds=interval_seconds,
        description=f"Loads a month of {spec.name} when {spec.file_pattern} lands and is stable.",
    )
    def landing(context: dg.SensorEvaluationContext, files: LandingFiles) -> dg.SensorResult:
        previous = json.loads(context.cursor) if context.cursor else {}
        months = set(dataset_partitions(spec).get_partition_keys())

        def handled(month: str) -> str | None:
            return handled_file(context.instance, raw_asset_key(spec), month)

        scan = scan_landing(spec, files.landing_path, previous, months, handled)
        for message in scan.skipped:
            context.log.warning(f"skipped {message}")
        # One small entry per landed file of this dataset: its size/mtime and fingerprint.
        return dg.SensorResult(run_requests=scan.requests, cursor=json.dumps(scan.files))

    return landing


def build_freshness_sensor(
    checks: Sequence[dg.AssetChecksDefinition],
    job: dg.UnresolvedAssetJobDefinition,
    interval_seconds: int,
) -> dg.SensorDefinition:
    """Evaluates the datasets' freshness checks on its own, so a late month is reported without
    anyone looking; off until turned on, like the landing sensors.

    Dagster's freshness sensor decides which checks are due; its requests run as the implicit
    asset job, whose runs the alerts sensor does not watch, so a late month found that way was
    never announced. This sensor asks it, then runs the checks it picked as `job`
    (check_freshness), the job the alerts sensor watches.
    """
    with superseded_freshness_api():
        due = dg.build_sensor_for_freshness_checks(freshness_checks=checks, name=FRESHNESS_SENSOR)

    @dg.sensor(
        name=FRESHNESS_SENSOR,
        job=job,
        minimum_interval_seconds=interval_seconds,
        description=due.description,
    )
    def freshness(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason | None:
        request = due(context)  # keeps its place among the checks in this sensor's cursor
        if not isinstance(request, dg.RunRequest):
            return request
        return dg.RunRequest(asset_check_keys=request.asset_check_keys, tags=request.tags)

    return freshness


def build_freshness_alerts_sensor(
    specs: Sequence[DatasetSpec], job: dg.UnresolvedAssetJobDefinition, interval_seconds: int
) -> dg.SensorDefinition:
    """Alerts for the failed freshness checks of each finished run: of `check_freshness` (the
    freshness sensor's, or one started by hand), and of any other job that ran them, such as the
    asset page's Materialize, which runs every check of `raw/<dataset>` (a late month found there
    was never announced, and the freshness sensor does not run a failed check again until the
    asset changes). A month that did not arrive is announced once, like a month's findings. On
    by default: it does nothing until such a run ends."""
    by_key = {raw_asset_key(spec): spec for spec in specs}

    @dg.run_status_sensor(
        name=FRESHNESS_ALERTS_SENSOR,
        run_status=dg.DagsterRunStatus.SUCCESS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_seconds,
        description=f"Announces a late month (a failed freshness check) once, by mail or "
        f"webhook; watches every run, {job.name} and the asset pages' Materialize alike.",
    )
    def freshness_alerts(
        context: dg.RunStatusSensorContext,
        warehouse: Warehouse,
        alerts: Alerts,
        files: LandingFiles,
    ) -> None:
        run_id = context.dagster_run.run_id
        records = context.instance.all_logs(
            run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
        for record in records:
            evaluation = record.dagster_event.asset_check_evaluation_data
            spec = by_key.get(evaluation.asset_key)
            if spec is None or evaluation.passed or evaluation.check_name != FRESHNESS_CHECK:
                continue
            report = files.report_url(report_path(files.reports_path, [spec.name]))
            for sent in notify_late(
                warehouse,
                alerts,
                spec,
                evaluation.description or "",
                evaluation.severity.value,
                run_id,
                report,
            ):
                context.log.info(f"{spec.name} {sent.month}: freshness alert by {sent.channel}")

    return freshness_alerts
