"""The Dagster UI shows what the README says it shows: checked in a real browser.

`make ui-check` (CI runs it after `make test`; it takes a minute or two, so it is a script rather
than a pytest test): two months of flights are loaded into a temporary DAGSTER_HOME and DuckDB
file (2024-02 refused by its schema check, then 2024-01 published), `dagster-webserver` serves the
project's workspace on 127.0.0.1, and headless Chromium opens raw/flights. The overview must show
the column schema from the spec (types, non-nullable columns, rules), owners, tags and kinds; the
Partitions tab one materialized and one failed month; the Checks tab every month check, the
failed one as failed. `--screenshot PATH` also saves the overview (docs/ui-raw-flights.png).
"""

from __future__ import annotations

import argparse
import contextlib
import html.parser
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1400,1250",
    # Chromium's clock runs as fast as the page lets it, up to this much page time: enough for
    # the UI's GraphQL queries to answer and render.
    "--virtual-time-budget=30000",
]
MONTH_CHECKS = (
    "schema",
    "completeness",
    "closed_days",
    "schema_drift",
    "volume",
    "rule_longer_than_any_route",
)
EXPECTED = {
    "": [
        "Columns",
        "decimal(10,2)",  # fare, from the spec
        "non-nullable",
        "^[A-Z0-9]{2}$",  # carrier's pattern, a rule shown as its description
        "one of EWR, JFK, LGA",
        "The load that published the row",  # _load_id, a load column
        "data-platform",  # owners: team:data-platform
        "aviation",  # tags: domain: aviation
        "DuckDB",  # kinds: the warehouse in use
        "Latest check results",
    ],
    "?view=partitions": ["Materialized (1)", "Failed (1)"],
    "?view=checks": [*MONTH_CHECKS, "Failed", "Succeeded"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path, help="save raw/flights' overview here (PNG)")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed: `make system-packages`")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pipeline-ui-") as folder:
        home = Path(folder)
        _use_a_deployment_in(home)
        _load_months(["2024-02", "2024-01"])
        with _webserver(home) as url:
            for view, expected in EXPECTED.items():
                text = _page_text(chromium, f"{url}/assets/raw/flights{view}", expected, home)
                missing = [item for item in expected if item not in text]
                if missing:
                    sys.exit(f"raw/flights{view} does not show {missing}; the page read:\n{text}")
                print(f"raw/flights{view or ' overview'}: shows {len(expected)} expected items")
            if args.screenshot:
                _screenshot(chromium, f"{url}/assets/raw/flights", args.screenshot, home)
                print(f"screenshot: {args.screenshot}")
    print(f"UI check passed in {time.monotonic() - started:.0f} s")


def _use_a_deployment_in(folder: Path) -> None:
    """A deployment of its own, set through the variables a user sets."""
    for name, sub in (
        ("PIPELINE_LANDING_DIR", "landing"),
        ("PIPELINE_STAGING_DIR", "staging"),
        ("DAGSTER_HOME", "dagster_home"),
    ):
        (folder / sub).mkdir()
        os.environ[name] = str(folder / sub)
    os.environ["PIPELINE_DUCKDB_PATH"] = str(folder / "warehouse.duckdb")
    for name in ("PIPELINE_WAREHOUSE", "PIPELINE_DATASETS_DIR", "PIPELINE_METRICS_DIR"):
        os.environ.pop(name, None)
    instance = (REPO / "pipeline" / "dagster.yaml").read_text()
    # No "join the community" dialog over the page.
    (folder / "dagster_home" / "dagster.yaml").write_text(instance + "\nnux:\n  enabled: false\n")


def _load_months(months: list[str]) -> None:
    """Each month through the raw asset alone (its dbt models are not what is checked here):
    2024-02 with 2% bad lines, refused by its schema check; 2024-01 clean, published."""
    import dagster as dg

    from pipeline.assets.loads import build_load_asset
    from pipeline.definitions import build_resources
    from pipeline.sample_data import month_frame, write_tsv
    from pipeline.settings import Settings
    from pipeline.specs import load_specs

    settings = Settings.from_env()
    flights = load_specs(settings.datasets_dir)["flights"]
    with dg.DagsterInstance.get() as instance:
        for month in months:
            defects = 0.02 if month == "2024-02" else 0.0
            frame = month_frame(month, rows_per_day=30, seed=int(month[-2:]), defect_ratio=defects)
            write_tsv(frame, settings.landing_dir / flights.file_name(month))
            dg.materialize(
                [build_load_asset(flights)],
                partition_key=month,
                resources=build_resources(settings),
                instance=instance,
                raise_on_error=False,
            )


@contextlib.contextmanager
def _webserver(home: Path) -> Iterator[str]:
    """dagster-webserver on a free port of 127.0.0.1, with the project's workspace loaded."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (home / "webserver.log").open("w")
    server = subprocess.Popen(
        [BIN / "dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_code_location(url, server, home / "webserver.log")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def _wait_for_code_location(url: str, server: subprocess.Popen, log: Path) -> None:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"dagster-webserver exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):  # not listening yet
            request = urllib.request.Request(
                f"{url}/graphql",
                data=json.dumps({"query": query}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                if '"LOADED"' in response.read().decode():
                    return
        time.sleep(1)
    sys.exit(f"the code location did not load within 300 s:\n{log.read_text()[-3000:]}")


def _page_text(chromium: str, url: str, expected: list[str], home: Path) -> str:
    """The visible text of the page once rendered; tried again (up to three times) while the UI
    is still fetching what `expected` needs."""
    text = ""
    for _ in range(3):
        result = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={home / 'chromium'}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        )
        text = _visible_text(result.stdout)
        if all(item in text for item in expected):
            break
    return text


def _screenshot(chromium: str, url: str, path: Path, home: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={home / 'chromium'}",
            f"--screenshot={path.resolve()}",
            url,
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )


class _Text(html.parser.HTMLParser):
    """The text of an HTML document, a line per element, without scripts and styles."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.parts.append(data.strip())


def _visible_text(document: str) -> str:
    parser = _Text()
    parser.feed(document)
    return "\n".join(parser.parts)


if __name__ == "__main__":
    main()
