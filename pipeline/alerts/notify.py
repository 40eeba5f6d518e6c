"""Decide what to announce about a month, announce it once, and remember it.

Called where a month's verdict is known — at the end of its load step, whichever way the run was
launched (the CLI, a sensor, a UI backfill), and by the freshness alert sensor — so every month
gets the same alert whatever ran it. Dagster's run-failure sensors would miss a month refused by
a check (a failed asset check does not fail a run: dagster issue 29896) and never fire for
`pipeline load`, which runs without the daemon.

Once: a finding (dataset, month, check, verdict) is announced for a file fingerprint once per
channel; `pipeline.alerts` is the memory. When a later load of the month publishes without a
finding that was announced, a short "resolved" message goes out, once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from pipeline.alerts.channels import Alerts, Delivery
from pipeline.alerts.message import Alert, email, webhook_payload
from pipeline.partitions import months_before
from pipeline.reports.advice import Finding, findings, reload_command
from pipeline.reports.data import PUBLISHED, DatasetView, read_dataset
from pipeline.specs import DatasetSpec
from pipeline.warehouse.base import META_SCHEMA, Warehouse, now
from pipeline.warehouse.ledger import ALERTS_TABLE, LEDGER_TABLE, AlertRecord

RESOLVED = "RESOLVED"
FRESHNESS = "freshness"
BUILD = "dbt"  # a month's models and tests, built after its load step published it
# Dagster's time-partition freshness check names the month it waited for in its description.
EXPECTED_MONTH = re.compile(r"partition (\d{4}-\d{2}) to have arrived")
TRAILING_MONTHS = 6  # the chart compares the month with this many before it
ALWAYS = ("FAILED",)  # a load that failed is announced whatever the spec's `alerts.on` says


def notify_month(
    warehouse: Warehouse,
    alerts: Alerts,
    spec: DatasetSpec,
    month: str,
    run_id: str,
    report_url: str | None = None,
) -> list[AlertRecord]:
    """Announce the month's new findings (and resolutions) on every configured channel."""
    if not (alerts.email_on or alerts.webhook_on):
        return []
    view = _trailing(warehouse, spec, month)
    current = view.months[-1]
    wanted = [
        finding
        for finding in findings(spec, current)
        if finding.verdict in ALWAYS or finding.verdict in spec.alerts.on
    ]
    fingerprint = (current.attempt or {}).get("fingerprint") or ""
    resolvable = current.state == PUBLISHED
    return announce(
        warehouse, alerts, view, wanted, fingerprint, run_id, report_url, resolvable=resolvable
    )


def notify_late(
    warehouse: Warehouse,
    alerts: Alerts,
    spec: DatasetSpec,
    description: str,
    severity: str,
    run_id: str,
    report_url: str | None = None,
) -> list[AlertRecord]:
    """Announce a failed freshness check: the month it expected has not arrived. Announced
    whatever the spec's `alerts.on` says (a month that never came is no finding of a load), once
    per month; the month's first good load resolves it."""
    found = EXPECTED_MONTH.search(description)
    if found is None or not (alerts.email_on or alerts.webhook_on):
        return []
    month = found.group(1)
    late = Finding(
        month,
        FRESHNESS,
        severity,
        description,
        f"{month}: the file ({spec.file_name(month)}) has not arrived; ask the sender for it, "
        f"then {reload_command(spec.name, month)} once it has landed (or let the landing sensor "
        "load it)",
    )
    view = _trailing(warehouse, spec, month)
    return announce(warehouse, alerts, view, [late], "", run_id, report_url, resolvable=False)


def notify_build(
    warehouse: Warehouse,
    alerts: Alerts,
    spec: DatasetSpec,
    month: str,
    run_id: str,
    error: str | None,
    report_url: str,
) -> list[AlertRecord]:
    """Announce that a published month's dbt build failed (`error`), once, or resolve such an
    announcement when a later build succeeds (`error` None). The load step's own alerts neither
    send nor resolve this one: it runs before dbt."""
    if not (alerts.email_on or alerts.webhook_on):
        return []
    if error is None and not _has_open(warehouse, spec.name, month, BUILD):
        return []  # the usual case: a good build, nothing announced to resolve (no report read)
    wanted = []
    if error is not None:
        first = error.splitlines()[0]
        wanted = [
            Finding(
                month,
                BUILD,
                "FAILED",
                first,
                f"{month}: the month was published, but its dbt models and tests did not build "
                f"({first}). Fix the model or the spec the message names, then "
                f"{reload_command(spec.name, month)}",
            )
        ]
    view = _trailing(warehouse, spec, month)
    return announce(
        warehouse,
        alerts,
        view,
        wanted,
        "",
        run_id,
        report_url,
        resolvable=not wanted,
        resolves=[BUILD],
    )


