"""DuckDB, the embedded default: one file, one writer at a time."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from pipeline.ingest.stream import StagedLoad
from pipeline.warehouse.base import (
    CANDIDATE_SCHEMA,
    META_SCHEMA,
    RAW_SCHEMA,
    REPORT_SCHEMA,
    Candidate,
    Warehouse,
    count_rows,
    staged_columns,
    staged_parts,
    transaction,
)
from pipeline.warehouse.sql import Dialect, Run

DIALECT = Dialect(
    types={
        "string": "VARCHAR",
        "int": "BIGINT",
        "float": "DOUBLE",
        "bool": "BOOLEAN",
        "date": "DATE",
        "timestamp": "TIMESTAMPTZ",
    },
    decimal="DECIMAL({precision}, {scale})",
    upper_case=False,
    retype_advice="Change the column: ALTER TABLE raw.<table> ALTER COLUMN <column> SET DATA "
    "TYPE <the spec's type>",
)

# What DuckDB raises for a statement it cannot plan or evaluate; I/O, connection, permission,
# memory and internal errors are not among them.
STATEMENT_ERRORS = (
    duckdb.ParserException,
    duckdb.BinderException,
    duckdb.CatalogException,
    duckdb.ConversionException,
    duckdb.InvalidInputException,
    duckdb.OutOfRangeException,
    duckdb.TypeMismatchException,
    duckdb.NotImplementedException,
)


# What DuckDB says when another process holds the file.
LOCK_CONFLICT = "Could not set lock on file"


def missing_file(path: Path) -> bool:
    """Whether no DuckDB file is at `path`, for the commands that only read it (opening creates
    it). A path this user cannot search is not called missing: opening it says why."""
    try:
        return not path.is_file()
    except OSError:
        return False


class DuckDBWarehouse(Warehouse):
    """A DuckDB database file (PIPELINE_DUCKDB_PATH).

    DuckDB lets one process write a file at a time, so connections are opened per operation and
    closed at once, and the jobs run one step at a time (see jobs.py).
    """

    path: str
    # Caps DuckDB's buffers while it checks and inserts a month (PIPELINE_DUCKDB_MEMORY_LIMIT),
    # where DuckDB's default (80% of RAM) would take gigabytes. Measured on a 20 GB month through
    # `pipeline load`: 256MB keeps the insert's phase at 0.72-0.81 GiB for the whole process and
    # was no slower than 512MB, which reached 1.02 GiB (README, Benchmark).
    memory_limit: str = "256MB"
    # How long to wait for another process's hold on the file to end (see _open).
    lock_wait_seconds: float = 30

    @property
    def parallel_months(self) -> bool:
        """No: a second process writing the file would fail on its lock (dagster issue 16248)."""
        return False

    @property
    def dialect(self) -> Dialect:
        return DIALECT

    def catalog_key(self) -> tuple[object, ...]:
        # The inode too: a warehouse file deleted and created again is set up anew.
        return ("duckdb", self.path, Path(self.path).stat().st_ino)

    def location(self) -> str:
        return f"duckdb:{Path(self.path).resolve()}"

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # DuckDB names the database after the file: `raw.duckdb` would make `raw.x` ambiguous.
        if Path(self.path).stem in (RAW_SCHEMA, META_SCHEMA, REPORT_SCHEMA):
            raise ValueError(
                f"PIPELINE_DUCKDB_PATH={self.path}: the file name clashes with a schema of the "
                "same name; choose another, e.g. warehouse.duckdb"
            )
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        connection = self._open()
        try:
            yield connection
        finally:
            connection.close()

    def _open(self) -> duckdb.DuckDBPyConnection:
        """Connect, waiting up to `lock_wait_seconds` while another process holds the file: a
        `pipeline status` or `report` during a run holds it for a moment, and neither it nor the
        run should fail for that."""
        deadline = time.monotonic() + self.lock_wait_seconds
        delay = 0.1
        while True:
            try:
                # Row order in the tables means nothing (rows carry _line_number); not preserving
                # it lets DuckDB insert in parallel with less memory.
                return duckdb.connect(
                    self.path,
                    config={"memory_limit": self.memory_limit, "preserve_insertion_order": False},
                )
            except duckdb.IOException as exc:
                if LOCK_CONFLICT not in str(exc) or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    @contextmanager
    def session(self) -> Iterator[Run]:
        with self.connect() as connection:

            def run(sql: str, parameters: Sequence[Any]) -> list[dict[str, Any]]:
                cursor = connection.execute(sql, list(parameters))
                if cursor.description is None:
                    return []
                names = [column[0].lower() for column in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

            yield run

    def is_statement_error(self, error: Exception) -> bool:
        return isinstance(error, STATEMENT_ERRORS)

    def fill_candidate(
        self, run: Run, staged: StagedLoad, load_id: str, table: str, target: str
    ) -> int:
        """A view over the staged parts, read where they are: copying a month into a candidate
        table first and then into the raw table took half the load's time (`make bench`).

        Each column is cast to its raw table's type, so the checks see what would be published.
        """
        parts = staged_parts(staged)[table]
        if not parts:
            self.create_candidate_table(run, staged.spec, table, target)
            return 0
        columns = ", ".join(
            f"CAST({DIALECT.quote(name)} AS {DIALECT.column_type(column)}) AS {DIALECT.quote(name)}"
            for name, column in staged_columns(staged.spec, table).items()
        )
        # A view's text cannot take parameters: the part paths are written as literals.
        files = ", ".join(_string(str(Path(part).resolve())) for part in parts)
        run(f"CREATE OR REPLACE VIEW {target} AS SELECT {columns} FROM read_parquet([{files}])", [])
        return count_rows(run, target)

    def keep_candidate(self, candidate: Candidate) -> None:
        """Copy each candidate view into a table of the same name, in one transaction."""

        def keep(run: Run) -> None:
            views = {
                row["table_name"]
                for row in run(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = ? AND table_type = 'VIEW'",
                    [CANDIDATE_SCHEMA],
                )
            }
            with transaction(run):
                for name in candidate.tables.values():
                    if name not in views:
                        continue
                    view = DIALECT.table(CANDIDATE_SCHEMA, name)
                    copy = DIALECT.table(CANDIDATE_SCHEMA, f"{name}__kept")
                    run(f"CREATE TABLE {copy} AS SELECT * FROM {view}", [])
                    run(f"DROP VIEW {view}", [])
                    run(f"ALTER TABLE {copy} RENAME TO {DIALECT.quote(name)}", [])

        self.attempt(f"keep the candidate of {candidate.dataset} {candidate.month}", keep)


def _string(text: str) -> str:
    """A DuckDB string literal: quotes doubled; a backslash is no escape in DuckDB."""
    return "'" + text.replace("'", "''") + "'"
