"""Freshness and the new month checks through Dagster, in a real instance, DuckDB file and dbt."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl

from pipeline.assets.freshness import FRESHNESS_CHECK
from pipeline.definitions import build_definitions
from pipeline.jobs import FRESHNESS_JOB
from pipeline.partitions import months_before
from pipeline.runner import load_months
from pipeline.sample_data import month_frame, write_tsv
from pipeline.sensors import FRESHNESS_SENSOR
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec

FLIGHTS = dg.AssetKey(["raw", "flights"])


def due_month(spec: DatasetSpec, today: dt.date) -> str:
    """The latest month whose deadline (N days after its end) has passed."""
    assert spec.checks.freshness is not None
    late = today.day > spec.checks.freshness.days_after_month_end
    return months_before(today.strftime("%Y-%m"), 1 if late else 2)[0]


def freshness(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.AssetCheckEvaluation:
    """Run the freshness job as the sensor's run would, and return the flights verdict."""
    run = defs.resolve_job_def(FRESHNESS_JOB).execute_in_process(instance=instance)
    (evaluation,) = [e for e in run.get_asset_check_evaluations() if e.asset_key == FLIGHTS]
    return evaluation


def test_a_late_month_is_reported_and_a_landed_one_is_not(
    settings: Settings, instance: dg.DagsterInstance, flights: DatasetSpec
) -> None:
    defs = build_definitions(settings)
    month = due_month(flights, dt.datetime.now(dt.UTC).date())

    # Nobody has to look: the sensor asks for the check on its own.
    assert sensor_wants_a_check(defs, instance)
    late = freshness(defs, instance)
    assert not late.passed and late.severity == dg.AssetCheckSeverity.WARN
    assert f"expect partition {month} to have arrived" in late.description
    assert not sensor_wants_a_check(defs, instance)  # still late: no new verdict to give

    # The month lands with a column the spec does not know: loaded, with a WARN, and fresh.
    frame = month_frame(month, rows_per_day=10, seed=3).with_columns(pl.lit("B12").alias("gate"))
    write_tsv(frame, settings.landing_dir / flights.file_name(month))
    (result,) = load_months(defs, flights, [month], instance)

    assert result.success
    assert result.rows["rows_loaded"] == frame.height
    assert result.checks["raw/flights:schema_drift"] == "FAILED (WARN)"
    assert result.errors == (
        f"check schema_drift: 1 column(s) not in the spec, ignored: gate (flights_{month}.tsv)",
    )
    assert result.checks["raw/flights:volume"] == "passed"
    assert (
        "check volume (INFO): not enough history to judge volume: 0 earlier month(s)"
        in " ".join(result.notes)
    )
    assert "raw/flights:freshness_check" not in result.checks  # not the month's check
    assert sensor_wants_a_check(defs, instance)  # loaded since the failure: look again
    assert freshness(defs, instance).passed


def sensor_wants_a_check(defs: dg.Definitions, instance: dg.DagsterInstance) -> bool:
    """Whether a tick of the freshness sensor would run the check now."""
    sensor = defs.resolve_sensor_def(FRESHNESS_SENSOR)
    request = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
    if isinstance(request, dg.SkipReason):
        return False
    assert dg.AssetCheckKey(FLIGHTS, FRESHNESS_CHECK) in request.asset_check_keys
    return True
