"""Failures found while reading a file, and the reject rows they become.

Every stage (line shape, type parsing, pandera rules) reports failures in one long shape, one row
per broken rule; `build_rejects` folds them into one reject per line, so a line that breaks two
rules is rejected once and names both.
"""

from __future__ import annotations

import polars as pl

FAILURE_SCHEMA = {
    "_line_number": pl.Int64,
    "column": pl.String,
    "rule": pl.String,
    "value": pl.String,
}
# C0 control characters but tab, LF and CR: LF ends a line, the CR of a CRLF ending goes with it,
# and a lone CR inside a field is kept as written. A reject shows them as `\x..` escapes.
CONTROL_CHARACTERS = tuple(code for code in range(0x20) if code not in (0x09, 0x0A, 0x0D))
RAW_LINE_SCHEMA = {"_line_number": pl.Int64, "_raw_line": pl.String}
REJECT_SCHEMA = {
    "_line_number": pl.Int64,
    "_raw_line": pl.String,
    "_column": pl.String,
    "_rule": pl.String,
    "_value": pl.String,
    "_reason": pl.String,
}


def build_rejects(failures: pl.DataFrame, raw_lines: pl.DataFrame) -> pl.DataFrame:
    """One reject per failing line: its text, the first rule it broke, and every reason."""
    if failures.is_empty():
        return pl.DataFrame(schema=REJECT_SCHEMA)
    # One chunk per column: polars 2.1's `format` panics ("assertion failed: i < self.len()")
    # over columns chunked differently, as the failed values of a block's repeated dates come
    # (an empty chunk, then theirs). Rejects are few, so the copy costs nothing.
    failures = failures.rechunk()
    # Escaped here, after sensitive values were hashed (pii.py): hashed as read, as in the line.
    shown = pl.col("value").str.replace_many(
        [chr(code) for code in CONTROL_CHARACTERS],
        [f"\\x{code:02x}" for code in CONTROL_CHARACTERS],
    )
    failures = failures.with_columns(shown)
    reason = (
        pl.when(pl.col("column").is_null())
        .then(pl.col("rule"))
        .when(pl.col("value").is_null())  # no value to show (an empty field, or `NA`)
        .then(pl.format("{}: {}", "column", "rule"))
        .otherwise(pl.format("{}: {} (value '{}')", "column", "rule", "value"))
    )
    per_line = (
        failures.with_columns(reason.alias("_reason"))
        .group_by("_line_number", maintain_order=True)
        .agg(
            pl.col("column").first().alias("_column"),
            pl.col("rule").first().alias("_rule"),
            pl.col("value").first().alias("_value"),
            pl.col("_reason").str.join("; "),
        )
    )
    return per_line.join(raw_lines, on="_line_number", how="left").select(list(REJECT_SCHEMA))
