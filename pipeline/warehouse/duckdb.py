"""DuckDB, the embedded default: one file, one writer at a time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from pipeline.ingest.stream import StagedLoad
from pipeline.specs import ColumnSpec, DatasetSpec
from pipeline.warehouse.base import (
    CHECK_RESULTS_LAYOUT,
    LEDGER_LAYOUT,
    META_SCHEMA,
    RAW_SCHEMA,
    REPORT_SCHEMA,
    Warehouse,
    dataset_tables,
    rejects_table,
)
from pipeline.warehouse.ledger import (
    CHECK_RESULT_COLUMNS,
    CHECK_RESULTS_TABLE,
    LEDGER_COLUMNS,
    LEDGER_TABLE,
    CheckRecord,
    LedgerEntry,
)

_META_READY: set[tuple[str, int]] = set()
GENERIC_TYPES = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
}


def quote(identifier: str) -> str:
    """A double-quoted identifier; spec names are already restricted to letters, digits and _."""
    return '"' + identifier.replace('"', '""') + '"'


def column_type(column: ColumnSpec) -> str:
    """The DuckDB type of a spec column."""
    if column.type == "decimal":
        return f"DECIMAL({column.precision}, {column.scale})"
    return GENERIC_TYPES[column.type]


class DuckDBWarehouse(Warehouse):
    """A DuckDB database file (PIPELINE_DUCKDB_PATH).

    DuckDB lets one process write a file at a time, so connections are opened per operation and
    closed at once, and the jobs run one step at a time (see definitions.py).
    """

    path: str
    # Caps DuckDB's buffers while it inserts a month: measured, 512MB keeps a 5 GB month's load
    # under 1 GB peak RSS for the whole process, where DuckDB's default (80% of RAM) does not.
    memory_limit: str = "512MB"

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # DuckDB names the database after the file: `raw.duckdb` would make `raw.x` ambiguous.
        if Path(self.path).stem in (RAW_SCHEMA, META_SCHEMA, REPORT_SCHEMA):
            raise ValueError(
                f"PIPELINE_DUCKDB_PATH={self.path}: the file name clashes with a schema of the "
                "same name; choose another, e.g. warehouse.duckdb"
            )
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Row order in the tables means nothing (rows carry _line_number); not preserving it lets
        # DuckDB insert in parallel with less memory.
        connection = duckdb.connect(
            self.path,
            config={"memory_limit": self.memory_limit, "preserve_insertion_order": False},
        )
        try:
            yield connection
        finally:
            connection.close()

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.connect() as connection:
            self._ensure_meta(connection)
            cursor = connection.execute(sql, list(parameters))
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def record_check(self, record: CheckRecord) -> None:
        with self.connect() as connection:
            self._ensure_meta(connection)
            self._append(
                connection, CHECK_RESULTS_TABLE, list(CHECK_RESULT_COLUMNS), record.values()
            )

    def record_load(self, entry: LedgerEntry) -> None:
        with self.connect() as connection:
            self._ensure_meta(connection)
            self._insert_ledger(connection, entry)

    def swap_month(self, spec: DatasetSpec, staged: StagedLoad, entry: LedgerEntry) -> None:
        with self.connect() as connection:
            self._ensure_meta(connection)
            self._ensure_tables(connection, spec)
            connection.execute("BEGIN TRANSACTION")
            try:
                for table, parts in (
                    (spec.name, staged.row_parts),
                    (rejects_table(spec.name), staged.reject_parts),
                ):
                    self._replace(connection, table, parts, staged, entry)
                self._insert_ledger(connection, entry)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    def purge_month(
        self, spec: DatasetSpec, month: str, report_tables: Sequence[str], entry: LedgerEntry
    ) -> dict[str, int]:
        with self.connect() as connection:
            self._ensure_meta(connection)
            targets = self._month_tables(
                connection, RAW_SCHEMA, list(dataset_tables(spec)), "_month"
            ) + self._month_tables(connection, REPORT_SCHEMA, report_tables, "month")
            connection.execute("BEGIN TRANSACTION")
            try:
                deleted = {}
                for schema, table, column in targets:
                    (count,) = connection.execute(
                        f"DELETE FROM {schema}.{quote(table)} WHERE {column} = ?", [month]
                    ).fetchone()
                    deleted[f"{schema}.{table}"] = count
                self._insert_ledger(connection, entry)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return deleted

    def _month_tables(
        self,
        connection: duckdb.DuckDBPyConnection,
        schema: str,
        tables: Sequence[str],
        column: str,
    ) -> list[tuple[str, str, str]]:
        """Those of `tables` that exist as tables (not views) and have the month `column`."""
        if not tables:
            return []
        rows = connection.execute(
            "SELECT c.table_name FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE c.table_schema = ? AND c.column_name = ? AND t.table_type = 'BASE TABLE' "
            "AND list_contains(?, c.table_name) ORDER BY c.table_name",
            [schema, column, list(tables)],
        ).fetchall()
        return [(schema, table, column) for (table,) in rows]

    def _replace(
        self,
        connection: duckdb.DuckDBPyConnection,
        table: str,
        parts: Sequence[str],
        staged: StagedLoad,
        entry: LedgerEntry,
    ) -> None:
        target = f"{RAW_SCHEMA}.{quote(table)}"
        connection.execute(f"DELETE FROM {target} WHERE _month = ?", [staged.month])
        if parts:
            connection.execute(
                f"INSERT INTO {target} BY NAME "
                "SELECT *, ? AS _month, ? AS _source_file, ? AS _loaded_at FROM read_parquet(?)",
                [staged.month, staged.source_file, entry.finished_at, list(parts)],
            )

    def _ensure_meta(self, connection: duckdb.DuckDBPyConnection) -> None:
        """Create the bookkeeping tables once per process and database file, not per query.

        Keyed by the file's inode, so a warehouse file deleted and created again is set up anew.
        """
        key = (self.path, Path(self.path).stat().st_ino)
        if key in _META_READY:
            return
        self._ensure_table(connection, META_SCHEMA, LEDGER_TABLE, LEDGER_LAYOUT)
        self._ensure_table(connection, META_SCHEMA, CHECK_RESULTS_TABLE, CHECK_RESULTS_LAYOUT)
        _META_READY.add(key)

    def _ensure_tables(self, connection: duckdb.DuckDBPyConnection, spec: DatasetSpec) -> None:
        for table, columns in dataset_tables(spec).items():
            self._ensure_table(connection, RAW_SCHEMA, table, columns)

    def _ensure_table(
        self,
        connection: duckdb.DuckDBPyConnection,
        schema: str,
        table: str,
        columns: dict[str, ColumnSpec],
    ) -> None:
        """Create the table if absent, and add the columns a newer spec declares."""
        target = f"{schema}.{quote(table)}"
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        ddl = ", ".join(f"{quote(name)} {column_type(column)}" for name, column in columns.items())
        connection.execute(f"CREATE TABLE IF NOT EXISTS {target} ({ddl})")
        existing = {
            name
            for (name,) in connection.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ?",
                [schema, table],
            ).fetchall()
        }
        for name, column in columns.items():
            if name not in existing:
                connection.execute(
                    f"ALTER TABLE {target} ADD COLUMN {quote(name)} {column_type(column)}"
                )

    def _insert_ledger(self, connection: duckdb.DuckDBPyConnection, entry: LedgerEntry) -> None:
        self._append(connection, LEDGER_TABLE, list(LEDGER_COLUMNS), entry.values())

    def _append(
        self,
        connection: duckdb.DuckDBPyConnection,
        table: str,
        columns: list[str],
        values: list[object],
    ) -> None:
        placeholders = ", ".join("?" for _ in columns)
        connection.execute(
            f"INSERT INTO {META_SCHEMA}.{table} ({', '.join(columns)}) VALUES ({placeholders})",
            values,
        )
