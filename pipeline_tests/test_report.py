"""The report as a person sees it: rendered by headless Chromium without a network, its numbers
checked against the warehouse; the PDF read back with pdftotext; the size of a large report."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from pipeline.alerts.message import chart_png
from pipeline.assets.loads import build_load_asset
from pipeline.audit import anchors_file
from pipeline.cli import main
from pipeline.definitions import build_resources, open_warehouse
from pipeline.partitions import freshness_deadline, month_days, month_range
from pipeline.reports.advice import advise, verdict
from pipeline.reports.build import output_path, write_report
from pipeline.reports.data import (
    FAILED,
    MISSING,
    PUBLISHED,
    REFUSED,
    CheckView,
    DatasetView,
    DayView,
    MonthView,
    RejectGroup,
)
from pipeline.reports.html import SERVED_EARLIER, reject_rate_figure, render_report, rows_figure
from pipeline.reports.pdf import BrowserMissing, find_browser
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline_tests.browser import rendered_dom, screenshot
from pipeline_tests.support import scalar

MONTHS = ("2024-01", "2024-02", "2024-03")
REFUSED_MONTH = "2024-03"  # 5% bad lines: the schema check (ERROR) refuses it


def load(
    settings: Settings,
    spec: DatasetSpec,
    months: tuple[str, ...] = MONTHS,
    undelivered: tuple[str, ...] = (),
) -> None:
    """Land and run each month through the load asset (write, audit, publish), as a run does;
    the `undelivered` months are run without a file."""
    with dg.DagsterInstance.get() as instance:  # DAGSTER_HOME: where the audit anchors go
        for month in months + undelivered:
            if month not in undelivered:
                defects = 0.05 if month == REFUSED_MONTH else 0.0
                seed = int(month[-2:])
                frame = month_frame(month, rows_per_day=12, seed=seed, defect_ratio=defects)
                write_tsv(frame, settings.landing_dir / spec.file_name(month))
            dg.materialize(
                [build_load_asset(spec)],
                partition_key=month,
                resources=build_resources(settings),
                instance=instance,
                raise_on_error=False,
            )


def shown_months(dom: str, opening: str) -> list[str]:
    """The months whose technical section is shown (not hidden)."""
    blocks = re.finditer(opening.format(r"([-\d]+)"), dom)
    return [block.group(1) for block in blocks if "hidden" not in block.group(0)]


class _Links(HTMLParser):
    """Every src and href in the page's markup (scripts' text is not markup)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value or "" for name, value in attrs if name in ("src", "href")]


def test_the_report_renders_offline_with_the_warehouse_numbers(
    deployment: Settings, flights: DatasetSpec, tmp_path: Path
) -> None:
    load(deployment, flights, undelivered=("2024-04",))
    with open_warehouse(deployment) as warehouse:
        page = write_report(warehouse, [flights], tmp_path / "flights", anchors())
    html = page.read_text()
    dom, log = rendered_dom(page, tmp_path / "profile")

    assert page.name == "flights.html"
    # Self-contained: plotly.js inlined once, nothing linked, nothing requested.
    assert html.count("Plotly.newPlot") == 1 and html.count("<script>") == 2
    links = _Links()
    links.feed(html)
    assert [link for link in links.links if not link.startswith("#")] == []
    assert "Content-Security-Policy" in html
    assert "violates the following Content Security Policy" not in log, log
    assert not re.search(r"CONSOLE.*https?://", log), log
    # The executive charts and the selected month's were drawn by plotly.js.
    assert dom.count('class="main-svg"') >= 2 * 4
    assert 'data-rendered="1"' in dom
    # The refused month and its check are named.
    assert "not published: schema FAILED (ERROR)" in dom
    grid_row = re.search(r'<tr data-month="2024-03">\s*<th>2024-03</th>(.*?)</tr>', dom, re.S)
    assert grid_row and grid_row.group(1).count("cell-ERROR") == 1
    opening = r'<div class="month" data-dataset="flights" data-month="{}"[^>]*>'
    assert shown_months(dom, opening) == ["2024-04"]  # the latest month with a finding
    assert f"pipeline load flights --from {REFUSED_MONTH} --to {REFUSED_MONTH}" in dom
    # Numbers are the warehouse's: rows of a published month, rejects of the refused one.
    rows = scalar(deployment, "select count(*) from raw.flights where _month = '2024-01'")
    rejected = scalar(
        deployment,
        "select rows_rejected from pipeline.load_ledger where month = '2024-03' "
        "and status = 'failed'",
    )
    figures = re.search(r'<tr data-month="2024-01"><th>2024-01</th>(.*?)</tr>', dom, re.S)
    assert figures and f">{rows:,}<" in figures.group(1)
    # A month whose run found no file has not arrived, however late the run was.
    undelivered = re.search(r'<tr data-month="2024-04"><th>2024-04</th>(.*?)</tr>', dom, re.S)
    assert undelivered
    *_, arrived, late = re.findall(r"<td[^>]*>(.*?)</td>", undelivered.group(1))
    assert arrived == "–" and float(late) > 0  # overdue since its due day, until now
    assert rejected and f"{rejected:,} of" in dom
    assert "Rejects by column and rule" in dom and "Audit trail" in dom
    # The tamper-evident log was verified for the report, and the report is an entry in it.
    assert "Tamper-evident log: verified." in dom and "anchored head(s) agree" in dom
    written = scalar(
        deployment,
        "select count(*) from pipeline.audit_log where kind = 'report_written' "
        f"and dataset = 'flights' and source_file = '{page}'",
    )
    assert written == 1

    # Drill-down works offline: the fragment opens another month and draws its chart.
    other, _ = rendered_dom(page, tmp_path / "profile", "#flights=2024-02")
    assert shown_months(other, opening) == ["2024-02"]
    assert 'data-figure="flights:2024-02:volume" data-drawn="1"' in other

    if deployment.warehouse == "duckdb":
        assert screenshot(page, tmp_path / "profile", "report-flights.png").stat().st_size > 10_000


