"""What a check reads: a month's candidate, not yet published, beside the published months.

Every check of a month runs before the month is published (write, audit, publish): its rows and
rejects are read from the candidate tables, and only history (earlier months for the volume
baseline, other months for cross-month keys) from the published raw table. Names from the spec
are quoted through the warehouse's dialect here, so a column called `order` or `date` works.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pipeline.ingest.stream import StagedLoad
from pipeline.specs import DatasetSpec
from pipeline.warehouse.base import (
    CANDIDATE_SCHEMA,
    RAW_SCHEMA,
    Candidate,
    Warehouse,
    rejects_table,
)

T = TypeVar("T")


@dataclass(frozen=True)
class MonthUnderCheck:
    """One month's candidate and the queries the checks run on it."""

    warehouse: Warehouse
    staged: StagedLoad
    candidate: Candidate
    _memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def spec(self) -> DatasetSpec:
        return self.staged.spec

    @property
    def month(self) -> str:
        return self.staged.month

    @property
    def rows(self) -> str:
        """The candidate's rows: the spec's columns and `_line_number`."""
        return self.warehouse.dialect.table(CANDIDATE_SCHEMA, self.candidate.tables[self.spec.name])

    @property
    def rejects(self) -> str:
        """The candidate's rejects: `_line_number`, `_raw_line`, `_column`, `_rule`, ..."""
        return self.warehouse.dialect.table(
            CANDIDATE_SCHEMA, self.candidate.tables[rejects_table(self.spec.name)]
        )

    @property
    def published(self) -> str:
        """The dataset's published raw table (every month, `_month` among its columns)."""
        return self.warehouse.dialect.table(RAW_SCHEMA, self.spec.name)

    def column(self, name: str) -> str:
        """A spec column, quoted for the warehouse."""
        return self.warehouse.dialect.quote(name)

    def columns(self, names: Sequence[str]) -> str:
        return ", ".join(self.column(name) for name in names)

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self.warehouse.query(sql, parameters)

    def once(self, name: str, compute: Callable[[], T]) -> T:
        """A figure several checks use (rows per day), computed once per month."""
        if name not in self._memo:
            self._memo[name] = compute()
        return self._memo[name]
