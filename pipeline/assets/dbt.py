"""The dbt reporting models, built month by month after the raw month they read."""

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from pipeline.assets.loads import raw_asset_key
from pipeline.partitions import MONTH_FORMAT, reporting_partitions
from pipeline.project import dbt_project, ensure_manifest
from pipeline.specs import DatasetSpec


def partitioned_dbt_vars(time_window: dg.TimeWindow) -> dict[str, str]:
    """The `--vars` for one monthly partition: the month the models filter on."""
    return {"month": time_window.start.strftime(MONTH_FORMAT)}


LEDGER_SOURCE = "source.pipeline_reports.pipeline.load_ledger"


class ReportingTranslator(DagsterDbtTranslator):
    """Models that read the load ledger depend on every dataset's raw asset.

    Every load writes the ledger, so a data-quality mart over it is downstream of all loads and
    is rebuilt in each dataset's load job.
    """

    def __init__(self, raw_keys: Sequence[dg.AssetKey]):
        super().__init__()
        self.raw_keys = list(raw_keys)

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        node = manifest["nodes"].get(unique_id, {})
        if LEDGER_SOURCE in node.get("depends_on", {}).get("nodes", []):
            spec = spec.merge_attributes(deps=self.raw_keys)
        return spec


def build_dbt_assets(specs: Sequence[DatasetSpec]) -> dg.AssetsDefinition:
    """All dbt models as monthly-partitioned assets; dbt tests become their asset checks."""

    @dbt_assets(
        manifest=ensure_manifest(),
        project=dbt_project,
        dagster_dbt_translator=ReportingTranslator([raw_asset_key(spec) for spec in specs]),
        partitions_def=reporting_partitions(specs),
        # One month per run, so each month's models run after that month's blocking check.
        backfill_policy=dg.BackfillPolicy.multi_run(1),
    )
    def reporting_models(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        dbt_vars = partitioned_dbt_vars(context.partition_time_window)
        yield from dbt.cli(["build", "--vars", json.dumps(dbt_vars)], context=context).stream()

    return reporting_models
