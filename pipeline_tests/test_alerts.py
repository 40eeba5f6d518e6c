"""Alerts through a real SMTP server (aiosmtpd on 127.0.0.1) and a local webhook: one mail for a
failing month, none for a clean one or a re-run, a resolved mail after a good reload."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import pytest

from pipeline.alerts.channels import Alerts
from pipeline.assets.loads import build_load_asset
from pipeline.assets.reports import build_report_asset
from pipeline.definitions import build_definitions, build_resources, open_warehouse
from pipeline.doctor import examine_smtp, examine_undelivered
from pipeline.jobs import FRESHNESS_JOB
from pipeline.reports.data import read_dataset
from pipeline.sample_data import month_frame, write_tsv
from pipeline.sensors import FRESHNESS_ALERTS_SENSOR
from pipeline.settings import AlertSettings, Settings
from pipeline.specs import AlertsSpec, DatasetSpec
from pipeline_tests.mailserver import PASSWORD, Inbox, free_port
from pipeline_tests.support import scalar

TOKEN = "hook-token-77c1"


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict]]:
    posts: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert self.path == f"/hooks/{TOKEN}"
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(
        "PIPELINE_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hooks/{TOKEN}"
    )
    yield posts
    server.shutdown()


def run_month(
    settings: Settings,
    spec: DatasetSpec,
    month: str,
    instance: dg.DagsterInstance,
    defects: float | None,
) -> dg.ExecuteInProcessResult:
    """Land the month's file (unless `defects` is None: the same file again) and run its load
    and report, as the month's job does (without dbt)."""
    if defects is not None:
        frame = month_frame(month, rows_per_day=12, seed=int(month[-2:]), defect_ratio=defects)
        write_tsv(frame, settings.landing_dir / spec.file_name(month))
    return dg.materialize(
        [build_load_asset(spec), build_report_asset(spec)],
        partition_key=month,
        resources=build_resources(Settings.from_env()),
        instance=instance,
        raise_on_error=False,
    )


def parts(message: EmailMessage) -> dict[str, list[EmailMessage]]:
    found: dict[str, list[EmailMessage]] = {}
    for part in message.walk():
        found.setdefault(part.get_content_type(), []).append(part)
    return found


