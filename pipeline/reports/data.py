"""What a report shows, read through the warehouse interface: aggregates, never a month's rows.

Everything comes from the loader's own bookkeeping (the load ledger, `pipeline.check_results`)
and small GROUP BYs over the raw and rejects tables (or, for a month an ERROR check refused, over
the candidate tables its ledger row names), so DuckDB and Snowflake answer alike and a report for
years of months stays small. The figures are the warehouse's: a month's rows are what its ledger
row says the warehouse inserted, its rejects are counted where they are kept.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.assets.checks import month_checks
from pipeline.checks.completeness import open_days, regular_days
from pipeline.checks.volume import weekday_baselines
from pipeline.partitions import (
    freshness_deadline,
    month_bounds,
    month_days,
    month_range,
    months_before,
)
from pipeline.specs import DatasetSpec
from pipeline.warehouse.base import (
    CANDIDATE_SCHEMA,
    META_SCHEMA,
    RAW_SCHEMA,
    Warehouse,
    rejects_table,
)
from pipeline.warehouse.ledger import CHECK_RESULTS_TABLE, HEADER_SEPARATOR, LEDGER_TABLE

SAMPLE_LINES = 10  # rejected lines shown per month: enough to see the pattern, not the data
# How the latest attempt of a month ended, in the report's words.
PUBLISHED, REFUSED, FAILED, PURGED, MISSING = "published", "refused", "failed", "purged", "missing"


@dataclass(frozen=True)
class CheckView:
    """One check's verdict on the month's latest checked load."""

    name: str
    severity: str  # ERROR, WARN or INFO (a passing verdict that could not judge)
    passed: bool
    observed: float | None
    threshold: float | None
    summary: str

    @property
    def cell(self) -> str:
        """What the grid shows: `passed`, `INFO`, or the failed verdict's level."""
        if self.passed:
            return "INFO" if self.severity == "INFO" else "passed"
        return self.severity


@dataclass(frozen=True)
class RejectGroup:
    """Rejected lines of a month that broke the same rule in the same column."""

    column: str | None
    rule: str
    lines: int
    first_line: int
    last_line: int


@dataclass(frozen=True)
class DayView:
    """One day of the month: its rows, whether the calendar expects it, its volume band."""

    day: dt.date
    rows: int
    open: bool
    low: int | None = None  # the expected range of its weekday, when there is a baseline
    high: int | None = None

    @property
    def state(self) -> str:
        """`ok`, `missing` (open, no rows), `closed` or `closed-rows` (rows on a closed day)."""
        if self.open:
            return "ok" if self.rows else "missing"
        return "closed-rows" if self.rows else "closed"

    @property
    def outside_band(self) -> bool:
        return (
            self.low is not None
            and self.high is not None
            and not (self.low <= self.rows <= self.high)
        )


@dataclass
class MonthView:
    """Everything the report says about one month of a dataset."""

    month: str
    state: str
    attempt: dict[str, Any] | None  # the month's latest ledger row
    due: dt.datetime | None  # the freshness deadline, if the spec has one
    arrived: dt.datetime | None  # the first load attempt of the month
    # The ledger row of the load still served (the latest published), if any.
    served: dict[str, Any] | None = None
    checks: list[CheckView] = field(default_factory=list)
    reject_groups: list[RejectGroup] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    days: list[DayView] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)

    def figure(self, name: str) -> int | None:
        """rows_read, rows_loaded or rows_rejected of the latest attempt, as the ledger has it."""
        value = (self.attempt or {}).get(name)
        return None if value is None or self.state in (MISSING, PURGED) else int(value)

    @property
    def due_day(self) -> dt.date | None:
        """The last day the month is on time (`days_after_month_end` days after it ends): `due`
        is the instant after it, 00:00 UTC the next day, which read as the due day was a day
        late."""
        return None if self.due is None else (self.due - dt.timedelta(days=1)).date()

    @property
    def served_rows(self) -> int | None:
        """The rows the warehouse serves for the month now: its latest publish's, which is an
        earlier load's when the latest attempt was refused or failed."""
        return None if self.served is None else int(self.served["rows_loaded"])

    @property
    def reject_rate(self) -> float | None:
        read, rejected = self.figure("rows_read"), self.figure("rows_rejected")
        return rejected / read if read and rejected is not None else None

    @property
    def late_days(self) -> float | None:
        """Days after the due day the month first arrived (negative: early); not arrived yet
        (missing, or its run found no file) and overdue: days overdue until now."""
        if self.due is None:
            return None
        waiting = self.state in (MISSING, FAILED)
        arrived = self.arrived or (dt.datetime.now(dt.UTC) if waiting else None)
        if arrived is None or (self.arrived is None and arrived < self.due):
            return None
        return round((arrived - self.due).total_seconds() / 86400, 1)

    @property
    def failed_checks(self) -> list[CheckView]:
        """ERROR findings first, then WARN; INFO verdicts passed."""
        failed = [check for check in self.checks if not check.passed]
        return sorted(failed, key=lambda check: check.severity != "ERROR")

    @property
    def error(self) -> str | None:
        """Why the latest attempt failed, as the ledger records it."""
        return (self.attempt or {}).get("error") if self.state in (FAILED, REFUSED) else None


