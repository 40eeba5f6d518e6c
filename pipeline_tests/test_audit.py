"""The audit log on both warehouses: one chained entry per event, written with the change it
records, and `verify` naming the first entry that was edited, removed or moved."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from pipeline.assets.loads import build_load_asset
from pipeline.assets.reports import build_report_asset
from pipeline.audit import (
    anchor,
    anchors_file,
    read_anchors,
    record_event,
    record_spec,
    verify,
    verify_log,
    write_anchor,
)
from pipeline.cli import main
from pipeline.definitions import build_resources, open_warehouse
from pipeline.ingest.stream import new_load_id
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline.warehouse.audit import (
    AUDIT_COLUMNS,
    AuditHead,
    acting_as,
    appending_to,
    entry_hash,
)
from pipeline.warehouse.base import Warehouse, now
from pipeline.warehouse.ledger import AlertRecord, LedgerEntry
from pipeline_tests.support import candidate_month, stage_month

LOG = "pipeline.audit_log"


def history(settings: Settings, warehouse: Warehouse, spec: DatasetSpec, anchors: Path) -> None:
    """Every kind of event: a spec seen, loads published, a refusal, a failure, a purge, an
    alert; anchored at the end as a run does."""
    record_spec(warehouse, spec, "run-0")
    record_spec(warehouse, spec, "run-0")  # the same spec again: nothing new
    with acting_as("sensor landing_flights"):
        warehouse.replace_month(
            stage_month(settings, spec, "2024-01", month_frame("2024-01", 5, seed=1)), "run-1"
        )
    month = candidate_month(settings, warehouse, spec, "2024-02", month_frame("2024-02", 5, 2, 0.2))
    warehouse.record_load(
        LedgerEntry.for_staged(
            month.staged,
            month.candidate.load_id,
            "run-2",
            "failed",
            month.candidate.counts,
            error="refused by check schema: 31 of 155 lines rejected",
            candidate=month.candidate.names(),
        )
    )
    stamp = now()
    warehouse.record_load(
        LedgerEntry.without_rows(spec.name, "2024-03", "run-3", "failed", stamp, stamp, "", "gone")
    )
    purge = LedgerEntry.without_rows(spec.name, "2024-01", "pipeline purge", "purged", stamp, stamp)
    warehouse.purge_month(spec, "2024-01", [], purge)
    record_event(warehouse, "alert_sent", dataset=spec.name, month="2024-02", detail="to ops")
    record_spec(warehouse, spec.model_copy(update={"description": "changed"}), "run-4")
    anchor(warehouse, anchors, "run-4")


def readme_hash(entry: dict) -> str:
    """An entry's hash computed as the README, "Audit trail", tells anyone to: not by pipeline's
    own code, which would agree with itself whatever it did."""
    values = {}
    for name, value in entry.items():
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        elif isinstance(value, Decimal | float) and value == int(value):
            value = int(value)  # whole numbers as integers, as either warehouse returns them
        values[name] = value
    del values["entry_hash"]
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def test_every_event_is_one_chained_entry_and_the_untouched_log_verifies(
    deployment: Settings, warehouse: Warehouse, flights: DatasetSpec, tmp_path: Path
) -> None:
    anchors = tmp_path / "audit_heads.log"
    history(deployment, warehouse, flights, anchors)

    entries = warehouse.query(f"select * from {LOG} order by seq")
    assert [(e["seq"], e["kind"], e["month"]) for e in entries] == [
        (1, "spec_seen", None),
        (2, "published", "2024-01"),
        (3, "refused", "2024-02"),
        (4, "load_failed", "2024-03"),
        (5, "purged", "2024-01"),
        (6, "alert_sent", "2024-02"),
        (7, "spec_changed", None),
    ]
    published, refused = entries[1], entries[2]
    (ledger,) = warehouse.query(  # published, then purged
        "select * from pipeline.load_ledger where month = '2024-01' and status = 'loaded'"
    )
    assert (
        published["load_id"] == ledger["load_id"] and published["actor"] == "sensor landing_flights"
    )
    assert (published["rows_read"], published["rows_loaded"]) == (
        ledger["rows_read"],
        ledger["rows_loaded"],
    )
    assert published["fingerprint"] == ledger["fingerprint"] and published["file_size"] > 0
    assert refused["detail"].startswith("refused by check schema:") and refused["rows_rejected"]
    assert entries[6]["detail"] == f"was {entries[0]['fingerprint']}"
    assert all(e["prev_hash"] == p["entry_hash"] for p, e in itertools.pairwise(entries))
    assert entries[0]["prev_hash"] == "0" * 64
    assert [readme_hash(e) for e in entries] == [e["entry_hash"] for e in entries]
    assert all(e["recorded_at"].utcoffset() is not None for e in entries)

    result = verify_log(warehouse, anchors)
    assert result.ok, result.problem
    assert (result.entries, result.head.seq, result.anchors) == (7, 7, 1)
    assert verify_log(warehouse, anchors, from_seq=4).entries == 4


def test_appends_at_once_take_turns_and_stay_one_chain(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    # Regression: appends at once read the same head and forked the chain (`entry 2:
    # duplicated`); each now takes the log's lock first. Threads of one process take the file
    # lock from separate descriptors, as separate processes do.
    def alert(number: int) -> int:
        return record_event(warehouse, "alert_sent", detail=f"alert {number}").seq

    assert warehouse.audit_head() is None  # creates the tables first, as any earlier run has
    with ThreadPoolExecutor(max_workers=4) as pool:
        numbers = sorted(pool.map(alert, range(8)))

    assert numbers == list(range(1, 9))
    result = verify_log(warehouse, tmp_path / "audit_heads.log")
    assert result.ok, result.problem


def tampered_log(settings: Settings, warehouse: Warehouse, anchors: Path) -> list[dict]:
    """Six entries, the newest anchored; returns them as written."""
    for number in range(1, 7):
        record_event(warehouse, "report_written", dataset="flights", month=f"2024-0{number}")
    anchor(warehouse, anchors, "run-x")
    return warehouse.query(f"select * from {LOG} order by seq")


def tamper_value(column: str, value: object) -> object:
    """Another value of the column's type."""
    if column == "recorded_at":
        return value + dt.timedelta(seconds=1)
    if AUDIT_COLUMNS[column] == "int":
        return (value or 0) + 1000
    return (value or "") + "x"


