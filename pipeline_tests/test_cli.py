"""The CLI as a user runs it: a subprocess with environment variables and a temp DAGSTER_HOME."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import click
import dagster as dg
import polars as pl
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pipeline.cli import MONTH, _checks, _name_compressed_twins
from pipeline.ingest import staging
from pipeline.project import DBT_PROJECT_DIR
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import BUNDLED_DATASETS_DIR, Settings
from pipeline.specs import load_specs
from pipeline_tests.mailserver import Inbox
from pipeline_tests.support import PIPELINE, run, scalar


def test_load_then_status_round_trip(
    deployment: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = deployment
    secret = f"pw-{uuid.uuid4().hex}"
    if settings.warehouse == "snowflake":
        monkeypatch.setenv("SNOWFLAKE_PASSWORD", secret)  # the test server takes any password
    write_tsv(month_frame("2024-01", 30, seed=1), settings.landing_dir / "flights_2024-01.tsv")
    # Bad lines, and a day without rows: two ERROR checks refuse it.
    february = month_frame("2024-02", 30, seed=2, defect_ratio=0.05)
    write_tsv(
        february.filter(pl.col("flight_date") != "2024-02-14"),
        settings.landing_dir / "flights_2024-02.tsv",
    )

    loaded = run("load", "flights", "--from", "2024-01", "--to", "2024-02")

    assert loaded.returncode == 1, loaded.stderr
    lines = {line.split()[0]: line for line in loaded.stdout.splitlines() if line[:4] == "2024"}
    assert lines["2024-01"].split()[1] == "ok" and lines["2024-01"].endswith("8 passed")
    verdicts = "schema FAILED (ERROR); completeness FAILED (ERROR); 6 passed"
    assert "FAILED" in lines["2024-02"] and verdicts in lines["2024-02"]
    assert "Months: 1 loaded, 0 skipped, 1 failed" in loaded.stdout
    assert "check volume (INFO): not enough history to judge volume: 0 earlier" in loaded.stdout
    # Each check that refused it, under the other: fixing the first alone met the next.
    assert "  2024-02 failed: check schema: " in loaded.stdout
    assert "\n          and check completeness: 1 of 29 expected days" in loaded.stdout
    assert "lines rejected" in loaded.stdout and "not published" in loaded.stdout
    # The refused month's rejects are in its candidate, not in raw, and the advice reloads it.
    refused = lines["2024-02"].split()[2:5]  # read, loaded, rejected
    assert (
        "0 rejected (quarantined in raw.flights_rejects), "
        f"{refused[2]} more in the refused months' candidates"
    ) in loaded.stdout
    assert (
        "Correct the file, then `pipeline load flights --from 2024-02 --to 2024-02` (a corrected "
        "file is loaded, an unchanged one skipped); after correcting the spec or a setting "
        "instead, add --retry-failed."
    ) in loaded.stdout
    # Not a terminal: progress as plain lines, a line per phase, nothing drawn in place.
    assert "[1/2] 2024-01 read and validate: " in loaded.stdout
    assert "[2/2] 2024-02 checks" in loaded.stdout
    assert "\r" not in loaded.stdout + loaded.stderr
    assert "\x1b" not in loaded.stdout + loaded.stderr

    # Without a range: up to the latest month that has landed, not a failed run per month since.
    again = run("load", "flights")
    assert "Loading flights: 2024-01..2024-02 (2 months)" in again.stdout
    assert again.returncode == 1  # nothing re-ran, but 2024-02 is still not usable
    assert (
        "Still failing from an earlier load: 2024-02 (each one's line above says what loads it "
        "again; `pipeline status flights` says why it failed)."
    ) in again.stdout
    refusal = "an ERROR check refused this file in the last load: a corrected file is loaded"
    assert f"2024-02  skipped       {refusal}" in again.stdout
    assert "Running with dbt" not in loaded.stdout  # dbt's log stays out of the summary

    # What follows only on DuckDB is the CLI's own logic, the same on either warehouse; each
    # command on Snowflake costs seconds of importing dagster-snowflake, for nothing new.
    on_duckdb = settings.warehouse == "duckdb"
    status = run("status", "flights", "--to", "2024-03")
    if on_duckdb:
        until_landed = run("status", "flights")
        assert [line[:7] for line in until_landed.stdout.splitlines()[1:] if line[0] != " "] == [
            "2024-01",
            "2024-02",
        ]
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()[1:]}
    assert rows["2024-01"][1] == "materialized" and rows["2024-01"][-2:] == ["8", "passed"]
    assert rows["2024-02"][1] == "failed" and rows["2024-02"][2:5] == refused
    # What is served, then the refusal, which names the candidate tables once.
    assert "         failed (never published)\n" in status.stdout
    assert status.stdout.count("candidates.flights__202402__") == 2  # rows and rejects
    assert "this load's rows and rejects are in candidates.flights__202402__" in status.stdout
    february_line = next(line for line in status.stdout.splitlines() if line[:7] == "2024-02")
    for verdict in verdicts.split("; "):
        assert verdict in february_line
    assert "2024-03" in rows and "2024-04" not in rows
    assert rows["2024-03"][1] == "missing"

    if on_duckdb:
        # A month without a file fails; the advice is to deliver it, and status keeps listing it.
        undelivered = run("load", "flights", "--from", "2024-03", "--to", "2024-03")
        assert undelivered.returncode == 1
        assert (
            f"Deliver flights_2024-03.tsv to {settings.landing_dir}, then "
            "`pipeline load flights --from 2024-03 --to 2024-03`."
        ) in undelivered.stdout
        assert "Correct the file" not in undelivered.stdout
        listed = run("status", "flights").stdout.splitlines()[1:]
        months = [line for line in listed if line[0] != " "]
        assert months[-1].split()[:2] == ["2024-03", "failed"]
        assert months[-1].endswith("  8 not run")  # its checks were planned, none ran

    # Typed unpadded, as people do: `2024-2` found nothing to purge in a loaded month.
    purged = run("purge", "flights", "--month", "2024-2", "--yes")
    assert purged.returncode == 0, purged.stderr
    dropped = sorted(line.lower() for line in purged.stdout.splitlines() if "candidates." in line)
    assert [line.split(": ")[1] for line in dropped] == [
        f"{refused[1]} rows deleted",
        f"{refused[2]} rows deleted",
    ]
    # Status says the month was purged, not only that it is missing.
    after = run("status", "flights", "--from", "2024-02", "--to", "2024-02").stdout
    assert "2024-02  missing" in after and "         missing (purged 20" in after
    # Purging it again, or a month never loaded, deletes and records nothing.
    ledger = "select count(*) from pipeline.load_ledger"
    records = scalar(settings, ledger)
    for month in ("2024-02", "2024-04") if on_duckdb else ():
        nothing = run("purge", "flights", "--month", month, "--yes")
        assert nothing.returncode == 0, nothing.stderr
        assert f"flights {month} has nothing to purge" in nothing.stdout
    assert scalar(settings, ledger) == records

    if settings.warehouse == "snowflake":
        # The password logged in the loader and dbt, and is in no output, log, run config, event
        # (all in DAGSTER_HOME under tmp_path) or dbt artifact.
        outputs = [loaded, again, status, purged]
        assert not any(secret in result.stdout + result.stderr for result in outputs)
        leaks = [
            path
            for folder in (tmp_path, DBT_PROJECT_DIR / "logs", DBT_PROJECT_DIR / "target")
            for path in folder.rglob("*")
            if path.is_file() and secret.encode() in path.read_bytes()
        ]
        assert leaks == []


def test_validate_judges_a_file_as_its_load_would_and_loads_nothing(
    settings: Settings, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    # A sender's copy, outside the landing folder: its month read from its name.
    sent = tmp_path / "outbox" / "flights_2024-02.tsv"
    write_tsv(month_frame("2024-02", 30, seed=2, defect_ratio=0.05), sent)

    refused = run("validate", "flights", str(sent))

    assert refused.returncode == 1, refused.stderr
    lines = refused.stdout.splitlines()
    read, valid, rejected = re.findall(r"[\d,]+(?= (?:lines read|valid|rejected))", lines[0])
    assert lines[0].startswith("flights_2024-02.tsv as flights 2024-02: ")
    figures = [int(figure.replace(",", "")) for figure in (read, valid, rejected)]
    assert figures[0] == figures[1] + figures[2] and figures[2] > 0
    schema = next(line.split() for line in lines if line.split()[0] == "schema")
    assert schema[1:3] == ["FAILED", "(ERROR)"]
    assert " ".join(schema[3:6]) == f"{rejected} of {read}"
    assert "  completeness  " in refused.stdout and "rule_longer_than_any_route" in refused.stdout
    assert "line(s), first line " in refused.stdout and "line has 11 fields" in refused.stdout
    assert "Not judged here: volume (against the months loaded before" in refused.stdout
    # It was also judged, on the throwaway file: "not enough history: 0 earlier month(s)".
    assert not any(line.split()[0] == "volume" for line in lines)
    assert lines[-1] == "The load would refuse this month: schema failed."

    unnamed = tmp_path / "outbox" / "march.tsv"
    write_tsv(month_frame("2024-03", 30, seed=3), unnamed)
    assert "give its month with --month" in run("validate", "flights", str(unnamed)).stderr
    clean = run("validate", "flights", str(unnamed), "--month", "2024-03")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.splitlines()[-2:] == [
        "Named march.tsv, the load would not find it: deliver it to the landing folder as "
        "flights_2024-03.tsv (the file_pattern, flights_{month}.tsv).",
        "The load would publish this month.",
    ]
    # Nothing was loaded or recorded anywhere: no warehouse, no run, no staging left.
    assert not settings.duckdb_path.exists()
    assert instance.get_runs() == []
    assert not settings.staging_dir.exists() or not any(settings.staging_dir.rglob("*"))


def test_usage_mistakes_exit_2_and_say_what_is_wrong(settings: Settings) -> None:
    unknown = run("load", "trains", "--from", "2024-01", "--to", "2024-01")
    assert (
        unknown.returncode == 2
        and "unknown dataset 'trains'; datasets: flights, settlements" in unknown.stderr
    )
    early = run("load", "flights", "--from", "2023-12", "--to", "2024-01")
    assert early.returncode == 2 and "2023-12 outside the months of flights" in early.stderr
    typo = run("status", "flights", "--from", "2024-13")
    assert typo.returncode == 2 and "'2024-13' is not a month: use YYYY-MM" in typo.stderr
    assert typo.stdout == ""  # no table header before the mistake


def test_warehouse_settings_mistakes_are_one_line_without_a_secret(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_WAREHOUSE", "oracle")
    unknown = run("doctor")
    assert unknown.returncode == 2
    assert unknown.stderr == (
        "Error: PIPELINE_WAREHOUSE='oracle' is not supported; choose one of: duckdb, snowflake\n"
    )

    monkeypatch.setenv("PIPELINE_WAREHOUSE", "snowflake")
    for name in ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_DATABASE"):
        monkeypatch.setenv(name, "x")
    monkeypatch.delenv("SNOWFLAKE_PASSWORD", raising=False)
    monkeypatch.delenv("SNOWFLAKE_PRIVATE_KEY_PATH", raising=False)
    no_secret = run("status", "flights")
    assert no_secret.returncode == 2
    assert "set SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH" in no_secret.stderr
    doctor = run("doctor")
    assert "PROBLEM snowflake variables: not set: SNOWFLAKE_PASSWORD or" in doctor.stdout
    assert doctor.returncode == 1 and doctor.stderr == ""
    # Judging a file needs no warehouse, so no Snowflake variable either.
    sent = tmp_path / "flights_2024-01.tsv"
    write_tsv(month_frame("2024-01", 30, seed=1), sent)
    judged = run("validate", "flights", str(sent))
    assert judged.returncode == 0, judged.stderr
    assert judged.stdout.splitlines()[-1] == "The load would publish this month."
    # A required variable unset was a Dagster traceback of eighty lines, exit 1, from `load`.
    monkeypatch.setenv("SNOWFLAKE_PASSWORD", "x")
    monkeypatch.delenv("SNOWFLAKE_DATABASE")
    no_database = run("load", "flights", "--to", "2024-01")
    assert (no_database.returncode, no_database.stderr) == (
        2,
        "Error: PIPELINE_WAREHOUSE=snowflake: set SNOWFLAKE_DATABASE (`pipeline doctor` lists "
        "every variable a load needs)\n",
    )
    monkeypatch.delenv("SNOWFLAKE_PASSWORD")
    monkeypatch.setenv("SNOWFLAKE_DATABASE", "x")

    # Key-pair mistakes, found before connecting: the resource raised them mid-connect, as a
    # traceback that suggested base64-encoding the key.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    passphrase = f"pp-{uuid.uuid4().hex}"
    encrypted = tmp_path / "rsa_key.p8"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase.encode()),
        )
    )
    not_a_key = tmp_path / "notes.txt"
    not_a_key.write_text("not a key\n")
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PATH", str(encrypted))
    without = [run("status", "flights"), run("doctor")]
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", passphrase[::-1])
    wrong = [run("status", "flights"), run("doctor")]
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PATH", str(not_a_key))
    unreadable = [run("status", "flights"), run("doctor")]
    for (status, doctor), problem in [
        (without, f"{encrypted}: the key is encrypted; set SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"),
        (wrong, f"{encrypted}: not a PEM private key (rsa_key.p8), or SNOWFLAKE_PRIVATE_KEY_PASS"),
        (unreadable, f"{not_a_key}: not a PEM private key (rsa_key.p8), or SNOWFLAKE_PRIVATE_KEY"),
    ]:
        assert status.returncode == 2 and status.stderr.startswith(
            f"Error: SNOWFLAKE_PRIVATE_KEY_PATH={problem}"
        )
        assert len(status.stderr.splitlines()) == 1, status.stderr
        assert f"PROBLEM snowflake key: SNOWFLAKE_PRIVATE_KEY_PATH={problem}" in doctor.stdout
        assert doctor.returncode == 1 and doctor.stderr == ""
        assert passphrase[::-1] not in status.stderr + doctor.stdout
    monkeypatch.delenv("SNOWFLAKE_PRIVATE_KEY_PATH")
    monkeypatch.delenv("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE")

    # Nothing listens on port 9: the connector gives up, and the CLI says so in a line.
    secret = f"pw-{uuid.uuid4().hex}"
    monkeypatch.setenv("SNOWFLAKE_PASSWORD", secret)
    for name, value in {"HOST": "127.0.0.1", "PORT": "9", "PROTOCOL": "http"}.items():
        monkeypatch.setenv(f"SNOWFLAKE_{name}", value)
    monkeypatch.setenv("PIPELINE_SNOWFLAKE_TIMEOUT_SECONDS", "5")
    unreachable = run("purge", "flights", "--month", "2024-01", "--yes")
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("Error: the snowflake warehouse could not be used: ")
    assert "`pipeline doctor` checks its settings" in unreachable.stderr
    outputs = [unknown, no_secret, doctor, unreachable]
    assert not any("Traceback" in result.stderr for result in outputs)
    assert secret not in unreachable.stdout + unreachable.stderr


def test_a_broken_spec_is_reported_with_its_file(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    (datasets / "bad.yaml").write_text(
        "name: bad\nfile_pattern: 'b_{month}.tsv'\nstart_month: '2024-01'\n"
        "date_column: d\ncolumns: {d: {type: datetime}}\n"
    )
    monkeypatch.setenv("PIPELINE_DATASETS_DIR", str(datasets))
    result = run("status", "bad")
    assert result.returncode == 2  # a setup mistake, not a month that failed
    assert f"{datasets / 'bad.yaml'}: field columns.d.type" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_report_model_that_fails_names_itself_and_the_missing_column(
    deployment: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inbox: Inbox
) -> None:
    # A user's own `flights` spec without `fare` gets the bundled stg_flights, which reads it: the
    # summary used to say only "The dbt CLI process with command ...".
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    bundled = (BUNDLED_DATASETS_DIR / "flights.yaml").read_text().splitlines(keepends=True)
    (datasets / "flights.yaml").write_text("".join(line for line in bundled if "fare:" not in line))
    monkeypatch.setenv("PIPELINE_DATASETS_DIR", str(datasets))
    write_tsv(month_frame("2024-01", 20, seed=1), deployment.landing_dir / "flights_2024-01.tsv")

    loaded = run("load", "flights", "--from", "2024-01", "--to", "2024-01")
    status = run("status", "flights")

    reason = "stg_flights needs column(s) fare in raw.flights: add them to the flights spec"
    assert loaded.returncode == 1, loaded.stderr
    assert f"2024-01 failed: flights_reports: {reason}" in loaded.stdout
    assert "dbt CLI process" not in loaded.stdout
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()[1:]}
    assert rows["2024-01"][1] == "failed"  # the raw rows loaded; the month's reports did not
    assert re.search(
        r"\n +failed \(serving the load of [-\d: ]+ UTC from flights_2024-01.tsv\)\n", status.stdout
    )
    assert f"flights_reports: {reason}" in status.stdout
    # The month was published and passed its checks; its failed build is announced, once.
    (mail,) = inbox.messages
    assert mail["Subject"] == "[pipeline] flights 2024-01: dbt FAILED"
    assert reason in mail.get_body(("plain",)).get_content()
    report = (deployment.reports_dir / "flights.html").resolve().as_uri()  # it had no link
    assert f"Report: {report}#flights=2024-01" in mail.get_body(("plain",)).get_content()

    # With the column back in the spec, the month's next build succeeds and resolves it, once.
    monkeypatch.setenv("PIPELINE_DATASETS_DIR", str(BUNDLED_DATASETS_DIR))
    assert run("load", "flights", "--from", "2024-01", "--to", "2024-01").returncode == 0
    subjects = [mail["Subject"] for mail in inbox.messages]
    assert subjects[1:] == ["[pipeline] flights 2024-01: resolved: dbt"], subjects


def _holding(database: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process with the DuckDB file open for `seconds`, as a run or a DuckDB shell has."""
    hold = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print(flush=True); "
    hold += "time.sleep(float(sys.argv[2]))"
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(database), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "\n"
    return holder


