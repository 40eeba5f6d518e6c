"""Headless Chromium for tests: a page's DOM after its scripts ran, and a screenshot, with the
network cut off (a proxy on a port nobody listens on) so any external request would fail."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline.reports.pdf import find_browser, headless

ARTIFACTS = Path(__file__).with_name("artifacts")  # gitignored: for a person to look at
BUDGET_MS = "20000"


def _chromium(profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = headless(
        find_browser(),
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={BUDGET_MS}",
        "--enable-logging=stderr",
        "--v=0",
        *arguments,
    )
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=True)


def rendered_dom(page: Path, profile: Path, fragment: str = "") -> tuple[str, str]:
    """The DOM once the page's scripts have run, and Chromium's log (console, network errors)."""
    done = _chromium(profile, "--dump-dom", page.resolve().as_uri() + fragment)
    return done.stdout, done.stderr


def screenshot(page: Path, profile: Path, name: str, height: int = 2400) -> Path:
    """A PNG of the page's top under pipeline_tests/artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / name
    _chromium(
        profile,
        "--hide-scrollbars",
        f"--window-size=1280,{height}",
        f"--screenshot={out}",
        page.resolve().as_uri(),
    )
    return out
