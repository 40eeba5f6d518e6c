"""The load ledger: one row per attempt to load a month, whatever its outcome."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from pipeline.ingest.stream import StagedLoad, new_load_id

LEDGER_TABLE = "load_ledger"
HEADER_SEPARATOR = "\t"
LEDGER_COLUMNS = {
    "load_id": "string",
    "dataset": "string",
    "month": "string",
    "source_file": "string",
    "file_size": "int",
    "fingerprint": "string",
    "rows_read": "int",
    "rows_loaded": "int",
    "rows_rejected": "int",
    "started_at": "timestamp",
    "finished_at": "timestamp",
    "run_id": "string",
    "status": "string",
    "error": "string",
    "header": "string",
    "candidate": "string",
}


@dataclass(frozen=True)
class LedgerEntry:
    """What happened to one load attempt; `status` is `loaded`, `failed` or `purged`.

    `rows_read` is counted from the file's lines; `rows_loaded` and `rows_rejected` are what the
    warehouse inserted (into the candidate, for an attempt that was not published). With `failed`
    none of its rows reached the raw tables; `candidate` names the tables a refused month's rows
    can still be inspected in.
    """

    load_id: str
    dataset: str
    month: str
    source_file: str
    file_size: int | None
    fingerprint: str | None
    rows_read: int | None
    rows_loaded: int | None
    rows_rejected: int | None
    started_at: dt.datetime
    finished_at: dt.datetime
    run_id: str
    status: str
    error: str | None = None
    # The file's column names as loaded (HEADER_SEPARATOR-joined): the schema drift check reads
    # them here, since the landed file may have been moved or replaced since.
    header: str | None = None
    candidate: str | None = None

    def row(self) -> dict[str, object]:
        """Column -> value, in `LEDGER_COLUMNS` order, for a parameterised INSERT."""
        values = asdict(self)
        return {name: values[name] for name in LEDGER_COLUMNS}

    @classmethod
    def without_rows(
        cls,
        dataset: str,
        month: str,
        run_id: str,
        status: str,
        started_at: dt.datetime,
        finished_at: dt.datetime,
        source_file: str = "",
        error: str | None = None,
    ) -> LedgerEntry:
        """An attempt that moved no rows: a file refused before staging, or a purge."""
        return cls(
            load_id=new_load_id(),
            dataset=dataset,
            month=month,
            source_file=source_file,
            file_size=None,
            fingerprint=None,
            rows_read=None,
            rows_loaded=None,
            rows_rejected=None,
            started_at=started_at,
            finished_at=finished_at,
            run_id=run_id,
            status=status,
            error=error,
        )

    @classmethod
    def for_staged(
        cls,
        staged: StagedLoad,
        load_id: str,
        run_id: str,
        status: str,
        counts: Mapping[str, int] | None = None,
        *,
        error: str | None = None,
        candidate: str | None = None,
    ) -> LedgerEntry:
        """The ledger row of a staged load that ended with `status`, finishing now.

        `counts` are the warehouse's, per raw table (rows first, then rejects); without them
        (the warehouse never took the month) the parser's are recorded.
        """
        loaded, rejected = counts.values() if counts else (staged.rows_loaded, staged.rows_rejected)
        return cls(
            load_id=load_id,
            dataset=staged.dataset,
            month=staged.month,
            source_file=staged.source_file,
            file_size=staged.file_size,
            fingerprint=staged.fingerprint,
            rows_read=staged.rows_read,
            rows_loaded=loaded,
            rows_rejected=rejected,
            started_at=staged.started_at,
            finished_at=dt.datetime.now(dt.UTC),
            run_id=run_id,
            status=status,
            error=error,
            header=HEADER_SEPARATOR.join(staged.header),
            candidate=candidate,
        )


CHECK_RESULTS_TABLE = "check_results"
CHECK_RESULT_COLUMNS = {
    "dataset": "string",
    "month": "string",
    "check_name": "string",
    "severity": "string",
    "passed": "bool",
    "observed": "float",
    "threshold": "float",
    "summary": "string",
    "run_id": "string",
    "checked_at": "timestamp",
    "load_id": "string",
}


@dataclass(frozen=True)
class CheckRecord:
    """One check verdict on one dataset month, kept for the quality history."""

    dataset: str
    month: str
    check_name: str
    severity: str
    passed: bool
    observed: float | None
    threshold: float | None
    summary: str
    run_id: str
    checked_at: dt.datetime
    load_id: str | None = None

    def row(self) -> dict[str, object]:
        values = asdict(self)
        return {name: values[name] for name in CHECK_RESULT_COLUMNS}


ALERTS_TABLE = "alerts"
ALERT_COLUMNS = {
    "alert_id": "string",
    "dataset": "string",
    "month": "string",
    "check_name": "string",
    "verdict": "string",
    "fingerprint": "string",
    "channel": "string",
    "recipients": "string",
    "subject": "string",
    "status": "string",
    "attempts": "int",
    "error": "string",
    "run_id": "string",
    "sent_at": "timestamp",
}

PHASES_TABLE = "load_phases"
PHASE_COLUMNS = {
    "dataset": "string",
    "month": "string",
    "run_id": "string",
    "phase": "string",
    "seconds": "float",
    "recorded_at": "timestamp",
}


@dataclass(frozen=True)
class AlertRecord:
    """One finding announced on one channel: what was said about which month, to whom, and
    whether it got through.

    `verdict` is the finding's (ERROR, WARN, FAILED) or RESOLVED; `fingerprint` the file it was
    about, so the same finding on the same file is announced once. `status` is `sent` or
    `failed` (delivery gave up after its retries: the next run of the month tries again).
    """

    alert_id: str
    dataset: str
    month: str
    check_name: str
    verdict: str
    fingerprint: str
    channel: str
    recipients: str
    subject: str
    status: str
    attempts: int
    error: str | None
    run_id: str
    sent_at: dt.datetime

    def row(self) -> dict[str, object]:
        values = asdict(self)
        return {name: values[name] for name in ALERT_COLUMNS}


@dataclass(frozen=True)
class PhaseRecord:
    """How long one phase of a month's load step took (progress.PHASES), for the metrics.

    Kept apart from the ledger because the ledger row of a published month is written inside the
    publish transaction, before the publish phase has ended.
    """

    dataset: str
    month: str
    run_id: str
    phase: str
    seconds: float
    recorded_at: dt.datetime

    def row(self) -> dict[str, object]:
        values = asdict(self)
        return {name: values[name] for name in PHASE_COLUMNS}
