"""Cut a file into blocks of whole lines and sort each block's lines into parseable and rejected.

The line structure is found with numpy over the raw bytes (newline and delimiter positions), so a
block's good lines can go to polars' multi-threaded CSV parser in one call while every line keeps
its number in the file. A line with the wrong number of fields, or one that is not UTF-8, is
rejected here with its number and text, never silently padded or truncated.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import polars as pl

from pipeline.ingest.failures import FAILURE_SCHEMA, RAW_LINE_SCHEMA
from pipeline.ingest.header import UTF8_BOM, Header, split_line
from pipeline.specs import DatasetSpec

NEWLINE = ord("\n")
CARRIAGE_RETURN = ord("\r")
TAB = ord("\t")
FIRST_PRINTABLE = 0x20


@dataclass(frozen=True)
class Block:
    """Whole lines of a file, each ending in a newline, starting at line `first_line`."""

    first_line: int
    data: bytes


@dataclass
class LineTally:
    """Lines of a file counted from its raw bytes, apart from any parsing.

    The reconciliation compares this with what the parser and the warehouse produced: a lost or
    doubled block shows up as a difference instead of balancing by construction.
    """

    lines: int = 0  # line ends (a last line without one counts too)
    blank: int = 0  # empty lines (nothing, or only the CR of a CRLF, before the newline)

    def add(self, block: bytes) -> None:
        """Count a block of whole lines that starts at the start of a line.

        With numpy, which lets the validating threads run meanwhile: this runs on the reading
        thread for every block, and a regular expression took twice as long holding the GIL.
        """
        raw = np.frombuffer(block, dtype=np.uint8)
        newline = raw == NEWLINE
        self.lines += int(np.count_nonzero(newline))
        # A blank line that is not the block's first: a newline right after a newline, or after
        # the CR of a CRLF ending.
        blank = np.count_nonzero(newline[:-1] & newline[1:])
        if block.find(b"\r") >= 0:
            blank += np.count_nonzero(newline[:-2] & (raw[1:-1] == CARRIAGE_RETURN) & newline[2:])
        self.blank += int(blank) + block.startswith((b"\n", b"\r\n"))

    @property
    def data_lines(self) -> int:
        return self.lines - self.blank


def iter_blocks(
    handle: BinaryIO, first_line: int, block_bytes: int, tally: LineTally | None = None
) -> Iterator[Block]:
    """Read `handle` in blocks of about `block_bytes`, cut after the last newline of each.

    `tally` counts the lines as they are read, before any block reaches a parser.
    """
    tally = LineTally() if tally is None else tally
    counted_before = tally.lines

    def numbered(block: bytes) -> Block:
        start = first_line + tally.lines - counted_before
        tally.add(block)
        return Block(start, block)

    carry = b""
    while chunk := handle.read(block_bytes):
        cut = chunk.rfind(b"\n") + 1
        if cut == 0:
            carry += chunk
            continue
        # One copy of the block at most (none when the chunk ends on a line end and nothing is
        # carried): this runs on the reading thread, ahead of every worker.
        data = (
            chunk if cut == len(chunk) and not carry else b"".join((carry, memoryview(chunk)[:cut]))
        )
        carry = chunk[cut:]
        yield numbered(data)
    if carry:
        yield numbered(carry + b"\n")


@dataclass(frozen=True)
class SortedLines:
    """A block's lines split into those ready for the field parser and those already rejected."""

    fields: pl.DataFrame  # the spec's columns as text (nulls applied), plus _line_number
    failures: pl.DataFrame  # FAILURE_SCHEMA
    block: Block
    starts: np.ndarray  # byte offset of each line of the block
    ends: np.ndarray  # byte offset where each line's content ends (before CR LF)
    control_bytes: bool  # whether a field may hold a control character (values.py looks)

    def raw_lines(self, line_numbers: pl.Series) -> pl.DataFrame:
        """The exact text of some lines, as read (invalid UTF-8 shown as backslash escapes)."""
        index = line_numbers.to_numpy() - self.block.first_line
        texts = [
            self.block.data[start:end].decode("utf-8", errors="backslashreplace")
            for start, end in zip(self.starts[index], self.ends[index], strict=True)
        ]
        return pl.DataFrame(
            {"_line_number": line_numbers, "_raw_line": texts}, schema=RAW_LINE_SCHEMA
        )