def test_one_mail_per_failing_month_and_a_resolved_mail_after_a_good_reload(
    settings: Settings,
    instance: dg.DagsterInstance,
    flights: DatasetSpec,
    inbox: Inbox,
    webhook: list[dict],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clean = run_month(settings, flights, "2024-01", instance, defects=0.0)
    assert clean.success and inbox.messages == [] and webhook == []
    # The month's page in the UI links to its section of the report the run wrote.
    raw = instance.fetch_materializations(dg.AssetKey(["raw", "flights"]), limit=1).records[0]
    link = raw.asset_materialization.metadata["report"].value
    report = settings.reports_dir / "flights.html"
    assert link == f"{report.resolve().as_uri()}#flights=2024-01" and report.is_file()

    # Served where readers open it: the mail links there, not to a file on the loader's machine.
    monkeypatch.setenv("PIPELINE_REPORTS_URL", "https://reports.example.test/quality/")
    refused = run_month(settings, flights, "2024-02", instance, defects=0.05)
    assert not refused.success
    (mail,) = inbox.messages
    assert mail["Subject"] == "[pipeline] flights 2024-02: schema FAILED (ERROR)"
    assert mail["To"] == "data-owner@example.test, ops@example.test"
    found = parts(mail)
    html = found["text/html"][0].get_content()
    (image,) = found["image/png"]
    assert f'src="cid:{image["Content-ID"][1:-1]}"' in html
    assert image.get_content()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.get_content_disposition() == "inline"
    assert "pipeline load flights --from 2024-02 --to 2024-02" in html
    (attachment,) = found["text/csv"]
    assert attachment.get_content_charset() == "utf-8"  # a reader took ASCII: `98–309` garbled
    assert "The findings and the first rejected lines are attached as CSV." in html
    rows = attachment.get_content().splitlines()
    assert rows[0].startswith("kind,dataset,month,check,verdict")
    assert rows[1].startswith("finding,flights,2024-02,schema,ERROR")
    assert sum(row.startswith("rejected line,flights,2024-02") for row in rows) == 10
    assert "ask the sender to re-export column" in found["text/plain"][0].get_content()
    assert "(nothing of 2024-02 is served)" in found["text/plain"][0].get_content()
    link = "https://reports.example.test/quality/flights.html#flights=2024-02"
    assert f'<a href="{link}">' in html and report.is_file()
    assert "file://" not in html
    # The asset's page shows the refusal's figures and its report link (observation only).
    refusal = (
        instance.fetch_observations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(["raw", "flights"]), asset_partitions=["2024-02"]
            ),
            limit=1,
        )
        .records[0]
        .asset_observation.metadata
    )
    assert refusal["rows_rejected"].value > 0 and refusal["report"].value.endswith("=2024-02")
    # The refused month's report was written by its load step, its own step being skipped.
    written = instance.get_latest_materialization_event(dg.AssetKey(["reports", "flights"]))
    assert written is not None and written.run_id == refused.run_id
    # Its chart draws the refused month's valid rows apart, as the report does, not as loaded.
    with open_warehouse(settings) as warehouse:
        bars = read_dataset(warehouse, flights, ["2024-01", "2024-02"]).row_bars()
    assert bars["loaded"][1] is None and bars["valid, not published"][0] is None
    assert bars["loaded"][0] > 0 and bars["valid, not published"][1] > 0
    (post,) = webhook
    assert post["text"].startswith("flights 2024-02: schema FAILED (ERROR)")
    assert post["findings"][0]["check"] == "schema"
    assert post["report"] == link

    run_month(settings, flights, "2024-02", instance, defects=None)  # the same file again
    assert len(inbox.messages) == 1 and len(webhook) == 1

    fixed = run_month(settings, flights, "2024-02", instance, defects=0.0)
    assert fixed.success
    resolved = inbox.messages[-1]
    assert len(inbox.messages) == 2
    assert resolved["Subject"] == "[pipeline] flights 2024-02: resolved: schema"
    assert "text/csv" not in parts(resolved)
    assert webhook[-1]["resolved"] == ["schema"] and len(webhook) == 2
    run_month(settings, flights, "2024-02", instance, defects=None)
    assert len(inbox.messages) == 2  # resolved once
    sent = scalar(settings, "select count(*) from pipeline.alerts where status = 'sent'")
    assert sent == 4  # ERROR and RESOLVED, by email and by webhook
    audited = scalar(
        settings,
        "select count(*) from pipeline.audit_log where kind = 'alert_sent' and month = '2024-02'",
    )
    assert audited == sent  # each alert that got through is an entry of the audit log
    # A bad redelivery of a published month: the mail says the good load is still served.
    run_month(settings, flights, "2024-02", instance, defects=0.05)
    served = scalar(
        settings,
        "select max(finished_at) from pipeline.load_ledger "
        "where status = 'loaded' and month = '2024-02'",
    )
    rows = scalar(
        settings,
        "select count(*) from raw.flights where _month = '2024-02'",
    )
    text = parts(inbox.messages[-1])["text/plain"][0].get_content()
    # What readers get, in figures: a stakeholder could not tell it from the refused file's.
    assert (
        f"(the load of {served:%Y-%m-%d %H:%M} UTC is still served: {rows:,} rows from "
        "flights_2024-02.tsv)"
    ) in text
    assert set(inbox.logins) == {"PLAIN"} or set(inbox.logins) == {"LOGIN"}
    # The password and the webhook token are in no output, instance file or alert record.
    output = capfd.readouterr()
    records = str(instance_files_text(tmp_path)) + output.out + output.err
    assert PASSWORD not in records and TOKEN not in records
    ledger = scalar(
        settings,
        "select string_agg(recipients || subject || coalesce(error, ''), ' ') from pipeline.alerts",
    )
    assert PASSWORD not in str(ledger) and TOKEN not in str(ledger)


def instance_files_text(root: Path) -> list[str]:
    """Every file under the test's folder (DAGSTER_HOME, the reports, the warehouse) as text."""
    return [
        path.read_bytes().decode("latin-1")
        for path in root.rglob("*")
        if path.is_file() and path.suffix != ".duckdb"
    ] + [path.read_bytes().decode("latin-1") for path in root.rglob("*.duckdb")]


def test_a_failed_delivery_is_retried_recorded_and_never_fails_the_load(
    settings: Settings, flights: DatasetSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("PIPELINE_SMTP_PORT", str(free_port()))  # nobody listens
    monkeypatch.setenv("PIPELINE_ALERT_FROM", "pipeline@example.test")
    monkeypatch.setenv("PIPELINE_ALERT_TO", "data-owner@example.test")
    frame = month_frame("2024-02", rows_per_day=12, seed=2, defect_ratio=0.05)
    write_tsv(frame, settings.landing_dir / flights.file_name("2024-02"))
    resources = build_resources(Settings.from_env())
    resources["alerts"] = Alerts(
        **(resources["alerts"].model_dump() | {"retry_delay_seconds": 0.05})
    )
    instance = dg.DagsterInstance.ephemeral()

    def load() -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [build_load_asset(flights)],
            partition_key="2024-02",
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )

    result = load()
    (failure,) = result.get_step_failure_events()
    assert "not published, check schema" in failure.step_failure_data.error.message
    row = scalar(settings, "select status || ' ' || attempts || ' ' || error from pipeline.alerts")
    assert str(row).startswith("failed 3 ConnectionRefusedError")
    audited = scalar(settings, "select count(*) from pipeline.audit_log where kind = 'alert_sent'")
    assert audited == 0  # an alert that did not get through was not sent
    # Nothing runs a refused file again by itself: doctor says what was not delivered, and how.
    pending = examine_undelivered(Settings.from_env())
    assert pending is not None and not pending.ok
    assert pending.message.startswith(
        "1 alert(s) not delivered: flights 2024-02 schema by email (ConnectionRefusedError"
    )
    assert "pipeline load flights --from 2024-02 --to 2024-02 --retry-failed" in pending.hint
    # A corrected file published since: nothing is left to say, and doctor says nothing.
    write_tsv(
        month_frame("2024-02", 12, seed=2), settings.landing_dir / flights.file_name("2024-02")
    )
    assert load().success
    assert examine_undelivered(Settings.from_env()) is None