def test_the_pdf_has_the_same_content(
    settings: Settings, flights: DatasetSpec, tmp_path: Path
) -> None:
    load(settings, flights, MONTHS[1:])
    with open_warehouse(settings) as warehouse:
        pdf = write_report(warehouse, [flights], tmp_path / "flights.pdf", anchors(), "2024-02")
        page = write_report(warehouse, [flights], tmp_path / "flights.html", anchors())
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True)
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert pages >= 3  # the summary, then one page per month
    assert "Executive summary" in text.stdout and "Audit trail" in text.stdout
    assert "flights 2024-03: not published: schema FAILED (ERROR)" in text.stdout
    assert "flights 2024-02: published" in text.stdout

    # Printed, every chart is drawn one to a row and narrower than an A4 page less Chromium's
    # margins and the page's padding (669 CSS px): wider, it would be cut off.
    printed, _ = rendered_dom(page, tmp_path / "profile", "#print")
    widths = [
        float(width)
        for width in re.findall(r'<svg class="main-svg"[^>]* width="([\d.]+)"', printed)
    ]
    assert widths and all(669 / 2 < width <= 669 for width in widths), widths


def test_a_pdf_without_a_browser_names_the_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("PIPELINE_CHROMIUM", raising=False)
    with pytest.raises(BrowserMissing, match="install Debian's `chromium` package"):
        find_browser()


def test_a_browser_set_but_missing_is_named_not_replaced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # `chromium` is on PATH here; the one asked for is not: no silent fallback to it.
    monkeypatch.setenv("PIPELINE_CHROMIUM", str(tmp_path / "chrome-linux" / "chrome"))
    with pytest.raises(BrowserMissing, match=r"PIPELINE_CHROMIUM=.*chrome is not a program"):
        find_browser()


def test_ten_datasets_of_three_years_stay_under_ten_megabytes(flights: DatasetSpec) -> None:
    """Aggregates, not rows: every month with findings, rejects, samples, a volume band and
    ledger rows, as large as a month of the report gets."""
    months = month_range("2022-01", "2024-12")
    views = []
    for index in range(10):
        spec = flights.model_copy(update={"name": f"dataset_{index}"})
        views.append(
            DatasetView(
                spec=spec,
                months=[_busy_month(month, refused=n % 5 == 0) for n, month in enumerate(months)],
                audit=[
                    _ledger_row(spec.name, month, "loaded") for month in months for _ in range(3)
                ],
                check_names=[f"check_{n}" for n in range(8)],
            )
        )
    size = len(render_report(views, "DuckDB").encode())
    print(f"report of 10 datasets x 36 months: {size / 1e6:.1f} MB")
    assert size < 10_000_000