def sort_lines(block: Block, header: Header, spec: DatasetSpec) -> SortedLines:
    """Parse the lines of `block` whose shape fits the header; reject the others."""
    raw = np.frombuffer(block.data, dtype=np.uint8)
    ends = np.flatnonzero(raw == NEWLINE)
    starts = np.concatenate(([0], ends[:-1] + 1))
    # A line's content ends before its newline and before a CR of a CRLF ending.
    content_ends = ends - (raw[np.maximum(ends - 1, 0)] == CARRIAGE_RETURN) * (ends > starts)
    lengths = content_ends - starts
    line_numbers = block.first_line + np.arange(len(ends), dtype=np.int64)
    delimiters = np.add.reduceat(
        (raw == ord(spec.delimiter)).view(np.uint8), starts, dtype=np.int32
    ) * (lengths > 0)  # reduceat counts one byte of an empty line; an empty line has none.

    blank = lengths == 0
    fits = (delimiters == header.field_count - 1) & ~blank
    special = ~fits & ~blank  # wrong field count, or (with a quote character) quoted fields
    if spec.quote is not None:
        quoted = (
            np.add.reduceat((raw == ord(spec.quote)).view(np.uint8), starts, dtype=np.int32)
            * (lengths > 0)
            > 0
        )
        fits &= ~quoted
        special |= quoted & ~blank

    try:
        fields = _parse_fields(_keep_lines(block.data, starts, ends, fits), spec, header)
    except pl.exceptions.ComputeError as error:
        if "utf-8" not in str(error):
            raise
        # Rare: find the lines that are not UTF-8, reject them, parse the rest.
        fits, special = _reject_non_utf8(block.data, starts, content_ends, fits, special)
        fields = _parse_fields(_keep_lines(block.data, starts, ends, fits), spec, header)
    fields = fields.with_columns(pl.Series("_line_number", line_numbers[fits]))
    special_fields, failures = _sort_special_lines(
        block.data, starts[special], content_ends[special], line_numbers[special], header, spec
    )
    if special.any():
        fields = pl.concat([fields, special_fields], how="vertical")
    return SortedLines(
        fields=fields.with_columns(pl.lit(None, pl.String).alias(name) for name in header.absent),
        failures=failures,
        block=block,
        starts=starts,
        ends=content_ends,
        control_bytes=_has_control_bytes(raw, ends, content_ends, delimiters, spec),
    )


def _has_control_bytes(
    raw: np.ndarray,
    ends: np.ndarray,
    content_ends: np.ndarray,
    delimiters: np.ndarray,
    spec: DatasetSpec,
) -> bool:
    """Whether the block has a byte below 0x20 besides newlines, the CRs of CRLF endings, tabs
    and the delimiter: one comparison over the bytes, held against counts the line structure
    already gives, so a clean block (nearly every one) pays a few ms. A lone CR inside a field
    also answers True; the per-column search then finds nothing and the line loads.
    """
    expected = len(ends) + int((ends - content_ends).sum())
    if ord(spec.delimiter) < FIRST_PRINTABLE:
        expected += int(delimiters.sum())
    if spec.delimiter != "\t":
        expected += np.count_nonzero(raw == TAB)
    return np.count_nonzero(raw < FIRST_PRINTABLE) > expected


