"""A spec with a mistake fails when the code location loads, naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.specs import SpecError, load_spec, load_specs

VALID = """\
name: flights
file_pattern: "flights_{month}.tsv"
start_month: "2013-01"
date_column: flight_date
delimiter: "\\t"
null_values: ["", "NA"]
columns:
  flight_date: {type: date, nullable: false}
  carrier:     {type: string, nullable: false, pattern: "^[A-Z0-9]{2}$"}
  flight:      {type: int, nullable: false, min: 1}
  origin:      {type: string, nullable: false, allowed: [EWR, JFK, LGA]}
  distance:    {type: float, min: 0}
  time_hour:   {type: timestamp}
checks:
  max_reject_ratio: 0.001
"""


def write(tmp_path: Path, text: str, name: str = "flights.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_documented_contract_is_accepted(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, VALID))
    assert spec.name == "flights"
    assert spec.delimiter == "\t"
    assert spec.columns["carrier"].pattern == "^[A-Z0-9]{2}$"
    assert spec.columns["distance"].nullable is True
    assert spec.columns["distance"].allow_non_finite is False
    assert spec.checks.max_reject_ratio == 0.001
    assert spec.file_name("2013-04") == "flights_2013-04.tsv"
    assert spec.month_of("flights_2013-04.tsv") == "2013-04"
    assert spec.month_of("flights_2013-13.tsv") is None
    # Without a checks section a dataset still gets volume, freshness and drift checks.
    assert spec.checks.volume is not None and spec.checks.volume.lookback_months == 6
    assert spec.checks.freshness is not None and spec.checks.freshness.days_after_month_end == 5
    assert spec.checks.schema_drift.severity == "WARN"
    assert spec.fiscal is None


def test_yaml_words_that_yaml_1_1_reads_as_booleans_stay_words(tmp_path: Path) -> None:
    """`on` as a key, `NO` as a country: PyYAML alone reads both as booleans."""
    text = VALID.replace("nullable: false}", "nullable: no}", 1) + (
        "  completeness: {calendar: business_days, country: NO}\n"
        "alerts:\n  email: [team@example.com]\n  on: [ERROR, WARN]\n"
    )
    spec = load_spec(write(tmp_path, text))
    assert spec.alerts is not None and spec.alerts.on == ["ERROR", "WARN"]
    assert spec.checks.completeness is not None and spec.checks.completeness.country == "NO"
    assert spec.columns["flight_date"].nullable is False
    assert spec.checks.max_reject_ratio == 0.001  # numbers are still numbers


def test_json_specs_are_accepted(tmp_path: Path) -> None:
    write(
        tmp_path,
        '{"name": "trades", "file_pattern": "t_{month}.tsv", "start_month": "2020-01",'
        ' "date_column": "d", "columns": {"d": {"type": "date"}}}',
        "trades.json",
    )
    assert load_specs(tmp_path)["trades"].columns["d"].type == "date"


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        (
            "{type: int, nullable: false, min: 1}",
            "{type: integer}",
            "columns.flight.type",
            "Input should be",
        ),
        ("name: flights", "name: Flights-2", "field name", "should match pattern"),
        ('"^[A-Z0-9]{2}$"', '"^[A-Z"', "columns.carrier.pattern", "does not compile"),
        # Python's `re` takes it, the loader's polars does not: every block of the load failed.
        (
            '"^[A-Z0-9]{2}$"',
            '"^(?!ZZ)[A-Z]{2}$"',
            "columns.carrier.pattern",
            "lacks some of Python's syntax: look-around, including look-ahead and look-behind, "
            "is not supported",
        ),
        (
            "{type: int, nullable: false, min: 1}",
            "{type: int, allow_non_finite: true}",
            "columns.flight",
            "allow_non_finite applies to float columns, not int",
        ),
        (
            "date_column: flight_date",
            "date_column: departed",
            "date_column",
            "not one of the columns",
        ),
        ('"flights_{month}.tsv"', '"flights.tsv"', "file_pattern", "{month}"),
        (
            "  distance:    {type: float, min: 0}",
            "  Carrier:     {type: string}",
            "columns",
            "duplicate column",
        ),
        ("checks:", "checks:\n  max_rejects: 3", "checks.max_rejects", "Extra inputs"),
        (
            "checks:",
            "checks:\n  unique: {columns: [nope]}",
            "checks.unique",
            "unknown column(s): nope",
        ),
        (
            "checks:",
            "checks:\n  volume: {lookback_months: 3, min_history_months: 4}",
            "checks.volume",
            "min_history_months (4) is more than lookback_months (3)",
        ),
        (
            "checks:",
            "checks:\n  freshness: {days_after_month_end: 31}",
            "checks.freshness.days_after_month_end",
            "less than or equal to 27",
        ),
        ("checks:", "fiscal: {year_start_month: 13}\nchecks:", "fiscal.year_start_month", "12"),
        (
            "checks:",
            "fiscal: {week_pattern: 4-4-4}\nchecks:",
            "fiscal.week_pattern",
            "'4-4-5', '4-5-4' or '5-4-4'",
        ),
        (
            "checks:",
            "fiscal: {week_start: 0}\nchecks:",
            "fiscal",
            "week_start applies only with a week_pattern",
        ),
        (
            "{type: float, min: 0}",
            "{type: float, min: 0, pii: hash}",
            "columns.distance",
            "pii: hash applies to string columns, not float",
        ),
        (
            "{type: timestamp}",
            "{type: timestamp, pii: secret}",
            "columns.time_hour.pii",
            "'redact'",
        ),
        (
            "{type: date, nullable: false}",
            "{type: date, nullable: false, pii: redact}",
            "(top level)",
            "date_column 'flight_date' cannot be pii",
        ),
        (
            "{type: timestamp}\nchecks:",
            "{type: timestamp, pii: redact}\nchecks:\n  unique: {columns: [flight, time_hour]}",
            "(top level)",
            "checks.unique names redacted column(s) time_hour",
        ),
        # These loaded, and failed every month at load (after its retries), or refused every line.
        (
            "allowed: [EWR, JFK, LGA]",
            "allowed: [01, 02]",
            "columns.origin",
            "allowed values [1, 2] are not of the column's type string: quote them",
        ),
        (
            "{type: int, nullable: false, min: 1}",
            "{type: int, allowed: ['1', 2]}",
            "columns.flight",
            "allowed values ['1'] are not of the column's type int",
        ),
        (
            "{type: int, nullable: false, min: 1}",
            "{type: int, min: 60, max: 50}",
            "columns.flight",
            "min 60 is larger than max 50: no value fits",
        ),
        (
            "checks:",
            "checks:\n  completeness: {calendar: business_days, country: US, subdiv: ZZ}",
            "checks.completeness",
            "subdiv 'ZZ' is not a subdivision of US in the holidays package; known: AK, AL",
        ),
        (  # was a traceback, naming neither the file nor the line
            "checks:",
            "checks:\n  completeness: {extra_closed_dates: [2024-13-02]}",
            "line 15",
            "2024-13-02 is not a date (month must be in 1..12)",
        ),
    ],
)
def test_mistakes_name_the_file_and_the_field(
    tmp_path: Path, old: str, new: str, field: str, message: str
) -> None:
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new))
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert str(path) in str(error.value)
    assert field in str(error.value)
    assert message in str(error.value)


def test_a_column_listed_twice_is_an_error_not_a_silent_overwrite(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("  distance:", "  origin: {type: string}\n  distance:"))
    with pytest.raises(SpecError, match=r"flights\.yaml.*line 12: duplicate key 'origin'"):
        load_spec(path)


def test_two_files_for_one_dataset_are_refused(tmp_path: Path) -> None:
    write(tmp_path, VALID, "a.yaml")
    write(tmp_path, VALID, "b.yml")
    with pytest.raises(
        SpecError, match=r"b\.yml: field name: dataset 'flights' is already defined"
    ):
        load_specs(tmp_path)
