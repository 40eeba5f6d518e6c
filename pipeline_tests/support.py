"""Helpers shared by tests: run the CLI as a user does, load a month, read the warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from pipeline.definitions import open_warehouse
from pipeline.ingest.stream import ingest_file
from pipeline.sample_data import write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline.warehouse.base import Warehouse

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


def load_month(
    settings: Settings, warehouse: Warehouse, spec: DatasetSpec, month: str, frame: pl.DataFrame
) -> None:
    """Land `frame` as the month's file and load it the way the load asset does."""
    path = settings.landing_dir / spec.file_name(month)
    write_tsv(frame, path)
    warehouse.replace_month(ingest_file(spec, path, month, settings.staging_dir), "test")
