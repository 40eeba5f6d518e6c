"""Prometheus metrics: the textfile and the push describe every month as the warehouse has it."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner
from dagster._utils.schedules import cron_string_iterator
from prometheus_client.parser import text_string_to_metric_families

from pipeline.assets.freshness import deadline_cron
from pipeline.assets.loads import build_load_asset
from pipeline.cli import main
from pipeline.definitions import build_resources
from pipeline.metrics import METRICS, MetricsExport, MetricsNotSent
from pipeline.partitions import freshness_deadline
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec, FreshnessSpec
from pipeline.warehouse.base import Warehouse
from pipeline.warehouse.ledger import CheckRecord, LedgerEntry, PhaseRecord

UTC = dt.UTC


def at(day: str, hour: int = 0) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def attempt(month: str, status: str, finished: dt.datetime, rows: int | None, **extra: object):
    """A ledger row as the load step writes it; `rows` None for an attempt that read nothing."""
    return LedgerEntry(
        load_id=f"{month}-{status}-{finished:%d%H}",
        dataset="flights",
        month=month,
        source_file=f"/landing/flights_{month}.tsv",
        file_size=None if rows is None else rows * 70,
        fingerprint=None,
        rows_read=rows,
        rows_loaded=None if rows is None else rows - rows // 10,
        rows_rejected=None if rows is None else rows // 10,
        started_at=finished - dt.timedelta(minutes=5),
        finished_at=finished,
        run_id=f"run-{month}-{finished:%d%H}",
        status=status,
        **extra,
    )


def verdict(entry: LedgerEntry, check: str, severity: str, passed: bool) -> CheckRecord:
    return CheckRecord(
        "flights", entry.month, check, severity, passed, None, None, "", entry.run_id,
        entry.finished_at, entry.load_id,
    )  # fmt: skip


@pytest.fixture
def history(warehouse: Warehouse) -> dict[str, LedgerEntry]:
    """Three months' bookkeeping, written as the load step writes it.

    2024-01 published, then a redelivery refused by its schema check (January's published rows
    are still served); 2024-02 only ever missing its file; 2024-03 published, then purged.
    """
    rows = {
        "jan": attempt("2024-01", "loaded", at("2024-02-07", 12), 1000),
        "jan_refused": attempt("2024-01", "failed", at("2024-03-01"), 1200, candidate="c.t"),
        "feb_missing": attempt("2024-02", "failed", at("2024-03-02"), None),
        "mar": attempt("2024-03", "loaded", at("2024-04-03"), 900),
        "mar_purged": attempt("2024-03", "purged", at("2024-04-09"), None),
    }
    for entry in rows.values():
        warehouse.record_load(entry)
    for entry, passed in ((rows["jan"], True), (rows["jan_refused"], False)):
        warehouse.record_check(verdict(entry, "schema", "ERROR", passed))
        warehouse.record_check(verdict(entry, "volume", "INFO", True))
    for entry in (rows["jan"], rows["jan_refused"]):
        warehouse.record_phases(
            [
                PhaseRecord("flights", "2024-01", entry.run_id, phase, seconds, entry.finished_at)
                for phase, seconds in (("read and validate", 61.5), ("checks", 4.0))
            ]
        )
    return rows


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition by name and sorted labels, as prometheus_client parses it."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted({"dataset": "flights", **labels}.items()))))


def test_the_textfile_describes_every_month_as_the_ledger_and_checks_have_it(
    warehouse: Warehouse, history: dict[str, LedgerEntry], flights: DatasetSpec, tmp_path: Path
) -> None:
    written = MetricsExport(textfile_dir=str(tmp_path / "textfiles")).export(warehouse, flights)

    path = tmp_path / "textfiles" / "flights.prom"
    assert written == [str(path)]
    assert [p.name for p in path.parent.iterdir()] == ["flights.prom"]  # no temp file left
    found = samples(path.read_text())
    ledger = {
        (row["month"], row["status"]): row
        for row in warehouse.query("select * from pipeline.load_ledger where dataset = 'flights'")
    }
    # January: the refused redelivery is what its figures and checks describe; still published.
    refused = ledger[("2024-01", "failed")]
    for outcome, figure in (
        ("read", "read"),
        ("not_published", "loaded"),
        ("rejected", "rejected"),
    ):
        expected = refused[f"rows_{figure}"]
        assert value(found, "pipeline_rows", month="2024-01", outcome=outcome) == expected
    # Its valid rows were never loaded: a dashboard summing `loaded` drew them as served.
    assert value(found, "pipeline_rows", month="2024-01", outcome="loaded") is None
    assert refused["rows_read"] == 1200
    assert value(found, "pipeline_file_bytes", month="2024-01") == refused["file_size"]
    assert value(found, "pipeline_month_published", month="2024-01") == 1
    assert (
        value(found, "pipeline_check_passed", month="2024-01", check="schema", severity="ERROR")
        == 0
    )
    assert (
        value(found, "pipeline_check_passed", month="2024-01", check="volume", severity="INFO") == 1
    )
    assert value(found, "pipeline_load_duration_seconds", month="2024-01", phase="checks") == 4.0
    # Due 2024-02-06 00:00 UTC (5 days after the month), first published on the 7th at noon.
    assert value(found, "pipeline_month_lateness_days", month="2024-01") == 1.5
    # February never had a file: not published, no figures.
    assert value(found, "pipeline_month_published", month="2024-02") == 0
    assert value(found, "pipeline_rows", month="2024-02", outcome="read") is None
    # March was published early, then purged.
    assert value(found, "pipeline_month_published", month="2024-03") == 0
    assert value(found, "pipeline_rows", month="2024-03", outcome="read") is None
    assert value(found, "pipeline_month_lateness_days", month="2024-03") == -3
    last = max(row["finished_at"] for (_, status), row in ledger.items() if status == "loaded")
    assert value(found, "pipeline_last_success_timestamp_seconds") == last.timestamp()
    assert {name for name, _ in found} == set(METRICS)


class Pushgateway(http.server.BaseHTTPRequestHandler):
    """Stands in for a Pushgateway: keeps what was PUT, per path."""

    received: ClassVar[dict[str, str]] = {}

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received[self.path] = body.decode()
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def pushgateway() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), Pushgateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Pushgateway.received = {}
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_the_same_metrics_are_pushed_grouped_by_dataset(
    settings: Settings,
    pushgateway: str,
    flights: DatasetSpec,
    tmp_path: Path,
) -> None:
    from pipeline.definitions import open_warehouse

    with open_warehouse(settings) as warehouse:
        warehouse.record_load(attempt("2024-01", "loaded", at("2024-02-07", 12), 1000))
        export = MetricsExport(textfile_dir=str(tmp_path), pushgateway_url=pushgateway)
        written = export.export(warehouse, flights)
        # A gateway out of reach: the textfile is written all the same, and the error says so
        # (the run's warning said "timings or metrics not updated").
        unreachable = MetricsExport(
            textfile_dir=str(tmp_path / "again"), pushgateway_url="http://127.0.0.1:9"
        )
        unsent = r"not pushed to http://127\.0\.0\.1:9: "
        with pytest.raises(MetricsNotSent, match=unsent) as refused:
            unreachable.export(warehouse, flights)
    assert f"(written to {tmp_path / 'again' / 'flights.prom'} all the same)" in str(refused.value)

    assert written == [str(tmp_path / "flights.prom"), pushgateway]
    pushed = Pushgateway.received["/metrics/job/pipeline/dataset/flights"]
    assert samples(pushed) == samples((tmp_path / "flights.prom").read_text())
    assert value(samples(pushed), "pipeline_rows", month="2024-01", outcome="read") == 1000


def test_the_load_step_writes_the_metrics_whoever_runs_it_and_trouble_is_only_a_warning(
    settings: Settings, flights: DatasetSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A UI backfill or a sensor runs the load step without the CLI: the step writes them."""
    write_tsv(month_frame("2024-01", 10, seed=1), settings.landing_dir / "flights_2024-01.tsv")
    monkeypatch.setenv("PIPELINE_METRICS_DIR", str(tmp_path / "textfiles"))

    instance = dg.DagsterInstance.ephemeral()

    def load() -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [build_load_asset(flights)],
            partition_key="2024-01",
            resources=build_resources(Settings.from_env()),
            instance=instance,
        )

    written = load()
    (tmp_path / "blocked").write_text("a file where the folder should be")
    monkeypatch.setenv("PIPELINE_METRICS_DIR", str(tmp_path / "blocked"))
    blocked = load()

    found = samples((tmp_path / "textfiles" / "flights.prom").read_text())
    assert written.success and value(found, "pipeline_month_published", month="2024-01") == 1
    phases = {dict(labels)["phase"] for name, labels in found if "duration" in name}
    assert phases == {"read and validate", "stage", "checks", "publish"}
    assert blocked.success  # the month published; only its metrics could not be written
    messages = [entry.user_message for entry in instance.all_logs(blocked.run_id)]
    blocked_file = tmp_path / "blocked" / "flights.prom"
    assert any(f"flights 2024-01: metrics not written to {blocked_file}" in m for m in messages)


