"""One block of lines → typed, valid rows and rejects. Pure: no files, no warehouse, no Dagster."""

from __future__ import annotations

from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

from pipeline.ingest.failures import build_rejects
from pipeline.ingest.header import Header
from pipeline.ingest.lines import Block, sort_lines
from pipeline.ingest.pii import Protection
from pipeline.ingest.schema import schema_failures
from pipeline.ingest.types import parse_expr, reparse_missed
from pipeline.ingest.values import control_character_failures, value_failures
from pipeline.specs import DatasetSpec


@dataclass(frozen=True)
class ValidatedBatch:
    """What a block became: every non-blank line is in exactly one of `rows` and `rejects`."""

    rows: pl.DataFrame  # the spec's columns, typed, plus _line_number
    rejects: pl.DataFrame  # REJECT_SCHEMA


def validate_block(
    block: Block,
    header: Header,
    spec: DatasetSpec,
    schema: pa.DataFrameSchema,
    protection: Protection,
) -> ValidatedBatch:
    """Parse, type and validate the lines of `block` against the spec; then replace sensitive
    values (`protection`), so the rules judge clear values and nothing after sees them."""
    lines = sort_lines(block, header, spec)
    text = lines.fields
    typed = text.select(
        "_line_number",
        *(parse_expr(pl.col(name), column).alias(name) for name, column in spec.columns.items()),
    )
    typed = _reparse_missed(text, typed, spec)
    # Each stage judges every line, and a line keeps only the findings of the first stage that
    # rejected it: the same as taking it out before the next stage, since every rule looks at
    # one row at a time, without copying the block's columns once per stage (`make bench`).
    control_failures = control_character_failures(lines, spec)
    failed_values = _besides(value_failures(text, typed, spec), control_failures)
    broken_rules = _besides(schema_failures(schema, typed, text), control_failures, failed_values)
    failures = pl.concat([lines.failures, control_failures, failed_values, broken_rules])
    rejected = failures["_line_number"].unique().sort()
    raw_lines = protection.raw_lines(lines.raw_lines(rejected), header, spec)
    return ValidatedBatch(
        rows=protection.rows(_without_lines(typed, rejected)),
        rejects=build_rejects(protection.failures(failures), raw_lines).sort("_line_number"),
    )


def _besides(failures: pl.DataFrame, *earlier: pl.DataFrame) -> pl.DataFrame:
    """`failures` on lines that no `earlier` stage rejected."""
    for judged in earlier:
        failures = _without_lines(failures, judged["_line_number"])
    return failures


def _without_lines(frame: pl.DataFrame, line_numbers: pl.Series) -> pl.DataFrame:
    if line_numbers.is_empty():
        return frame
    return frame.filter(~pl.col("_line_number").is_in(line_numbers.implode()))


def _reparse_missed(text: pl.DataFrame, typed: pl.DataFrame, spec: DatasetSpec) -> pl.DataFrame:
    """Give values the fast parse missed a second, slower chance (see `fallback_parse_expr`)."""
    return typed.with_columns(
        reparse_missed(text[name], typed[name], column) for name, column in spec.columns.items()
    )