@dataclass
class DatasetView:
    """A dataset's months, in order, and the ledger rows behind them (the audit trail)."""

    spec: DatasetSpec
    months: list[MonthView]
    audit: list[dict[str, Any]]
    check_names: list[str]

    @property
    def name(self) -> str:
        return self.spec.name

    def month(self, month: str) -> MonthView:
        return next(view for view in self.months if view.month == month)

    def row_bars(self) -> dict[str, list[int | None]]:
        """Rows per month as the charts stack them, None where a month has none: loaded (its
        published rows), valid but not published (a refused month's, apart: drawn as loaded,
        it looked served), rejected."""
        valid = [(m.figure("rows_loaded"), m.state == PUBLISHED) for m in self.months]
        return {
            "loaded": [rows if published else None for rows, published in valid],
            "valid, not published": [None if published else rows for rows, published in valid],
            "rejected": [m.figure("rows_rejected") for m in self.months],
        }

    def served_earlier(self) -> list[int | None]:
        """Per month, the rows still served from an earlier load where the latest attempt was
        not published (None elsewhere): the bars are that attempt's, and without this a month
        whose new file was refused looked empty, or as if its refused rows were served."""
        return [None if m.state == PUBLISHED else m.served_rows for m in self.months]


def read_dataset(warehouse: Warehouse, spec: DatasetSpec, months: Sequence[str]) -> DatasetView:
    """The report's view of `months` of a dataset: a handful of queries, whatever the range."""
    first, last = months[0], months[-1]
    ledger = warehouse.query(
        f"select * from {META_SCHEMA}.{LEDGER_TABLE} where dataset = ? and month >= ? "
        "and month <= ? order by finished_at",
        [spec.name, first, last],
    )
    checks = _latest_checks(warehouse, spec, first, last)
    freshness = spec.checks.freshness
    views = []
    attempts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in ledger:
        attempts[row["month"]].append(row)
    for month in months:
        latest = attempts[month][-1] if attempts[month] else None
        view = MonthView(
            month=month,
            state=_state(latest),
            attempt=latest,
            due=freshness_deadline(month, freshness) if freshness else None,
            arrived=_first_arrival(attempts[month]),
            served=_last_published(attempts[month]),
        )
        if view.state in (PUBLISHED, REFUSED):
            view.checks = checks.get((month, latest["load_id"]), [])
            view.header = (latest.get("header") or "").split(HEADER_SEPARATOR)
            view.extra_columns = [name for name in view.header if name not in spec.columns]
        views.append(view)
    _add_rejects(warehouse, spec, views)
    _add_days(warehouse, spec, views)
    order = [check.name for check in month_checks(spec)]
    seen = {check.name for view in views for check in view.checks}
    return DatasetView(
        spec=spec,
        months=views,
        audit=list(reversed(ledger)),
        check_names=order + sorted(seen - set(order)),
    )


def dataset_months(
    warehouse: Warehouse, spec: DatasetSpec, first: str | None, last: str | None
) -> list[str]:
    """The months a report covers: by default from the spec's first month to the latest one the
    ledger knows (a later month that never arrived shows only when `last` asks for it)."""
    if last is None:
        rows = warehouse.query(
            f"select max(month) as last from {META_SCHEMA}.{LEDGER_TABLE} where dataset = ?",
            [spec.name],
        )
        last = rows[0]["last"] if rows and rows[0]["last"] else spec.start_month
    first = first or spec.start_month
    return month_range(first, max(first, last))