def announce(
    warehouse: Warehouse,
    alerts: Alerts,
    view: DatasetView,
    wanted: Sequence[Finding],
    fingerprint: str,
    run_id: str,
    report_url: str | None,
    *,
    resolvable: bool,
    resolves: Sequence[str] | None = None,
) -> list[AlertRecord]:
    """Send what each channel has not announced yet; with `resolvable`, resolve the open
    findings that `wanted` no longer has: those of the checks in `resolves`, if given, else all
    but the dbt build's (resolved by a build, not by a load)."""
    month = view.months[-1].month
    history = _history(warehouse, view.name, month)
    records = []
    for channel, on in (("email", alerts.email_on), ("webhook", alerts.webhook_on)):
        if not on:
            continue
        announced = _open(history, channel)
        new = [f for f in wanted if (f.verdict, fingerprint) not in announced.get(f.check, set())]
        still = {f.check for f in wanted}
        gone = [
            check
            for check in announced
            if resolvable
            and check not in still
            and (check != BUILD if resolves is None else check in resolves)
        ]
        for alert in ([Alert(view, new, report_url=report_url)] if new else []) + (
            [Alert(view, [], gone, report_url=report_url)] if gone else []
        ):
            records += _deliver(warehouse, alerts, channel, alert, fingerprint, run_id)
    return records


def _trailing(warehouse: Warehouse, spec: DatasetSpec, month: str) -> DatasetView:
    """The month and the ones before it that the spec has (for the chart)."""
    earlier = [m for m in months_before(month, TRAILING_MONTHS) if m >= spec.start_month]
    return read_dataset(warehouse, spec, [*earlier, month])


def _history(warehouse: Warehouse, dataset: str, month: str) -> list[dict[str, Any]]:
    return warehouse.query(
        f"select * from {META_SCHEMA}.{ALERTS_TABLE} where dataset = ? and month = ? "
        "and status = 'sent' order by sent_at",
        [dataset, month],
    )


def undelivered(warehouse: Warehouse) -> list[dict[str, Any]]:
    """The alerts whose newest delivery on their channel failed, sent by the month's latest run
    (a later run of the month sent its own, or had nothing left to say): one row each, with
    dataset, month, check_name, channel, error, and `attempt`, the month's latest load status.
    The month's next run sends them again; nothing runs a refused file again unasked, so
    `pipeline doctor` lists them."""
    # In the warehouse: both tables grow with every run, and only the newest rows count.
    return warehouse.query(
        f"""
        with alerts as (
            select dataset, month, check_name, channel, status, error, run_id,
                row_number() over (
                    partition by dataset, month, check_name, channel order by sent_at desc
                ) as recency
            from {META_SCHEMA}.{ALERTS_TABLE}
        ),
        attempts as (
            select dataset, month, run_id, status,
                row_number() over (partition by dataset, month order by finished_at desc)
                    as recency
            from {META_SCHEMA}.{LEDGER_TABLE}
        )
        select a.dataset, a.month, a.check_name, a.channel, a.error, l.status as attempt
        from alerts a
        join attempts l
            on l.dataset = a.dataset and l.month = a.month and l.recency = 1
            and l.run_id = a.run_id
        where a.recency = 1 and a.status = 'failed'
        order by a.dataset, a.month, a.check_name, a.channel
        """
    )


def _has_open(warehouse: Warehouse, dataset: str, month: str, check: str) -> bool:
    """Whether a finding of `check` for the month was announced on some channel and not yet
    resolved there."""
    history = _history(warehouse, dataset, month)
    return any(check in _open(history, row["channel"]) for row in history)


def _open(history: list[dict[str, Any]], channel: str) -> dict[str, set[tuple[str, str]]]:
    """Per check, the (verdict, fingerprint) pairs announced on `channel` since its last
    resolution: an open finding, already said."""
    announced: dict[str, set[tuple[str, str]]] = {}
    for row in history:
        if row["channel"] != channel:
            continue
        if row["verdict"] == RESOLVED:
            announced.pop(row["check_name"], None)
        else:
            announced.setdefault(row["check_name"], set()).add(
                (row["verdict"], row["fingerprint"] or "")
            )
    return announced


def _deliver(
    warehouse: Warehouse,
    alerts: Alerts,
    channel: str,
    alert: Alert,
    fingerprint: str,
    run_id: str,
) -> list[AlertRecord]:
    """Send one alert on one channel and record each finding (or resolution) it carried."""
    recipients = list(dict.fromkeys([*alerts.recipients, *alert.view.spec.alerts.email]))
    if channel == "email":
        if not recipients or not alerts.sender:
            delivery = Delivery("failed", 0, "no recipients or sender: set PIPELINE_ALERT_TO/FROM")
        else:
            delivery = alerts.send_email(email(alert, alerts.sender, recipients), recipients)
    else:
        recipients = ["webhook"]
        delivery = alerts.post_webhook(webhook_payload(alert))
    alert_id, sent_at = uuid.uuid4().hex, now()
    items = [(f.check, f.verdict) for f in alert.findings] or [
        (check, RESOLVED) for check in alert.resolved
    ]
    records = [
        AlertRecord(
            alert_id=alert_id,
            dataset=alert.view.name,
            month=alert.month.month,
            check_name=check,
            verdict=verdict,
            fingerprint=fingerprint,
            channel=channel,
            recipients=", ".join(recipients),
            subject=alert.subject,
            status=delivery.status,
            attempts=delivery.attempts,
            error=delivery.error,
            run_id=run_id,
            sent_at=sent_at,
        )
        for check, verdict in items
    ]
    for record in records:
        warehouse.record_alert(record)
    return records
