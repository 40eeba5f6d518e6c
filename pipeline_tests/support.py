"""Helpers shared by tests: run the CLI as a user does, load a month, read the warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from pipeline.checks.scope import MonthUnderCheck
from pipeline.definitions import open_warehouse
from pipeline.ingest.stream import StagedLoad, ingest_file, new_load_id
from pipeline.sample_data import write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline.warehouse.base import Warehouse, statement_context

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


def stage_month(
    settings: Settings, spec: DatasetSpec, month: str, frame: pl.DataFrame
) -> StagedLoad:
    """Land `frame` as the month's file and stage it the way the load asset does."""
    path = settings.landing_dir / spec.file_name(month)
    write_tsv(frame, path)
    return ingest_file(spec, path, month, settings.staging_dir / spec.name / month)


def load_month(
    settings: Settings, warehouse: Warehouse, spec: DatasetSpec, month: str, frame: pl.DataFrame
) -> None:
    """Land `frame` as the month's file and publish it, unchecked."""
    warehouse.replace_month(stage_month(settings, spec, month, frame), "test")


def candidate_month(
    settings: Settings, warehouse: Warehouse, spec: DatasetSpec, month: str, frame: pl.DataFrame
) -> MonthUnderCheck:
    """Land `frame` as the month's file and load it as a candidate, as the checks see it."""
    staged = stage_month(settings, spec, month, frame)
    with statement_context(spec.name, month, "test"):
        return MonthUnderCheck(warehouse, staged, warehouse.stage_candidate(staged, new_load_id()))
