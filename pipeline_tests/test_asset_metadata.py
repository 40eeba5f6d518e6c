"""What the Dagster UI shows about the assets: column schemas, row counts, owners, tags, kinds."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from pipeline.assets.dbt import with_row_counts
from pipeline.assets.loads import build_load_asset
from pipeline.definitions import build_definitions
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec, SpecError, load_spec
from pipeline.warehouse.base import LOAD_COLUMNS, Warehouse
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
        "create table analytics.flights_daily as select '2024-01' as month "
        "union all select '2024-01' union all select '2024-02'",
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
    # A month's materialization counts the month's rows, as raw/<dataset>'s does: it counted
    # the whole table (305 rows on 2024-05, which has 31).
    (month,) = list(with_row_counts(events[:1], manifest, warehouse, "2024-01"))

    assert daily.metadata["dagster/row_count"].value == 3
    assert month.metadata["dagster/row_count"].value == 2
    assert "dagster/row_count" not in staging.metadata
    assert check is events[2]


def test_the_raw_table_shows_the_specs_columns_owners_tags_and_the_warehouse(
    flights: DatasetSpec,
) -> None:
    on_snowflake = build_load_asset(flights, "snowflake")
    spec = on_snowflake.specs_by_key[dg.AssetKey(["raw", "flights"])]

    columns = {column.name: column for column in spec.metadata[COLUMN_SCHEMA].columns}
    assert list(columns)[: len(flights.columns)] == list(flights.columns)
    assert list(columns)[len(flights.columns) :] == list(LOAD_COLUMNS)
    assert columns["fare"].type == "decimal(10,2)"
    assert columns["fare"].description == "at least 0"
    assert columns["carrier"].description == "matches `^[A-Z0-9]{2}$`"
    assert columns["origin"].description == "one of EWR, JFK, LGA"
    assert columns["flight_date"].description == "within the file's month"
    assert not columns["carrier"].constraints.nullable
    assert columns["distance"].constraints.nullable
    assert not columns["_load_id"].constraints.nullable and columns["_load_id"].description
    assert spec.owners == ["team:data-platform", "ops@example.com"]
    assert spec.tags["domain"] == "aviation"
    assert spec.kinds == {"python", "parquet", "snowflake"}
    assert "duckdb" in build_load_asset(flights).specs_by_key[spec.key].kinds


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({"owners": ["Data Platform"]}, "owner 'Data Platform' must be an email address or team:"),
        ({"owners": ["team:"]}, "must be an email address or team:<name>"),
        ({"tags": {"dagster/kind/x": ""}}, "tag 'dagster/kind/x': keys are letters"),
        ({"tags": {"domain": "air travel"}}, "tag domain: value 'air travel' may hold only"),
    ],
)
def test_owners_and_tags_dagster_would_refuse_are_spec_errors(
    flights: DatasetSpec, tmp_path: Path, field: dict, message: str
) -> None:
    document = flights.model_dump(mode="json", exclude_defaults=True) | field
    path = tmp_path / "flights.json"
    path.write_text(json.dumps(document))

    with pytest.raises(SpecError) as error:
        load_spec(path)

    assert str(path) in str(error.value) and message in str(error.value)


def test_owners_and_tags_the_spec_accepts_dagster_accepts(flights: DatasetSpec) -> None:
    owners, tags = ["a.b+c@example.co.uk", "team:x"], {"team/area": "", "k": "v-1.2"}
    document = flights.model_dump(exclude_defaults=True) | {"owners": owners, "tags": tags}
    spec = DatasetSpec.model_validate(document)

    asset = build_load_asset(spec).specs_by_key[dg.AssetKey(["raw", "flights"])]

    assert (asset.owners, {k: asset.tags[k] for k in tags}) == (owners, tags)
