"""The first line of a file: which spec column sits in which field.

A file whose header lacks a spec column is refused here, before anything is written, so a wrong
file can never replace a good month.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.specs import DatasetSpec

UTF8_BOM = b"\xef\xbb\xbf"


class LoadError(Exception):
    """A file that cannot be loaded at all; the message names the file, the line and the rule."""


@dataclass(frozen=True)
class Header:
    """The file's column names in file order, and where each spec column is found."""

    names: tuple[str, ...]
    positions: dict[str, int]
    extra_columns: tuple[str, ...]

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
    """Read line 1 from `handle` (left positioned at line 2) and map it onto the spec."""
    raw = handle.readline()
    if not raw.strip():
        raise LoadError(f"{path} line 1: the file is empty; expected a header with the columns")
    try:
        text = raw.removeprefix(UTF8_BOM).decode("utf-8").rstrip("\r\n")
        names = header_names(text, spec)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise LoadError(f"{path} line 1: the header cannot be read: {exc}") from exc
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise LoadError(f"{path} line 1: the header repeats column(s) {', '.join(duplicates)}")
    missing = [name for name in spec.columns if name not in names]
    if missing:
        raise LoadError(
            f"{path} line 1: the header lacks column(s) {', '.join(missing)} required by the "
            f"spec of {spec.name!r} (found: {', '.join(names)}){_case_hint(missing, names)}; "
            "nothing was loaded"
        )
    return Header(
        names=names,
        positions={name: names.index(name) for name in spec.columns},
        extra_columns=tuple(name for name in names if name not in spec.columns),
    )


def _case_hint(missing: list[str], names: tuple[str, ...]) -> str:
    """Names the header has in another case (`Depot` for `depot`): names are case-sensitive."""
    by_lower = {name.lower(): name for name in names}
    other = [f"{by_lower[n.lower()]!r} for {n!r}" for n in missing if n.lower() in by_lower]
    return f"; it has {', '.join(other)}: names are case-sensitive" if other else ""
