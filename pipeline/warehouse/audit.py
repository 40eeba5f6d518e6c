"""The audit log: `pipeline.audit_log`, an append-only hash chain of what happened to the data.

Each entry records one event (a load published, refused or failed, a purge, a spec first seen or
changed, an alert sent, a report written) with who, when, which run and which file, and carries
`prev_hash` and `entry_hash`: SHA-256 over the entry's canonical encoding, previous hash included.
Editing, removing or reordering an entry breaks the chain from there on; rewriting the whole chain
is caught by the heads anchored outside the warehouse (pipeline/audit.py).

An entry is appended inside the transaction of the change it records, so the change and its entry
commit or roll back together. Its sequence number is the head's plus one, read in that same
transaction, so two such transactions must not overlap: both would read the same head and fork
the chain (`pipeline audit verify`: `entry N: duplicated`). Each one therefore first updates the
one row of `pipeline.audit_lock`. On Snowflake that makes any other transaction's UPDATE of it
wait until this one commits or rolls back (https://docs.snowflake.com/en/sql-reference/transactions,
"Resource locking": UPDATE, DELETE and MERGE hold locks that generally keep them from running in
parallel with each other; a blocked statement waits up to the session's LOCK_TIMEOUT), and its
read of the head, under read committed, then sees the entry the other added. An INSERT alone
would not serialize anything: INSERTs can run in parallel.

DuckDB and the Snowflake-protocol test server (DuckDB inside) do not wait: there a conflicting
UPDATE is an error ("Conflict on update"). So on one machine the same transactions also take an
OS file lock named after the warehouse (`appending_to`), which serializes `--parallel` months and
the daemon's runs before they reach the database; the row serializes separate machines.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import getpass
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from pipeline.warehouse.ledger import LEDGER_COLUMNS, AlertRecord, LedgerEntry
from pipeline.warehouse.sql import Dialect, Run, append

AUDIT_TABLE = "audit_log"
# One row, updated first by every transaction that appends to the log: the log's lock.
AUDIT_LOCK_TABLE = "audit_lock"
AUDIT_LOCK_COLUMNS = {"locked_at": "timestamp"}
GENESIS_HASH = "0" * 64  # the prev_hash of the first entry
AUDIT_COLUMNS = {
    "seq": "int",
    "recorded_at": "timestamp",
    "kind": "string",
    "actor": "string",
    "run_id": "string",
    "dataset": "string",
    "month": "string",
    "load_id": "string",
    "source_file": "string",
    "file_size": "int",
    "fingerprint": "string",
    "rows_read": "int",
    "rows_loaded": "int",
    "rows_rejected": "int",
    "detail": "string",
    "prev_hash": "string",
    "entry_hash": "string",
}
INT_COLUMNS = frozenset(name for name, kind in AUDIT_COLUMNS.items() if kind == "int")
# What a ledger row's outcome is called in the audit log.
LEDGER_KINDS = {"loaded": "published", "purged": "purged"}

_ACTOR: ContextVar[str | None] = ContextVar("pipeline_audit_actor", default=None)


@dataclass(frozen=True)
class AuditEvent:
    """What an entry says; the log adds its number, time, actor and hashes."""

    kind: str
    dataset: str | None = None
    month: str | None = None
    run_id: str | None = None
    load_id: str | None = None
    source_file: str | None = None
    file_size: int | None = None
    fingerprint: str | None = None
    rows_read: int | None = None
    rows_loaded: int | None = None
    rows_rejected: int | None = None
    detail: str | None = None

    @classmethod
    def for_ledger(cls, entry: LedgerEntry) -> AuditEvent:
        """The entry of a load attempt or purge: `published`, `refused` (an ERROR check kept it
        from being published; `detail` names the check), `load_failed` or `purged`."""
        kind = LEDGER_KINDS.get(entry.status) or ("refused" if entry.candidate else "load_failed")
        shared = {f.name for f in fields(cls)} & set(LEDGER_COLUMNS)
        return cls(kind=kind, detail=entry.error, **{name: getattr(entry, name) for name in shared})

    @classmethod
    def for_alert(cls, record: AlertRecord) -> AuditEvent:
        """The entry of an alert that got through: which finding, by which channel, to whom."""
        return cls(
            kind="alert_sent",
            dataset=record.dataset,
            month=record.month,
            run_id=record.run_id,
            fingerprint=record.fingerprint,
            detail=f"{record.check_name} {record.verdict} by {record.channel} to "
            f"{record.recipients}: {record.subject}",
        )


@dataclass(frozen=True)
class AuditHead:
    """The newest entry: what an anchor records."""

    seq: int
    entry_hash: str


def canonical(entry: Mapping[str, Any]) -> bytes:
    """The bytes an entry's hash is computed over: every column but `entry_hash`, as JSON with
    sorted keys, no spaces, ASCII only, whole numbers as integers and times as UTC ISO 8601 with
    microseconds, so the same entry read back from either warehouse encodes the same."""
    values = {}
    for name in AUDIT_COLUMNS:
        if name == "entry_hash":
            continue
        value = entry.get(name)
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        elif value is not None and name in INT_COLUMNS:
            value = _whole(value)
        values[name] = value
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _whole(value: Any) -> int | str:
    """A count as an integer (DuckDB gives int, Snowflake Decimal); anything else as its text,
    so a count edited to a fraction (its column retyped) no longer hashes like the whole number
    it was."""
    try:
        number = int(value)
    except (ValueError, OverflowError, TypeError):  # text, NaN, infinity in a retyped column
        return str(value)
    return number if number == value else str(value)


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the entry's canonical encoding, its `prev_hash` included."""
    return hashlib.sha256(canonical(entry)).hexdigest()


