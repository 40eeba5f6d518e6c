"""One job per dataset: a month's load, its checks and the reports built on it."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import dagster as dg

from pipeline.assets.freshness import freshness_check_keys
from pipeline.assets.loads import raw_asset_key
from pipeline.specs import DatasetSpec

FRESHNESS_JOB = "check_freshness"

# Deliberate: the raw assets have no backfill policy (a UI backfill runs each month as a
# partition, so its checks keep their month), while dagster-dbt gives the models one whether
# asked or not (one month per run). A load job, which runs one month, holds both.
warnings.filterwarnings("ignore", message=r"Asset job load_\S+ materializes assets with varying")


def load_job_name(dataset: str) -> str:
    """The name of the job that loads one month of `dataset`."""
    return f"load_{dataset}"


def build_load_job(spec: DatasetSpec) -> dg.UnresolvedAssetJobDefinition:
    """The raw asset, its checks and every dbt model downstream of it, for one month."""
    return dg.define_asset_job(
        name=load_job_name(spec.name),
        # The freshness check is not about the month being loaded; its sensor runs it.
        selection=dg.AssetSelection.assets(raw_asset_key(spec)).downstream()
        - dg.AssetSelection.checks(*freshness_check_keys(spec)),
        description=f"Load one month of {spec.name}, check it, and rebuild its reports.",
        # DuckDB takes one writer at a time: run the steps of a month one after another.
        executor_def=dg.in_process_executor,
    )


def build_freshness_job(
    checks: Sequence[dg.AssetChecksDefinition],
) -> dg.UnresolvedAssetJobDefinition:
    """Every dataset's freshness check, to run by hand; the freshness sensor runs them too."""
    return dg.define_asset_job(
        name=FRESHNESS_JOB,
        selection=dg.AssetSelection.checks(*checks),
        description="Has every dataset's latest due month been loaded?",
    )