def _latest_checks(
    warehouse: Warehouse, spec: DatasetSpec, first: str, last: str
) -> dict[tuple[str, str], list[CheckView]]:
    """Verdicts per (month, load id): the load the ledger's latest row names picks them."""
    rows = warehouse.query(
        f"select * from {META_SCHEMA}.{CHECK_RESULTS_TABLE} where dataset = ? and month >= ? "
        "and month <= ? order by checked_at",
        [spec.name, first, last],
    )
    checks: dict[tuple[str, str], dict[str, CheckView]] = defaultdict(dict)
    for row in rows:
        checks[(row["month"], row["load_id"])][row["check_name"]] = CheckView(
            name=row["check_name"],
            severity=row["severity"],
            passed=bool(row["passed"]),
            observed=row["observed"],
            threshold=row["threshold"],
            summary=row["summary"],
        )
    return {key: list(by_name.values()) for key, by_name in checks.items()}


def _state(latest: dict[str, Any] | None) -> str:
    if latest is None:
        return MISSING
    if latest["status"] == "loaded":
        return PUBLISHED
    if latest["status"] == "purged":
        return PURGED
    return REFUSED if latest.get("candidate") else FAILED


def _since_last_purge(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The month's attempts after its last purge (all of them if it was never purged)."""
    purges = [index for index, row in enumerate(attempts) if row["status"] == "purged"]
    return attempts[purges[-1] + 1 :] if purges else attempts


def _first_arrival(attempts: list[dict[str, Any]]) -> dt.datetime | None:
    """When the month's file first reached the loader: the first attempt since its last purge
    that found a file (one that failed for want of it has no fingerprint)."""
    delivered = [row for row in _since_last_purge(attempts) if row["fingerprint"]]
    return _utc(delivered[0]["started_at"]) if delivered else None


def _last_published(attempts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The load the month is served from: its latest publish since its last purge."""
    published = [row for row in _since_last_purge(attempts) if row["status"] == "loaded"]
    return (
        {**published[-1], "finished_at": _utc(published[-1]["finished_at"])} if published else None
    )


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _existing_tables(warehouse: Warehouse) -> set[tuple[str, str]]:
    """(schema, table) of the raw and candidate tables, as the catalog stores the names."""
    name = warehouse.dialect.name
    rows = warehouse.query(
        "select table_schema, table_name from information_schema.tables "
        "where table_schema in (?, ?)",
        [name(RAW_SCHEMA), name(CANDIDATE_SCHEMA)],
    )
    return {(row["table_schema"], row["table_name"]) for row in rows}


def _candidate_tables(view: MonthView) -> tuple[str, str] | None:
    """The candidate rows and rejects tables a refused month's ledger row names."""
    names = [
        n.strip().split(".")[-1] for n in ((view.attempt or {}).get("candidate") or "").split(",")
    ]
    return (names[0], names[1]) if view.state == REFUSED and len(names) == 2 else None


@dataclass(frozen=True)
class _Source:
    """Where some months' rows or rejects are kept: a table, and how its rows name their month."""

    table: str
    month: str  # the `_month` column, or a literal for a candidate table (it holds one month)
    where: str = ""
    parameters: tuple[Any, ...] = ()

    @property
    def by_month(self) -> list[str]:
        """What to group or partition by to keep months apart: nothing in a one-month table."""
        return [self.month] if self.month == "_month" else []


def _month_literal(month: str) -> str:
    """A month as an SQL literal; `month_bounds` refuses anything but YYYY-MM first."""
    month_bounds(month)
    return f"'{month}'"


def _month_sources(
    warehouse: Warehouse, spec: DatasetSpec, views: list[MonthView], raw_table: str
) -> list[_Source]:
    """Published months from a raw table (by `_month`), refused ones from their candidate
    tables while those exist (they go when the month is next published or purged)."""
    dialect = warehouse.dialect
    present = _existing_tables(warehouse)
    sources = []
    published = [view.month for view in views if view.state == PUBLISHED]
    if published and (dialect.name(RAW_SCHEMA), dialect.name(raw_table)) in present:
        sources.append(
            _Source(
                dialect.table(RAW_SCHEMA, raw_table),
                "_month",
                f"where _month in ({', '.join('?' for _ in published)})",
                tuple(published),
            )
        )
    for view in views:
        candidate = _candidate_tables(view)
        if candidate is None:
            continue
        name = candidate[0] if raw_table == spec.name else candidate[1]
        if (dialect.name(CANDIDATE_SCHEMA), dialect.name(name)) in present:
            sources.append(
                _Source(dialect.table(CANDIDATE_SCHEMA, name), _month_literal(view.month))
            )
    return sources


def _add_rejects(warehouse: Warehouse, spec: DatasetSpec, views: list[MonthView]) -> None:
    """Rejects by column and rule, and the first lines of each month, from where they are kept."""
    by_month = {view.month: view for view in views}
    for source in _month_sources(warehouse, spec, views, rejects_table(spec.name)):
        month = f"cast({source.month} as varchar)"
        partition = f"partition by {source.month} " if source.by_month else ""
        for row in warehouse.query(
            f"select {month} as month, _column as column_name, _rule as rule, "
            "count(*) as lines, min(_line_number) as first_line, max(_line_number) as last_line "
            f"from {source.table} {source.where} "
            f"group by {', '.join([*source.by_month, '_column', '_rule'])}",
            source.parameters,
        ):
            by_month[row["month"]].reject_groups.append(
                RejectGroup(
                    column=row["column_name"],
                    rule=row["rule"],
                    lines=int(row["lines"]),
                    first_line=int(row["first_line"]),
                    last_line=int(row["last_line"]),
                )
            )
        for row in warehouse.query(
            f"select * from (select {month} as month, _line_number as line, "
            "_column as column_name, _value as value, _rule as rule, "
            f"row_number() over ({partition}order by _line_number) as n "
            f"from {source.table} {source.where}) s where n <= {SAMPLE_LINES} order by line",
            source.parameters,
        ):
            by_month[row["month"]].samples.append(
                {key: row[key] for key in ("line", "column_name", "value", "rule")}
            )
    for view in views:
        # As the schema check orders them, so its "most often" is the first group here too.
        view.reject_groups.sort(key=lambda group: (-group.lines, group.first_line))


def _add_days(warehouse: Warehouse, spec: DatasetSpec, views: list[MonthView]) -> None:
    """Rows per day of every month (and of the months its volume baseline looks back on), the
    calendar's verdict on each day, and the expected band where the volume check has one."""
    day = warehouse.dialect.quote(spec.date_column)
    lookback = spec.checks.volume.lookback_months if spec.checks.volume else 0
    counts: dict[str, dict[dt.date, int]] = defaultdict(dict)
    history: dict[str, dict[dt.date, int]] = defaultdict(dict)
    for source in _month_sources(warehouse, spec, views, spec.name):
        if source.month == "_month":  # published: also the months the baselines look back on
            first = months_before(views[0].month, lookback)[0] if lookback else views[0].month
            source = _Source(
                source.table,
                "_month",
                "where _month >= ? and _month <= ?",
                (first, views[-1].month),
            )
        rows = warehouse.query(
            f"select cast({source.month} as varchar) as month, {day} as day, "
            f"count(*) as row_count from {source.table} {source.where} "
            f"group by {', '.join([*source.by_month, day])}",
            source.parameters,
        )
        if not source.by_month:  # a refused month's candidate replaces what raw still serves
            counts[source.month.strip("'")] = {}
        for row in rows:
            counts[row["month"]][row["day"]] = int(row["row_count"])
            if source.by_month:  # a refused month is never a baseline
                history[row["month"]][row["day"]] = int(row["row_count"])
    for view in views:
        if view.state in (PUBLISHED, REFUSED) and view.month in counts:
            view.days = _days(spec, view.month, counts[view.month], history)


def _days(
    spec: DatasetSpec, month: str, counts: dict[dt.date, int], history: dict[str, dict]
) -> list[DayView]:
    calendar = spec.checks.completeness
    expected = set(open_days(month, calendar))
    bands: dict[dt.date, tuple[int, int]] = {}
    volume = spec.checks.volume
    if volume is not None:
        earlier = {
            m: history[m] for m in months_before(month, volume.lookback_months) if m in history
        }
        if len(earlier) >= volume.min_history_months:
            baselines = weekday_baselines(spec, volume, earlier)
            bands = {
                day: baselines[day.weekday()].expected_range(volume.max_z)
                for day in regular_days(month, calendar)
                if day.weekday() in baselines
            }
    return [
        DayView(
            day=day,
            rows=counts.get(day, 0),
            open=day in expected,
            low=bands[day][0] if day in bands else None,
            high=bands[day][1] if day in bands else None,
        )
        for day in month_days(month)
    ]