def test_a_webhook_url_without_its_scheme_fails_without_showing_its_token() -> None:
    # Regression: urllib's "unknown url type: 'hooks.slack.com/services/T0/B0/SECRET'" was
    # raised, and logged by the run with the token in it.
    alerts = Alerts(webhook_url="hooks.slack.com/services/T0/B0/SECRET", attempts=1)

    delivery = alerts.post_webhook({"text": "flights 2024-02"})

    assert delivery.status == "failed" and "SECRET" not in str(delivery.error)
    assert "PIPELINE_ALERT_WEBHOOK_URL does not start with https://" in str(delivery.error)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:9/hooks/T0 SECRET", "holds a space, a control character or"),
        ("http://127.0.0.1:9/hooks/SECRÉT", "holds a space, a control character or"),
        ("http://127.0.0.1:port/hooks/SECRET", "is not a valid URL (its host or its port)"),
        ("https://[abc/hooks/SECRET", "is not a valid URL (its host or its port)"),
    ],
)
def test_a_malformed_webhook_url_fails_without_showing_its_token(url: str, problem: str) -> None:
    # Regression: http.client's "URL can't contain control characters. '/hooks/T0 SECRET'"
    # was raised past the retries and logged by the run, token and all.
    delivery = Alerts(webhook_url=url, attempts=1).post_webhook({"text": "flights 2024-02"})

    assert delivery.status == "failed" and "SECRET" not in str(delivery.error)
    assert f"PIPELINE_ALERT_WEBHOOK_URL {problem}" in str(delivery.error)


def test_doctor_says_hello_to_the_smtp_server_and_sends_nothing(
    settings: Settings, inbox: Inbox
) -> None:
    finding = examine_smtp(AlertSettings.from_env())
    assert finding is not None and finding.ok
    assert str(finding).startswith("OK      smtp: 127.0.0.1:") and "answers EHLO (250)" in str(
        finding
    )
    assert inbox.messages == [] and PASSWORD not in str(finding)


def test_doctor_asks_for_default_recipients_only_where_a_spec_lists_none(
    settings: Settings, inbox: Inbox, flights: DatasetSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIPELINE_ALERT_TO")
    addressed = flights.model_copy(update={"alerts": AlertsSpec(email=["team@example.test"])})

    assert examine_smtp(AlertSettings.from_env(), [addressed]).ok
    unaddressed = examine_smtp(
        AlertSettings.from_env(), [addressed, flights.model_copy(update={"name": "trips"})]
    )
    assert not unaddressed.ok
    assert "PIPELINE_ALERT_TO not set" in str(unaddressed)
    assert "(trips list none in alerts.email)" in str(unaddressed)


def test_a_month_that_did_not_arrive_is_announced_once_and_resolved_when_it_loads(
    settings: Settings, instance: dg.DagsterInstance, flights: DatasetSpec, inbox: Inbox
) -> None:
    defs = build_definitions(Settings.from_env())
    sensor = defs.resolve_sensor_def(FRESHNESS_ALERTS_SENSOR)

    def check_and_alert() -> None:
        """The freshness job's run, then the alerts sensor's tick for it, as the daemon does."""
        run = defs.resolve_job_def(FRESHNESS_JOB).execute_in_process(instance=instance)
        success = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)[0]
        context = dg.build_run_status_sensor_context(
            sensor_name=FRESHNESS_ALERTS_SENSOR,
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(run.run_id),
            dagster_event=success.dagster_event,
            resources=defs.resources,
        )
        sensor(context)

    check_and_alert()
    # Both bundled datasets are late (their sample months are 2024's): one mail each.
    subjects = sorted(mail["Subject"] for mail in inbox.messages)
    assert len(subjects) == 2 and "settlements" in subjects[1], subjects
    month = re.search(r"flights (\d{4}-\d{2}): freshness FAILED \(WARN\)", subjects[0])
    assert month, subjects
    (mail,) = [mail for mail in inbox.messages if mail["Subject"] == subjects[0]]
    body = parts(mail)["text/plain"][0].get_content()
    assert f"pipeline load flights --from {month[1]} --to {month[1]}" in body
    # The report has no section for a month never loaded: the link opens the report itself.
    assert re.search(r"Report: \S+/flights\.html\s*$", body, re.MULTILINE), body
    check_and_alert()  # still late: nothing new to say
    assert len(inbox.messages) == 2

    run_month(settings, flights, month[1], instance, defects=0.0)
    assert inbox.messages[-1]["Subject"] == f"[pipeline] flights {month[1]}: resolved: freshness"
    assert len(inbox.messages) == 3
