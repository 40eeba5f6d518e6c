"""What the Dagster UI shows about the assets: column schemas, row counts, owners, tags, kinds."""

from __future__ import annotations

import dagster as dg

from pipeline.assets.dbt import with_row_counts
from pipeline.definitions import build_definitions
from pipeline.settings import Settings
from pipeline.warehouse.base import Warehouse
from pipeline_tests.support import scalar

COLUMN_SCHEMA = "dagster/column_schema"


def test_every_dbt_model_shows_a_typed_column_schema_from_the_manifest(settings: Settings) -> None:
    graph = build_definitions(settings).resolve_asset_graph()
    models = [key for key in graph.get_all_asset_keys() if "dbt" in graph.get(key).kinds]

    assert {key.to_user_string() for key in models} >= {"stg_flights", "flights_daily"}
    for key in models:
        columns = graph.get(key).metadata[COLUMN_SCHEMA].columns
        assert columns, key
        assert all(column.type != "?" and column.description for column in columns), key
    daily = graph.get(dg.AssetKey(["flights_daily"])).metadata[COLUMN_SCHEMA].columns
    assert [column.name for column in daily][:3] == ["month", "flight_date", "fiscal_year"]


def test_built_tables_get_their_row_count_and_views_are_not_counted(
    deployment: Settings, warehouse: Warehouse
) -> None:
    scalar(deployment, "create schema if not exists analytics")
    scalar(
        deployment,
        "create table analytics.flights_daily as "
        "select 1 as n union all select 2 union all select 3",
    )
    manifest = {
        "nodes": {
            "model.pipeline_reports.flights_daily": {
                "alias": "flights_daily",
                "config": {"materialized": "incremental"},
            },
            "model.pipeline_reports.stg_flights": {
                "alias": "stg_flights",
                "config": {"materialized": "view"},
            },
        }
    }
    events = [
        dg.AssetMaterialization(
            "flights_daily", metadata={"unique_id": "model.pipeline_reports.flights_daily"}
        ),
        dg.AssetMaterialization(
            "stg_flights", metadata={"unique_id": "model.pipeline_reports.stg_flights"}
        ),
        dg.AssetCheckResult(asset_key="flights_daily", check_name="unique", passed=True),
    ]

    daily, staging, check = with_row_counts(events, manifest, warehouse)

    assert daily.metadata["dagster/row_count"].value == 3
    assert "dagster/row_count" not in staging.metadata
    assert check is events[2]
