"""Helpers shared by tests: run the CLI as a user does, read the warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline.definitions import open_warehouse
from pipeline.settings import Settings

PIPELINE = str(Path(sys.executable).with_name("pipeline"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """`pipeline ARGS` in a subprocess with the test's environment."""
    return subprocess.run(
        [PIPELINE, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=600
    )


def scalar(settings: Settings, sql: str) -> object:
    """The first value of a query on the deployment's warehouse."""
    with open_warehouse(settings) as warehouse:
        rows = warehouse.query(sql)
    return next(iter(rows[0].values())) if rows else None
