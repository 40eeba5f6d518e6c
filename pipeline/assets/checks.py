"""Partition-aware asset checks built from the check functions in `pipeline.checks`."""

from collections.abc import Callable
from typing import Any

import dagster as dg

from pipeline.assets.loads import raw_asset_key
from pipeline.checks.completeness import check_closed_days, check_completeness, days_with_rows
from pipeline.checks.drift import check_schema_drift
from pipeline.checks.keys import check_unique
from pipeline.checks.outcome import CheckOutcome
from pipeline.checks.rejects import check_rejects
from pipeline.checks.rules import check_rule
from pipeline.checks.volume import check_volume, month_and_history_counts
from pipeline.partitions import dataset_partitions
from pipeline.specs import DatasetSpec
from pipeline.warehouse.base import Warehouse, now, statement_context
from pipeline.warehouse.ledger import CheckRecord

SCHEMA_CHECK = "schema"
LEVEL = "level"  # ERROR, WARN or INFO: Dagster's severity has no INFO
Evaluate = Callable[[Warehouse, str], CheckOutcome]


def build_checks(spec: DatasetSpec) -> list[dg.AssetChecksDefinition]:
    """Every check of a dataset month: its rows, header, calendar, volume, keys and rules."""
    completeness = spec.checks.completeness
    checks = [
        _check(
            spec,
            SCHEMA_CHECK,
            blocking=True,
            description=(
                f"Lines that break the spec of {spec.name} (field count, types, nulls, patterns, "
                f"allowed values, ranges, dates outside the month) stay under "
                f"{spec.checks.max_reject_ratio:.4%} of the file."
            ),
            evaluate=lambda warehouse, month: check_rejects(warehouse, spec, month),
        ),
        _check(
            spec,
            "completeness",
            blocking=completeness.severity == "ERROR",
            description=f"Every {completeness.calendar} day of the month has rows.",
            evaluate=lambda warehouse, month: check_completeness(
                spec, month, days_with_rows(warehouse, spec, month)
            ),
        ),
        _check(
            spec,
            "closed_days",
            blocking=False,
            description=f"No rows on days the {completeness.calendar} calendar closes (WARN).",
            evaluate=lambda warehouse, month: check_closed_days(
                spec, month, days_with_rows(warehouse, spec, month)
            ),
        ),
    ]
    drift = spec.checks.schema_drift
    checks.append(
        _check(
            spec,
            "schema_drift",
            blocking=drift.severity == "ERROR",
            description=(
                f"The file's header has no columns beyond the spec's ({drift.severity}); extra "
                "columns are ignored. A missing column fails the load itself."
            ),
            evaluate=lambda warehouse, month: check_schema_drift(warehouse, spec, drift, month),
        )
    )
    volume = spec.checks.volume
    if volume is not None:
        checks.append(
            _check(
                spec,
                "volume",
                blocking=volume.severity == "ERROR",
                description=(
                    f"Rows per day against the same weekday over the last {volume.lookback_months} "
                    f"months (robust z-score within ±{volume.max_z}), and the month's total."
                ),
                evaluate=lambda warehouse, month: check_volume(
                    spec,
                    volume,
                    month,
                    *month_and_history_counts(warehouse, spec, month, volume.lookback_months),
                ),
            )
        )
    unique = spec.checks.unique
    if unique is not None:
        checks.append(
            _check(
                spec,
                "unique_key",
                blocking=unique.severity == "ERROR",
                description=f"The key ({', '.join(unique.columns)}) does not repeat.",
                evaluate=lambda warehouse, month: check_unique(warehouse, spec, unique, month),
            )
        )
    for rule in spec.rules:
        checks.append(
            _check(
                spec,
                rule.check_name,
                blocking=rule.severity == "CRITICAL",
                description=f"{rule.severity}: rows where {rule.where} (rule {rule.name!r}).",
                evaluate=lambda warehouse, month, rule=rule: check_rule(
                    warehouse, spec, rule, month
                ),
            )
        )
    return checks


def _check(
    spec: DatasetSpec, name: str, *, blocking: bool, description: str, evaluate: Evaluate
) -> dg.AssetChecksDefinition:
    """One partitioned check; its verdict is also kept in pipeline.check_results."""

    @dg.asset_check(
        asset=raw_asset_key(spec),
        name=name,
        blocking=blocking,
        partitions_def=dataset_partitions(spec),
        description=description,
    )
    def check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        month = context.partition_key
        # The check's queries say whose they are, like the load's (for cost tracing).
        with statement_context(spec.name, month, context.run.run_id):
            outcome = evaluate(warehouse, month)
            warehouse.record_check(
                CheckRecord(
                    dataset=spec.name,
                    month=month,
                    check_name=name,
                    severity=outcome.severity,
                    passed=outcome.passed,
                    observed=outcome.observed,
                    threshold=outcome.threshold,
                    summary=outcome.summary,
                    run_id=context.run.run_id,
                    checked_at=now(),
                )
            )
        return to_check_result(outcome)

    return check


def to_check_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    """The Dagster view of an outcome: figures as metadata, samples as Markdown tables."""
    metadata: dict[str, Any] = {
        "summary": dg.MetadataValue.text(outcome.summary),
        LEVEL: outcome.severity,
    }
    metadata.update(outcome.facts)
    for name, rows in outcome.samples.items():
        metadata[name] = dg.MetadataValue.md(markdown_table(rows))
    return dg.AssetCheckResult(
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR
        if outcome.severity == "ERROR"
        else dg.AssetCheckSeverity.WARN,
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
