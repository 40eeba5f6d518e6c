"""What an alert says: a mail (plain text, HTML with an inline chart, a CSV of the findings and
sample rejects) and the same words as a webhook's JSON.

The chart is drawn with matplotlib's Agg backend into a PNG in memory: Plotly's own image export
(kaleido) needs a browser of its own, and a mail reader runs no JavaScript anyway.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from functools import cache

import jinja2

from pipeline.reports.advice import Finding, reload_command, verdict
from pipeline.reports.data import DatasetView, MonthView
from pipeline.reports.html import BAR_COLOURS, SERVED_COLOUR, SERVED_EARLIER, templates

CHART_SIZE_INCHES = (7.0, 3.2)
CSV_FIELDS = (
    "kind",
    "dataset",
    "month",
    "check",
    "verdict",
    "summary",
    "recommendation",
    "line",
    "column",
    "value",
    "rule",
)


@dataclass(frozen=True)
class Alert:
    """What to say about one month of a dataset: new findings, or checks that passed again."""

    view: DatasetView  # the month last, after the trailing months its chart compares it with
    findings: Sequence[Finding]
    resolved: Sequence[str] = ()  # checks whose earlier finding the latest load no longer has
    report_url: str | None = None  # where readers open the dataset's report

    @property
    def month(self) -> MonthView:
        return self.view.months[-1]

    @property
    def subject(self) -> str:
        """`[pipeline] flights 2024-08: schema FAILED (ERROR)` (or `resolved: schema`)."""
        head = f"[pipeline] {self.view.name} {self.month.month}: "
        if self.findings:
            return head + ", ".join(finding.title for finding in self.findings)
        return head + f"resolved: {', '.join(self.resolved)}"

    @property
    def report_link(self) -> str | None:
        """The report, opened on this month if it has a section for it: a late month never
        attempted has none (the link went to an anchor the page lacks)."""
        if self.report_url is None or self.month.attempt is None:
            return self.report_url
        return f"{self.report_url}#{self.view.name}={self.month.month}"

    def text(self) -> str:
        """The plain-text part, also the webhook's `text`."""
        lines = [self.subject.removeprefix("[pipeline] "), "", verdict(self.view.spec, self.month)]
        if self.findings:
            lines += ["", *(f"- {finding.advice}" for finding in self.findings)]
        else:
            lines += [
                "",
                f"Resolved by the month's latest run: {', '.join(self.resolved)}. Nothing to do.",
            ]
        if self.report_link:
            lines += ["", f"Report: {self.report_link}"]
        return "\n".join(lines)


def email(alert: Alert, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """The mail: text, HTML with the chart inline (`cid:`), and the findings as CSV."""
    message = EmailMessage()
    message["Subject"] = alert.subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message.set_content(alert.text())
    chart_id = make_msgid(domain="pipeline.local")
    html = _template().render(
        alert=alert,
        verdict=verdict(alert.view.spec, alert.month),
        reload=reload_command(alert.view.name, alert.month.month),
        chart_cid=chart_id[1:-1],
    )
    message.add_alternative(html, subtype="html")
    message.get_payload()[1].add_related(
        chart_png(alert.view),
        maintype="image",
        subtype="png",
        cid=chart_id,
        filename="chart.png",
        disposition="inline",  # shown in the HTML, not listed as an attachment
    )
    if alert.findings:
        message.add_attachment(
            findings_csv(alert).encode(),
            maintype="text",
            subtype="csv",
            filename=f"{alert.view.name}-{alert.month.month}-findings.csv",
            params={"charset": "utf-8"},  # without it, a reader takes ASCII: `98–309` garbled
        )
    return message


def webhook_payload(alert: Alert) -> dict[str, object]:
    """Slack-compatible (`text`), with the findings as fields for other consumers."""
    return {
        "text": alert.text(),
        "dataset": alert.view.name,
        "month": alert.month.month,
        "findings": [
            {
                "check": f.check,
                "verdict": f.verdict,
                "summary": f.summary,
                "recommendation": f.advice,
            }
            for f in alert.findings
        ],
        "resolved": list(alert.resolved),
        "report": alert.report_link,
    }


def findings_csv(alert: Alert) -> str:
    """One row per finding, then the month's first rejected lines (the report's sample)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    base = {"dataset": alert.view.name, "month": alert.month.month}
    for finding in alert.findings:
        writer.writerow(
            base
            | {
                "kind": "finding",
                "check": finding.check,
                "verdict": finding.verdict,
                "summary": finding.summary,
                "recommendation": finding.advice,
            }
        )
    for sample in alert.month.samples:
        writer.writerow(
            base
            | {
                "kind": "rejected line",
                "line": sample["line"],
                "column": sample["column_name"],
                "value": sample["value"],
                "rule": sample["rule"],
            }
        )
    return out.getvalue()


def chart_png(view: DatasetView) -> bytes:
    """Rows per month (`DatasetView.row_bars`) and the reject rate, the alerted month
    highlighted."""
    import matplotlib

    matplotlib.use("Agg")  # no display, no browser: a PNG in memory
    from matplotlib.figure import Figure

    months = [m.month for m in view.months]
    figure = Figure(figsize=CHART_SIZE_INCHES, dpi=100)
    rows, rate = figure.subplots(1, 2)
    edge = ["#1f2933" if month == months[-1] else "none" for month in months]
    bottom = [0] * len(months)
    for label, bars in view.row_bars().items():
        heights = [height or 0 for height in bars]
        rows.bar(
            months,
            heights,
            bottom=bottom,
            color=BAR_COLOURS[label],
            edgecolor=edge,
            linewidth=1.5,
            label=label,
        )
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    served = view.served_earlier()
    if any(value is not None for value in served):
        rows.plot(months, _gaps(served), "D", color=SERVED_COLOUR, label=SERVED_EARLIER)
    rows.set_title("Rows per month", fontsize=10)
    rows.legend(fontsize=8)
    # A month that read nothing (not delivered, failed) is a gap, not a rate of 0%.
    rates = _gaps([None if m.reject_rate is None else 100 * m.reject_rate for m in view.months])
    rate.plot(months, rates, "o-", color="#d64545")
    rate.axhline(100 * view.spec.checks.max_reject_ratio, color="#9aa5b1", linestyle="--")
    rate.set_title("Reject rate (%)", fontsize=10)
    for axes in (rows, rate):
        axes.tick_params(axis="x", labelrotation=45, labelsize=7)
        axes.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _gaps(values: list[float | None]) -> list[float]:
    """None as NaN, which matplotlib leaves out (a line breaks there)."""
    return [math.nan if value is None else value for value in values]


@cache
def _template() -> jinja2.Template:
    return templates("pipeline.alerts").get_template("alert.html.j2")
