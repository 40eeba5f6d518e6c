"""Values are never altered on the way in: a value loads exactly as written or is a reject.

Regressions for silent changes the loader used to make: `12.345` at scale 2 loaded as `12.34`,
`-0.001` as `0.00` (which then passed `min: 0`), `nan`/`inf` into float columns, `2013-1-5` read
as a date, `9:30` in a timestamp, and a NUL byte inside a field loaded as part of the text.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pipeline.definitions import open_warehouse
from pipeline.doctor import examine_datasets
from pipeline.ingest.schema import MISSING_RULE
from pipeline.ingest.stream import StagedLoad, ingest_file
from pipeline.sample_data import write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec, RuleSpec
from pipeline.warehouse.base import Warehouse
from pipeline_tests.support import load_month, materialize_load

MONTH = "2013-01"
SPEC = {
    "name": "payments",
    "file_pattern": "payments_{month}.tsv",
    "start_month": MONTH,
    "date_column": "day",
    "columns": {
        "day": {"type": "date", "nullable": False},
        "amount": {"type": "decimal", "precision": 10, "scale": 2, "min": 0},
        "units": {"type": "int"},
        "ratio": {"type": "float"},
        "paid": {"type": "bool"},
        "booked": {"type": "date", "format": "%d/%m/%Y"},
        "issued": {"type": "date", "format": "%d-%b-%Y"},
        "stamp": {"type": "timestamp"},
        "note": {"type": "string"},
    },
}
# Every line holds these, except the one field its case is about.
BASE = {
    "day": "2013-01-05",
    "amount": "1.00",
    "units": "1",
    "ratio": "0.5",
    "paid": "true",
    "booked": "05/01/2013",
    "issued": "05-Jan-2013",
    "stamp": "2013-01-05T09:30:00Z",
    "note": "ok",
}
# (column, text as written in the file, the rule it breaks or None if it loads)
CASES = [
    ("amount", "12.34", None),
    ("amount", "99999999.99", None),  # the largest value of precision 10, scale 2
    ("amount", "0.10", None),
    ("amount", "12.340", None),  # trailing zeros do not change the value
    ("amount", "0012.30", None),  # nor do leading ones
    ("amount", "12.345", "more than 2 decimal places"),
    ("amount", "12.3456789", "more than 2 decimal places"),
    ("amount", "-0.001", "more than 2 decimal places"),  # never rounds to 0.00 to pass min 0
    ("amount", "-0.01", "must be >= 0"),
    ("amount", "123456789.00", "more than 8 integer digits"),
    ("amount", "1e3", "is not a valid decimal"),  # decimals are written out, see the README
    ("units", "9223372036854775807", None),
    ("units", "-9223372036854775808", None),
    ("units", "9223372036854775808", "is outside the 64-bit integer range"),
    ("units", "-9223372036854775809", "is outside the 64-bit integer range"),
    ("ratio", "1e3", None),
    ("ratio", "-0.25", None),
    ("ratio", "nan", "is not a finite number"),
    ("ratio", "inf", "is not a finite number"),
    ("ratio", "-Infinity", "is not a finite number"),
    ("ratio", "1e400", "is too large for a float"),
    ("paid", "TRUE", None),  # the words in any case
    ("paid", "No", None),
    ("paid", "maybe", "is not a valid bool"),
    ("day", "2013-01-31", None),
    ("day", "2013-1-5", "is not a valid date in the format %Y-%m-%d"),
    ("day", "+2013-01-05", "is not a valid date in the format %Y-%m-%d"),
    # No date at all in a required column: named once, not also as "is required but empty".
    ("day", "2013-02-30", "is not a valid date in the format %Y-%m-%d"),
    ("booked", "31/01/2013", None),
    ("booked", "5/1/2013", "is not a valid date in the format %d/%m/%Y"),
    ("issued", "05-JAN-2013", None),  # month names in any case
    ("issued", "5-Jan-2013", "is not a valid date in the format %d-%b-%Y"),
    ("stamp", "2013-01-31T23:59:59Z", None),
    ("stamp", "2013-01-31 09:30:00.123456+02:00", None),
    ("stamp", "2013-01-31T09:30:00.250000000Z", None),
    ("stamp", "2013-01-31T9:30:00Z", "is not a valid timestamp"),
    ("stamp", "2013-01-31T09:30:60Z", "is not a valid timestamp"),
    ("stamp", "2013-01-31T09:30:00.1234567Z", "is finer than a microsecond"),
    ("note", "a\x00b", "contains a control character (0x00)"),
    ("note", "\x1b[31mred", "contains a control character (0x1b)"),
    ("note", "a\x01b", "contains a control character (0x01)"),
    ("note", "a\x0bb", "contains a control character (0x0b)"),
    ("note", "a\x0cb", "contains a control character (0x0c)"),
    ("note", "a\x1fb", "contains a control character (0x1f)"),
    ("amount", "12.34\x00", "contains a control character (0x00)"),
    ("note", "a\rb", None),  # a CR is only special as part of a CRLF line end
    ("note", "a\x7fb", None),  # DEL is not a C0 control character
]
FIRST_LINE = 2  # line 1 is the header
ACCEPTED = [(FIRST_LINE + i, c, t) for i, (c, t, rule) in enumerate(CASES) if rule is None]
REJECTED = [(FIRST_LINE + i, c, t, r) for i, (c, t, r) in enumerate(CASES) if r is not None]


@pytest.fixture
def spec() -> DatasetSpec:
    return DatasetSpec.model_validate(SPEC)


def case_lines(cases: list[tuple[str, str, str | None]], distinct: bool = False) -> pl.DataFrame:
    """One line per case: the base line with the case's field replaced. With `distinct`, the
    other lines' dates and timestamps differ from line to line, so they are judged row by row
    rather than once per distinct text (`values._doubtful_rows`)."""
    return pl.DataFrame(
        [
            BASE | (distinct_dates(line) if distinct else {}) | {column: text}
            for line, (column, text, _) in enumerate(cases)
        ]
    )


def distinct_dates(line: int) -> dict[str, str]:
    day = dt.date(2013, 1, 1) + dt.timedelta(days=line % 28)
    return {
        "day": day.isoformat(),
        "booked": day.strftime("%d/%m/%Y"),
        "issued": day.strftime("%d-%b-%Y"),
        "stamp": f"{day.isoformat()}T09:{line % 60:02d}:00Z",
    }


def stage(tmp_path: Path, spec: DatasetSpec, lines: pl.DataFrame) -> StagedLoad:
    path = tmp_path / "landing" / spec.file_name(MONTH)
    write_tsv(lines, path)
    return ingest_file(spec, path, MONTH, tmp_path / "staging")


def read_parts(parts: tuple[str, ...]) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(part) for part in parts]).sort("_line_number")


def shown(text: str) -> str:
    """How a reason shows a value: control characters as \\x.. escapes."""
    return re.sub(r"[\x00-\x1f]", lambda match: f"\\x{ord(match.group()):02x}", text)


def exact(column: str, text: str, spec: DatasetSpec) -> object:
    """The value `text` stands for, computed without the loader."""
    match spec.columns[column].type:
        case "decimal":
            return Decimal(text)
        case "int":
            return int(text)
        case "float":
            return float(text)
        case "bool":
            return text.lower() in ("true", "t", "yes", "y", "1")
        case "date":
            return dt.datetime.strptime(text, spec.columns[column].format or "%Y-%m-%d").date()
        case "timestamp":
            return dt.datetime.fromisoformat(text).astimezone(dt.UTC)
    return text


@pytest.mark.parametrize("distinct", [False, True], ids=["repeated-dates", "distinct-dates"])
def test_each_value_that_would_change_is_rejected_with_line_column_and_reason(
    tmp_path: Path, spec: DatasetSpec, distinct: bool
) -> None:
    staged = stage(tmp_path, spec, case_lines(CASES, distinct))
    rejects = read_parts(staged.reject_parts).rows(named=True)

    assert staged.rows_loaded == len(ACCEPTED)
    assert [reject["_line_number"] for reject in rejects] == [line for line, *_ in REJECTED]
    for reject, (_, column, text, rule) in zip(rejects, REJECTED, strict=True):
        assert reject["_column"] == column
        assert reject["_reason"] == f"{column}: {rule} (value '{shown(text)}')"


def test_accepted_values_are_staged_exactly_as_written(tmp_path: Path, spec: DatasetSpec) -> None:
    rows = read_parts(stage(tmp_path, spec, case_lines(CASES)).row_parts)

    assert rows["_line_number"].to_list() == [line for line, *_ in ACCEPTED]
    for row, (_, column, text) in zip(rows.iter_rows(named=True), ACCEPTED, strict=True):
        assert row[column] == exact(column, text, spec), (column, text)
    assert rows.schema["amount"] == pl.Decimal(10, 2)


def test_non_finite_floats_load_only_where_the_spec_allows_them(tmp_path: Path) -> None:
    columns = dict(SPEC["columns"]) | {"ratio": {"type": "float", "allow_non_finite": True}}
    allowing = DatasetSpec.model_validate(SPEC | {"columns": columns})
    cases = [
        ("ratio", "nan", None),
        ("ratio", "inf", None),
        ("ratio", "-Infinity", None),
        ("ratio", "1e400", "is too large for a float"),  # a number, not an infinity
    ]
    staged = stage(tmp_path, allowing, case_lines(cases))
    ratios = read_parts(staged.row_parts)["ratio"].to_list()
    rejects = read_parts(staged.reject_parts)

    assert math.isnan(ratios[0]) and ratios[1:] == [math.inf, -math.inf]
    assert rejects["_reason"].to_list() == ["ratio: is too large for a float (value '1e400')"]


def test_a_broken_rule_shows_the_value_as_written(tmp_path: Path) -> None:
    """pandera reports a failing value converted back from its type: `-1e3` read as
    `-1000.0`, `-.5` as `-0.50`, `No` as `false`, `01/02/2013` as `2013-02-01`."""
    columns = dict(SPEC["columns"]) | {
        "units": {"type": "int", "min": 0},
        "ratio": {"type": "float", "min": 0},
        "paid": {"type": "bool", "allowed": [True]},
    }
    ruled = DatasetSpec.model_validate(
        SPEC | {"columns": columns, "date_column": "booked", "null_values": ["", "NA"]}
    )
    cases = [
        ("units", "-5", "must be >= 0"),
        ("units", "-05", "must be >= 0"),
        ("amount", "-0.50", "must be >= 0"),
        ("amount", "-.5", "must be >= 0"),
        ("ratio", "-0.50", "must be >= 0"),
        ("ratio", "-1e3", "must be >= 0"),
        ("paid", "No", "must be one of True"),
        ("booked", "01/02/2013", "must fall inside 2013-01"),
        ("day", "", MISSING_RULE),  # no value: none is shown
        ("day", "NA", MISSING_RULE),  # a null marker: none either (it said "value ''")
    ]
    rejects = read_parts(stage(tmp_path, ruled, case_lines(cases)).reject_parts)

    assert rejects["_value"].to_list() == [text or None for _, text, _ in cases[:-1]] + [None]
    assert (
        rejects["_reason"].to_list()
        == [f"{column}: {rule} (value '{text}')" for column, text, rule in cases[:-2]]
        + [f"day: {MISSING_RULE}"] * 2
    )


def test_accepted_values_reach_the_warehouse_exactly(
    settings: Settings, warehouse: Warehouse, spec: DatasetSpec
) -> None:
    load_month(settings, warehouse, spec, MONTH, case_lines(CASES))
    rows = warehouse.query("select _line_number, amount, units from raw.payments order by 1")
    written = case_lines(CASES).with_row_index("_line_number", FIRST_LINE)
    loaded = written.filter(pl.col("_line_number").is_in([line for line, *_ in ACCEPTED]))

    assert [row["_line_number"] for row in rows] == loaded["_line_number"].to_list()
    assert [row["amount"] for row in rows] == [Decimal(t) for t in loaded["amount"]]
    assert [row["units"] for row in rows] == [int(t) for t in loaded["units"]]
    (total,) = warehouse.query("select cast(sum(amount) * 100 as bigint) cents from raw.payments")
    assert total["cents"] == sum(int(Decimal(t) * 100) for t in loaded["amount"])
    (rejected,) = warehouse.query("select count(*) as n from raw.payments_rejects")
    assert rejected["n"] == len(REJECTED)


def test_a_spec_that_changes_a_column_type_is_refused_until_the_table_changes(
    deployment: Settings,
) -> None:
    # `units` was an int; the spec now says decimal(10, 3). The raw table kept BIGINT (columns
    # are only ever added), the checks passed on the candidate's new type, and the insert
    # rounded 1.5 to 2 with the month reported loaded.
    relaxed = {"completeness": {"severity": "WARN"}, "max_reject_ratio": 1}
    before = DatasetSpec.model_validate(SPEC | {"checks": relaxed})
    columns = before.model_dump()["columns"] | {
        "units": {"type": "decimal", "precision": 10, "scale": 3}
    }
    after = DatasetSpec.model_validate(SPEC | {"checks": relaxed, "columns": columns})
    write_tsv(case_lines([("units", "1", None)]), deployment.landing_dir / before.file_name(MONTH))
    assert materialize_load(before, MONTH, deployment).success
    later = "2013-02"
    lines = case_lines([("units", "1.5", None)]).with_columns(pl.lit("2013-02-05").alias("day"))
    write_tsv(lines, deployment.landing_dir / after.file_name(later))

    refused = materialize_load(after, later, deployment)

    assert not refused.success
    (failure,) = refused.get_step_failure_events()
    message = failure.step_failure_data.error.message
    old, new = {
        "duckdb": ("BIGINT", "DECIMAL(10,3)"),
        "snowflake": ("NUMBER(38,0)", "NUMBER(10,3)"),
    }[deployment.warehouse]
    assert f"raw.payments.units is {old} in the warehouse, but the spec says {new}" in message
    assert "nothing was read" in message
    (found,) = examine_datasets(deployment, [after])  # `pipeline doctor` says it too
    assert not found.ok and f"units is {old} in the warehouse" in found.message
    # A rule it cannot ask is named beside it: it showed only once the type was put back.
    misspelt = after.model_copy(update={"rules": [RuleSpec(name="big", where="unit > 5")]})
    topics = [finding.topic for finding in examine_datasets(deployment, [misspelt])]
    assert topics == ["dataset payments", "dataset payments rule 'big'"]
    with open_warehouse(deployment) as warehouse:
        assert warehouse.served_load("payments", later) is None
        # As the message says: the column changed, the month loads, exactly as written.
        units = warehouse.dialect.quote("units")
        if deployment.warehouse == "duckdb":
            assert "ALTER TABLE raw.<table> ALTER COLUMN <column> SET DATA TYPE" in message
            warehouse.query(f"ALTER TABLE raw.payments ALTER COLUMN {units} SET DATA TYPE {new}")
        else:  # Snowflake cannot change a NUMBER's scale: a new column, as the message says
            assert "add a column of the spec's type, UPDATE it from the old one" in message
            for statement in [
                f"ALTER TABLE raw.payments ADD COLUMN units_new {new}",
                "UPDATE raw.payments SET units_new = units",
                f"ALTER TABLE raw.payments DROP COLUMN {units}",
                f"ALTER TABLE raw.payments RENAME COLUMN units_new TO {units}",
            ]:
                warehouse.query(statement)
    assert list(examine_datasets(deployment, [after])) == []
    assert materialize_load(after, later, deployment).success
    with open_warehouse(deployment) as warehouse:
        rows = warehouse.query(f"select units from raw.payments where _month = '{later}'")
    assert [row["units"] for row in rows] == [Decimal("1.5")]
