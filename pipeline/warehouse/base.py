"""The one interface the loader and the checks talk to, whatever the warehouse.

Like dlt's destinations: the asset code never asks which warehouse it has. The flows (ensure the
tables, replace a month in one transaction, purge, record) are written once here; an
implementation supplies its connections, its dialect and how staged parts become a table to
insert from — a local `read_parquet` for DuckDB, an upload and a `COPY INTO` for Snowflake.
"""

from __future__ import annotations

import datetime as dt
import re
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import dagster as dg

from pipeline.ingest.stream import StagedLoad
from pipeline.specs import ColumnSpec, DatasetSpec
from pipeline.warehouse.ledger import (
    CHECK_RESULT_COLUMNS,
    CHECK_RESULTS_TABLE,
    LEDGER_COLUMNS,
    LEDGER_TABLE,
    CheckRecord,
    LedgerEntry,
)
from pipeline.warehouse.sql import Dialect, Run, append, delete_month, ensure_table, month_tables

RAW_SCHEMA = "raw"
META_SCHEMA = "pipeline"
REPORT_SCHEMA = "analytics"  # the dbt target schema (dbt_project/profiles.yml)
_TEXT, _INT, _TIME = ColumnSpec(type="string"), ColumnSpec(type="int"), ColumnSpec(type="timestamp")
# What every load adds to a dataset's own columns.
LOAD_COLUMNS = {"_month": _TEXT, "_source_file": _TEXT, "_line_number": _INT, "_loaded_at": _TIME}
# Of those, the ones the warehouse stamps at insert (the parts carry _line_number themselves).
STAMPED_COLUMNS = ("_month", "_source_file", "_loaded_at")
REJECT_COLUMNS = {
    "_month": _TEXT,
    "_source_file": _TEXT,
    "_line_number": _INT,
    "_raw_line": _TEXT,
    "_column": _TEXT,
    "_rule": _TEXT,
    "_value": _TEXT,
    "_reason": _TEXT,
    "_loaded_at": _TIME,
}
LEDGER_LAYOUT = {name: ColumnSpec(type=kind) for name, kind in LEDGER_COLUMNS.items()}
CHECK_RESULTS_LAYOUT = {name: ColumnSpec(type=kind) for name, kind in CHECK_RESULT_COLUMNS.items()}
T = TypeVar("T")
# Per table: the FROM clause that reads its staged parts, with its parameters; None if no parts.
Sources = dict[str, tuple[str, list[Any]] | None]
_META_READY: set[tuple[object, ...]] = set()


def rejects_table(dataset: str) -> str:
    """The quarantine table of a dataset."""
    return f"{dataset}_rejects"


def dataset_tables(spec: DatasetSpec) -> dict[str, dict[str, ColumnSpec]]:
    """The raw tables of a dataset and their columns, in spec types; dialects map the types."""
    return {spec.name: dict(spec.columns) | LOAD_COLUMNS, rejects_table(spec.name): REJECT_COLUMNS}


def staged_parts(staged: StagedLoad) -> dict[str, tuple[str, ...]]:
    """The parts of a staged load per raw table."""
    return {staged.dataset: staged.row_parts, rejects_table(staged.dataset): staged.reject_parts}


@dataclass(frozen=True)
class StatementContext:
    """Who is asking: put on every statement so a warehouse admin can trace cost to a load."""

    dataset: str
    month: str
    run_id: str

    def comment(self) -> str:
        return f"/* pipeline dataset={self.dataset} month={self.month} run_id={self.run_id} */ "

    def tag(self) -> str:
        return f"pipeline:{self.dataset}:{self.month}:{self.run_id}"


_CONTEXT: ContextVar[StatementContext | None] = ContextVar("pipeline_statement", default=None)


@contextmanager
def statement_context(dataset: str, month: str, run_id: str) -> Iterator[StatementContext]:
    """Tag the warehouse statements made inside the block with the dataset, month and run."""
    # Only name characters survive, so the values can sit in a comment or a quoted tag as is.
    context = StatementContext(
        *(re.sub(r"[^A-Za-z0-9_.:-]", "_", v) for v in (dataset, month, run_id))
    )
    token = _CONTEXT.set(context)
    try:
        yield context
    finally:
        _CONTEXT.reset(token)


def current_statement_context() -> StatementContext | None:
    return _CONTEXT.get()


