"""`pipeline validate`: a file judged as its month's load would judge it, with nothing loaded.

The file is read and staged by the load's own code into a temporary folder, and the month's
checks run on a throwaway DuckDB file beside it: a sender can check a delivery before it lands,
and nothing is written to the warehouse, the ledger, the audit log or the Dagster instance. Checks
that compare the month with the months before it (volume, keys across months) have no history
there; the load judges those.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.assets.checks import SCHEMA_CHECK, month_checks
from pipeline.checks.outcome import CheckOutcome
from pipeline.checks.scope import MonthUnderCheck
from pipeline.ingest.stream import StagedLoad, ingest_file, new_load_id
from pipeline.specs import DatasetSpec
from pipeline.warehouse.duckdb import DuckDBWarehouse

SAMPLE_LINES = 10


@dataclass(frozen=True)
class Validation:
    """What the load's reading and month checks found in one file."""

    staged: StagedLoad
    outcomes: dict[str, CheckOutcome]
    blocking: frozenset[str]  # the checks whose failure keeps a month from being published
    reject_kinds: list[dict[str, Any]]  # column, rule, lines, first_line; the most lines first
    first_rejects: list[dict[str, Any]]  # line, reason

    @property
    def refused_by(self) -> list[str]:
        """The checks that would keep the load from publishing the month."""
        return [
            name
            for name, outcome in self.outcomes.items()
            if name in self.blocking and not outcome.passed
        ]


def validate_file(
    spec: DatasetSpec,
    path: Path,
    month: str,
    *,
    workers: int | None = None,
    pii_key: str | None = None,
) -> Validation:
    """Read `path` as `spec`'s file for `month` and run the month's checks on it, in a temporary
    folder that is removed afterwards. Raises the load's own errors (`LoadError` for a file that
    cannot be read at all, a header without a spec column, a missing `PIPELINE_PII_KEY`)."""
    local = _without_history(spec)
    scratch = Path(tempfile.mkdtemp(prefix="pipeline-validate-"))
    try:
        staged = ingest_file(
            local, path, month, scratch / "staging", workers=workers, pii_key=pii_key
        )
        warehouse = DuckDBWarehouse(path=str(scratch / "validate.duckdb"))
        candidate = warehouse.stage_candidate(staged, new_load_id())
        under_check = MonthUnderCheck(warehouse, staged, candidate)
        checks = month_checks(local)
        outcomes = {check.name: check.evaluate(under_check) for check in checks}
        # The schema check's own figures: its rejects by rule, and its first rejected lines.
        found = outcomes[SCHEMA_CHECK].samples
        first = found["failing_rows_sample"][:SAMPLE_LINES]
        blocking = frozenset(check.name for check in checks if check.blocking)
        return Validation(staged, outcomes, blocking, found["rejects_by_rule"], first)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _without_history(spec: DatasetSpec) -> DatasetSpec:
    """The spec as judged without a warehouse: no volume check (its verdict, "not enough
    history: 0 earlier months loaded", would be about the throwaway file, not the warehouse),
    keys only within the month (no month is published here to repeat them), and `pii: mask`
    columns kept as read (the throwaway DuckDB has no masking policies, and nothing of it is
    kept)."""
    columns = {
        name: column.model_copy(update={"pii": None}) if column.pii == "mask" else column
        for name, column in spec.columns.items()
    }
    checks = spec.checks.model_copy(update={"volume": None})
    if checks.unique is not None and checks.unique.across_months:
        unique = checks.unique.model_copy(update={"across_months": False})
        checks = checks.model_copy(update={"unique": unique})
    return spec.model_copy(update={"columns": columns, "checks": checks})