def test_a_purge_rewrites_the_metrics_at_once(
    settings: Settings,
    instance: dg.DagsterInstance,
    flights: DatasetSpec,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The purged month stayed `published 1` until some later load of the dataset rewrote them.
    write_tsv(month_frame("2024-01", 10, seed=1), settings.landing_dir / "flights_2024-01.tsv")
    monkeypatch.setenv("PIPELINE_METRICS_DIR", str(tmp_path / "textfiles"))
    dg.materialize(
        [build_load_asset(flights)],
        partition_key="2024-01",
        resources=build_resources(Settings.from_env()),
        instance=instance,
    )
    textfile = tmp_path / "textfiles" / "flights.prom"
    assert value(samples(textfile.read_text()), "pipeline_month_published", month="2024-01") == 1

    purged = CliRunner().invoke(main, ["purge", "flights", "--month", "2024-01", "--yes"])

    assert purged.exit_code == 0, purged.output
    assert value(samples(textfile.read_text()), "pipeline_month_published", month="2024-01") == 0


def test_the_lateness_deadline_is_the_freshness_checks_own() -> None:
    freshness = FreshnessSpec(days_after_month_end=5)
    for month, end in (("2024-01", "2024-02-01"), ("2024-02", "2024-03-01")):
        tick = next(cron_string_iterator(at(end).timestamp(), deadline_cron(freshness), "UTC"))
        assert freshness_deadline(month, freshness) == tick


DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
METRIC_NAME = re.compile(r"\bpipeline_[a-z_]+\b")


def test_every_dashboard_panel_queries_metrics_the_pipeline_writes() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "pipeline.json").read_text())
    queried: set[str] = set()

    for panel in dashboard["panels"]:
        expressions = [target["expr"] for target in panel["targets"]]
        names = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
        assert names and names <= set(METRICS), panel["title"]
        assert all(expr.count("(") == expr.count(")") for expr in expressions), panel["title"]
        queried |= names

    assert queried == set(METRICS)  # nothing written goes unshown
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert variables == {"datasource", "dataset"}


def test_alert_rules_name_metrics_the_pipeline_writes() -> None:
    (group,) = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    rules = {rule["alert"]: rule for rule in group["rules"]}

    assert set(rules) == {
        "PipelineNoPublishedMonth",
        "PipelineRejectRateHigh",
        "PipelineErrorCheckFailed",
    }
    for rule in rules.values():
        assert set(METRIC_NAME.findall(rule["expr"])) <= set(METRICS)
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
    assert 'severity="ERROR"' in rules["PipelineErrorCheckFailed"]["expr"]