def _keep_lines(data: bytes, starts: np.ndarray, ends: np.ndarray, keep: np.ndarray) -> bytes:
    """The lines marked `keep`, copied once: the dropped lines are few, so copy the runs between."""
    if keep.all():
        return data
    view = memoryview(data)
    pieces = []
    position = 0
    for index in np.flatnonzero(~keep):
        pieces.append(view[position : starts[index]])
        position = ends[index] + 1
    pieces.append(view[position:])
    return b"".join(pieces)


def _reject_non_utf8(
    data: bytes, starts: np.ndarray, ends: np.ndarray, fits: np.ndarray, special: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Move lines that are not UTF-8 from `fits` to `special`, where they are rejected."""
    fits = fits.copy()
    special = special.copy()
    for index in np.flatnonzero(fits):
        try:
            data[starts[index] : ends[index]].decode("utf-8")
        except UnicodeDecodeError:
            fits[index] = False
            special[index] = True
    return fits, special


def _parse_fields(data: bytes, spec: DatasetSpec, header: Header) -> pl.DataFrame:
    """Split lines known to have the header's field count into the spec's columns, as text.

    Only the spec's columns are parsed, and null values are applied by the parser. Raises
    ComputeError if the data is not UTF-8.
    """
    names = list(header.positions)
    if not data:
        return pl.DataFrame(schema=dict.fromkeys(names, pl.String))
    # polars drops a UTF-8 BOM that starts what it parses: a field beginning with one lost it
    # on line 2 or a block's first line, and kept it anywhere else. A line of empty fields put
    # first, and dropped after, keeps it where it is.
    guarded = data.startswith(UTF8_BOM)
    if guarded:
        data = spec.delimiter.encode() * (header.field_count - 1) + b"\n" + data
    frame = pl.read_csv(data, **field_parser_options(spec, header))
    # Columns come back in the order asked for, named by position.
    frame = frame.rename(dict(zip(frame.columns, names, strict=True)))
    return frame.slice(1) if guarded else frame


def field_parser_options(spec: DatasetSpec, header: Header) -> dict[str, Any]:
    """How polars' CSV reader splits a block's lines into the spec's columns as text: the
    ingest's parse, and `make bench`'s `parse` bound of it."""
    return {
        "has_header": False,
        "separator": spec.delimiter,
        "quote_char": None,
        "infer_schema": False,
        "columns": list(header.positions.values()),
        "null_values": spec.null_values,
        "empty_string_is_null": "" in spec.null_values,
    }


def _sort_special_lines(
    data: bytes,
    starts: np.ndarray,
    ends: np.ndarray,
    line_numbers: np.ndarray,
    header: Header,
    spec: DatasetSpec,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The few lines the fast path cannot take: quoted ones are split by `csv`, others rejected."""
    rows: list[list[str]] = []
    row_numbers: list[int] = []
    failures: list[tuple[int, str | None, str, str]] = []
    for start, end, number in zip(starts, ends, line_numbers, strict=True):
        number = int(number)
        try:
            text = data[start:end].decode("utf-8")
        except UnicodeDecodeError as exc:
            failures.append((number, None, "line is not valid UTF-8", str(exc)))
            continue
        try:
            values = split_line(text, spec)
        except csv.Error as exc:
            # The line is in the reject's _raw_line; a copy here would escape pii protection.
            failures.append((number, None, f"quoting error: {exc}", None))
            continue
        if len(values) != header.field_count:
            failures.append(
                (
                    number,
                    None,
                    f"line has {len(values)} field{'s' if len(values) != 1 else ''}, the header "
                    f"has {header.field_count}",
                    f"{len(values)} fields",
                )
            )
            continue
        rows.append(
            [
                None if values[position] in spec.null_values else values[position]
                for position in header.positions.values()
            ]
        )
        row_numbers.append(number)
    names = list(header.positions)
    fields = pl.DataFrame(rows, schema=dict.fromkeys(names, pl.String), orient="row").with_columns(
        pl.Series("_line_number", row_numbers, dtype=pl.Int64)
    )
    return fields, pl.DataFrame(failures, schema=FAILURE_SCHEMA, orient="row")
