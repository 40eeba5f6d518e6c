"""The dbt reporting models as Dagster assets.

A dataset's models (everything downstream of its dbt source `raw.<dataset>`) are partitioned like
the dataset and built month by month after that month's blocking check. Models over the load
ledger span every dataset, so they are one unpartitioned asset group downstream of all loads.
"""

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DbtCliInvocation,
    DbtProject,
    dbt_assets,
)

from pipeline.alerts.channels import Alerts
from pipeline.alerts.notify import notify_build
from pipeline.assets.loads import raw_asset_key
from pipeline.fiscal import fiscal_day
from pipeline.partitions import MONTH_FORMAT, dataset_partitions, month_days
from pipeline.progress import REPORTS, enter_phase
from pipeline.project import (
    DBT_PACKAGE,
    DbtCli,
    dbt_project,
    ensure_manifest,
    keep_parse,
    sweep_build_folders,
)
from pipeline.reports.build import report_path
from pipeline.resources import LandingFiles
from pipeline.specs import DatasetSpec, FiscalSpec
from pipeline.warehouse.base import REPORT_SCHEMA, Warehouse, statement_context

# The loader's bookkeeping (load ledger, check results): dbt source `pipeline`.
LEDGER_SELECTION = "source:pipeline+"
# run_results.json statuses of a node that stopped the build: a model's error, a test's failure.
FAILED_STATUSES = ("error", "fail")
# dbt's first line of a node's message, `Runtime Error in model stg_flights (models/...)`: the
# node's name says that already; the database's own words follow it.
DBT_ERROR_HEADER = re.compile(r"^[\w ]*Error in \w+ \S+ \(.*\)$")


def partitioned_dbt_vars(time_window: dg.TimeWindow, fiscal: FiscalSpec) -> dict[str, Any]:
    """The run values for one monthly partition (macros/run_var.sql): the month the models filter
    on, and each of its days with its fiscal year, quarter and period.

    The fiscal calendar is computed here, by `pipeline/fiscal.py`, and joined in the models as a
    small table (macro `fiscal_days`): one definition for checks and reports, and plain SQL that
    any warehouse runs, where a 4-4-5 calendar in each dialect's date functions would not be.
    """
    month = time_window.start.strftime(MONTH_FORMAT)
    days = {day: fiscal_day(day, fiscal) for day in month_days(month)}
    return {
        "month": month,
        "fiscal_days": [
            {
                "day": str(day),
                "fiscal_year": place.year,
                "fiscal_quarter": place.quarter,
                "fiscal_period": place.period,
            }
            for day, place in days.items()
        ],
    }


def dataset_selection(dataset: str) -> str:
    """The dbt selector of a dataset's models."""
    return f"source:raw.{dataset}+"


class ReportingTranslator(DagsterDbtTranslator):
    """Models that read the loader's bookkeeping depend on every dataset's raw asset.

    Every load writes the ledger and the check results, so marts over them are downstream of all
    loads and are rebuilt in each dataset's load job.
    """

    def __init__(self, raw_keys: Sequence[dg.AssetKey]):
        super().__init__()
        self.raw_keys = list(raw_keys)

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        node = manifest["nodes"].get(unique_id, {})
        if any(_is_bookkeeping(dep) for dep in node.get("depends_on", {}).get("nodes", [])):
            spec = spec.merge_attributes(deps=self.raw_keys)
        return spec


def build_dbt_assets(specs: Sequence[DatasetSpec], pool: str) -> list[dg.AssetsDefinition]:
    """Per dataset with models: its monthly models; then the ledger models, if any. They write
    the warehouse, so they are in its `pool`, as the loads are."""
    manifest_path = ensure_manifest()
    children = json.loads(manifest_path.read_text())["child_map"]
    shared = models_of_several_datasets(children, [spec.name for spec in specs])
    if shared:
        model, datasets = next(iter(shared.items()))
        raise ValueError(
            f"dbt model {model.split('.')[-1]} reads the sources of {' and '.join(datasets)}: a "
            "model belongs to one dataset's monthly job (README, How it works); give each "
            "dataset its own model, or read them in a model over the pipeline's ledger"
        )
    translator = ReportingTranslator([raw_asset_key(spec) for spec in specs])
    assets = [
        _dbt_assets(
            manifest_path,
            name=f"{spec.name}_reports",
            dataset=spec.name,
            select=dataset_selection(spec.name),
            translator=translator,
            partitions_def=dataset_partitions(spec),
            fiscal=spec.fiscal,
            pool=pool,
            alerting=spec,
        )
        for spec in specs
        if children.get(_source(f"raw.{spec.name}"))
    ]
    if any(children.get(node) for node in children if _is_bookkeeping(node)):
        assets.append(
            _dbt_assets(
                manifest_path,
                name="quality_reports",
                dataset="all",
                select=LEDGER_SELECTION,
                translator=translator,
                pool=pool,
            )
        )
    return assets


