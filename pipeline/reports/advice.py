"""Findings in the data owner's words: what is wrong with a month, and what to do about it.

Pure functions over a `MonthView`: the report, the alert mail, its CSV and the webhook all say
the same thing, and the wording is tested without a warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.reports.data import (
    FAILED,
    MISSING,
    PUBLISHED,
    PURGED,
    REFUSED,
    CheckView,
    MonthView,
)
from pipeline.specs import DatasetSpec

LOAD_CHECK = "load"  # a finding that is the load itself failing, not a check's verdict


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a month: a failed check, a failed load or a late delivery."""

    month: str
    check: str
    verdict: str  # ERROR, WARN, or FAILED for a load that did not go through
    summary: str
    advice: str

    @property
    def title(self) -> str:
        """`schema FAILED (ERROR)`: the words of `pipeline load`'s summary and the mail subject."""
        return f"{self.check} FAILED" + ("" if self.verdict == "FAILED" else f" ({self.verdict})")


def reload_command(dataset: str, month: str) -> str:
    """The command that loads one month again, whatever is wrong with it: with `--force`, since
    a month already loaded or refused from the same file is otherwise skipped (a spec fixed, a
    model fixed); a corrected or late file loads either way."""
    return f"pipeline load {dataset} --from {month} --to {month} --force"


def findings(spec: DatasetSpec, view: MonthView) -> list[Finding]:
    """The month's findings, ERROR first; a failed load is one finding of its own."""
    if view.state == FAILED:
        error = (view.error or "the load failed").splitlines()[0]
        return [
            Finding(
                view.month,
                LOAD_CHECK,
                "FAILED",
                error,
                f"{view.month}: the load failed ({error}). Fix the file or the setting the "
                f"message names, then {reload_command(spec.name, view.month)}",
            )
        ]
    return [
        Finding(view.month, check.name, check.severity, check.summary, advise(spec, view, check))
        for check in view.failed_checks
    ]


def advise(spec: DatasetSpec, view: MonthView, check: CheckView) -> str:
    """One recommendation for a failed check, ending with the command that reloads the month."""
    month, reload = view.month, reload_command(spec.name, view.month)
    if check.name == "schema":
        return _advise_rejects(spec, view, reload)
    if check.name == "completeness":
        missing = ", ".join(str(day.day) for day in view.days if day.state == "missing")
        return (
            f"{month}: no rows for {missing or 'some expected days'}; ask the sender whether "
            f"those days were left out of the file and for a complete file, then {reload}"
        )
    if check.name == "closed_days":
        closed = ", ".join(
            f"{d.day} ({d.rows:,} rows)" for d in view.days if d.state == "closed-rows"
        )
        return (
            f"{month}: rows on days the {spec.checks.completeness.calendar} calendar closes: "
            f"{closed or check.summary}; if the business was open, add the days to "
            "`checks.completeness.extra_open_dates` in the spec; if the dates are wrong, ask the "
            f"sender to correct them, then {reload}"
        )
    if check.name == "schema_drift":
        columns = ", ".join(view.extra_columns) or "new columns"
        return (
            f"{month}: the file has column(s) the spec does not know: {columns} (ignored). Add "
            "them to the spec's `columns` if they should be loaded, or ask the sender to drop "
            f"them; then {reload}"
        )
    if check.name == "volume":
        days = "; ".join(
            f"{d.day} {d.rows:,} rows (expected {d.low:,}–{d.high:,})"
            for d in view.days
            if d.outside_band
        )
        return (
            f"{month}: {days or check.summary}. Ask the sender whether those days are complete "
            f"and not duplicated; if the file was wrong, get a corrected one, then {reload}"
        )
    if check.name == "unique_key":
        return (
            f"{month}: {check.summary}; ask the sender to remove the duplicated lines, then "
            f"{reload}"
        )
    rule = next((r for r in spec.rules if r.check_name == check.name), None)
    if rule is not None:
        return (
            f"{month}: {check.summary} — rows where `{rule.where}`. Look at the matching lines "
            f"(query the month with that condition); if they are wrong, ask the sender for a "
            f"corrected file, then {reload}"
        )
    return f"{month}: {check.summary}; fix the file, then {reload}"


def _advise_rejects(spec: DatasetSpec, view: MonthView, reload: str) -> str:
    """`2024-08: 39 line(s) (0.2%) where flight_date is not a valid date ..., lines 23 to
    17,209; ...; ask the sender to re-export columns 1, 6, then ...`"""
    read = view.figure("rows_read") or 0
    parts = []
    for group in view.reject_groups[:3]:
        share = f" ({group.lines / read:.1%})" if read else ""
        where = (
            f"line {group.first_line:,}"
            if group.first_line == group.last_line
            else f"lines {group.first_line:,} to {group.last_line:,}"
        )
        what = f" where {group.column} {group.rule}" if group.column else f": {group.rule}"
        parts.append(f"{group.lines:,} line(s){share}{what}, {where}")
    more = len(view.reject_groups) - 3
    found = "; ".join(parts) + (f"; and {more} more kind(s)" if more > 0 else "")
    # Every column with rejects, not only those of the kinds spelled out above.
    columns = sorted(
        {view.header.index(g.column) + 1 for g in view.reject_groups if g.column in view.header}
    )
    ask = (
        f"ask the sender to re-export column{'s' if len(columns) > 1 else ''} "
        + ", ".join(map(str, columns))
        if columns
        else "ask the sender for a corrected file"
    )
    return f"{view.month}: {found or 'lines were rejected'}; {ask}, then {reload}"


def _still_served(view: MonthView) -> str:
    """What readers of a month that was not published get: the load before, or nothing."""
    if view.served is None:
        return f" (nothing of {view.month} is served)"
    served = view.served
    return (
        f" (the load of {served['finished_at']:%Y-%m-%d %H:%M} UTC is still served: "
        f"{served['rows_loaded']:,} rows from {Path(served['source_file']).name})"
    )


def verdict(spec: DatasetSpec, view: MonthView) -> str:
    """One line per month for the executive summary."""
    findings_ = findings(spec, view)
    if view.state == MISSING:
        late = view.late_days
        if late is not None and late > 0:
            return f"not delivered: due {view.due_day:%Y-%m-%d}, {late:,.0f} day(s) overdue"
        return "not delivered yet"
    if view.state == PURGED:
        return f"purged on {view.attempt['finished_at']:%Y-%m-%d}; not loaded since"
    if view.state == FAILED:
        return f"not published: {findings_[0].summary}{_still_served(view)}"
    first = findings_[0] if findings_ else None
    if view.state == REFUSED:
        reason = f"{first.title} — {first.summary}" if first else view.error or "refused"
        return f"not published: {reason}{_still_served(view)}"
    assert view.state == PUBLISHED
    rows = view.figure("rows_loaded") or 0
    if first is None:
        return f"published: {rows:,} rows, all {len(view.checks)} checks passed"
    return f"published with {len(findings_)} warning(s): {first.title} — {first.summary}"
