"""The report as one self-contained HTML file: plotly.js inlined once, figures as JSON.

Each chart is a small Plotly figure (data and layout, no template) that a few lines of inline
JavaScript draw when it is shown: the executive charts at once, a month's charts when that month
is chosen. So the file holds plotly.js (about 4.8 MB) once plus aggregates, nothing is fetched
from anywhere (a Content-Security-Policy in the page forbids it), and a report over years of
months stays small and opens fast.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from pipeline.audit import Verdict
from pipeline.checks.completeness import WEEKDAYS
from pipeline.reports.advice import Finding, findings, reload_command, verdict
from pipeline.reports.data import (
    FAILED,
    MISSING,
    PUBLISHED,
    REFUSED,
    CheckView,
    DatasetView,
    DayView,
    MonthView,
)
from pipeline.specs import DatasetSpec

TEMPLATE = "report.html.j2"
COLOURS = {
    "ok": "#5b8def",
    "bad": "#d64545",
    "warn": "#e0a100",
    "good": "#3c9d5d",
    "band": "#9aa5b1",
}
BAR_COLOURS = {  # DatasetView.row_bars, in the report and in the alert's chart
    "loaded": COLOURS["ok"],
    "valid, not published": COLOURS["band"],
    "rejected": COLOURS["bad"],
}
# DatasetView.served_earlier: a marker over the bars of the attempt that was not published.
SERVED_EARLIER = "still served (an earlier load)"
SERVED_COLOUR = "#1f2933"
LAYOUT = {
    "template": "none",
    "height": 280,
    "margin": {"l": 55, "r": 15, "t": 40, "b": 60},
    "xaxis": {"type": "category", "tickangle": -45, "automargin": True},
    "font": {"family": "system-ui, sans-serif", "size": 12},
    "legend": {"orientation": "h", "y": -0.2},
}
STATE_TEXT = {
    PUBLISHED: "published",
    REFUSED: "not published (refused)",
    FAILED: "not published (load failed)",
    MISSING: "not delivered",
    "purged": "purged",
}


@dataclass(frozen=True)
class MonthContext:
    """A month as the template shows it."""

    view: MonthView
    verdict: str
    findings: list[Finding]
    reload: str
    checks: dict[str, CheckView]
    weeks: list[list[DayView | None]]

    @property
    def state_text(self) -> str:
        return STATE_TEXT[self.view.state]


@dataclass(frozen=True)
class DatasetContext:
    view: DatasetView
    months: list[MonthContext]
    selected: str
    summary_figures: list[str]

    @property
    def name(self) -> str:
        return self.view.name

    @property
    def spec(self) -> DatasetSpec:
        return self.view.spec

    @property
    def check_names(self) -> list[str]:
        return self.view.check_names

    @property
    def audit(self) -> list[dict[str, Any]]:
        return self.view.audit


def render_report(
    datasets: Sequence[DatasetView],
    warehouse: str,
    generated: dt.datetime | None = None,
    audit_log: Verdict | None = None,
) -> str:
    """The report of `datasets` (each with its months) as one HTML document; `audit_log` is the
    tamper-evident log's verification, shown beside the audit trail."""
    figures: dict[str, Any] = {}
    contexts = [_dataset_context(view, figures) for view in datasets]
    months = [m.month for view in datasets for m in view.months]
    return _template().render(
        datasets=contexts,
        first=min(months),
        last=max(months),
        generated=f"{(generated or dt.datetime.now(dt.UTC)):%Y-%m-%d %H:%M} UTC",
        warehouse=warehouse,
        plotly_js=_plotly_js(),
        figures=figures,
        weekdays=WEEKDAYS,
        audit_log=audit_log,
    )


@cache
def _plotly_js() -> jinja2.filters.Markup:
    """plotly.js as shipped with the plotly package (no CDN), trusted as is."""
    return jinja2.filters.Markup(get_plotlyjs())


