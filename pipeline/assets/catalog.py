"""What Dagster's catalog shows of a dataset's raw table: its columns, their types and rules.

The spec is the contract, so the column schema is read from it (not from the warehouse): the
spec's types, required columns as non-nullable, each column's rules as its description, and the
columns every load adds.
"""

from __future__ import annotations

import dagster as dg

from pipeline.specs import ColumnSpec, DatasetSpec
from pipeline.warehouse.base import LOAD_COLUMNS

LOAD_COLUMN_DESCRIPTIONS = {
    "_month": "The month (YYYY-MM) the row was loaded for: its partition.",
    "_source_file": "The landing file the row came from.",
    "_line_number": "The row's line in that file.",
    "_loaded_at": "When the month was published.",
    "_load_id": "The load that published the row (pipeline.load_ledger).",
}


def column_schema(spec: DatasetSpec) -> dg.TableSchema:
    """The raw table's columns: the spec's, then the load's."""
    unique = spec.checks.unique
    key = unique.columns if unique is not None else []
    columns = [
        dg.TableColumn(
            name,
            column_type(column),
            description="; ".join(column_rules(spec, name, column)) or None,
            constraints=dg.TableColumnConstraints(
                nullable=column.nullable and name != spec.date_column,
                unique=key == [name],
            ),
        )
        for name, column in spec.columns.items()
    ]
    columns += [
        dg.TableColumn(
            name,
            column_type(column),
            description=LOAD_COLUMN_DESCRIPTIONS[name],
            constraints=dg.TableColumnConstraints(nullable=False),
        )
        for name, column in LOAD_COLUMNS.items()
    ]
    return dg.TableSchema(columns=columns)


def column_type(column: ColumnSpec) -> str:
    """The spec's type, with a decimal's precision and scale."""
    if column.type == "decimal":
        return f"decimal({column.precision},{column.scale})"
    return column.type


def column_rules(spec: DatasetSpec, name: str, column: ColumnSpec) -> list[str]:
    """A column's rules in words (the UI renders them as Markdown: code in backticks)."""
    rules = []
    if name == spec.date_column:
        rules.append("within the file's month")
    if column.min is not None:
        rules.append(f"at least {column.min:g}")
    if column.max is not None:
        rules.append(f"at most {column.max:g}")
    if column.pattern is not None:
        rules.append(f"matches `{column.pattern}`")
    if column.allowed is not None:
        rules.append("one of " + ", ".join(str(value) for value in column.allowed))
    if column.format is not None:
        rules.append(f"format `{column.format}`")
    if column.optional:
        rules.append("optional: null in months whose file lacks it")
    unique = spec.checks.unique
    if unique is not None and name in unique.columns:
        scope = "across months" if unique.across_months else "within a month"
        rules.append(f"key ({', '.join(unique.columns)}) unique {scope}")
    return rules
