"""Partition-aware asset checks built from the check functions in `pipeline.checks`."""

from typing import Any

import dagster as dg

from pipeline.assets.loads import raw_asset_key
from pipeline.checks.outcome import CheckOutcome
from pipeline.checks.rejects import check_rejects
from pipeline.partitions import dataset_partitions
from pipeline.specs import DatasetSpec
from pipeline.warehouse.base import Warehouse

SCHEMA_CHECK = "schema"


def build_schema_check(spec: DatasetSpec) -> dg.AssetChecksDefinition:
    """Blocking: a month with more rejects than allowed does not flow into the reports."""

    @dg.asset_check(
        asset=raw_asset_key(spec),
        name=SCHEMA_CHECK,
        blocking=True,
        partitions_def=dataset_partitions(spec),
        description=(
            f"Lines that break the spec of {spec.name} (field count, types, nulls, patterns, "
            f"allowed values, ranges, dates outside the month) stay under "
            f"{spec.checks.max_reject_ratio:.4%} of the file."
        ),
    )
    def schema(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        return to_check_result(check_rejects(warehouse, spec, context.partition_key))

    return schema


def to_check_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    """The Dagster view of an outcome: figures as metadata, samples as Markdown tables."""
    metadata: dict[str, Any] = {"summary": dg.MetadataValue.text(outcome.summary)}
    metadata.update(outcome.facts)
    for name, rows in outcome.samples.items():
        metadata[name] = dg.MetadataValue.md(markdown_table(rows))
    return dg.AssetCheckResult(
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity(outcome.severity),
        description=outcome.summary,
        metadata=metadata,
    )


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A small Markdown table; `_none_` for no rows."""
    if not rows:
        return "_none_"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = ("" if row[c] is None else str(row[c]).replace("|", "\\|") for c in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