def _busy_month(month: str, refused: bool) -> MonthView:
    checks = [
        CheckView(f"check_{n}", "ERROR" if n == 0 else "WARN", n > 2, 12.0, 0.0, "x" * 120)
        for n in range(8)
    ]
    days = [DayView(day, 600 + n, n % 7 != 3, 500, 700) for n, day in enumerate(month_days(month))]
    view = MonthView(
        month=month,
        state=REFUSED if refused else PUBLISHED,
        attempt=_ledger_row("dataset", month, "failed" if refused else "loaded"),
        due=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        arrived=dt.datetime(2029, 12, 30, tzinfo=dt.UTC),
        checks=checks,
        reject_groups=[
            RejectGroup(f"column_{n}", "is not a number", 300, 21, 17_000) for n in range(5)
        ],
        samples=[
            {"line": 21 + n, "column_name": "distance", "value": "12,5x", "rule": "is not a number"}
            for n in range(10)
        ],
        days=days,
        header=[f"column_{n}" for n in range(12)],
        extra_columns=["column_11"],
    )
    return view


def _ledger_row(dataset: str, month: str, status: str) -> dict[str, object]:
    return {
        "load_id": "0" * 32,
        "dataset": dataset,
        "month": month,
        "source_file": f"/data/landing/{dataset}_{month}.tsv",
        "file_size": 1_188_522_000,
        "fingerprint": "1188522-1796-" + "f" * 40,
        "rows_read": 17_286,
        "rows_loaded": 16_940,
        "rows_rejected": 346,
        "started_at": dt.datetime(2029, 12, 30, tzinfo=dt.UTC),
        "finished_at": dt.datetime(2029, 12, 30, 0, 5, tzinfo=dt.UTC),
        "run_id": "3a2624f2-0000-0000-0000-000000000000",
        "status": status,
        "error": "refused by check schema: 346 of 17286 lines rejected"
        if status == "failed"
        else None,
        "header": None,
        "candidate": "candidates.x__202403__abc, candidates.x__202403__abc_rejects"
        if status == "failed"
        else None,
    }


def anchors() -> Path:
    """The audit anchors file of the tests' Dagster instance (DAGSTER_HOME)."""
    with dg.DagsterInstance.get() as instance:
        return anchors_file(instance)


def test_a_refused_months_rows_are_not_drawn_as_loaded(flights: DatasetSpec) -> None:
    # The stakeholders' chart drew a refused month's valid rows as a blue "loaded" bar.
    view = DatasetView(
        spec=flights,
        months=[_busy_month("2024-01", refused=False), _busy_month("2024-02", refused=True)],
        audit=[],
        check_names=[],
    )
    bars = {bar.name: list(bar.y) for bar in rows_figure(view).data}
    assert bars["loaded"][1] is None and bars["loaded"][0] is not None
    assert bars["valid, not published"] == [None, 16_940]  # the refused load's rows_loaded
    assert SERVED_EARLIER not in bars  # nothing served from an earlier load
    assert '<span class="muted" title="valid rows of a load that was not published">(16,940)' in (
        render_report([view], "DuckDB")
    )


def test_a_month_whose_new_file_failed_shows_the_rows_still_served(flights: DatasetSpec) -> None:
    # A refused or failed reload showed the month as its refused rows, or empty (no bar, "–"),
    # while the warehouse went on serving the earlier load's rows.
    refused = _busy_month("2024-02", refused=True)
    failed = _busy_month("2024-03", refused=True)
    failed.state = FAILED
    failed.attempt = {**failed.attempt, "rows_read": None, "rows_loaded": None, "candidate": None}
    for month, rows in ((refused, 17_045), (failed, 16_920)):
        month.served = _ledger_row("dataset", month.month, "loaded") | {"rows_loaded": rows}
    published = _busy_month("2024-01", refused=False)
    published.served = published.attempt
    view = DatasetView(spec=flights, months=[published, refused, failed], audit=[], check_names=[])

    bars = {bar.name: list(bar.y) for bar in rows_figure(view).data}
    assert bars[SERVED_EARLIER] == [None, 17_045, 16_920]
    page = render_report([view], "DuckDB")
    figures = re.findall(r'<tr data-month="[\d-]+"><th>[\d-]+</th>(.*?)</tr>', page, re.S)
    served_cells = [re.findall(r"<td[^>]*>(.*?)</td>", row)[3] for row in figures]
    assert served_cells == ["16,940", "17,045", "16,920"]
    assert chart_png(view).startswith(b"\x89PNG")  # the alert's chart draws them too


