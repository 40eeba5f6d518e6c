"""The one interface the loader and the checks talk to, whatever the warehouse.

Like dlt's destinations: the asset code never asks which warehouse it has. An implementation owns
its SQL dialect, its connections and its bulk path; all it is handed is a staged load.
"""

from __future__ import annotations

import datetime as dt
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import dagster as dg

from pipeline.ingest.stream import StagedLoad
from pipeline.specs import ColumnSpec, DatasetSpec
from pipeline.warehouse.ledger import CHECK_RESULT_COLUMNS, LEDGER_COLUMNS, CheckRecord, LedgerEntry

RAW_SCHEMA = "raw"
META_SCHEMA = "pipeline"
REPORT_SCHEMA = "analytics"  # the dbt target schema (dbt_project/profiles.yml)
_TEXT, _INT, _TIME = ColumnSpec(type="string"), ColumnSpec(type="int"), ColumnSpec(type="timestamp")
# What every load adds to a dataset's own columns.
LOAD_COLUMNS = {"_month": _TEXT, "_source_file": _TEXT, "_line_number": _INT, "_loaded_at": _TIME}
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


def rejects_table(dataset: str) -> str:
    """The quarantine table of a dataset."""
    return f"{dataset}_rejects"


def dataset_tables(spec: DatasetSpec) -> dict[str, dict[str, ColumnSpec]]:
    """The raw tables of a dataset and their columns, in spec types; dialects map the types."""
    return {spec.name: dict(spec.columns) | LOAD_COLUMNS, rejects_table(spec.name): REJECT_COLUMNS}


class Warehouse(dg.ConfigurableResource):
    """A warehouse that can replace a dataset's month atomically and answer check queries."""

    def replace_month(self, staged: StagedLoad, run_id: str) -> None:
        """Swap the month's rows and rejects for the staged ones and record the load, atomically.

        On any error nothing of the month changes and the failed attempt is recorded instead.
        """
        try:
            self.swap_month(
                staged.spec, staged, LedgerEntry.for_staged(staged, run_id, "loaded", now())
            )
        except Exception as exc:
            self.record_load(LedgerEntry.for_staged(staged, run_id, "failed", now(), str(exc)))
            raise

    @abstractmethod
    def swap_month(self, spec: DatasetSpec, staged: StagedLoad, entry: LedgerEntry) -> None:
        """In one transaction: delete the month, insert the staged parts, append `entry`."""

    @abstractmethod
    def purge_month(
        self, spec: DatasetSpec, month: str, report_tables: Sequence[str], entry: LedgerEntry
    ) -> dict[str, int]:
        """In one transaction: delete the month from the dataset's raw and rejects tables and from
        those `report_tables` (in REPORT_SCHEMA) that have a `month` column; append `entry`.

        Returns the rows deleted per table.
        """

    @abstractmethod
    def record_check(self, record: CheckRecord) -> None:
        """Append one check verdict to pipeline.check_results."""

    @abstractmethod
    def record_load(self, entry: LedgerEntry) -> None:
        """Append one row to the load ledger in its own transaction."""

    @abstractmethod
    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a read-only query (qmark parameters) and return its rows as dicts."""

    def latest_load(self, dataset: str, month: str) -> dict[str, Any] | None:
        """The ledger row of the month's last successful load, or None."""
        rows = self.query(
            f"select * from {META_SCHEMA}.load_ledger "
            "where dataset = ? and month = ? and status = 'loaded' "
            "order by finished_at desc limit 1",
            [dataset, month],
        )
        return rows[0] if rows else None


def now() -> dt.datetime:
    """The time stamps written to the warehouse: timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)
