"""A dataset's month checks, as Dagster check specs of its raw asset.

The checks are evaluated inside the load step, against the month's candidate, before it is
published (write, audit, publish): a month that fails an ERROR check is never published, and the
previously published month keeps being served. Each verdict is still a partition-aware asset check
result of `raw/<dataset>` with its metadata, and is kept in pipeline.check_results.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg

from pipeline.checks.completeness import check_closed_days, check_completeness, days_with_rows
from pipeline.checks.drift import check_schema_drift
from pipeline.checks.keys import check_unique
from pipeline.checks.outcome import CheckOutcome
from pipeline.checks.rejects import check_rejects, share
from pipeline.checks.rules import check_rule
from pipeline.checks.scope import MonthUnderCheck
from pipeline.checks.volume import check_volume, month_and_history_counts
from pipeline.specs import DatasetSpec

# Deliberate: partition-aware checks are what the design asks for, and dagster is pinned to one
# release (pyproject.toml), so the preview's possible changes reach us only through an upgrade the
# suite tests. Without this, `make dev` and every run log print the warning twice.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")

SCHEMA_CHECK = "schema"
LEVEL = "level"  # ERROR, WARN or INFO: Dagster's severity has no INFO

# The days each calendar (`checks.completeness.calendar`) opens, before the spec's extra open
# and closed dates.
OPEN_DAYS = {
    "every_day": "every day is open",
    "weekdays": "the spec's weekdays are open",
    "business_days": "the spec's weekdays (Monday to Friday unless listed) are open, but holidays",
}


@dataclass(frozen=True)
class MonthCheck:
    """One check of a dataset month: `blocking` ones refuse to publish a month they fail."""

    name: str
    blocking: bool
    description: str
    evaluate: Callable[[MonthUnderCheck], CheckOutcome]


def month_checks(spec: DatasetSpec) -> list[MonthCheck]:
    """Every check of a dataset month: its rows, header, calendar, volume, keys and rules."""
    completeness = spec.checks.completeness
    drift = spec.checks.schema_drift
    checks = [
        MonthCheck(
            SCHEMA_CHECK,
            blocking=True,
            description=(
                f"Lines that break the spec of {spec.name} (field count, types, nulls, patterns, "
                f"allowed values, ranges, dates outside the month) stay under "
                f"{share(spec.checks.max_reject_ratio)} of the file."
            ),
            evaluate=check_rejects,
        ),
        MonthCheck(
            "completeness",
            blocking=completeness.severity == "ERROR",
            description=(
                f"Every open day of the month has rows ({OPEN_DAYS[completeness.calendar]})."
            ),
            evaluate=lambda month: check_completeness(spec, month.month, days_with_rows(month)),
        ),
        MonthCheck(
            "closed_days",
            blocking=False,
            description=(
                f"No rows on days the calendar closes ({OPEN_DAYS[completeness.calendar]}; WARN)."
            ),
            evaluate=lambda month: check_closed_days(spec, month.month, days_with_rows(month)),
        ),
        MonthCheck(
            "schema_drift",
            blocking=drift.severity == "ERROR",
            description=(
                f"The file's header has no columns beyond the spec's ({drift.severity}); extra "
                "columns are ignored. A missing column fails the load itself."
            ),
            evaluate=lambda month: check_schema_drift(month, drift),
        ),
    ]
    volume = spec.checks.volume
    if volume is not None:
        checks.append(
            MonthCheck(
                "volume",
                blocking=volume.severity == "ERROR",
                description=(
                    f"Rows per day against the same weekday over the last {volume.lookback_months} "
                    f"months (robust z-score within ±{volume.max_z}), and the month's total."
                ),
                evaluate=lambda month: check_volume(
                    spec,
                    volume,
                    month.month,
                    *month_and_history_counts(month, volume.lookback_months),
                ),
            )
        )
    unique = spec.checks.unique
    if unique is not None:
        checks.append(
            MonthCheck(
                "unique_key",
                blocking=unique.severity == "ERROR",
                description=f"The key ({', '.join(unique.columns)}) does not repeat.",
                evaluate=lambda month: check_unique(month, unique),
            )
        )
    for rule in spec.rules:
        checks.append(
            MonthCheck(
                rule.check_name,
                blocking=rule.severity == "CRITICAL",
                description=f"{rule.severity}: rows where {rule.where} (rule {rule.name!r}).",
                evaluate=lambda month, rule=rule: check_rule(month, rule),
            )
        )
    return checks


def check_specs(
    spec: DatasetSpec, key: dg.AssetKey, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetCheckSpec]:
    """The checks as Dagster shows them: partitioned like the asset, ERROR ones blocking."""
    return [
        dg.AssetCheckSpec(
            check.name,
            asset=key,
            blocking=check.blocking,
            description=check.description,
            partitions_def=partitions_def,
        )
        for check in month_checks(spec)
    ]


def to_check_result(
    name: str, outcome: CheckOutcome, extra: dict[str, Any] | None = None
) -> dg.AssetCheckResult:
    """The Dagster view of an outcome: figures as metadata, samples as Markdown tables."""
    metadata: dict[str, Any] = {
        "summary": dg.MetadataValue.text(outcome.summary),
        LEVEL: outcome.severity,
    }
    metadata.update(outcome.facts)
    metadata.update(extra or {})
    for sample, rows in outcome.samples.items():
        metadata[sample] = dg.MetadataValue.md(markdown_table(rows))
    return dg.AssetCheckResult(
        check_name=name,
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