def test_a_hold_on_the_duckdb_file_is_waited_out_and_named_when_too_long(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DuckDB lets one process open the file. A `pipeline status` during a run used to fail on
    # the run's hold, and the run's next step on the status's.
    write_tsv(month_frame("2024-01", 5, seed=1), settings.landing_dir / "flights_2024-01.tsv")
    assert run("load", "flights", "--to", "2024-01").returncode == 0
    holder = _holding(settings.duckdb_path, 8)  # longer than the command takes to start
    waited = run("status", "flights", "--to", "2024-01")
    holder.wait()
    assert waited.returncode == 0, waited.stderr
    assert "2024-01  materialized" in waited.stdout

    monkeypatch.setenv("PIPELINE_DUCKDB_LOCK_WAIT_SECONDS", "1")
    holder = _holding(settings.duckdb_path, 60)
    try:
        refused = run("status", "flights", "--to", "2024-01")
    finally:
        holder.kill()
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: the duckdb warehouse could not be used: IO Error")
    assert refused.stderr.endswith(
        "(another process holds the file: a run, or a DuckDB shell; try again when it is done)\n"
    )


@pytest.mark.parametrize(
    ("typed", "month"), [("2024-08", "2024-08"), ("2024-8", "2024-08"), (" 2024-11 ", "2024-11")]
)
def test_a_month_is_read_zero_padded(typed: str, month: str) -> None:
    # `--from 2024-8` sorted after 2024-12 as text: the load ran to the latest month there was and
    # recorded every one after 2024 as failed; `purge --month 2024-4` found nothing to purge.
    assert MONTH.convert(typed, None, None) == month


@pytest.mark.parametrize("typed", ["08-2024", "2024/08", "2024-13", "2024-0", "24-08", "2024"])
def test_what_is_not_a_month_says_how_to_write_one(typed: str) -> None:
    with pytest.raises(click.BadParameter, match=r"is not a month: use YYYY-MM, e\.g\. 2024-03"):
        MONTH.convert(typed, None, None)


def test_a_command_run_away_from_the_instance_says_it_made_a_new_one(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without DAGSTER_HOME, `.dagster_home` is looked for in the current folder: from another
    # one, status listed every month `missing` with nothing to say why.
    monkeypatch.delenv("DAGSTER_HOME")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    first, second = run("status", "flights"), run("status", "flights")
    assert first.returncode == 0, first.stderr
    assert (
        f"Note: created a Dagster instance in {elsewhere / '.dagster_home'}, since DAGSTER_HOME "
        "is not set"
    ) in first.stderr
    assert "Note:" not in second.stderr
    # Nothing landed, loaded or failed: said once, not as every month since start_month, missing.
    assert second.stdout.startswith("No month of flights has landed in ")


def test_a_months_checks_name_its_errors_before_its_warnings() -> None:
    # `pipeline status` listed `rule_pro_plans FAILED (WARN); schema FAILED (ERROR)`, in the
    # checks' order, where the load's summary and the mail put what refused the month first.
    checks = {
        "raw/x:rule_pro_plans": "FAILED (WARN)",
        "raw/x:schema": "FAILED (ERROR)",
        "raw/x:volume": "passed",
    }
    assert _checks(checks) == "schema FAILED (ERROR); rule_pro_plans FAILED (WARN); 1 passed"


# Root reads and writes any folder: such commands run without the capabilities that let it.
CAPABILITIES = "-dac_override,-dac_read_search"
AS_A_USER = (
    ["setpriv", f"--inh-caps={CAPABILITIES}", f"--bounding-set={CAPABILITIES}"]
    if os.geteuid() == 0
    else []
)


def test_folders_the_loader_cannot_use_are_one_line_and_doctor_names_them(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unreadable landing folder was a traceback from load, status and doctor (doctor's ended
    # after its first line); a staging folder that cannot be made, doctor called OK.
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("PIPELINE_STAGING_DIR", str(tmp_path / "a-file" / "staging"))
    settings.landing_dir.chmod(0)
    try:
        done = {
            command: subprocess.run(
                [*AS_A_USER, PIPELINE, *command.split()],
                capture_output=True,
                text=True,
                env=os.environ.copy(),
                timeout=300,
            )
            for command in ("load flights", "status flights", "doctor")
        }
    finally:
        settings.landing_dir.chmod(0o755)

    unreadable = f"{settings.landing_dir} cannot be read: Permission denied"
    for command in ("load flights", "status flights"):
        assert done[command].returncode == 2, done[command]
        assert done[command].stderr == (
            f"Error: the landing folder {unreadable}; give the loader read access to it, or set "
            "PIPELINE_LANDING_DIR\n"
        )
    doctor = done["doctor"]
    assert "Traceback" not in doctor.stdout + doctor.stderr and doctor.returncode == 1, doctor
    assert f"PROBLEM landing: {unreadable}" in doctor.stdout
    assert "a-file is a file, not a folder: no load can stage its parts" in doctor.stdout


def test_a_month_delivered_compressed_under_a_plain_pattern_is_named(settings: Settings) -> None:
    # Its month was left out of a load without --to, unsaid: `0 loaded, 0 skipped`, exit 0.
    write_tsv(month_frame("2024-04", 5, seed=1), settings.landing_dir / "flights_2024-04.tsv")
    plain = settings.landing_dir / "flights_2024-04.tsv"
    gzip_file = plain.with_name("flights_2024-04.tsv.gz")
    subprocess.run(["gzip", str(plain)], check=True)
    assert gzip_file.exists()

    done = run("load", "flights")
    assert (
        "Not loaded: flights_2024-04.tsv.gz is gzip-compressed, and file_pattern "
        "flights_{month}.tsv does not end in .gz: set file_pattern: flights_{month}.tsv.gz in the "
        "spec to load it as delivered (every month of flights is then looked for "
        "gzip-compressed), or deliver it uncompressed."
    ) in done.stdout, done.stdout
    # Not when the range asked for leaves it out.
    later = run("load", "flights", "--from", "2024-05")
    assert "Nothing to load" in later.stdout and "Not loaded" not in later.stdout


def test_a_correction_sent_compressed_beside_the_loaded_file_is_named_where_it_is_skipped(
    tmp_path: Path,
) -> None:
    # The month was skipped as "already loaded from this file", and the operator took the
    # correction for loaded; only doctor named the .gz.
    spec = load_specs(BUNDLED_DATASETS_DIR)["flights"]
    files = {month: tmp_path / spec.file_name(month) for month in ("2024-04", "2024-05")}
    for path in files.values():
        path.write_text("loaded\n")
    (tmp_path / "flights_2024-04.tsv.gz").write_bytes(b"")
    skipped = {month: "already loaded from this file (--force reloads it)" for month in files}

    _name_compressed_twins(spec, skipped, files)

    assert skipped == {
        "2024-04": "already loaded from this file (--force reloads it); flights_2024-04.tsv.gz "
        "beside it is not read: set file_pattern: flights_{month}.tsv.gz in the spec to load it "
        "as delivered (every month of flights is then looked for gzip-compressed), or deliver "
        "it uncompressed",
        "2024-05": "already loaded from this file (--force reloads it)",
    }


def as_a_user(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AS_A_USER, PIPELINE, *command],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )


def test_what_this_user_cannot_open_is_left_alone_or_named_in_one_line(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A day-old staging of another user (cron and the daemon as different users): sweeping it
    # raised PermissionError, and every load of the month was retried for two minutes.
    write_tsv(month_frame("2024-01", 5, seed=1), settings.landing_dir / "flights_2024-01.tsv")
    foreign = settings.staging_dir / "flights" / "2024-01" / "another-users"
    foreign.mkdir(parents=True)
    (foreign / staging.LOCK).write_text("")
    (foreign / staging.LOCK).chmod(0)
    day_old = time.time() - 2 * 86400
    os.utime(foreign, (day_old, day_old))
    loaded = as_a_user("load", "flights")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert foreign.is_dir()

    # A warehouse in a folder this user cannot search: one line, as before the check for a
    # missing file (Path.is_file raised PermissionError there).
    locked = tmp_path / "locked"
    locked.mkdir(mode=0)
    monkeypatch.setenv("PIPELINE_DUCKDB_PATH", str(locked / "warehouse.duckdb"))
    try:
        status, doctor = as_a_user("status", "flights"), as_a_user("doctor")
    finally:
        locked.chmod(0o755)
    assert status.returncode == 1 and "Traceback" not in status.stderr, status.stderr
    assert status.stderr.startswith("Error: the duckdb warehouse could not be used: IO Error")
    assert "Traceback" not in doctor.stdout + doctor.stderr, doctor.stdout + doctor.stderr
    assert "PROBLEM warehouse: duckdb" in doctor.stdout
