"""The first line of a file: which spec column sits in which field.

A file whose header lacks a spec column is refused here, before anything is written, so a wrong
file can never replace a good month; only a column the spec marks `optional` (added after some
files were sent) may be absent, and its rows are then null.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.specs import DatasetSpec

UTF8_BOM = b"\xef\xbb\xbf"
MAX_HEADER_BYTES = 1 << 20
FOUND_CHARS = 500  # of a header's fields quoted in a message


class LoadError(Exception):
    """A file that cannot be loaded at all; the message names the file, the line and the rule."""


@dataclass(frozen=True)
class Header:
    """The file's column names in file order, where each spec column is found, and the optional
    spec columns the file lacks (loaded as null)."""

    names: tuple[str, ...]
    positions: dict[str, int]
    extra_columns: tuple[str, ...]
    absent: tuple[str, ...] = ()

    @property
    def field_count(self) -> int:
        return len(self.names)


def split_line(line: str, spec: DatasetSpec) -> list[str]:
    """Split one line into fields, honouring the quote character only if the spec sets one."""
    if spec.quote is None:
        return line.split(spec.delimiter)
    return next(csv.reader([line], delimiter=spec.delimiter, quotechar=spec.quote, strict=True))


def header_names(text: str, spec: DatasetSpec) -> tuple[str, ...]:
    """The column names of a header line (without its line end), as the load reads them: split
    as the spec says, surrounding spaces dropped. Raises csv.Error for a broken quote."""
    return tuple(name.strip() for name in split_line(text, spec))


def read_header(handle: BinaryIO, spec: DatasetSpec, path: Path) -> Header:
    """Read line 1 from `handle` (left positioned at line 2) and map it onto the spec.

    Line 1 is read up to MAX_HEADER_BYTES: a file whose lines end in CR alone, or in nothing,
    was one line, read into memory whole (and its names compared pairwise, for hours).
    """
    raw = handle.readline(MAX_HEADER_BYTES + 1)
    if not raw.strip():
        said = "the file is empty" if not raw else "line 1 is blank: the header must come first"
        raise LoadError(f"{path} line 1: {said}; expected a header with the columns")
    line = raw.rstrip(b"\r\n")
    if b"\r" in line or len(raw) > MAX_HEADER_BYTES:
        ends = (
            "its lines end in CR alone (classic Mac OS)"
            if b"\r" in line
            else f"no line end in its first {MAX_HEADER_BYTES // 2**20} MiB"
        )
        raise LoadError(
            f"{path} line 1: {ends}; lines must end in LF or CRLF (convert it with "
            "`tr '\\r' '\\n'` or dos2unix -c mac); nothing was loaded"
        )
    try:
        text = line.removeprefix(UTF8_BOM).decode("utf-8")
        names = header_names(text, spec)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise LoadError(f"{path} line 1: the header cannot be read: {exc}") from exc
    # A spec column twice is ambiguous; other names may repeat (or be blank): they are ignored.
    counts = Counter(names)
    repeated = [name for name in spec.columns if counts[name] > 1]
    if repeated:
        raise LoadError(f"{path} line 1: the header repeats column(s) {', '.join(repeated)}")
    missing = [name for name, c in spec.columns.items() if name not in counts and not c.optional]
    if missing:
        raise LoadError(
            f"{path} line 1: the header lacks column(s) {', '.join(missing)} required by the "
            f"spec of {spec.name!r} (found: {_found(names, spec)}){_case_hint(missing, names)}; "
            "nothing was loaded"
        )
    return Header(
        names=names,
        positions={name: names.index(name) for name in spec.columns if name in counts},
        extra_columns=tuple(dict.fromkeys(name for name in names if name not in spec.columns)),
        absent=tuple(name for name in spec.columns if name not in counts),
    )


def _found(names: tuple[str, ...], spec: DatasetSpec) -> str:
    """The fields of a header that lacks columns, for its message. Such a line 1 is often data
    (a file sent without its header): where the spec marks sensitive columns, only its own
    names are shown, or a clear value would reach the ledger, the run's log and the report."""
    if not any(column.pii for column in spec.columns.values()):
        # Control characters escaped: a NUL or a CR in a name cut the message when printed.
        shown = ", ".join(_printable(name) for name in names)
        return shown if len(shown) <= FOUND_CHARS else f"{shown[:FOUND_CHARS]}…"
    known = [name for name in names if name in spec.columns]
    hidden = len(names) - len(known)
    others = f"{hidden} other field(s), not shown: the spec marks sensitive columns"
    return ", ".join(known + ([others] if hidden else []))


def _printable(name: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in name)


def _case_hint(missing: list[str], names: tuple[str, ...]) -> str:
    """Names the header has in another case (`Depot` for `depot`): names are case-sensitive."""
    by_lower = {name.lower(): name for name in names}
    other = [f"{by_lower[n.lower()]!r} for {n!r}" for n in missing if n.lower() in by_lower]
    return f"; it has {', '.join(other)}: names are case-sensitive" if other else ""
