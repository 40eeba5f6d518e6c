"""SQL both warehouses share, written once against a small dialect.

The bookkeeping is the same everywhere: create a table if absent and add the columns a newer spec
declares, find the tables that hold a month, append a row. Only identifiers, types and the way
each database folds names differ; a `Dialect` carries exactly that.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.specs import ColumnSpec

# Runs one statement with qmark parameters and returns its rows as dicts with lower-case keys.
Run = Callable[[str, Sequence[Any]], list[dict[str, Any]]]
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Dialect:
    """How one database spells identifiers and the spec's column types."""

    types: dict[str, str]
    decimal: str  # format with {precision} and {scale}
    upper_case: bool  # Snowflake folds unquoted names to upper case, DuckDB keeps them
    scratch_table: str = "TABLE"  # the kind of table a candidate is (Snowflake: TRANSIENT)
    # How to give a raw column the type its spec now says (the load refuses until it has it).
    retype_advice: str = "Change the column's type in the warehouse"

    def name(self, identifier: str) -> str:
        """The name as the catalog stores it, after checking it is a plain identifier.

        Names come from specs and settings; anything else is refused rather than spliced.
        """
        if not IDENTIFIER.fullmatch(identifier):
            raise ValueError(f"{identifier!r} is not a valid name: use letters, digits and _ only")
        return identifier.upper() if self.upper_case else identifier

    def quote(self, identifier: str) -> str:
        """Validated and quoted as stored, so unquoted SQL (dbt, the checks) finds it too."""
        return f'"{self.name(identifier)}"'

    def table(self, schema: str, table: str) -> str:
        return f"{self.quote(schema)}.{self.quote(table)}"

    def column_type(self, column: ColumnSpec) -> str:
        if column.type == "decimal":
            return self.decimal.format(precision=column.precision, scale=column.scale)
        return self.types[column.type]


def ensure_table(
    run: Run, dialect: Dialect, schema: str, table: str, columns: dict[str, ColumnSpec]
) -> None:
    """Create the table if absent, and add the columns a newer spec declares."""
    target = dialect.table(schema, table)
    run(f"CREATE SCHEMA IF NOT EXISTS {dialect.quote(schema)}", [])
    ddl = ", ".join(
        f"{dialect.quote(name)} {dialect.column_type(column)}" for name, column in columns.items()
    )
    run(f"CREATE TABLE IF NOT EXISTS {target} ({ddl})", [])
    existing = {
        row["column_name"]
        for row in run(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ?",
            [dialect.name(schema), dialect.name(table)],
        )
    }
    for name, column in columns.items():
        if dialect.name(name) not in existing:
            run(
                f"ALTER TABLE {target} ADD COLUMN {dialect.quote(name)} "
                f"{dialect.column_type(column)}",
                [],
            )


def changed_types(
    run: Run,
    dialect: Dialect,
    schema: str,
    tables: dict[str, dict[str, ColumnSpec]],
    scratch: tuple[str, str],
) -> list[tuple[str, str, str, str]]:
    """(table, column, its type in the table, the spec's type) for each column of the existing
    `tables` whose type is not the spec's; none if none of them exists yet.

    `ensure_table` adds columns but never changes one, and an insert converts silently: a column
    the spec changed from int to decimal, or to more decimal places, would round every new value
    to the table's type. The spec's types are read back from a view of typed nulls (`scratch`,
    schema and name, dropped after), so both sides are spelled as the database spells them. Five
    statements whatever the tables: a month's load runs them first.
    """
    stored = _column_types(run, dialect, schema, list(tables))
    if not stored:
        return []
    view = dialect.table(*scratch)
    every = {name: column for columns in tables.values() for name, column in columns.items()}
    run(f"CREATE SCHEMA IF NOT EXISTS {dialect.quote(scratch[0])}", [])
    run(f"CREATE OR REPLACE VIEW {view} AS {typed_nulls(dialect, every)}", [])
    try:
        wanted = _column_types(run, dialect, scratch[0], [scratch[1]]).get(dialect.name(scratch[1]))
    finally:
        run(f"DROP VIEW IF EXISTS {view}", [])
    return [
        (table, name, _spelled(types[key]), _spelled(wanted[key]))
        for table, columns in tables.items()
        if (types := stored.get(dialect.name(table))) and wanted
        for name in columns
        if (key := dialect.name(name)) in types and key in wanted and types[key] != wanted[key]
    ]


def typed_nulls(dialect: Dialect, columns: dict[str, ColumnSpec]) -> str:
    """A SELECT of one row of nulls typed and named as `columns` are in the warehouse."""
    nulls = ", ".join(
        f"CAST(NULL AS {dialect.column_type(column)}) AS {dialect.quote(name)}"
        for name, column in columns.items()
    )
    return f"SELECT {nulls}"


def _column_types(
    run: Run, dialect: Dialect, schema: str, tables: list[str]
) -> dict[str, dict[str, tuple[str, int | None, int | None]]]:
    """Each existing table's columns and their types, as the catalog names them."""
    found: dict[str, dict[str, tuple[str, int | None, int | None]]] = {}
    for row in run(
        "SELECT table_name, column_name, data_type, numeric_precision, numeric_scale "
        "FROM information_schema.columns WHERE table_schema = ? "
        f"AND table_name IN ({', '.join('?' for _ in tables)})",
        [dialect.name(schema), *(dialect.name(table) for table in tables)],
    ):
        found.setdefault(row["table_name"], {})[row["column_name"]] = (
            row["data_type"],
            row["numeric_precision"],
            row["numeric_scale"],
        )
    return found


def _spelled(stored: tuple[str, int | None, int | None]) -> str:
    """A type as a user writes it: Snowflake's catalog says NUMBER and keeps the digits apart."""
    kind, precision, scale = stored
    return f"{kind}({precision},{scale})" if kind == "NUMBER" else kind


def month_tables(
    run: Run, dialect: Dialect, schema: str, tables: Sequence[str], column: str
) -> list[str]:
    """Those of `tables` that exist as tables (not views) in `schema` and have `column`."""
    if not tables:
        return []
    wanted = {dialect.name(table): table for table in tables}
    rows = run(
        "SELECT c.table_name FROM information_schema.columns c "
        "JOIN information_schema.tables t "
        "ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
        "WHERE c.table_schema = ? AND c.column_name = ? AND t.table_type = 'BASE TABLE'",
        [dialect.name(schema), dialect.name(column)],
    )
    return sorted(wanted[row["table_name"]] for row in rows if row["table_name"] in wanted)


def delete_month(
    run: Run, dialect: Dialect, schema: str, table: str, column: str, month: str
) -> int:
    """Delete a month from a table; returns the rows deleted."""
    return affected(
        run(
            f"DELETE FROM {dialect.table(schema, table)} WHERE {dialect.quote(column)} = ?", [month]
        )
    )


def affected(rows: list[dict[str, Any]]) -> int:
    """The row count a DELETE or INSERT answers with (its only value, whatever its name)."""
    return int(next(iter(rows[0].values()))) if rows else 0


def append(run: Run, dialect: Dialect, schema: str, table: str, values: dict[str, object]) -> None:
    """Insert one row given as column -> value."""
    columns = ", ".join(dialect.quote(name) for name in values)
    placeholders = ", ".join("?" for _ in values)
    run(
        f"INSERT INTO {dialect.table(schema, table)} ({columns}) VALUES ({placeholders})",
        list(values.values()),
    )
