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

from pipeline.ingest.header import LoadError
from pipeline.ingest.stream import ReconciliationError, StagedLoad, new_load_id
from pipeline.specs import ColumnSpec, DatasetSpec
from pipeline.warehouse.audit import (
    AUDIT_COLUMNS,
    AUDIT_LOCK_COLUMNS,
    AUDIT_LOCK_TABLE,
    AUDIT_TABLE,
    AuditEvent,
    AuditHead,
    append_audit,
    appending_to,
    ensure_lock_row,
    lock_log,
    read_head,
)
from pipeline.warehouse.ledger import (
    ALERT_COLUMNS,
    ALERTS_TABLE,
    CHECK_RESULT_COLUMNS,
    CHECK_RESULTS_TABLE,
    LEDGER_COLUMNS,
    LEDGER_TABLE,
    PHASE_COLUMNS,
    PHASES_TABLE,
    AlertRecord,
    CheckRecord,
    LedgerEntry,
    PhaseRecord,
)
from pipeline.warehouse.sql import (
    Dialect,
    Run,
    append,
    changed_types,
    delete_month,
    ensure_table,
    month_tables,
)

RAW_SCHEMA = "raw"
META_SCHEMA = "pipeline"
# A month's new rows and rejects wait here, checked, until they are published into RAW_SCHEMA.
CANDIDATE_SCHEMA = "candidates"
REPORT_SCHEMA = "analytics"  # the dbt target schema (dbt_project/profiles.yml)
_TEXT, _INT, _TIME = ColumnSpec(type="string"), ColumnSpec(type="int"), ColumnSpec(type="timestamp")
# What every load adds to a dataset's own columns.
LOAD_COLUMNS = {
    "_month": _TEXT,
    "_source_file": _TEXT,
    "_line_number": _INT,
    "_loaded_at": _TIME,
    "_load_id": _TEXT,
}
# Of those, the ones stamped when a month is published (the parts carry _line_number themselves).
STAMPED_COLUMNS = ("_month", "_source_file", "_loaded_at", "_load_id")
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
    "_load_id": _TEXT,
}
LEDGER_LAYOUT = {name: ColumnSpec(type=kind) for name, kind in LEDGER_COLUMNS.items()}
CHECK_RESULTS_LAYOUT = {name: ColumnSpec(type=kind) for name, kind in CHECK_RESULT_COLUMNS.items()}
ALERTS_LAYOUT = {name: ColumnSpec(type=kind) for name, kind in ALERT_COLUMNS.items()}
PHASES_LAYOUT = {name: ColumnSpec(type=kind) for name, kind in PHASE_COLUMNS.items()}
AUDIT_LAYOUT = {name: ColumnSpec(type=kind) for name, kind in AUDIT_COLUMNS.items()}
AUDIT_LOCK_LAYOUT = {name: ColumnSpec(type=kind) for name, kind in AUDIT_LOCK_COLUMNS.items()}
T = TypeVar("T")
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


def staged_columns(spec: DatasetSpec, table: str) -> dict[str, ColumnSpec]:
    """The columns of a raw table that the staged parts carry: all but the stamped ones."""
    return {
        name: column
        for name, column in dataset_tables(spec)[table].items()
        if name not in STAMPED_COLUMNS
    }


def candidate_prefix(dataset: str, month: str) -> str:
    """What every candidate table of a dataset month is named with."""
    return f"{dataset}__{month.replace('-', '')}__"


class ColumnTypeChanged(LoadError):
    """The spec changed the type of a column its raw table already holds."""


