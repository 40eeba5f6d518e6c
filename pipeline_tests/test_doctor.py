"""`pipeline doctor` says what is wrong with a deployment, one line each, with a hint."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from dagster_dbt import DbtProject

from pipeline.doctor import examine_datasets, examine_dbt, preview
from pipeline.project import DBT_PROJECT_DIR
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import BUNDLED_DATASETS_DIR, Settings
from pipeline.specs import RuleSpec, load_specs
from pipeline_tests.support import run

HEADER = (
    "flight_date\tcarrier\tflight\torigin\tdest\tdistance\tdep_delay\tfare\tcancelled\ttime_hour"
)


def test_a_healthy_deployment_is_all_ok(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # away from a developer's own .env
    (settings.landing_dir / "flights_2024-01.tsv").write_text(HEADER + "\r\n")
    result = run("doctor")
    assert result.returncode == 0, result.stdout
    assert "OK      landing flights: 1 month(s) from 2024-01 to 2024-01" in result.stdout
    assert "UTF-8; CRLF line endings" in result.stdout
    assert "OK      warehouse: duckdb" in result.stdout

    # Alerts configured in .env reach the runs `make dev` launches, not `pipeline load`: said.
    (tmp_path / ".env").write_text("# alerts\nPIPELINE_ALERT_TO=ops@example.test\n")
    dotenv = run("doctor")
    assert dotenv.returncode == 1
    assert (
        f"PROBLEM environment: {tmp_path / '.env'} sets PIPELINE_ALERT_TO, which `make dev` "
        "gives its runs but this shell does not have"
    ) in dotenv.stdout
    monkeypatch.setenv("PIPELINE_ALERT_TO", "ops@example.test")
    assert run("doctor").returncode == 0


def test_problems_are_named_with_hints(settings: Settings) -> None:
    (settings.landing_dir / "flights_2024-01.tsv").write_text(HEADER.replace("\t", ",") + "\n")
    (settings.landing_dir / "flights_2024-02.tsv").write_text(HEADER.replace("\tfare", "") + "\n")
    (settings.landing_dir / "flights-march.tsv").write_text("x\n")
    (settings.landing_dir / "flights_2023-12.tsv").write_text(HEADER + "\n")  # before start_month
    # A compressed delivery under the plain pattern: the hint said to rename it.
    (settings.landing_dir / "flights_2024-03.tsv.gz").write_bytes(b"")
    result = run("doctor")
    assert result.returncode == 1
    assert (
        "PROBLEM landing flights: flights_2024-03.tsv.gz is a gzip-compressed flights file for "
        "2024-03, but file_pattern flights_{month}.tsv does not end in .gz" in result.stdout
    )
    assert "set file_pattern: flights_{month}.tsv.gz in the spec" in result.stdout
    assert "PROBLEM file flights_2024-02.tsv: header lacks fare" in result.stdout
    assert "PROBLEM landing: 1 file(s) match no dataset: flights-march.tsv" in result.stdout
    assert (
        "PROBLEM landing flights: flights_2023-12.tsv: outside the months of flights (start_month "
        "2024-01" in result.stdout
    )
    assert "OK      landing flights: 2 month(s) from 2024-01 to 2024-02" in result.stdout
    assert "hint:" in result.stdout
    assert "Traceback" not in result.stderr


def test_snowflake_connection_role_warehouse_database_and_schemas(
    snowflake_deployment: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # away from a developer's own .env
    result = run("doctor")
    assert result.returncode == 0, result.stdout
    for line in [
        "OK      snowflake connection: logged in to account fakesnow at http://127.0.0.1:",
        "OK      snowflake warehouse: PIPELINE_WH",
        f"OK      snowflake database: {os.environ['SNOWFLAKE_DATABASE']}",
        "OK      snowflake schema RAW: will be created by the first load or dbt run",
        "OK      snowflake schema CANDIDATES: will be created by the first load or dbt run",
    ]:
        assert line in result.stdout


def test_snowflake_problems_name_the_variable_never_the_secret(
    snowflake_deployment: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SNOWFLAKE_PASSWORD", "never-print-me")
    monkeypatch.setenv("SNOWFLAKE_PORT", "9")  # nothing listens there
    monkeypatch.setenv("PIPELINE_SNOWFLAKE_TIMEOUT_SECONDS", "3")
    unreachable = run("doctor")
    monkeypatch.delenv("SNOWFLAKE_USER")
    unset = run("doctor")

    assert unreachable.returncode == 1
    assert (
        "PROBLEM snowflake connection: account fakesnow at http://127.0.0.1:9" in unreachable.stdout
    )
    assert "PROBLEM snowflake variables: not set: SNOWFLAKE_USER" in unset.stdout
    for result in (unreachable, unset):
        assert "never-print-me" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_a_line_that_is_not_utf8_is_named_by_its_number(tmp_path: Path) -> None:
    # Doctor said "not UTF-8 at byte 848" and exit 1 for a file whose one bad line the load
    # simply rejects; only a header that is not UTF-8 keeps the file from loading.
    flights = load_specs(BUNDLED_DATASETS_DIR)["flights"]
    path = tmp_path / "flights_2024-01.tsv"
    line = "2024-01-01\tAA\t1\tJFK\tLAX\t2475\t0\t1.00\tfalse\t2024-01-01 06:00:00\n"
    path.write_bytes(f"{HEADER}\n{line}".encode() + line.replace("LAX", "Sé").encode("latin-1"))
    rejected = preview(path, flights)
    assert rejected.ok, rejected
    assert "UTF-8, but line 3 is not (the load rejects such lines)" in rejected.message
    path.write_bytes(HEADER.replace("fare", "farè").encode("latin-1") + b"\n" + line.encode())
    header = preview(path, flights)
    assert not header.ok and header.message == "the header is not UTF-8 (byte 61)"


def test_doctor_reads_a_header_as_the_load_does(tmp_path: Path) -> None:
    # Regression: doctor split the header itself, without dropping spaces around the names, and
    # said "header lacks flight_date, carrier, ..." of a file that loads.
    flights = load_specs(BUNDLED_DATASETS_DIR)["flights"]
    path = tmp_path / "flights_2024-01.tsv"
    padded = "\t".join(f"{name} " for name in HEADER.split("\t"))
    path.write_text(
        f"{padded}\n2024-01-01\tAA\t1\tJFK\tLAX\t2475\t0\t1.00\tfalse\t2024-01-01 06:00:00\n"
    )

    finding = preview(path, flights)

    assert finding.ok, finding
    assert "10 columns" in finding.message


def test_a_dbt_project_that_does_not_parse_is_a_problem_with_dbt_s_words(tmp_path: Path) -> None:
    # A model reading a dataset whose source was not declared: every command, doctor included,
    # ended in a traceback of dbt's coloured log.
    copy = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    model = "select * from {{ source('raw', 'store_sales') }}"
    (copy / "models" / "marts" / "store_sales_daily.sql").write_text(model)

    found = examine_dbt(DbtProject(project_dir=copy, profiles_dir=copy))

    assert not found.ok and found.topic == "dbt"
    assert found.message == (
        f"dbt could not parse {copy}: Compilation Error: Model "
        "'model.pipeline_reports.store_sales_daily' (models/marts/store_sales_daily.sql) depends "
        "on a source named 'raw.store_sales' which was not found"
    )
    assert "sources.yml" in found.hint
    assert examine_dbt().ok  # the project as it is


def test_a_rule_the_warehouse_refuses_is_a_problem_before_any_load(deployment: Settings) -> None:
    # `quantity` for `qty`: doctor said OK, and every month's check failed ("could not run").
    (flights,) = [s for s in load_specs(BUNDLED_DATASETS_DIR).values() if s.name == "flights"]
    rules = [
        RuleSpec(name="late and far", where="dep_delay > 60 and distance > 1000"),
        RuleSpec(name="bulk", where="quantity > 50", severity="CRITICAL"),
        # Stamped when the month is published: the candidate a check reads has no _month.
        RuleSpec(name="stamped", where="_month <> '2024-01'"),
    ]
    spec = flights.model_copy(update={"rules": rules})

    found = {finding.topic: finding for finding in examine_datasets(deployment, [spec])}

    assert set(found) == {"dataset flights rule 'bulk'", "dataset flights rule 'stamped'"}
    for finding, column in zip(found.values(), ["quantity", "_month"], strict=True):
        assert not finding.ok and finding.message.startswith("the warehouse refuses its where:")
        assert column in finding.message.lower()


def test_a_warehouse_and_an_instance_that_do_not_belong_together_are_named(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A mistyped PIPELINE_DUCKDB_PATH made `status` and doctor create an empty warehouse there
    # (doctor: OK, 0 loads); a mistyped DAGSTER_HOME showed every month missing, doctor OK, and
    # a plain load loaded every month again.
    write_tsv(month_frame("2024-01", 5, seed=1), settings.landing_dir / "flights_2024-01.tsv")
    assert run("load", "flights").returncode == 0

    typo = tmp_path / "warehouse.duckd"
    monkeypatch.setenv("PIPELINE_DUCKDB_PATH", str(typo))
    doctor = run("doctor")
    assert doctor.returncode == 1
    assert (
        f"PROBLEM warehouse: duckdb ({typo}): no file there, but the Dagster instance records 1 "
        "run(s)\n          hint: is PIPELINE_DUCKDB_PATH the file the loads wrote?"
    ) in doctor.stdout
    assert not typo.exists()

    monkeypatch.setenv("PIPELINE_DUCKDB_PATH", str(settings.duckdb_path))
    (tmp_path / "other_home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "other_home"))
    doctor = run("doctor")
    assert doctor.returncode == 1
    assert (
        "load(s) recorded, 1 month(s) served that the Dagster instance, which records no run, "
        "does not know\n"
        "          hint: is DAGSTER_HOME the instance the loads ran in?"
    ) in doctor.stdout
    # A purge deletes the month's runs: an instance without runs is then the right one.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    assert run("purge", "flights", "--month", "2024-01", "--yes").returncode == 0
    assert "OK      warehouse: duckdb" in run("doctor").stdout