def _dbt_assets(
    manifest_path: Path,
    *,
    name: str,
    dataset: str,
    select: str,
    translator: DagsterDbtTranslator,
    pool: str,
    partitions_def: dg.TimeWindowPartitionsDefinition | None = None,
    fiscal: FiscalSpec | None = None,
    alerting: DatasetSpec | None = None,
) -> dg.AssetsDefinition:
    """dbt's assets for `select`; a month of `alerting`'s dataset whose build fails (or builds
    again after a failure) is announced like its load's findings."""

    @dbt_assets(
        manifest=manifest_path,
        project=dbt_project,
        name=name,
        select=select,
        # A ledger model downstream of a dataset belongs to the ledger group alone.
        exclude="" if select == LEDGER_SELECTION else LEDGER_SELECTION,
        dagster_dbt_translator=translator,
        partitions_def=partitions_def,
        # One month per run, so each month's models run after that month's blocking check.
        # (dagster-dbt gives time-partitioned models a single-run policy unless told otherwise;
        # the raw assets have none, see loads.py.)
        backfill_policy=dg.BackfillPolicy.multi_run(1) if partitions_def else None,
        pool=pool,
    )
    def reports(
        context: dg.AssetExecutionContext,
        dbt: DbtCli,
        warehouse: Warehouse,
        alerts: Alerts,
        files: LandingFiles,
    ) -> Iterator[Any]:
        enter_phase(REPORTS)
        # Also fill the query comment of every statement dbt runs (macros/run_comment.sql).
        variables = {"dataset": dataset, "run_id": context.run.run_id}
        month = run_month(context)
        if month is not None:
            window = context.partition_time_window
            # Without a fiscal calendar the fiscal columns hold the calendar year.
            variables |= partitioned_dbt_vars(window, fiscal or FiscalSpec())
        invocation = dbt.build(variables, context)
        # dagster-dbt's fetch_row_counts() counts through dbt's adapter while dbt is still
        # running: on DuckDB that meets dbt's lock on the file, and leaves an open connection the
        # next load cannot open. So the tables are counted once dbt is done, by the warehouse.
        events = list(invocation.stream())
        keep_parse(invocation)
        sweep_build_folders()
        with statement_context(dataset, variables.get("month", "all"), context.run.run_id):
            yield from with_row_counts(
                events, invocation.manifest, warehouse, variables.get("month")
            )
        failure = None if invocation.is_successful() else dbt_failure(invocation)
        if alerting is not None and month is not None:
            # The run writes the dataset's report beside this step (it needs the load alone).
            report = files.report_url(report_path(files.reports_path, [alerting.name]))
            _announce(context, alerting, month, warehouse, alerts, failure, report)
        if failure is not None:
            raise failure

    return reports


def run_month(context: dg.AssetExecutionContext) -> str | None:
    """The month a run of a dataset's models builds; None in a run of the ledger models.

    A load job's run is tagged with its partition; an asset backfill from the UI runs each month
    as a range of one (BackfillPolicy.multi_run(1)), which `has_partition_key` does not see: such
    a run built the models without their month, over every month, and nulled every fiscal column.
    A range of several months is refused: the models are built for one month at a time.
    """
    if context.has_partition_key:
        return context.partition_key
    if not context.has_partition_key_range:
        return None
    keys = context.partition_key_range
    if keys.start != keys.end:
        raise dg.Failure(
            f"the dbt models are built one month per run; this run asks for {keys.start} to "
            f"{keys.end}: launch it as a backfill, which runs each month on its own"
        )
    return keys.start


def _announce(
    context: dg.AssetExecutionContext,
    spec: DatasetSpec,
    month: str,
    warehouse: Warehouse,
    alerts: Alerts,
    failure: Exception | None,
    report_url: str,
) -> None:
    """The month's dbt build, failed or fine, to its alerts; never the build's outcome."""
    error = None if failure is None else getattr(failure, "description", None) or str(failure)
    try:
        notify_build(warehouse, alerts, spec, month, context.run.run_id, error, report_url)
    except Exception as exc:  # alerts never fail a run
        context.log.warning(f"{spec.name} {month}: alerts not sent: {exc}")