@dataclass(frozen=True)
class Candidate:
    """A month's new rows and rejects in tables (or views over the staged parts) of their own
    (CANDIDATE_SCHEMA), checked before they are published. `counts` are the rows the warehouse
    says they hold, per raw table."""

    dataset: str
    month: str
    load_id: str
    tables: dict[str, str]  # raw table -> candidate table
    counts: dict[str, int]

    @property
    def rows(self) -> int:
        return self.counts[self.dataset]

    @property
    def rejects(self) -> int:
        return self.counts[rejects_table(self.dataset)]

    def names(self) -> str:
        """The candidate tables as a user queries them."""
        return ", ".join(f"{CANDIDATE_SCHEMA}.{table}" for table in self.tables.values())


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

    @property
    def parallel_months(self) -> bool:
        """Whether several processes may load months into it at once (`pipeline load
        --parallel`, the pool limit of UI backfills)."""
        return True

    @abstractmethod
    def session(self) -> AbstractContextManager[Run]:
        """A connection for one operation, as a function that runs a statement."""

    @abstractmethod
    def catalog_key(self) -> tuple[object, ...]:
        """Identifies the database, so bookkeeping tables are created once per process."""

    @abstractmethod
    def location(self) -> str:
        """Names the database for people and for the audit anchors: stable across processes."""

    @abstractmethod
    def fill_candidate(
        self, run: Run, staged: StagedLoad, load_id: str, table: str, target: str
    ) -> int:
        """Make `target` (quoted, in CANDIDATE_SCHEMA) the candidate of raw `table`: the staged
        parts bulk-loaded into a table (`create_candidate_table`), or a view over them where the
        database reads them where they are; return the rows the database says it holds."""

    def keep_candidate(self, candidate: Candidate) -> None:
        """Make a refused candidate outlive its staged parts, which are removed next. Here
        candidates are tables already; a warehouse whose candidates read the parts copies them."""

    def create_candidate_table(self, run: Run, spec: DatasetSpec, table: str, target: str) -> None:
        """An empty candidate table `target` with the columns the staged parts of `table` carry."""
        ddl = ", ".join(
            f"{self.dialect.quote(name)} {self.dialect.column_type(column)}"
            for name, column in staged_columns(spec, table).items()
        )
        run(f"CREATE OR REPLACE {self.dialect.scratch_table} {target} ({ddl})", [])

    @abstractmethod
    def is_statement_error(self, error: Exception) -> bool:
        """The database refused the statement itself (syntax, names, types): the fault of SQL a
        user wrote, as opposed to the connection, the service or a privilege."""

    def attempt(self, what: str, operation: Callable[[Run], T]) -> T:
        """Run an operation in a session; implementations add retries where they make sense."""
        with self.session() as run:
            return operation(run)

    def stage_candidate(self, staged: StagedLoad, load_id: str) -> Candidate:
        """Load the staged parts into the month's candidate tables, which the checks then read.

        Raises ReconciliationError when the database took other counts than were staged.
        """
        spec = staged.spec
        tables = {
            table: f"{candidate_prefix(spec.name, staged.month)}{load_id[:12]}"
            + ("_rejects" if table != spec.name else "")
            for table in dataset_tables(spec)
        }

        def stage(run: Run) -> dict[str, int]:
            self._ensure_meta(run)
            run(f"CREATE SCHEMA IF NOT EXISTS {self.dialect.quote(CANDIDATE_SCHEMA)}", [])
            counts = {}
            for table, columns in dataset_tables(spec).items():
                ensure_table(run, self.dialect, RAW_SCHEMA, table, columns)
                self.mask_columns(run, spec, table)
                target = self.dialect.table(CANDIDATE_SCHEMA, tables[table])
                counts[table] = self.fill_candidate(run, staged, load_id, table, target)
            return counts

        counts = self.attempt(f"stage {staged.dataset} {staged.month}", stage)
        candidate = Candidate(staged.dataset, staged.month, load_id, tables, counts)
        expected = {
            staged.dataset: staged.rows_loaded,
            rejects_table(staged.dataset): staged.rows_rejected,
        }
        if counts != expected:
            self.drop_candidates(staged.dataset, staged.month)
            raise ReconciliationError(
                f"{staged.source_file}: staged {_counted(expected)}, but the warehouse loaded "
                f"{_counted(counts)} into {candidate.names()}; nothing was published"
            )
        return candidate

    def publish(self, staged: StagedLoad, candidate: Candidate, entry: LedgerEntry) -> None:
        """In one transaction: replace the month's rows and rejects with the candidate's, stamped
        with the load, and append `entry` to the ledger; then drop the month's candidates.

        Idempotent per load: publishing a load the ledger already records as published (a commit
        whose answer was lost) changes nothing. Raises ReconciliationError, with nothing changed,
        when the transaction would commit other counts than the candidate holds, or other than
        one ledger row for the load.
        """

        def swap(run: Run) -> None:
            self._ensure_meta(run)
            if self._ledger_rows(run, entry.load_id):
                return
            with self.audited_transaction(run):
                for table, target in candidate.tables.items():
                    delete_month(run, self.dialect, RAW_SCHEMA, table, "_month", staged.month)
                    self._insert_candidate(run, staged, table, target, entry)
                    # Counted rather than taken from the INSERT's answer: an INSERT that the
                    # connector sent again after losing its answer answers for itself alone.
                    published = self._month_rows(run, table, staged.month)
                    if published != candidate.counts[table]:
                        raise ReconciliationError(
                            f"{staged.source_file}: {CANDIDATE_SCHEMA}.{target} holds "
                            f"{candidate.counts[table]:,} rows but {published:,} were published "
                            f"into {RAW_SCHEMA}.{table}; rolled back"
                        )
                self._append_ledger(run, entry)
                recorded = self._ledger_rows(run, entry.load_id)
                if recorded != 1:
                    raise ReconciliationError(
                        f"{staged.source_file}: {recorded} ledger rows were written for load "
                        f"{entry.load_id} instead of one; rolled back"
                    )

        self.attempt(f"publish {staged.dataset} {staged.month}", swap)
        self.drop_candidates(staged.dataset, staged.month)

    def replace_month(self, staged: StagedLoad, run_id: str) -> Candidate:
        """Stage and publish a month without checks (tests, the benchmark), recording the attempt
        as failed if it does not go through."""
        load_id = new_load_id()
        with statement_context(staged.dataset, staged.month, run_id):
            try:
                candidate = self.stage_candidate(staged, load_id)
                loaded = LedgerEntry.for_staged(staged, load_id, run_id, "loaded", candidate.counts)
                self.publish(staged, candidate, loaded)
            except Exception as exc:
                failed = LedgerEntry.for_staged(staged, load_id, run_id, "failed", error=str(exc))
                self.record_load(failed)
                raise
        return candidate

    def require_column_types(self, spec: DatasetSpec, month: str, load_id: str) -> None:
        """Raise ColumnTypeChanged when a raw table of the dataset holds a column in another type
        than the spec now gives it: its new values would be converted on the way in. Checked
        before the file is read, so a 100 GB month is not read to be refused."""

        def compare(run: Run) -> list[tuple[str, str, str, str]]:
            # Named like the month's candidates, so a crash's leftover is swept with them.
            name = f"{candidate_prefix(spec.name, month)}{load_id[:12]}_types"
            scratch = (CANDIDATE_SCHEMA, name)
            return changed_types(run, self.dialect, RAW_SCHEMA, dataset_tables(spec), scratch)

        changed = self.attempt(f"compare the column types of {spec.name}", compare)
        if changed:
            raise ColumnTypeChanged(
                "; ".join(
                    f"{RAW_SCHEMA}.{table}.{column} is {stored} in the warehouse, but the spec "
                    f"says {wanted}"
                    for table, column, stored, wanted in changed
                )
                + ": loading would convert the new values to the table's type (rounding or "
                f"cutting them), so nothing was read. {self.dialect.retype_advice} (the "
                "published months keep their values), or put the spec back."
            )

    def drop_candidates(self, dataset: str, month: str, keep: Candidate | None = None) -> list[str]:
        """Drop the dataset month's candidate tables (all but `keep`'s); returns their names."""
        kept = {self.dialect.name(table) for table in keep.tables.values()} if keep else set()

        def drop(run: Run) -> list[str]:
            found = {
                name: kind
                for name, kind in self._candidates(run, dataset, month).items()
                if name not in kept
            }
            for name, kind in found.items():
                run(f"DROP {kind} IF EXISTS {self.dialect.table(CANDIDATE_SCHEMA, name)}", [])
            return list(found)

        return self.attempt(f"drop candidates of {dataset} {month}", drop)

    def candidate_rows(self, dataset: str, month: str) -> dict[str, int]:
        """The rows each of the month's kept (refused) candidate tables holds. A candidate view
        left by a killed load is not counted: its rows are staged parts, not in the database."""

        def count(run: Run) -> dict[str, int]:
            return {
                name: count_rows(run, self.dialect.table(CANDIDATE_SCHEMA, name))
                for name, kind in self._candidates(run, dataset, month).items()
                if kind == "TABLE"
            }

        return self.attempt(f"count the candidates of {dataset} {month}", count)

    def _candidates(self, run: Run, dataset: str, month: str) -> dict[str, str]:
        """The month's candidates, each `TABLE` or `VIEW`."""
        prefix = self.dialect.name(candidate_prefix(dataset, month))
        return {
            row["table_name"]: "VIEW" if row["table_type"] == "VIEW" else "TABLE"
            for row in run(
                "SELECT table_name, table_type FROM information_schema.tables "
                "WHERE table_schema = ?",
                [self.dialect.name(CANDIDATE_SCHEMA)],
            )
            if row["table_name"].startswith(prefix)
        }

    def _insert_candidate(
        self, run: Run, staged: StagedLoad, table: str, target: str, entry: LedgerEntry
    ) -> None:
        """Insert a candidate table into its raw table, stamped with the load."""
        columns = list(staged_columns(staged.spec, table))
        names = ", ".join(self.dialect.quote(c) for c in [*columns, *STAMPED_COLUMNS])
        selected = ", ".join(self.dialect.quote(c) for c in columns)
        run(
            f"INSERT INTO {self.dialect.table(RAW_SCHEMA, table)} ({names}) "
            f"SELECT {selected}, ?, ?, ?, ? FROM {self.dialect.table(CANDIDATE_SCHEMA, target)}",
            [staged.month, staged.source_file, entry.finished_at, entry.load_id],
        )

    def _month_rows(self, run: Run, table: str, month: str) -> int:
        """The rows of a month in a raw table, as this session sees them."""
        return count_rows(
            run, self.dialect.table(RAW_SCHEMA, table), f"{self.dialect.quote('_month')} = ?", month
        )

    def _ledger_rows(self, run: Run, load_id: str) -> int:
        """How many times the ledger records `load_id` as published, as this session sees it."""
        return count_rows(
            run,
            self.dialect.table(META_SCHEMA, LEDGER_TABLE),
            "load_id = ? AND status = 'loaded'",
            load_id,
        )

    def purge_month(
        self, spec: DatasetSpec, month: str, report_tables: Sequence[str], entry: LedgerEntry
    ) -> dict[str, int]:
        """In one transaction: delete the month from the dataset's raw and rejects tables and from
        those `report_tables` (in REPORT_SCHEMA) that have a `month` column; append `entry`. Then
        drop the month's candidates.

        Returns the rows deleted per table, each dropped candidate's included.
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
            with self.audited_transaction(run):
                deleted = {
                    f"{schema}.{table}": delete_month(
                        run, self.dialect, schema, table, column, month
                    )
                    for schema, table, column in targets
                }
                self._append_ledger(run, entry)
            return deleted

        with statement_context(spec.name, month, entry.run_id):
            deleted = self.attempt(f"purge {spec.name} {month}", purge)
            held = self.candidate_rows(spec.name, month)
            for table in self.drop_candidates(spec.name, month):
                deleted[f"{CANDIDATE_SCHEMA}.{table}"] = held.get(table, 0)
            return deleted

    def record_check(self, record: CheckRecord) -> None:
        """Append one check verdict to pipeline.check_results."""
        self._record(CHECK_RESULTS_TABLE, record.row())

    def record_alert(self, record: AlertRecord) -> None:
        """Append one announced finding to pipeline.alerts and, when it got through, its
        `alert_sent` audit entry, in one audited transaction (the entry must not read the
        same head as another writer's)."""

        def write(run: Run) -> None:
            self._ensure_meta(run)
            with self.audited_transaction(run):
                append(run, self.dialect, META_SCHEMA, ALERTS_TABLE, record.row())
                if record.status == "sent":
                    append_audit(run, self.dialect, META_SCHEMA, AuditEvent.for_alert(record))

        self.attempt(f"record {ALERTS_TABLE}", write)

    def record_load(self, entry: LedgerEntry) -> None:
        """Append one row to the load ledger, and its audit entry, in their own transaction."""

        def record(run: Run) -> None:
            self._ensure_meta(run)
            with self.audited_transaction(run):
                self._append_ledger(run, entry)

        self.attempt(f"record {LEDGER_TABLE}", record)

    @contextmanager
    def audited_transaction(self, run: Run) -> Iterator[None]:
        """A transaction that appends to the audit log, one at a time per warehouse: the head
        it reads stays the head until it commits (warehouse/audit.py says how). Keep it to the
        change and its entry: every other month's publish waits for it."""
        with appending_to(self.location()), transaction(run):
            lock_log(run, self.dialect, META_SCHEMA)
            yield

    def _append_ledger(self, run: Run, entry: LedgerEntry) -> None:
        """The ledger row and its audit entry: call inside the change's audited_transaction."""
        append(run, self.dialect, META_SCHEMA, LEDGER_TABLE, entry.row())
        append_audit(run, self.dialect, META_SCHEMA, AuditEvent.for_ledger(entry))

    def record_audit(self, event: AuditEvent) -> AuditHead:
        """Append an event that changes nothing else (a report written) to the audit log, in its
        own transaction; returns the new head."""

        def record(run: Run) -> AuditHead:
            self._ensure_meta(run)
            with self.audited_transaction(run):
                return append_audit(run, self.dialect, META_SCHEMA, event)

        return self.attempt(f"record {AUDIT_TABLE}", record)

    def audit_head(self) -> AuditHead | None:
        """The newest audit entry, or None while the log is empty."""

        def read(run: Run) -> AuditHead | None:
            self._ensure_meta(run)
            return read_head(run, self.dialect, META_SCHEMA)

        return self.attempt("read the audit head", read)

    def mask_columns(self, run: Run, spec: DatasetSpec, table: str) -> None:
        """Attach masking policies to the columns of raw `table` that hold `pii: mask` values.

        Only Snowflake has masking policies; elsewhere such a spec is refused, since keeping the
        clear value readable by everyone is exactly what the spec asked not to happen.
        """
        masked = spec.pii_columns("mask")
        if masked:
            warehouse = type(self).__name__.removesuffix("Warehouse")
            raise LoadError(
                f"{spec.name}: column(s) {', '.join(masked)} say pii: mask, which needs "
                f"Snowflake's masking policies; {warehouse} has none. Use pii: hash or "
                "pii: redact, or load this dataset into Snowflake; nothing was loaded"
            )

    def record_phases(self, records: Sequence[PhaseRecord]) -> None:
        """Append a load step's phase timings to pipeline.load_phases."""
        self._record(PHASES_TABLE, *(record.row() for record in records))

    def _record(self, table: str, *rows: dict[str, object]) -> None:
        def record(run: Run) -> None:
            self._ensure_meta(run)
            for row in rows:
                append(run, self.dialect, META_SCHEMA, table, row)

        self.attempt(f"record {table}", record)

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a read-only query (qmark parameters); rows as dicts with lower-case keys."""

        def read(run: Run) -> list[dict[str, Any]]:
            self._ensure_meta(run)
            return run(sql, list(parameters))

        return self.attempt("query", read)

    def withhold_earlier_summaries(self, dataset: str, month: str, marking: str) -> int:
        """Replace the summaries of the month's check verdicts on loads before its latest with a
        note, keeping the verdicts; returns how many. Written while the spec marked other
        sensitive columns, they can quote a newly marked column in clear (`most: <a key>`)."""
        latest = self.latest_attempt(dataset, month)
        if latest is None:
            return 0
        note = f"(withheld: written before the spec marked {marking})"
        condition = "dataset = ? and month = ? and load_id <> ? and summary <> ?"
        parameters = [dataset, month, latest["load_id"], note]
        table = f"{META_SCHEMA}.{CHECK_RESULTS_TABLE}"

        def withhold(run: Run) -> int:
            self._ensure_meta(run)
            count = count_rows(run, table, condition, *parameters)
            run(f"update {table} set summary = ? where {condition}", [note, *parameters])
            return count

        return self.attempt(f"withhold earlier check summaries of {dataset} {month}", withhold)

    def served_load(self, dataset: str, month: str) -> dict[str, Any] | None:
        """The ledger row of the load the raw tables serve for the month: its last published
        load, unless a purge came after it; else None."""
        rows = self.query(
            f"select * from {META_SCHEMA}.load_ledger as l "
            "where dataset = ? and month = ? and status = 'loaded' and not exists ("
            f"select 1 from {META_SCHEMA}.load_ledger as p where p.dataset = l.dataset "
            "and p.month = l.month and p.status = 'purged' and p.finished_at > l.finished_at) "
            "order by finished_at desc limit 1",
            [dataset, month],
        )
        return rows[0] if rows else None

    def latest_attempt(self, dataset: str, month: str) -> dict[str, Any] | None:
        """The ledger row of the month's last load attempt or purge, whatever its outcome."""
        rows = self.query(
            f"select * from {META_SCHEMA}.load_ledger where dataset = ? and month = ? "
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
        ensure_table(run, self.dialect, META_SCHEMA, ALERTS_TABLE, ALERTS_LAYOUT)
        ensure_table(run, self.dialect, META_SCHEMA, PHASES_TABLE, PHASES_LAYOUT)
        ensure_table(run, self.dialect, META_SCHEMA, AUDIT_TABLE, AUDIT_LAYOUT)
        ensure_table(run, self.dialect, META_SCHEMA, AUDIT_LOCK_TABLE, AUDIT_LOCK_LAYOUT)
        ensure_lock_row(run, self.dialect, META_SCHEMA)
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


def count_rows(run: Run, table: str, where: str = "", *parameters: object) -> int:
    """`count(*)` of a (quoted) table, or of its rows matching `where` with its `parameters`."""
    condition = f" WHERE {where}" if where else ""
    return int(run(f"SELECT count(*) AS n FROM {table}{condition}", list(parameters))[0]["n"])


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{rows:,} into {table}" for table, rows in counts.items())


def now() -> dt.datetime:
    """The time stamps written to the warehouse: timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)