class Warehouse(dg.ConfigurableResource):
    """A warehouse that can replace a dataset's month atomically and answer check queries."""

    @property
    @abstractmethod
    def dialect(self) -> Dialect:
        """How this database spells names and types."""

    @property
    def part_bytes(self) -> int:
        """The Parquet part size the bulk path wants; 0 for one part per block."""
        return 0

    @abstractmethod
    def session(self) -> AbstractContextManager[Run]:
        """A connection for one operation, as a function that runs a statement."""

    @abstractmethod
    def catalog_key(self) -> tuple[object, ...]:
        """Identifies the database, so bookkeeping tables are created once per process."""

    @abstractmethod
    def staged_sources(self, run: Run, staged: StagedLoad) -> AbstractContextManager[Sources]:
        """Make the staged parts readable inside the database for the month's insert."""

    def attempt(self, what: str, operation: Callable[[Run], T]) -> T:
        """Run an operation in a session; implementations add retries where they make sense."""
        with self.session() as run:
            return operation(run)

    def replace_month(self, staged: StagedLoad, run_id: str) -> None:
        """Swap the month's rows and rejects for the staged ones and record the load, atomically.

        On any error nothing of the month changes and the failed attempt is recorded instead.
        """
        with statement_context(staged.dataset, staged.month, run_id):
            loaded = LedgerEntry.for_staged(staged, run_id, "loaded", now())
            try:
                self.attempt(f"load {staged.dataset} {staged.month}", self._swap(staged, loaded))
            except Exception as exc:
                failed = LedgerEntry.for_staged(staged, run_id, "failed", now(), str(exc))
                self.record_load(failed)
                raise

    def _swap(self, staged: StagedLoad, entry: LedgerEntry) -> Callable[[Run], None]:
        def swap(run: Run) -> None:
            self._ensure_meta(run)
            for table, columns in dataset_tables(staged.spec).items():
                ensure_table(run, self.dialect, RAW_SCHEMA, table, columns)
            with self.staged_sources(run, staged) as sources, transaction(run):
                for table, source in sources.items():
                    delete_month(run, self.dialect, RAW_SCHEMA, table, "_month", staged.month)
                    if source is not None:
                        self._insert_staged(run, staged, table, source, entry.finished_at)
                append(run, self.dialect, META_SCHEMA, LEDGER_TABLE, entry.row())

        return swap

    def _insert_staged(
        self,
        run: Run,
        staged: StagedLoad,
        table: str,
        source: tuple[str, list[Any]],
        loaded_at: dt.datetime,
    ) -> None:
        columns = [c for c in dataset_tables(staged.spec)[table] if c not in STAMPED_COLUMNS]
        names = ", ".join(self.dialect.quote(c) for c in [*columns, *STAMPED_COLUMNS])
        selected = ", ".join(self.dialect.quote(c) for c in columns)
        from_clause, parameters = source
        run(
            f"INSERT INTO {self.dialect.table(RAW_SCHEMA, table)} ({names}) "
            f"SELECT {selected}, ?, ?, ? FROM {from_clause}",
            [staged.month, staged.source_file, loaded_at, *parameters],
        )

    def purge_month(
        self, spec: DatasetSpec, month: str, report_tables: Sequence[str], entry: LedgerEntry
    ) -> dict[str, int]:
        """In one transaction: delete the month from the dataset's raw and rejects tables and from
        those `report_tables` (in REPORT_SCHEMA) that have a `month` column; append `entry`.

        Returns the rows deleted per table.
        """

        def purge(run: Run) -> dict[str, int]:
            self._ensure_meta(run)
            targets = [
                (RAW_SCHEMA, table, "_month")
                for table in month_tables(
                    run, self.dialect, RAW_SCHEMA, list(dataset_tables(spec)), "_month"
                )
            ] + [
                (REPORT_SCHEMA, table, "month")
                for table in month_tables(run, self.dialect, REPORT_SCHEMA, report_tables, "month")
            ]
            with transaction(run):
                deleted = {
                    f"{schema}.{table}": delete_month(
                        run, self.dialect, schema, table, column, month
                    )
                    for schema, table, column in targets
                }
                append(run, self.dialect, META_SCHEMA, LEDGER_TABLE, entry.row())
            return deleted

        with statement_context(spec.name, month, entry.run_id):
            return self.attempt(f"purge {spec.name} {month}", purge)

    def record_check(self, record: CheckRecord) -> None:
        """Append one check verdict to pipeline.check_results."""
        self._record(CHECK_RESULTS_TABLE, record.row())

    def record_load(self, entry: LedgerEntry) -> None:
        """Append one row to the load ledger in its own transaction."""
        self._record(LEDGER_TABLE, entry.row())

    def _record(self, table: str, row: dict[str, object]) -> None:
        def record(run: Run) -> None:
            self._ensure_meta(run)
            append(run, self.dialect, META_SCHEMA, table, row)

        self.attempt(f"record {table}", record)

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a read-only query (qmark parameters); rows as dicts with lower-case keys."""

        def read(run: Run) -> list[dict[str, Any]]:
            self._ensure_meta(run)
            return run(sql, list(parameters))

        return self.attempt("query", read)

    def latest_load(self, dataset: str, month: str) -> dict[str, Any] | None:
        """The ledger row of the month's last successful load, or None."""
        rows = self.query(
            f"select * from {META_SCHEMA}.load_ledger "
            "where dataset = ? and month = ? and status = 'loaded' "
            "order by finished_at desc limit 1",
            [dataset, month],
        )
        return rows[0] if rows else None

    def _ensure_meta(self, run: Run) -> None:
        """Create the bookkeeping tables once per process and database, not per query."""
        key = self.catalog_key()
        if key in _META_READY:
            return
        ensure_table(run, self.dialect, META_SCHEMA, LEDGER_TABLE, LEDGER_LAYOUT)
        ensure_table(run, self.dialect, META_SCHEMA, CHECK_RESULTS_TABLE, CHECK_RESULTS_LAYOUT)
        _META_READY.add(key)


@contextmanager
def transaction(run: Run) -> Iterator[None]:
    """BEGIN ... COMMIT, with an explicit ROLLBACK on any error.

    Snowflake keeps a transaction open after a failed statement, and a later COMMIT would commit
    whatever ran before it (the month's DELETE): rolling back explicitly is what makes it atomic.
    """
    run("BEGIN", [])
    try:
        yield
    except BaseException:
        run("ROLLBACK", [])
        raise
    run("COMMIT", [])


def now() -> dt.datetime:
    """The time stamps written to the warehouse: timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)
