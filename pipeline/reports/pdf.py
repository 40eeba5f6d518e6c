"""The report as PDF: the same HTML printed by headless Chromium, charts included.

WeasyPrint and similar HTML-to-PDF libraries run no JavaScript, so Plotly's charts would be
missing; Chromium (Debian's `chromium` package) runs the page as a browser does, with every
month shown (`#print`), then prints it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Long enough for plotly.js to draw every month's charts of a large report.
RENDER_BUDGET_MS = 60_000
TIMEOUT_SECONDS = 300


class BrowserMissing(RuntimeError):
    """No headless browser to print or render a report with."""


class PrintFailed(RuntimeError):
    """The browser ran but printed no PDF; the message has the end of what it said."""


def find_browser() -> str:
    """The Chromium to print with: PIPELINE_CHROMIUM, else the first of BROWSERS on PATH.

    A PIPELINE_CHROMIUM that names no program is an error, not a reason to print with another
    browser than the one asked for.
    """
    configured = os.environ.get("PIPELINE_CHROMIUM")
    if configured:
        path = shutil.which(configured)
        if path is None:
            raise BrowserMissing(
                f"PIPELINE_CHROMIUM={configured} is not a program (not an executable file, nor a "
                "name on PATH): point it at a Chrome or Chromium binary, or unset it"
            )
        return path
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise BrowserMissing(
        f"a PDF needs headless Chromium, and none was found ({', '.join(BROWSERS)} "
        "not on PATH): install Debian's `chromium` package (`make system-packages`), set "
        "PIPELINE_CHROMIUM to a Chrome binary, or write .html instead"
    )


def headless(browser: str, *arguments: str) -> list[str]:
    """A headless Chromium command line that reaches no network: a proxy nobody listens on."""
    return [
        browser,
        "--headless",
        "--no-sandbox",  # runs as root in containers and CI
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        *arguments,
    ]


def print_pdf(html: str, path: Path) -> Path:
    """Write `html` to a temporary file and print it, every month shown, to `path`."""
    browser = find_browser()
    with tempfile.TemporaryDirectory(prefix="pipeline-report-") as folder:
        page = Path(folder) / "report.html"
        page.write_text(html, encoding="utf-8")
        command = headless(
            browser,
            f"--user-data-dir={folder}/profile",
            "--no-pdf-header-footer",
            f"--virtual-time-budget={RENDER_BUDGET_MS}",
            f"--print-to-pdf={path}",
            page.as_uri() + "#print",
        )
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    if done.returncode != 0 or not path.is_file():
        said = done.stderr.strip()[-500:] or f"exit status {done.returncode}, nothing said"
        raise PrintFailed(f"{browser} could not print {path}: {said}")
    return path