def test_numbers_read_as_people_write_them(flights: DatasetSpec) -> None:
    # A helper read "1033.0" days late, a hovered reject rate of 0.02002, and "re-export
    # columns 4, 2, 3" in the order the rejects happened to be grouped.
    month = _busy_month("2024-01", refused=True)
    month.due = month.arrived - dt.timedelta(days=1033, hours=2)
    month.header = ["day", "a", "b", "c", "d"]
    month.reject_groups = [
        RejectGroup(column, "is not a number", 10, 2, 30) for column in ("c", "a", "b", "d")
    ]
    view = DatasetView(spec=flights, months=[month], audit=[], check_names=[])

    page = render_report([view], "DuckDB")
    assert '<td class="num">1,033</td>' in page and "1033.0" not in page
    assert reject_rate_figure(view).layout.yaxis.hoverformat == ".2%"
    schema = CheckView("schema", "ERROR", False, 30.0, 0.05, "30 lines rejected")
    advice = advise(flights, month, schema)
    # Every column with rejects, not only the three kinds spelled out ("columns 2, 3, 4").
    assert "where c is not a number, lines 2 to 30; " in advice  # was "have a c that is not"
    assert "; and 1 more kind(s); ask the sender to re-export columns 2, 3, 4, 5," in advice


def test_the_audit_table_shows_the_part_of_the_fingerprint_that_tells_files_apart(
    flights: DatasetSpec,
) -> None:
    # It showed the first 12 characters: the size and the start of the modification time, the
    # same for two versions of a file of one size.
    rows = [
        _ledger_row("flights", "2024-09", "loaded") | {"fingerprint": f"1142983-17964771-{digest}"}
        for digest in ("a9bc0123456789", "abe3fedcba9876")
    ]
    view = DatasetView(
        spec=flights, months=[_busy_month("2024-09", refused=False)], audit=rows, check_names=[]
    )
    page = render_report([view], "DuckDB")
    assert ">a9bc01234567</code>" in page and ">abe3fedcba98</code>" in page


def test_a_report_that_cannot_be_written_or_printed_is_one_line(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both were tracebacks: FileExistsError for a folder that is a file, RuntimeError for a
    # browser that printed nothing.
    with open_warehouse(settings) as warehouse:  # one to report on (a missing one is refused)
        warehouse.query("select 1 as one")
    (tmp_path / "afile").write_text("")
    cli = CliRunner()
    unwritable = cli.invoke(main, ["report", "flights", "-o", str(tmp_path / "afile" / "x.html")])
    monkeypatch.setenv("PIPELINE_CHROMIUM", "/bin/false")
    unprinted = cli.invoke(main, ["report", "flights", "-o", str(tmp_path / "x.pdf")])

    assert unwritable.exit_code == 2, unwritable.output
    assert f"{tmp_path / 'afile' / 'x.html'}: the report cannot be written there" in (
        unwritable.output
    )
    assert unprinted.exit_code == 1, unprinted.output
    assert "/bin/false could not print" in unprinted.output
    assert "Traceback" not in unwritable.output + unprinted.output


def test_a_report_asked_for_in_another_format_is_refused() -> None:
    # `-o report.docx` wrote HTML to report.docx.html.
    assert output_path(Path("out/report")) == Path("out/report.html")
    assert output_path(Path("out/report.PDF")) == Path("out/report.PDF")
    with pytest.raises(ValueError, match=r"report.docx: a report is written as .html or .pdf"):
        output_path(Path("out/report.docx"))


def test_the_due_day_is_the_last_day_on_time(flights: DatasetSpec) -> None:
    # `days_after_month_end: 5` is "due by the end of the 5th"; the report said the 6th, the
    # 00:00 UTC instant after it.
    freshness = flights.checks.freshness
    assert freshness is not None and freshness.days_after_month_end == 5
    month = MonthView(
        month="2024-01",
        state=MISSING,
        attempt=None,
        due=freshness_deadline("2024-01", freshness),
        arrived=None,
    )
    assert month.due_day == dt.date(2024, 2, 5)
    view = DatasetView(spec=flights, months=[month], audit=[], check_names=[])
    assert verdict(flights, month).startswith("not delivered: due 2024-02-05, ")
    assert "<td>2024-02-05</td>" in render_report([view], "DuckDB")