def test_verify_names_the_entry_whose_column_was_updated(
    deployment: Settings, warehouse: Warehouse, tmp_path: Path
) -> None:
    anchors = tmp_path / "audit_heads.log"
    row = tampered_log(deployment, warehouse, anchors)[2]
    anchored = read_anchors(anchors, warehouse.location())
    with warehouse.session() as sql:  # one session for 17 columns: Snowflake logins are slow
        for column in AUDIT_COLUMNS:
            changed = tamper_value(column, row[column])
            quoted = warehouse.dialect.quote(column)
            sql(f"update {LOG} set {quoted} = ? where seq = 3", [changed])
            problem = verify(sql(f"select * from {LOG}", []), anchored).problem
            # Renumbered, entry 3 is missing; any other change leaves it not matching its hash.
            expected = "entry 3: missing" if column == "seq" else "entry 3: edited"
            assert problem is not None and problem.startswith(expected), (column, problem)
            sql(
                f"update {LOG} set {quoted} = ? where seq = ?",
                [row[column], changed if column == "seq" else 3],
            )
            assert verify(sql(f"select * from {LOG}", []), anchored).ok, column


def test_verify_catches_deleted_reordered_and_rewritten_entries(
    deployment: Settings, warehouse: Warehouse, tmp_path: Path
) -> None:
    anchors = tmp_path / "audit_heads.log"
    tampered_log(deployment, warehouse, anchors)

    warehouse.query(f"update {LOG} set seq = case seq when 3 then 4 else 3 end where seq in (3, 4)")
    assert verify_log(warehouse, anchors).problem.startswith("entry 3: reordered, report_written")
    warehouse.query(f"update {LOG} set seq = case seq when 3 then 4 else 3 end where seq in (3, 4)")
    assert verify_log(warehouse, anchors).ok

    warehouse.query(f"delete from {LOG} where seq = 6")
    assert verify_log(warehouse, anchors).problem.startswith(
        "entry 6: missing, the head (5) is behind its anchor: anchored "
    )
    warehouse.query(f"delete from {LOG} where seq = 3")
    assert verify_log(warehouse, anchors).problem == "entry 3: missing, the log goes on with 4"


