"""Which field values load exactly as written, and the rule each other value breaks.

A parse that succeeds can still change a value: the decimal cast rounds `12.345` to `12.34` (and
`-0.001` to `0.00`, which then passes `min: 0`), the float parse reads `nan` and `1e400` (as
infinity), and polars' date and time parsers take `2013-1-5` and `9:30`. So each value is held
against its text, and one that would not load exactly as written is a reject that names its
column and rule, never a quietly different value.

Every row gets a cheap test (`_may_be_altered`); only the few rows it flags have their rule
worked out (`_broken_rule`), so a clean block costs about one pass per column.
"""

from __future__ import annotations

import re

import polars as pl

from pipeline.ingest.failures import CONTROL_CHARACTERS, FAILURE_SCHEMA
from pipeline.ingest.lines import SortedLines
from pipeline.ingest.types import ISO_DATE, parse_expr, reparse_missed
from pipeline.specs import ColumnSpec, DatasetSpec

# Digits are spelled [0-9]: a regex \d also matches the digits of other scripts.
DECIMAL_SHAPE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$"  # written out: no exponent, no spaces
ISO_DATE_SHAPE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# The ISO 8601 forms `fallback_parse_expr` reads, with two-digit fields only (polars also takes
# `9:30`), no second 60 (polars rolls it into the next minute) and at most microseconds (polars
# truncates further digits; trailing zeros change nothing).
ISO_TIMESTAMP_SHAPE = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,6}0*)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?$"
)
FINER_THAN_MICROSECONDS = r"\.[0-9]{6}0*[1-9]"
INFINITY_WORD = r"(?i)^[+-]?inf(inity)?$"
# Format directives whose text polars cannot give back as it was read: an offset (the value is
# converted to UTC) or a fraction of varying width. Values in such formats are checked by the
# parse alone.
UNCHECKABLE_DIRECTIVE = re.compile(r"%(:*z|#z|Z|\.?f)")
# How many of a block's first values tell whether a column's texts repeat enough to judge each
# distinct one once.
REPEATS_SAMPLE = 4096


def control_character_failures(lines: SortedLines, spec: DatasetSpec) -> pl.DataFrame:
    """Fields of a block's lines that hold a control character.

    A NUL or an escape code is invisible in most tools and nearly always means a broken export,
    so the line is a reject naming the column (build_rejects shows the value with `\\x..`
    escapes). Only a block whose bytes hold one (`SortedLines.control_bytes`) is searched column
    by column.
    """
    if not lines.control_bytes:
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    codes = [code for code in CONTROL_CHARACTERS if chr(code) != spec.delimiter]
    escapes = [f"\\x{code:02x}" for code in codes]
    pattern = "[" + "".join(escapes) + "]"
    frames = [
        lines.fields.filter(pl.col(name).str.contains(pattern)).select(
            "_line_number",
            pl.lit(name).alias("column"),
            pl.format(
                "contains a control character (0x{})",
                pl.col(name).str.extract(f"({pattern})").str.encode("hex"),
            ).alias("rule"),
            pl.col(name).alias("value"),  # escaped by build_rejects, after any hashing
        )
        for name in spec.columns
    ]
    return pl.concat(frames).cast(FAILURE_SCHEMA)


def value_failures(text: pl.DataFrame, typed: pl.DataFrame, spec: DatasetSpec) -> pl.DataFrame:
    """Values that did not parse as their column's type, or would not load exactly as written.

    `text` and `typed` are the same lines, as text and as parsed, each with `_line_number`.
    """
    frames = []
    for name, column in spec.columns.items():
        doubtful = _may_be_altered(pl.col("text"), pl.col("typed"), column)
        if doubtful is None:
            continue
        values = _doubtful_rows(
            pl.DataFrame(
                {"_line_number": text["_line_number"], "text": text[name], "typed": typed[name]}
            ),
            doubtful,
            column,
        )
        if values.is_empty():
            continue
        frames.append(
            values.select(
                "_line_number",
                pl.lit(name).alias("column"),
                _broken_rule(pl.col("text"), pl.col("typed"), column).alias("rule"),
                pl.col("text").alias("value"),
            ).drop_nulls("rule")
        )
    return pl.concat(frames).cast(FAILURE_SCHEMA) if frames else pl.DataFrame(schema=FAILURE_SCHEMA)