def with_row_counts(
    events: Sequence[Any],
    manifest: Mapping[str, Any],
    warehouse: Warehouse,
    month: str | None = None,
) -> Iterator[Any]:
    """dbt's events, each built table's materialization with its `dagster/row_count`: of
    `month` in a table with a `month` column (the materialization is the month's, as
    `raw/<dataset>`'s count is), else of the whole table.

    Views are not counted (counting runs their query), as with dagster-dbt's fetch_row_counts.
    """
    dialect = warehouse.dialect
    for event in events:
        node = manifest["nodes"].get(_unique_id(event)) if _materializes(event) else None
        if node is None or node["config"]["materialized"] == "view":
            yield event
            continue
        table = dialect.table(REPORT_SCHEMA, node["alias"])
        by_month = month is not None and bool(
            warehouse.query(
                "SELECT 1 AS found FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? AND column_name = ?",
                [dialect.name(REPORT_SCHEMA), dialect.name(node["alias"]), dialect.name("month")],
            )
        )
        where = f" where {dialect.quote('month')} = ?" if by_month else ""
        (row,) = warehouse.query(
            f"select count(*) as row_count from {table}{where}", [month] if by_month else []
        )
        yield event.with_metadata({**event.metadata, "dagster/row_count": int(row["row_count"])})


def _materializes(event: Any) -> bool:
    return isinstance(event, dg.Output | dg.AssetMaterialization)


def _unique_id(event: Any) -> str | None:
    unique_id = event.metadata.get("unique_id")
    return unique_id.value if unique_id is not None else None


def dbt_failure(invocation: DbtCliInvocation) -> Exception:
    """The failure of a dbt build in its nodes' words, one line per failed model or test.

    dagster-dbt's own error names only the command and its exit code; the reason is in the
    invocation's run results. Without any (dbt stopped before running a node: a bad profile, a
    parse error), dagster-dbt's error is the best there is.
    """
    path = invocation.target_path / "run_results.json"
    failed = failed_nodes(invocation.get_artifact("run_results.json")) if path.exists() else []
    if not failed:
        return invocation.get_error() or dg.Failure(f"`{invocation.dbt_command}` failed")
    return dg.Failure(
        description="\n".join(failed),
        metadata={"dbt_log": dg.MetadataValue.path(str(invocation.target_path / "dbt.log"))},
    )


def failed_nodes(run_results: Mapping[str, Any]) -> list[str]:
    """`<node>: <the database's message, first line>` for each model that errored or test that
    failed in dbt's run_results.json; the nodes skipped because of them are left out."""
    failed = []
    for result in run_results.get("results", []):
        if result.get("status") not in FAILED_STATUSES:
            continue
        # model.<package>.<name>, test.<package>.<name>.<hash>
        name = result["unique_id"].split(".")[2]
        lines = [line.strip() for line in (result.get("message") or "").splitlines()]
        lines = [line for line in lines if line and not DBT_ERROR_HEADER.match(line)]
        reason = lines[0] if lines else result["status"]
        # A message that starts with the node's name (require_columns's) needs no prefix.
        failed.append(reason if reason.startswith(f"{name} ") else f"{name}: {reason}")
    return failed


def models_of_several_datasets(
    children: Mapping[str, Sequence[str]], datasets: Sequence[str]
) -> dict[str, list[str]]:
    """The models downstream of more than one dataset's raw source (the ledger's models aside),
    with those datasets: each dataset's job would build them, which Dagster refuses with a
    `Duplicate asset key` traceback naming neither the model's sources nor what to do."""
    ledger = _downstream(children, [node for node in children if _is_bookkeeping(node)])
    owners: dict[str, list[str]] = {}
    for dataset in datasets:
        for node in _downstream(children, [_source(f"raw.{dataset}")]) - ledger:
            if node.startswith("model."):
                owners.setdefault(node, []).append(dataset)
    return {node: names for node, names in owners.items() if len(names) > 1}


def _downstream(children: Mapping[str, Sequence[str]], roots: Sequence[str]) -> set[str]:
    """Every node below `roots` in dbt's child map."""
    found: set[str] = set()
    waiting = list(roots)
    while waiting:
        for child in children.get(waiting.pop(), []):
            if child not in found:
                found.add(child)
                waiting.append(child)
    return found


def _source(name: str) -> str:
    return f"source.{DBT_PACKAGE}.{name}"


def _is_bookkeeping(node: str) -> bool:
    return node.startswith(_source("pipeline."))
