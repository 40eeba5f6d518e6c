"""A column added to a spec after files were sent: `optional` lets the older files load, the
column null in their months, and a file that has it loads its values."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import yaml

from pipeline.assets.catalog import column_schema
from pipeline.definitions import open_warehouse
from pipeline.doctor import preview
from pipeline.ingest.pii import KEY_VARIABLE, keyed_hash
from pipeline.sample_data import write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline_tests.support import materialize_load, run, scalar

KEY = "test-key-not-a-secret"
ADDED = "coupon, weight, email"
SPEC = {
    "name": "orders",
    "file_pattern": "orders_{month}.tsv",
    "start_month": "2024-01",
    "date_column": "day",
    "columns": {
        "day": {"type": "date", "nullable": False},
        "order_id": {"type": "int", "nullable": False, "min": 1},
        "coupon": {"type": "string", "optional": True, "pattern": "^[A-Z]{4}$"},
        "weight": {"type": "decimal", "precision": 10, "scale": 3, "optional": True},
        "email": {"type": "string", "optional": True, "pii": "hash"},
    },
    "checks": {"max_reject_ratio": 0.1, "completeness": {"calendar": "every_day"}},
}


def month_file(settings: Settings, spec: DatasetSpec, month: str, added: bool) -> None:
    """A line a day, then one with a bad order number (its reject goes through the
    sensitive-column protection too); the three added columns only if `added`."""
    start = pl.date(int(month[:4]), int(month[5:]), 1)
    days = pl.date_range(start, start.dt.month_end(), eager=True).dt.strftime("%Y-%m-%d")
    frame = pl.DataFrame(
        {"day": [*days, days[0]], "order_id": [*(str(n) for n in range(1, len(days) + 1)), "x"]}
    )
    if added:
        frame = frame.with_columns(
            coupon=pl.lit("SAVE"), weight=pl.lit("1.125"), email=pl.lit("a@example.test")
        )
    write_tsv(frame, settings.landing_dir / spec.file_name(month))


def test_a_column_added_later_is_null_in_older_files_and_loaded_where_present(
    deployment: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    spec = DatasetSpec.model_validate(SPEC)
    month_file(deployment, spec, "2024-01", added=False)
    month_file(deployment, spec, "2024-02", added=True)

    for month in ("2024-01", "2024-02"):
        result = materialize_load(spec, month, deployment)
        failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
        assert result.success and failed == [], month
        (drift,) = [
            e for e in result.get_asset_check_evaluations() if e.check_name == "schema_drift"
        ]
        said = drift.description or ""
        if month == "2024-01":
            assert said.endswith(
                "optional column(s) absent, null in this month: coupon, weight, email"
            )
        else:
            assert said == "the header has exactly the spec's 5 columns"

    with open_warehouse(deployment) as warehouse:
        rows = warehouse.query(
            "select _month as month, count(*) as n, count(coupon) as coupons, "
            "sum(weight) as weight, min(email) as email from raw.orders group by _month "
            "order by _month"
        )
        rejects = warehouse.query(
            "select _month as month, _line_number as line from raw.orders_rejects order by 1"
        )
    assert rows == [
        {"month": "2024-01", "n": 31, "coupons": 0, "weight": None, "email": None},
        {
            "month": "2024-02",
            "n": 29,
            "coupons": 29,
            "weight": Decimal("32.625"),
            "email": keyed_hash(KEY.encode(), "a@example.test"),
        },
    ]
    assert rejects == [{"month": "2024-01", "line": 33}, {"month": "2024-02", "line": 31}]


def test_only_an_optional_column_may_be_absent(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    spec = DatasetSpec.model_validate(SPEC)
    required = {**SPEC["columns"], "coupon": {"type": "string"}}
    strict = DatasetSpec.model_validate({**SPEC, "columns": required})
    month_file(settings, spec, "2024-01", added=False)
    path = settings.landing_dir / spec.file_name("2024-01")

    assert materialize_load(spec, "2024-01", settings).success
    refused = materialize_load(strict, "2024-01", settings)
    assert not refused.success
    assert "lacks column(s) coupon required by the spec" in str(
        refused.get_step_failure_events()[0].event_specific_data.error
    )
    # `pipeline doctor` reads the header as the load does.
    assert not preview(path, strict).ok
    finding = preview(path, spec)
    assert finding.ok, finding
    assert f"optional columns absent, loaded as null: {ADDED}" in finding.message
    # The asset's column schema in the UI says which columns a file may lack.
    described = {c.name: c.description or "" for c in column_schema(spec).columns}
    assert "optional: null in months whose file lacks it" in described["weight"]
    assert "optional" not in described["order_id"]


@pytest.mark.parametrize(
    ("column", "change", "said"),
    [
        ("coupon", {"nullable": False}, "optional and nullable: false contradict"),
        ("day", {"nullable": True}, "date_column 'day' cannot be optional"),
    ],
)
def test_an_optional_column_is_nullable_and_not_the_date(
    column: str, change: dict[str, bool], said: str
) -> None:
    columns = {**SPEC["columns"], column: {**SPEC["columns"][column], "optional": True, **change}}
    with pytest.raises(ValueError, match=said):
        DatasetSpec.model_validate({**SPEC, "columns": columns})


def test_an_optional_column_is_no_part_of_a_key() -> None:
    # In a month whose file lacks it, it is null on every line: one key, repeated, refused.
    checks = {**SPEC["checks"], "unique": {"columns": ["order_id", "coupon"]}}
    with pytest.raises(ValueError, match=r"checks\.unique names optional column\(s\) coupon: in a"):
        DatasetSpec.model_validate({**SPEC, "checks": checks})


def test_a_month_whose_file_had_a_column_added_later_says_so_until_reloaded(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its file held the column, ignored as extra when loaded; once the spec took the column, the
    # month was skipped as "already loaded from this file", the column null in it, unsaid.
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    monkeypatch.setenv("PIPELINE_DATASETS_DIR", str(datasets))
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    before = {**SPEC, "columns": {k: v for k, v in SPEC["columns"].items() if k != "coupon"}}
    (datasets / "orders.yaml").write_text(yaml.safe_dump(before))
    spec = DatasetSpec.model_validate(SPEC)
    month_file(settings, spec, "2024-01", added=True)
    assert run("load", "orders", "--to", "2024-01").returncode == 0

    (datasets / "orders.yaml").write_text(yaml.safe_dump(SPEC))
    again = run("load", "orders", "--to", "2024-01")
    forced = run("load", "orders", "--to", "2024-01", "--force")

    assert again.returncode == 0, again.stdout + again.stderr
    assert (
        "2024-01  skipped       already loaded from this file, before the spec had coupon, which "
        "the file holds: null in this month until --force reloads it"
    ) in again.stdout
    assert forced.returncode == 0, forced.stdout + forced.stderr
    loaded = "select count(*) from raw.orders where coupon = 'SAVE'"
    assert scalar(settings, loaded) == 31
    assert "before the spec had" not in run("load", "orders", "--to", "2024-01").stdout
