"""A dataset spec compiled to a pandera (polars) schema, and its failures as reject reasons.

The schema is built per month because the date column's rule ("inside the file's month") depends
on it. Each check carries a readable `error`, which pandera reports as the failure's check name:
that text is what a user reads in the rejects table.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaErrors

from pipeline.ingest.failures import FAILURE_SCHEMA
from pipeline.ingest.types import polars_dtype
from pipeline.partitions import month_bounds
from pipeline.specs import ColumnSpec, DatasetSpec

# A null marker (`NA`) is read as null first, so the field may not be empty in the line.
MISSING_RULE = "is required but has no value (empty, or one of null_values)"


def build_schema(spec: DatasetSpec, month: str) -> pa.DataFrameSchema:
    """The pandera schema every row of `spec`'s file for `month` must pass."""
    columns = {
        name: pa.Column(
            polars_dtype(column),
            checks=_checks(name, column, spec, month),
            nullable=column.nullable and name != spec.date_column,
        )
        for name, column in spec.columns.items()
    }
    return pa.DataFrameSchema(columns, strict=False, name=spec.name)


def _checks(name: str, column: ColumnSpec, spec: DatasetSpec, month: str) -> list[pa.Check]:
    checks = []
    if column.min is not None:
        checks.append(pa.Check.ge(column.min, error=f"must be >= {column.min:g}"))
    if column.max is not None:
        checks.append(pa.Check.le(column.max, error=f"must be <= {column.max:g}"))
    if column.pattern is not None:
        checks.append(
            pa.Check.str_matches(column.pattern, error=f"must match pattern {column.pattern}")
        )
    if column.allowed is not None:
        allowed = ", ".join(str(value) for value in column.allowed)
        checks.append(pa.Check.isin(column.allowed, error=f"must be one of {allowed}"))
    if name == spec.date_column:
        first, last = month_bounds(month)
        checks.append(pa.Check.in_range(first, last, error=f"must fall inside {month}"))
    return checks


def schema_failures(
    schema: pa.DataFrameSchema, typed: pl.DataFrame, text: pl.DataFrame
) -> pl.DataFrame:
    """Validate `typed` and return its failures by line, each value as written in `text`.

    `typed` and `text` are the same lines, parsed and as text, each with `_line_number`. pandera
    reports a failing value converted back from its type (`-1e3` as `-1000.0`, `01/02/2013` as
    `2013-02-01`), which is not what the file says.
    """
    try:
        schema.validate(typed, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        if cases["index"].null_count():
            raise RuntimeError(
                f"pandera reported a failure that is not about rows: {cases.to_dicts()}"
            ) from errors
        lines = typed["_line_number"].gather(cases["index"].cast(pl.Int64))
        rule = (
            pl.when(pl.col("check") == "not_nullable")
            .then(pl.lit(MISSING_RULE))
            .otherwise(pl.col("check"))
        )
        failures = cases.select(pl.Series("_line_number", lines), "column", rule.alias("rule"))
        return _with_written_values(failures, text).cast(FAILURE_SCHEMA)
    return pl.DataFrame(schema=FAILURE_SCHEMA)


def _with_written_values(failures: pl.DataFrame, text: pl.DataFrame) -> pl.DataFrame:
    """`failures` with each failing field's text from `text` as `value` (a null field stays null).

    Only the failing lines of the failing columns are gathered and unpivoted: failures are few,
    a block's lines many.
    """
    written = (
        text.select("_line_number", *failures["column"].unique().to_list())
        .filter(pl.col("_line_number").is_in(failures["_line_number"].implode()))
        .unpivot(index="_line_number", variable_name="column", value_name="value")
    )
    return failures.join(written, on=["_line_number", "column"], how="left", maintain_order="left")
