"""Spec column types → polars types and the expressions that parse text into them.

A value that does not parse becomes null here and is reported by `values.value_failures`, so a
bad value is rejected with its column and text instead of being loaded as a silent null (that
module also rejects values these parsers would read, but not exactly as written).
"""

from __future__ import annotations

import polars as pl

from pipeline.specs import ColumnSpec

TRUE_WORDS = ("true", "t", "yes", "y", "1")
FALSE_WORDS = ("false", "f", "no", "n", "0")
ISO_DATE = "%Y-%m-%d"


def polars_dtype(column: ColumnSpec) -> pl.DataType:
    """The polars type a spec column is loaded as."""
    match column.type:
        case "string":
            return pl.String()
        case "int":
            return pl.Int64()
        case "float":
            return pl.Float64()
        case "decimal":
            return pl.Decimal(column.precision, column.scale)
        case "bool":
            return pl.Boolean()
        case "date":
            return pl.Date()
        case "timestamp":
            return pl.Datetime("us", "UTC")
    raise AssertionError(f"unhandled column type {column.type}")


def parse_expr(text: pl.Expr, column: ColumnSpec) -> pl.Expr:
    """Parse `text` (nulls already applied) into the column's type; failures become null."""
    match column.type:
        case "string":
            return text
        case "int" | "float" | "decimal":
            return text.cast(polars_dtype(column), strict=False)
        case "bool":
            return _bool_words(text)
        case "date":
            return text.str.to_date(column.format or ISO_DATE, strict=False)
        case "timestamp":
            return _parse_timestamp(text, column.format)
    raise AssertionError(f"unhandled column type {column.type}")


def _bool_words(text: pl.Expr) -> pl.Expr:
    """True or False for the words exactly as given; null for anything else."""
    return pl.when(text.is_in(TRUE_WORDS)).then(True).when(text.is_in(FALSE_WORDS)).then(False)


def _parse_timestamp(text: pl.Expr, format: str | None) -> pl.Expr:
    """The common shape `2024-01-31T09:30:00Z`, which polars parses on its fast path.

    Without polars' cache of distinct texts: timestamps seldom repeat, and in the sample data
    (about 16 repeats each) the cache made the parse 40% slower.
    """
    return text.str.to_datetime(
        format or "%Y-%m-%dT%H:%M:%SZ", strict=False, time_unit="us", time_zone="UTC", cache=False
    )


def fallback_parse_expr(text: pl.Expr, column: ColumnSpec) -> pl.Expr | None:
    """A slower, more forgiving parse for values `parse_expr` could not read, or None.

    Applied only to the values the fast path missed. Booleans: the words in any case (`TRUE`,
    `Yes`); lower-casing every value cost ten times the fast path's exact lookup. Timestamps: ISO
    8601 with or without fractions and an offset (`Z`, `+02:00`, `+0200`), with `T` or a space
    between date and time; values without an offset are taken as UTC. Each of these formats
    costs about 6x the fast one.
    """
    if column.type == "bool":
        return _bool_words(text.str.to_lowercase())
    if column.type != "timestamp" or column.format is not None:
        return None
    parsed = []
    for separator in ("T", " "):
        layout = f"%Y-%m-%d{separator}%H:%M:%S%.f"
        parsed.append(
            text.str.to_datetime(layout + "%#z", strict=False, time_unit="us", time_zone="UTC")
        )
        parsed.append(
            text.str.to_datetime(layout, strict=False, time_unit="us").dt.replace_time_zone("UTC")
        )
    return pl.coalesce(parsed)


def reparse_missed(text: pl.Series, typed: pl.Series, column: ColumnSpec) -> pl.Series:
    """`typed` (`parse_expr` of `text`), with the values it missed given `fallback_parse_expr`'s
    second chance, applied to those values only."""
    fallback = fallback_parse_expr(pl.col(text.name), column)
    if fallback is None:
        return typed
    missed = text.is_not_null() & typed.is_null()
    if not missed.any():
        return typed
    retried = text.filter(missed).to_frame().select(fallback).to_series()
    return typed.scatter(missed.arg_true(), retried)