def templates(package: str) -> jinja2.Environment:
    """Templates shipped in `package`'s templates/ folder, HTML-escaped, strict about names."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def _template() -> jinja2.Template:
    environment = templates("pipeline.reports")
    environment.globals.update(
        number=lambda n: "–" if n is None else f"{n:,}",
        figure=lambda n: "–" if n is None else f"{n:,.4g}",
        percent=lambda r: "–" if r is None else f"{r:.2%}",
        days=_days,
        basename=lambda path: Path(path or "").name,
        event=_event,
    )
    return environment.get_template(TEMPLATE)


def _days(days: float | None) -> str:
    """Days late: a tenth of a day tells apart 'hours late' and 'a day late'; beyond ten days
    it only made `1033.0` harder to read."""
    if days is None:
        return "–"
    return f"{days:,.0f}" if abs(days) >= 10 else f"{days:.1f}"


def _event(attempt: dict[str, Any]) -> str:
    """A ledger row as an audit event: published, refused, failed or purged."""
    if attempt["status"] == "loaded":
        return "published"
    if attempt["status"] == "failed":
        return "refused" if attempt.get("candidate") else "failed"
    return str(attempt["status"])


def _dataset_context(view: DatasetView, figures: dict[str, Any]) -> DatasetContext:
    months = [
        MonthContext(
            view=month,
            verdict=verdict(view.spec, month),
            findings=findings(view.spec, month),
            reload=reload_command(view.name, month.month),
            checks={check.name: check for check in month.checks},
            weeks=_weeks(month.days),
        )
        for month in view.months
    ]
    for month in view.months:
        if month.days:
            figures[f"{view.name}:{month.month}:volume"] = _figure(volume_figure(month))
    summary = {
        f"{view.name}:rows": rows_figure(view),
        f"{view.name}:reject_rate": reject_rate_figure(view),
    }
    if view.spec.checks.freshness is not None:
        summary[f"{view.name}:lateness"] = lateness_figure(view)
    figures.update({name: _figure(figure) for name, figure in summary.items()})
    return DatasetContext(view, months, _selected(months), list(summary))


def _selected(months: list[MonthContext]) -> str:
    """The month the technical report opens on: the latest with an ERROR or a failed load, else
    the latest with any finding, else the latest loaded."""
    for wanted in (
        lambda m: any(f.verdict in ("ERROR", "FAILED") for f in m.findings),
        lambda m: bool(m.findings),
        lambda m: m.view.state != MISSING,
    ):
        chosen = [m.view.month for m in months if wanted(m)]
        if chosen:
            return chosen[-1]
    return months[-1].view.month


def _weeks(days: list[DayView]) -> list[list[DayView | None]]:
    """The month's days as calendar weeks, Monday first."""
    if not days:
        return []
    cells: list[DayView | None] = [None] * days[0].day.weekday() + list(days)
    cells += [None] * (-len(cells) % 7)
    return [cells[i : i + 7] for i in range(0, len(cells), 7)]


def _figure(figure: go.Figure) -> Any:
    """Data and layout only, as plain JSON (dates as text)."""
    return json.loads(pio.to_json(figure, validate=False))


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    """LAYOUT with a title; an `xaxis` given adds to LAYOUT's (whose margin keeps the slanted
    month labels whole) instead of replacing it."""
    if "xaxis" in extra:
        extra["xaxis"] = LAYOUT["xaxis"] | extra["xaxis"]
    return LAYOUT | {"title": {"text": title, "font": {"size": 14}}} | extra


def rows_figure(view: DatasetView) -> go.Figure:
    """Rows loaded and rejected per month (`DatasetView.row_bars`), and the rows still served
    where a month's latest attempt was not published."""
    months = [m.month for m in view.months]
    bars = [
        go.Bar(name=name, x=months, y=rows, marker_color=BAR_COLOURS[name])
        for name, rows in view.row_bars().items()
    ]
    served = view.served_earlier()
    if any(rows is not None for rows in served):
        marker = {"color": SERVED_COLOUR, "symbol": "diamond", "size": 9}
        bars.append(
            go.Scatter(name=SERVED_EARLIER, x=months, y=served, mode="markers", marker=marker)
        )
    return go.Figure(bars, layout=_layout("Rows per month", barmode="stack"))


def reject_rate_figure(view: DatasetView) -> go.Figure:
    """The share of lines rejected per month, against the allowed ratio."""
    months = [m.month for m in view.months]
    limit = view.spec.checks.max_reject_ratio
    return go.Figure(
        [
            go.Scatter(
                name="rejected / read",
                x=months,
                y=[m.reject_rate for m in view.months],
                mode="lines+markers",
                line_color=COLOURS["bad"],
            ),
            go.Scatter(
                name=f"allowed ({limit:.2%})",
                x=months,
                y=[limit] * len(months),
                mode="lines",
                line={"color": COLOURS["band"], "dash": "dash"},
            ),
        ],
        layout=_layout(
            "Reject rate",
            yaxis={"tickformat": ".2%", "hoverformat": ".2%", "rangemode": "tozero"},
        ),
    )


def lateness_figure(view: DatasetView) -> go.Figure:
    """Days after the freshness due day each month arrived (or is overdue)."""
    late = [m.late_days for m in view.months]
    return go.Figure(
        go.Bar(
            name="days after the due day",
            x=[m.month for m in view.months],
            y=late,
            marker_color=[COLOURS["bad"] if (d or 0) > 0 else COLOURS["good"] for d in late],
        ),
        layout=_layout("Arrival against the due day (days late)", yaxis={"zeroline": True}),
    )


def volume_figure(month: MonthView) -> go.Figure:
    """The month's rows per day, coloured by what the calendar and the volume band say."""
    days = [str(d.day) for d in month.days]
    colours = [
        COLOURS["bad"]
        if d.state == "missing" or d.outside_band
        else COLOURS["warn"]
        if d.state == "closed-rows"
        else COLOURS["ok"]
        for d in month.days
    ]
    traces = [go.Bar(name="rows", x=days, y=[d.rows for d in month.days], marker_color=colours)]
    if any(d.low is not None for d in month.days):
        traces += [
            go.Scatter(
                name=name,
                x=days,
                y=[getattr(d, bound) for d in month.days],
                mode="lines",
                line={"color": COLOURS["band"], "dash": "dot", "shape": "hvh"},
                connectgaps=False,
            )
            for name, bound in (("expected low", "low"), ("expected high", "high"))
        ]
    return go.Figure(traces, layout=_layout(f"{month.month}: rows per day", xaxis={"type": "date"}))