def test_verify_catches_entries_numbered_outside_the_chain(
    deployment: Settings, warehouse: Warehouse, tmp_path: Path
) -> None:
    # Entries numbered 0, below or not at all were never read, so a forged one passed.
    anchors = tmp_path / "audit_heads.log"
    tampered_log(deployment, warehouse, anchors)
    for number in ("0", "-1", "null"):
        warehouse.query(
            f"insert into {LOG} select {number}, recorded_at, 'purged', "
            f"{', '.join(list(AUDIT_COLUMNS)[3:])} from {LOG} where seq = 1"
        )
        problem = verify_log(warehouse, anchors).problem
        shown_number = None if number == "null" else number
        expected = (
            f"an entry numbered {shown_number}: outside the chain, purged flights 2024-01 (run -)"
        )
        assert problem == expected, problem
        shown = CliRunner().invoke(main, ["audit", "show", "flights", "--month", "2024-01"])
        assert shown.exit_code == 0 and "purged" in shown.output, shown.output
        warehouse.query(f"delete from {LOG} where kind = 'purged'")
    assert verify_log(warehouse, anchors).ok


def test_a_count_edited_to_a_fraction_does_not_hash_like_the_whole_number() -> None:
    # The canonical form made counts integers with int(): 16800.99 hashed as 16800, so a count
    # column retyped and edited verified.
    entry = {name: None for name in AUDIT_COLUMNS} | {"seq": 2, "rows_loaded": 16800}
    assert entry_hash(entry | {"rows_loaded": Decimal("16800")}) == entry_hash(entry)
    assert entry_hash(entry | {"rows_loaded": 16800.0}) == entry_hash(entry)
    assert entry_hash(entry | {"rows_loaded": Decimal("16800.99")}) != entry_hash(entry)
    assert entry_hash(entry | {"rows_loaded": 16800.99}) != entry_hash(entry)
    for forged in ("abc", float("nan"), float("inf")):  # were a traceback in verify and reports
        assert entry_hash(entry | {"rows_loaded": forged}) != entry_hash(entry)


def test_a_consistently_rewritten_chain_is_caught_by_its_anchor(
    deployment: Settings, warehouse: Warehouse, tmp_path: Path
) -> None:
    anchors = tmp_path / "audit_heads.log"
    written = tampered_log(deployment, warehouse, anchors)
    # Someone who knows the algorithm edits entry 2 and rehashes everything after it.
    previous = written[0]["entry_hash"]
    for row in written[1:]:
        row = {**row, "prev_hash": previous}
        if row["seq"] == 2:
            row["detail"] = "nothing to see"
        row["entry_hash"] = previous = entry_hash(row)
        warehouse.query(
            f"update {LOG} set detail = ?, prev_hash = ?, entry_hash = ? where seq = ?",
            [row["detail"], row["prev_hash"], row["entry_hash"], row["seq"]],
        )

    problem = verify_log(warehouse, anchors).problem
    assert problem.startswith("entry 6: rewritten, report_written flights 2024-06"), problem
    assert "differs from its anchor: anchored " in problem and "by run run-x" in problem


def test_the_cli_verifies_and_shows(deployment: Settings, warehouse: Warehouse) -> None:
    record_event(warehouse, "alert_sent", dataset="flights", month="2024-02", run_id=new_load_id())
    anchor(warehouse, Path(os.environ["DAGSTER_HOME"]) / "audit_heads.log", "cli-test")
    cli = CliRunner()  # in process: a subprocess spends its time importing Dagster

    ok = cli.invoke(main, ["audit", "verify"])
    shown = cli.invoke(main, ["audit", "show", "flights", "--month", "2024-02"])
    shipped = Path(os.environ["DAGSTER_HOME"]) / "shipped.log"
    write_anchor(shipped, warehouse.location(), AuditHead(2, "0" * 64), "later-run")
    behind = cli.invoke(main, ["audit", "verify", "--anchors", str(shipped)])
    # A mistyped path to the shipped copy is an error, not a verification against nothing.
    mistyped = cli.invoke(main, ["audit", "verify", "--anchors", str(shipped) + "x"])
    past = cli.invoke(main, ["audit", "verify", "--from", "9"])
    warehouse.query(f"update {LOG} set actor = 'someone else'")
    tampered = cli.invoke(main, ["audit", "verify"])
    head = warehouse.audit_head().entry_hash
    # A report of two datasets is one entry; each dataset's history lists it.
    record_event(warehouse, "report_written", dataset="flights,settlements")
    both = cli.invoke(main, ["audit", "show", "settlements"])

    assert ok.exit_code == 0, ok.output
    assert ok.output.splitlines()[0] == f"OK: 1 entries, head {head}"
    assert "1 anchored head(s) in " in ok.output
    assert shown.exit_code == 0 and "alert_sent" in shown.output and "2024-02" in shown.output
    assert behind.exit_code == 1
    assert mistyped.exit_code == 2 and "does not exist" in mistyped.output
    assert past.exit_code == 2, past.output
    assert "--from 9: the log's last entry is 1; nothing to verify from 9 on." in past.output
    assert behind.output.startswith("FAILED: entry 2: missing, the head (1) is behind its anchor")
    assert tampered.exit_code == 1
    assert tampered.output.startswith("FAILED: entry 1: edited, alert_sent flights 2024-02")
    assert both.exit_code == 0 and "report_written" in both.output, both.output


