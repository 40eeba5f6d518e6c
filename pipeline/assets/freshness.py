"""Freshness: a month not loaded N days after it ends is reported, without anyone looking.

A partitioned check only runs for a month that was materialized, so it can never notice a month
that never arrived. Dagster's time-partition freshness check asks the right question instead:
once the deadline has passed (a cron tick: day N + 1 of the next month, 00:00 UTC), has the
latest month that was due been materialized? The `freshness` sensor (`pipeline/sensors.py`) runs
it, and runs it again after a failure once the dataset has been loaded since. Dagster's newer
`FreshnessPolicy` judges the latest materialization of any month, so reloading an old month would
hide a missing one: not what a monthly delivery needs.
"""

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dagster as dg

from pipeline.assets.loads import raw_asset_key
from pipeline.specs import DatasetSpec, FreshnessSpec

# The name Dagster gives the check it builds.
FRESHNESS_CHECK = "freshness_check"


def deadline_cron(freshness: FreshnessSpec) -> str:
    """When the previous month is due: 00:00 UTC after day `days_after_month_end` of this one."""
    return f"0 0 {freshness.days_after_month_end + 1} * *"


def build_freshness_checks(specs: Sequence[DatasetSpec]) -> list[dg.AssetChecksDefinition]:
    """One freshness check per dataset whose spec asks for one (the default)."""
    checks: list[dg.AssetChecksDefinition] = []
    for spec in specs:
        freshness = spec.checks.freshness
        if freshness is not None:
            with superseded_freshness_api():
                checks.extend(
                    dg.build_time_partition_freshness_checks(
                        assets=[raw_asset_key(spec)],
                        deadline_cron=deadline_cron(freshness),
                        timezone="UTC",
                        severity=dg.AssetCheckSeverity(freshness.severity),
                    )
                )
    return checks


@contextmanager
def superseded_freshness_api() -> Iterator[None]:
    """Dagster marks the partition freshness check and its sensor as superseded by
    `FreshnessPolicy`, which cannot see a missing month (above); using them is deliberate, so
    the warning would only alarm whoever loads the code location."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        yield


def freshness_check_keys(spec: DatasetSpec) -> list[dg.AssetCheckKey]:
    """The dataset's freshness check, if it has one: kept out of its monthly load job."""
    if spec.checks.freshness is None:
        return []
    return [dg.AssetCheckKey(raw_asset_key(spec), FRESHNESS_CHECK)]