def append_audit(run: Run, dialect: Dialect, schema: str, event: AuditEvent) -> AuditHead:
    """Append `event` after the current head; call inside the transaction of the change, after
    `lock_log` (Warehouse.audited_transaction does both)."""
    head = read_head(run, dialect, schema)
    entry: dict[str, Any] = {
        "seq": head.seq + 1 if head else 1,
        # Microseconds, as both warehouses keep them: the hash is of what is read back.
        "recorded_at": dt.datetime.now(dt.UTC),
        "actor": current_actor(),
        **asdict(event),
        "prev_hash": head.entry_hash if head else GENESIS_HASH,
    }
    entry["entry_hash"] = entry_hash(entry)
    append(run, dialect, schema, AUDIT_TABLE, {name: entry[name] for name in AUDIT_COLUMNS})
    return AuditHead(entry["seq"], entry["entry_hash"])


def ensure_lock_row(run: Run, dialect: Dialect, schema: str) -> None:
    """Give the (existing) lock table its row if it has none. Two processes doing this at once
    may add a row each: harmless, the lock's UPDATE takes every row."""
    table = dialect.table(schema, AUDIT_LOCK_TABLE)
    if not run(f"SELECT 1 AS held FROM {table} LIMIT 1", []):
        append(run, dialect, schema, AUDIT_LOCK_TABLE, {"locked_at": dt.datetime.now(dt.UTC)})


def lock_log(run: Run, dialect: Dialect, schema: str) -> None:
    """Update the lock row: call first in a transaction that will append, before the head is
    read; on Snowflake a concurrent one waits here until this transaction ends."""
    run(
        f"UPDATE {dialect.table(schema, AUDIT_LOCK_TABLE)} SET {dialect.quote('locked_at')} = ?",
        [dt.datetime.now(dt.UTC)],
    )


@contextmanager
def appending_to(location: str) -> Iterator[None]:
    """Hold this machine's lock on the audit log of the warehouse at `location` (an exclusive
    `flock` on a file in the temp folder named after it) until the block ends; the kernel drops
    it if the process dies."""
    digest = hashlib.sha256(location.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"pipeline-audit-{digest}.lock"
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def read_head(run: Run, dialect: Dialect, schema: str) -> AuditHead | None:
    """The newest entry of the log in `schema`, or None while it is empty."""
    rows = run(
        f"SELECT seq, entry_hash FROM {dialect.table(schema, AUDIT_TABLE)} "
        "ORDER BY seq DESC LIMIT 1",
        [],
    )
    return AuditHead(int(rows[0]["seq"]), rows[0]["entry_hash"]) if rows else None


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Record `actor` as who did what the block appends to the audit log."""
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def current_actor() -> str:
    """The actor set by `acting_as`, else the OS user running the process (the CLI's user)."""
    return _ACTOR.get() or getpass.getuser()