def _doubtful_rows(values: pl.DataFrame, doubtful: pl.Expr, column: ColumnSpec) -> pl.DataFrame:
    """The rows of `values` (text, typed) where `doubtful` holds.

    A month's dates and timestamps repeat (a day, an hour): where a block's first texts do, each
    distinct text is parsed and judged once instead of each row (the real bench shape: 4 ms a
    block where the patterns took 15); where they do not, every row is.
    """
    if column.type in ("date", "timestamp") and _repeats(values["text"]):
        distinct = values["text"].unique()
        parsed = distinct.to_frame().select(parse_expr(pl.col("text"), column)).to_series()
        typed = reparse_missed(distinct, parsed, column).alias("typed")
        texts = pl.DataFrame([distinct, typed]).filter(doubtful)["text"]
        if texts.is_empty():
            return values.clear()
        return values.filter(pl.col("text").is_in(texts.implode()))
    return values.filter(doubtful)


def _repeats(texts: pl.Series) -> bool:
    sample = texts.head(REPEATS_SAMPLE)
    return sample.n_unique() * 2 < len(sample)


def _may_be_altered(text: pl.Expr, typed: pl.Expr, column: ColumnSpec) -> pl.Expr | None:
    """True where the parsed value may not be the text's value; None if it always is."""
    present = text.is_not_null()
    match column.type:
        case "string":
            return None
        case "int" | "bool":
            return present & typed.is_null()
        case "float":
            return present & ~typed.is_finite().fill_null(False)
        case "decimal":
            return present & (typed.is_null() | ~text.str.contains(_exact_decimal(column)))
        case "date" | "timestamp":
            return present & (typed.is_null() | ~_written_in_format(text, typed, column))
    raise AssertionError(f"unhandled column type {column.type}")


def _exact_decimal(column: ColumnSpec) -> str:
    """A decimal that fits the column without rounding: leading and trailing zeros aside, at most
    precision - scale digits before the point and scale after it."""
    integers = column.precision - column.scale
    return rf"^[+-]?0*[0-9]{{0,{integers}}}(\.[0-9]{{0,{column.scale}}}0*)?$"


def _written_in_format(text: pl.Expr, typed: pl.Expr, column: ColumnSpec) -> pl.Expr:
    """Whether a parsed date or timestamp is written exactly in the column's format.

    polars' parser is lenient (`%m` takes `1`, `%Y` takes `13`), so a custom format is checked by
    formatting the value back; letters may differ in case (`JAN` for `%b`).
    """
    if column.format is None:
        return text.str.contains(ISO_DATE_SHAPE if column.type == "date" else ISO_TIMESTAMP_SHAPE)
    if UNCHECKABLE_DIRECTIVE.search(column.format):
        return pl.lit(True)
    return typed.dt.strftime(column.format).str.to_lowercase() == text.str.to_lowercase()


def _broken_rule(text: pl.Expr, typed: pl.Expr, column: ColumnSpec) -> pl.Expr:
    """The rule a value flagged by `_may_be_altered` breaks, or null if it loads after all."""
    not_valid = pl.lit(f"is not a valid {column.type}{_format_note(column)}")
    match column.type:
        case "int":
            out_of_range = text.str.contains(r"^[+-]?[0-9]+$")
            return (
                pl.when(out_of_range)
                .then(pl.lit("is outside the 64-bit integer range"))
                .otherwise(not_valid)
            )
        case "float":
            overflow = typed.is_infinite() & ~text.str.contains(INFINITY_WORD)
            non_finite = None if column.allow_non_finite else "is not a finite number"
            return (
                pl.when(typed.is_null())
                .then(not_valid)
                .when(overflow)
                .then(pl.lit("is too large for a float"))
                .otherwise(pl.lit(non_finite, dtype=pl.String))
            )
        case "decimal":
            integers = column.precision - column.scale
            shape = text.str.contains(DECIMAL_SHAPE)
            integer_digits = text.str.extract(r"^[+-]?0*([0-9]*)").str.len_chars()
            decimal_places = text.str.extract(r"\.([0-9]*?)0*$").str.len_chars()
            return (
                pl.when(shape & (integer_digits > integers))
                .then(pl.lit(f"more than {integers} integer digits"))
                .when(shape & (decimal_places > column.scale))
                .then(pl.lit(f"more than {column.scale} decimal places"))
                .otherwise(not_valid)
            )
        case "timestamp" if column.format is None:
            finer = typed.is_not_null() & text.str.contains(FINER_THAN_MICROSECONDS)
            return pl.when(finer).then(pl.lit("is finer than a microsecond")).otherwise(not_valid)
    return not_valid


def _format_note(column: ColumnSpec) -> str:
    """Dates name the format they must be in; ISO timestamps have several (see the README)."""
    if column.format is not None:
        return f" in the format {column.format}"
    return f" in the format {ISO_DATE}" if column.type == "date" else ""
