"""Sensitive columns (`pii: hash` / `pii: redact`), replaced in every block before it is staged.

`hash` turns each value into its HMAC-SHA256 (hex) under the deployment's key, so equal values
hash equally in every month and dataset: a hashed column still joins and counts distinct. `redact`
turns it into null. Both happen after validation, so `pattern`, `allowed` and `nullable` judge the
clear value, and both reach the rejects too: a failing value of such a column, and its field in the
reject's raw line (the rest of the line is kept byte for byte). `mask` is the warehouse's business
(a Snowflake masking policy) and leaves the values alone here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.ingest.header import Header, LoadError
from pipeline.specs import DatasetSpec

KEY_VARIABLE = "PIPELINE_PII_KEY"
# A rejected line whose fields cannot be told apart (wrong field count, broken quoting) may hold
# a sensitive field anywhere: it is not kept.
WITHHELD = "[withheld: {fields} fields where the header has {expected}; {columns} not locatable]"
BROKEN_QUOTING = "[withheld: its quoting is broken; {columns} not locatable]"


@dataclass(frozen=True)
class Protection:
    """What to replace in a spec's blocks, and the key hashed columns are hashed with."""

    hashed: tuple[str, ...] = ()
    redacted: tuple[str, ...] = ()
    key: bytes = b""

    @classmethod
    def for_spec(cls, spec: DatasetSpec, key: str | None, path: Path) -> Protection:
        """The spec's protection; a LoadError naming the variable if a column needs the key."""
        hashed = tuple(spec.pii_columns("hash"))
        if hashed and not (key or "").strip():  # blanks alone are as guessable as no key
            raise LoadError(
                f"{path}: {KEY_VARIABLE} is not set, and column(s) {', '.join(hashed)} of "
                f"{spec.name} say pii: hash; nothing was loaded. Set {KEY_VARIABLE} to the "
                'deployment\'s secret key (README, "Sensitive columns")'
            )
        return cls(hashed, tuple(spec.pii_columns("redact")), (key or "").encode())

    @property
    def columns(self) -> tuple[str, ...]:
        return self.hashed + self.redacted

    def rows(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Valid rows with their sensitive columns replaced."""
        if not self.columns:
            return frame
        return frame.with_columns(
            *(keyed_hashes(frame[name], self.key) for name in self.hashed),
            *(pl.lit(None, dtype=frame.schema[name]).alias(name) for name in self.redacted),
        )

    def failures(self, failures: pl.DataFrame) -> pl.DataFrame:
        """Failures (FAILURE_SCHEMA) whose value is a sensitive column's, replaced like it."""
        if not self.columns:
            return failures
        value, column = pl.col("value"), pl.col("column")
        hashed = keyed_hashes(failures["value"], self.key) if self.hashed else value
        return failures.with_columns(
            pl.when(column.is_in(self.hashed))
            .then(hashed)
            .when(column.is_in(self.redacted))
            .then(None)
            .otherwise(value)
            .alias("value")
        )

    def raw_lines(self, raw: pl.DataFrame, header: Header, spec: DatasetSpec) -> pl.DataFrame:
        """Rejected lines (RAW_LINE_SCHEMA) with the sensitive fields replaced in place."""
        if not self.columns or raw.is_empty():
            return raw
        lines = [self._line(line, header, spec) for line in raw["_raw_line"].to_list()]
        return raw.with_columns(pl.Series("_raw_line", lines, dtype=pl.String))

    def _line(self, line: str | None, header: Header, spec: DatasetSpec) -> str | None:
        if line is None:
            return None
        spans = field_spans(line, spec.delimiter, spec.quote)
        if spans is None:
            return BROKEN_QUOTING.format(columns=", ".join(self.columns))
        if len(spans) != header.field_count:
            return WITHHELD.format(
                fields=len(spans), expected=header.field_count, columns=", ".join(self.columns)
            )
        pieces, position = [], 0
        present = [name for name in self.columns if name in header.positions]
        for name in sorted(present, key=header.positions.__getitem__):
            start, end = spans[header.positions[name]]
            pieces += [line[position:start], self._field(name, line[start:end], spec)]
            position = end
        return "".join([*pieces, line[position:]])

    def _field(self, name: str, text: str, spec: DatasetSpec) -> str:
        """A field as the file has it, replaced: a null marker stays, a value is hashed or cut."""
        if text in spec.null_values:
            return text
        if name in self.redacted:
            return ""
        quote = spec.quote
        if quote is not None and len(text) >= 2 and text[0] == text[-1] == quote:
            text = text[1:-1].replace(quote * 2, quote)  # hashed as parsed, like the row's value
        return keyed_hash(self.key, text)


def keyed_hash(key: bytes, value: str) -> str:
    return _Hmac(key)(value)


def keyed_hashes(values: pl.Series, key: bytes) -> pl.Series:
    """Each value's keyed hash (nulls stay null), computed once per distinct value.

    About 1 µs a distinct value on an idle core; hashlib runs under the GIL, so this is the cost of
    a hashed column that is distinct on every row (README, "Sensitive columns").
    """
    distinct = values.drop_nulls().unique()
    digest = _Hmac(key)
    table = pl.DataFrame(
        {
            "value": distinct,
            "digest": pl.Series([digest(value) for value in distinct.to_list()], dtype=pl.String),
        }
    )
    joined = values.to_frame("value").join(table, on="value", how="left", maintain_order="left")
    return joined["digest"].alias(values.name)


class _Hmac:
    """HMAC-SHA256 (RFC 2104) with the keyed inner and outer states computed once.

    `hmac.digest` sets up the key on every call: three times slower per value than copying the
    two prepared SHA-256 states.
    """

    def __init__(self, key: bytes):
        block = hashlib.sha256().block_size
        key = (hashlib.sha256(key).digest() if len(key) > block else key).ljust(block, b"\0")
        self.inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
        self.outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))

    def __call__(self, value: str) -> str:
        inner = self.inner.copy()
        inner.update(value.encode())
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def field_spans(line: str, delimiter: str, quote: str | None) -> list[tuple[int, int]] | None:
    """Where each field of a line starts and ends, split as the load splits it (`split_line`):
    a quote opens a field only at its start, a doubled quote inside one is a quote, and a quote
    anywhere else is a plain character. None when the quoting is broken (`csv` refuses the line).

    It must agree with the load's split field for field: a span off by one field would hash a
    neighbour and keep the sensitive value in clear.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        if quote is not None and line.startswith(quote, start):
            end = _closing_quote(line, start + 1, quote)
            if end is None or (end < len(line) and line[end] != delimiter):
                return None
        else:
            found = line.find(delimiter, start)
            end = len(line) if found < 0 else found
        spans.append((start, end))
        if end == len(line):
            return spans
        start = end + 1


def _closing_quote(line: str, position: int, quote: str) -> int | None:
    """The position just after the quote that closes a quoted field, or None if none does."""
    while True:
        found = line.find(quote, position)
        if found < 0:
            return None
        if not line.startswith(quote, found + 1):
            return found + 1
        position = found + 2