def test_a_copy_of_the_warehouse_is_verified_against_the_original_s_anchors(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The anchors of another location were dropped without a word: a copy verified "OK" with
    # "No anchored heads in <file>" while the file held them; a mistyped path made an empty
    # warehouse whose empty log verified.
    with open_warehouse(settings) as warehouse:
        record_event(warehouse, "report_written", dataset="flights")
        anchor(warehouse, anchors_file(dg.DagsterInstance.get()), "run-1")
        original = warehouse.location()
    copy = tmp_path / "restored" / "warehouse.duckdb"
    copy.parent.mkdir()
    copy.write_bytes(settings.duckdb_path.read_bytes())
    monkeypatch.setenv("PIPELINE_DUCKDB_PATH", str(copy))
    cli = CliRunner()

    unanchored = cli.invoke(main, ["audit", "verify"])
    as_original = cli.invoke(main, ["audit", "verify", "--anchored-as", original])
    monkeypatch.setenv("PIPELINE_DUCKDB_PATH", str(tmp_path / "nowhere" / "warehouse.duckdb"))
    missing = cli.invoke(main, ["audit", "verify"])

    assert unanchored.exit_code == 0, unanchored.output
    assert f"holds heads of {original}: if this warehouse is a copy" in unanchored.output
    assert as_original.exit_code == 0 and "1 anchored head(s) in" in as_original.output
    assert missing.exit_code == 2 and "no warehouse file there" in missing.output
    assert not (tmp_path / "nowhere").exists()


def test_a_sensor_runs_entries_all_name_the_sensor(
    settings: Settings, instance: dg.DagsterInstance, flights: DatasetSpec
) -> None:
    # The report step's `report_written` said the OS user where the load's entries said the sensor.
    write_tsv(month_frame("2024-01", 10, seed=1), settings.landing_dir / "flights_2024-01.tsv")
    result = dg.materialize(
        [build_load_asset(flights), build_report_asset(flights)],
        partition_key="2024-01",
        resources=build_resources(settings),
        instance=instance,
        tags={"dagster/sensor_name": "flights_landing"},
    )
    assert result.success
    with open_warehouse(settings) as warehouse:
        entries = warehouse.query(f"select kind, actor from {LOG} where kind <> 'spec_seen'")
    assert {entry["kind"] for entry in entries} >= {"published", "report_written"}
    assert {entry["actor"] for entry in entries} == {"sensor flights_landing"}


def test_an_alert_waits_for_the_audit_lock_like_every_other_entry(warehouse: Warehouse) -> None:
    # Regression: an alert's `alert_sent` entry was appended without the log's lock, so beside a
    # publish (--parallel, the daemon) both could read the same head and fork the chain.
    record = AlertRecord(
        alert_id=new_load_id(),
        dataset="flights",
        month="2024-02",
        check_name="schema",
        verdict="ERROR",
        fingerprint="f",
        channel="email",
        recipients="ops@example.com",
        subject="flights 2024-02: refused",
        status="sent",
        attempts=1,
        error=None,
        run_id="run-1",
        sent_at=now(),
    )
    assert warehouse.audit_head() is None  # creates the tables first, as any earlier run has
    with ThreadPoolExecutor(max_workers=1) as pool:
        with appending_to(warehouse.location()):  # another writer's audited transaction
            sent = pool.submit(warehouse.record_alert, record)
            time.sleep(1)
            assert not sent.done()
        sent.result(timeout=60)

    assert warehouse.audit_head().seq == 1


def test_anchors_go_where_the_deployment_says(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A run in a pod or a container of its own has a DAGSTER_HOME that goes with it: a shared
    # deployment keeps the anchors on its shared volume instead.
    assert anchors_file(instance) == Path(instance.root_directory) / "audit_heads.log"
    monkeypatch.setenv("PIPELINE_AUDIT_ANCHORS", str(tmp_path / "shared" / "audit_heads.log"))
    assert anchors_file(instance) == tmp_path / "shared" / "audit_heads.log"
