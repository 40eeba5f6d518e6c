"""Sensitive columns: `pii: hash` and `pii: redact` values never land in clear, anywhere a load
writes or sends; `pii: mask` is Snowflake's masking policy, and refused where there is none."""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from snowflake.connector.cursor import SnowflakeCursorBase as SnowflakeCursor

from pipeline.assets.loads import build_load_asset
from pipeline.assets.reports import build_report_asset
from pipeline.audit import anchors_file, read_anchors, verify
from pipeline.definitions import build_definitions, build_resources, open_warehouse
from pipeline.doctor import Finding, examine_sensitive
from pipeline.ingest.header import LoadError
from pipeline.ingest.pii import KEY_VARIABLE, keyed_hash
from pipeline.ingest.schema import MISSING_RULE
from pipeline.ingest.staging import staging_key
from pipeline.ingest.stream import StagedLoad, ingest_file
from pipeline.project import DBT_PROJECT_DIR
from pipeline.runner import load_months
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import BUNDLED_DATASETS_DIR, Settings
from pipeline.specs import DatasetSpec, load_specs
from pipeline.warehouse.base import Warehouse
from pipeline.warehouse.snowflake import REJECT_VALUE_COLUMNS
from pipeline_tests.mailserver import Inbox
from pipeline_tests.support import run
from pipeline_tests.test_ingest import HEADER, SPEC

KEY = "test-key-not-a-secret"
# Clear values carry a marker no hex digest can contain, so a search for it finds any leak.
MARKER = f"zq{uuid.uuid4().hex[:10]}"
EMAIL = {"type": "string", "nullable": False, "pattern": r"^[^@\s]+@[^@\s]+$", "pii": "hash"}


def email(number: int) -> str:
    return f"p{number}.{MARKER}@example.test"


def pii_spec(**changes: object) -> DatasetSpec:
    """test_ingest's spec with a hashed e-mail and a redacted phone number."""
    columns = {
        **SPEC["columns"],
        "email": EMAIL,
        "phone": {"type": "string", "nullable": False, "pii": "redact"},
    }
    return DatasetSpec.model_validate({**SPEC, "columns": columns, **changes})


def ingest(tmp_path: Path, spec: DatasetSpec, lines: list[str], key: str | None) -> StagedLoad:
    path = tmp_path / "landing" / "flights_2024-01.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER + "\temail\tphone", *lines]) + "\n")
    return ingest_file(spec, path, "2024-01", tmp_path / "staging", pii_key=key)


def staged_frames(staged: StagedLoad) -> tuple[pl.DataFrame, pl.DataFrame]:
    def read(parts: tuple[str, ...]) -> pl.DataFrame:
        return pl.concat([pl.read_parquet(p) for p in parts]).sort("_line_number")

    return read(staged.row_parts), read(staged.reject_parts)


def test_sensitive_values_are_replaced_before_staging_and_rules_judge_the_clear_value(
    tmp_path: Path,
) -> None:
    good = "2024-01-01\tAA\t11\tEWR\t1\t2024-01-01T05:00:00Z\tok"
    bad_carrier = good.replace("\tAA\t", "\ta1x\t")
    lines = [
        f"{good}\t{email(1)}\t555-0101",  # 2: loads
        f"{good}\t{email(1)}\t555-0102",  # 3: the same address: the same hash
        f"{bad_carrier}\t{email(2)}\t555-0103",  # 4: another column fails; the line is kept
        f"{good}\tno-at-sign.{MARKER}\t555-0104",  # 5: the pattern judges the clear value
        f"{good}\t{email(3)}\t",  # 6: nullable judges the clear value
        f"{good}\t{email(4)}\t555-0105\textra",  # 7: fields cannot be told apart
    ]
    staged = ingest(tmp_path, pii_spec(), lines, KEY)
    rows, rejects = staged_frames(staged)

    assert rows["_line_number"].to_list() == [2, 3]
    # The README's HMAC-SHA256, as anyone can compute it (the pipeline prepares its own states).
    expected = hmac.new(KEY.encode(), email(1).encode(), hashlib.sha256).hexdigest()
    assert rows["email"].to_list() == [expected] * 2 == [keyed_hash(KEY.encode(), email(1))] * 2
    assert rows["phone"].to_list() == [None, None]
    by_line = {reject["_line_number"]: reject for reject in rejects.iter_rows(named=True)}
    assert by_line[4]["_raw_line"] == f"{bad_carrier}\t{keyed_hash(KEY.encode(), email(2))}\t"
    assert by_line[4]["_column"] == "carrier" and by_line[4]["_value"] == "a1x"
    assert by_line[5]["_column"] == "email" and "must match pattern" in by_line[5]["_reason"]
    assert by_line[5]["_value"] == keyed_hash(KEY.encode(), f"no-at-sign.{MARKER}")
    assert by_line[6]["_column"] == "phone" and by_line[6]["_rule"] == MISSING_RULE
    assert by_line[7]["_raw_line"].startswith("[withheld: 10 fields where the header has 9")
    # Nothing staged holds a clear value: not the rows, not any column of the rejects.
    for frame in (rows, rejects):
        text = frame.cast(pl.String).write_csv()
        assert MARKER not in text and "555-01" not in text


def test_a_control_character_in_a_sensitive_field_is_hashed_once_as_read(tmp_path: Path) -> None:
    # The reject's value was the hash of the escaped text (`\\x00`), its line's field the hash of
    # the value as read: two hashes of one value, and neither column joined to the other.
    good = "2024-01-01\tAA\t11\tEWR\t1\t2024-01-01T05:00:00Z\tok"
    value = f"p\x00{MARKER}@example.test"
    lines = [f"{good}\t{email(1)}\t555-0100", f"{good}\t{value}\t555-0101"]
    staged = ingest(tmp_path, pii_spec(), lines, KEY)
    _, rejects = staged_frames(staged)

    (reject,) = rejects.iter_rows(named=True)
    hashed = keyed_hash(KEY.encode(), value)
    assert reject["_column"] == "email" and reject["_rule"] == "contains a control character (0x00)"
    assert reject["_value"] == hashed and reject["_raw_line"].split("\t")[7] == hashed
    assert MARKER not in rejects.cast(pl.String).write_csv()


def test_a_quoted_sensitive_field_is_hashed_as_parsed_and_the_rest_of_the_line_kept(
    tmp_path: Path,
) -> None:
    good = '2024-01-01\tAA\t11\tEWR\t1\t2024-01-01T05:00:00Z\t"a\tnote"'
    lines = [f'{good}\t"{email(1)}"\t1', f'{good.replace("AA", "a1x")}\t"{email(1)}"\t2']
    rows, rejects = staged_frames(ingest(tmp_path, pii_spec(quote='"'), lines, KEY))
    digest = keyed_hash(KEY.encode(), email(1))
    assert rows["email"].to_list() == [digest]
    assert rejects["_raw_line"].to_list() == [f"{good.replace('AA', 'a1x')}\t{digest}\t"]


def test_a_quote_inside_a_field_does_not_shift_which_field_is_hashed(tmp_path: Path) -> None:
    # A quote opens a field only at its start: `12" pizza` is a plain field. Counted as an
    # opening quote, it moved every later field by one, so the e-mail stayed in clear in the
    # reject's raw line and the phone number's middle was hashed instead.
    start = '2024-01-01\ta1x\t11\tEWR\t1\t2024-01-01T05:00:00Z\t12" pizza'
    lines = [f'{start}\t{email(2)}\t"1\t2\t3"', f'{start}\t{email(3)}\t"1"2"']
    staged = ingest(tmp_path, pii_spec(quote='"'), lines, KEY)
    rejects = pl.concat(pl.read_parquet(part) for part in staged.reject_parts)
    assert rejects.sort("_line_number")["_raw_line"].to_list() == [
        f"{start}\t{keyed_hash(KEY.encode(), email(2))}\t",
        "[withheld: its quoting is broken; email, phone not locatable]",
    ]
    assert MARKER not in rejects.cast(pl.String).write_csv()


def test_parts_hashed_with_a_rotated_key_are_not_reused(
    settings: Settings, flights: DatasetSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The staging a retry reuses was named by the file and the spec only: after the key was
    # rotated, a retried load published parts hashed with the old one.
    spec = with_column(flights, "passenger_email", EMAIL)
    frame = flights_with_email(settings.landing_dir, "2024-01", seed=1, defects=0)
    instance = dg.DagsterInstance.ephemeral()

    def load(key: str) -> dg.ExecuteInProcessResult:
        monkeypatch.setenv(KEY_VARIABLE, key)
        return dg.materialize(
            [build_load_asset(spec)],
            partition_key="2024-01",
            resources=build_resources(Settings.from_env()),
            instance=instance,
            raise_on_error=False,
        )

    # Stopped once its parts are staged: they are kept for a retry to reuse.
    def stopped(*_: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as stop:
        stop.setattr(type(build_resources(settings)["warehouse"]), "stage_candidate", stopped)
        assert not load(KEY).success
    assert list(settings.staging_dir.rglob("staged.json"))
    assert load("rotated-key").success

    with open_warehouse(settings) as warehouse:
        published = {
            row["passenger_email"]
            for row in warehouse.query("select distinct passenger_email from raw.flights")
        }
    assert published == {
        keyed_hash(b"rotated-key", address) for address in frame["passenger_email"].to_list()
    }
    plain = DatasetSpec.model_validate(SPEC)  # nothing hashed: any key's parts serve
    assert staging_key(plain, "file", KEY) == staging_key(plain, "file", "rotated")


def test_a_missing_key_refuses_the_load_naming_the_variable(tmp_path: Path) -> None:
    for key in (None, "  "):  # a key of blanks alone was taken
        with pytest.raises(LoadError, match=f"{KEY_VARIABLE} is not set.*email"):
            ingest(tmp_path, pii_spec(), [], key=key)
    assert not any((tmp_path / "staging").rglob("*.parquet"))


def test_doctor_says_what_the_sensitive_columns_need_before_a_load_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It reported all OK, and the load then failed with advice to correct the file.
    spec = pii_spec()
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    (keyless,) = examine_sensitive([spec], "duckdb")
    assert not keyless.ok
    assert keyless.message == f"{KEY_VARIABLE} is not set; flights.email say pii: hash"
    masked = with_column(spec, "dest", MASKED_DEST)
    # Every missing piece at once, not the next only after the first is fixed.
    assert [finding.ok for finding in examine_sensitive([masked], "duckdb")] == [False, False]
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    assert examine_sensitive([spec], "duckdb") == [
        Finding(True, "sensitive columns", "2 column(s) protected as their specs say")
    ]
    (on_duckdb,) = examine_sensitive([masked], "duckdb")
    assert not on_duckdb.ok
    assert "flights.dest say pii: mask, which needs Snowflake's" in on_duckdb.message
    (on_snowflake,) = examine_sensitive([masked], "snowflake")
    assert on_snowflake.ok
    # The test server (`make snowflake-local`) has none: it said OK, and the load refused.
    (on_test_server,) = examine_sensitive([masked], "snowflake", frozenset({"masking_policies"}))
    assert not on_test_server.ok
    assert "flights.dest say pii: mask, but masking_policies is turned off" in (
        on_test_server.message
    )
    assert examine_sensitive([DatasetSpec.model_validate(SPEC)], "duckdb") == []


def flights_with_email(landing: Path, month: str, seed: int, defects: float) -> pl.DataFrame:
    """A month of flights with a passenger e-mail per row, 40 distinct ones."""
    frame = month_frame(month, rows_per_day=10, seed=seed, defect_ratio=defects)
    address = pl.format("p{}.{}@example.test", pl.int_range(pl.len()) % 40, pl.lit(MARKER))
    frame = frame.with_columns(address.alias("passenger_email"))
    write_tsv(frame, landing / f"flights_{month}.tsv")
    return frame


def with_column(spec: DatasetSpec, name: str, column: dict) -> DatasetSpec:
    document = spec.model_dump(exclude_unset=True)
    return DatasetSpec.model_validate(document | {"columns": document["columns"] | {name: column}})


def every_value(warehouse: Warehouse) -> str:
    """Every value of every table and view in the warehouse, as text."""
    tables = warehouse.query(
        "select table_schema, table_name from information_schema.tables "
        "where upper(table_schema) not in ('INFORMATION_SCHEMA', 'MAIN')"
    )
    return "\n".join(
        str(warehouse.query(f'select * from "{t["table_schema"]}"."{t["table_name"]}"'))
        for t in tables
    )


def test_hashed_values_join_across_months_and_no_table_holds_a_clear_one(
    deployment: Settings, warehouse: Warehouse, flights: DatasetSpec, tmp_path: Path
) -> None:
    spec = with_column(flights, "passenger_email", EMAIL)
    for seed, month in enumerate(["2024-01", "2024-02"]):
        flights_with_email(deployment.landing_dir, month, seed, defects=0.02)
        path = deployment.landing_dir / f"flights_{month}.tsv"
        staged = ingest_file(spec, path, month, tmp_path / month, pii_key=KEY)
        warehouse.replace_month(staged, f"run-{month}")

    shared = warehouse.query(
        "select count(distinct a.passenger_email) as n from raw.flights a "
        "join raw.flights b on a.passenger_email = b.passenger_email "
        "where a._month = '2024-01' and b._month = '2024-02'"
    )
    assert shared == [{"n": 40}]
    assert warehouse.query("select count(*) as n from raw.flights_rejects")[0]["n"] > 0
    assert MARKER not in every_value(warehouse)


MASKED_DEST = {"type": "string", "nullable": False, "pattern": "^[A-Z]{3}$", "pii": "mask"}


def test_mask_is_refused_where_there_are_no_masking_policies(
    settings: Settings, flights: DatasetSpec, tmp_path: Path
) -> None:
    write_tsv(month_frame("2024-01", 5, seed=1), settings.landing_dir / "flights_2024-01.tsv")
    spec = with_column(flights, "dest", MASKED_DEST)
    staged = ingest_file(spec, settings.landing_dir / "flights_2024-01.tsv", "2024-01", tmp_path)
    with open_warehouse(settings) as warehouse:
        with pytest.raises(
            LoadError, match="dest say pii: mask, which needs Snowflake's masking"
        ) as refusal:
            warehouse.replace_month(staged, "run-1")
        assert warehouse.query("select count(*) as n from raw.flights") == [{"n": 0}]
    assert "; DuckDB has none." in str(refusal.value)  # the warehouse's name, not a class's


def test_mask_on_snowflake_sends_the_masking_policy_statements_for_the_reader_roles(
    snowflake_deployment: Settings,
    flights: DatasetSpec,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPELINE_PII_READER_ROLES", "analyst, pii_reader")
    path = snowflake_deployment.landing_dir / "flights_2024-01.tsv"
    write_tsv(month_frame("2024-01", 5, seed=1, defect_ratio=0.05), path)
    staged = ingest_file(with_column(flights, "dest", MASKED_DEST), path, "2024-01", tmp_path)
    sent: list[str] = []
    execute = SnowflakeCursor.execute

    def record(self: SnowflakeCursor, command: str, *args: object, **kwargs: object) -> object:
        sent.append(command)
        if "MASKING POLICY" in command:  # the test server has no masking policies
            return execute(self, "SELECT 1 AS masked", *args, **kwargs)
        return execute(self, command, *args, **kwargs)

    monkeypatch.setattr(SnowflakeCursor, "execute", record)
    with open_warehouse(Settings.from_env()) as warehouse:
        warehouse.replace_month(staged, "run-1")
        warehouse.replace_month(staged, "run-2")  # idempotent: the same statements again
        loaded = warehouse.query("select count(distinct dest) as n from raw.flights")

    body = "CASE WHEN CURRENT_ROLE() IN ('ANALYST', 'PII_READER') THEN val ELSE '***MASKED***' END"
    policy = '"PIPELINE"."PII_MASK"'
    create = (
        f"CREATE MASKING POLICY IF NOT EXISTS {policy} AS (val STRING) RETURNS STRING -> {body}"
    )
    alter = f"ALTER MASKING POLICY {policy} SET BODY -> {body}"
    attach = "ALTER TABLE {} MODIFY COLUMN {} SET MASKING POLICY " + policy + " FORCE"
    one_load = [
        create,
        alter,
        attach.format('"RAW"."FLIGHTS"', '"DEST"'),
        create,
        alter,
        *(attach.format('"RAW"."FLIGHTS_REJECTS"', f'"{c.upper()}"') for c in REJECT_VALUE_COLUMNS),
    ]
    assert [s.split("*/ ", 1)[-1] for s in sent if "MASKING POLICY" in s] == one_load * 2
    assert loaded[0]["n"] > 1  # the clear value is kept; the policy masks it when read

    disabled = os.environ["PIPELINE_SNOWFLAKE_DISABLE"]  # what the test server lacks
    monkeypatch.setenv("PIPELINE_SNOWFLAKE_DISABLE", f"{disabled},masking_policies")
    with (
        open_warehouse(Settings.from_env()) as warehouse,
        pytest.raises(LoadError, match="masking_policies is turned off"),
    ):
        warehouse.replace_month(staged, "run-3")


def test_no_clear_value_reaches_the_warehouse_dagster_or_dbt(
    settings: Settings,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through Dagster and dbt, as `pipeline load` runs a month: refused without the key, then
    loaded; the bytes of the warehouse, the instance, dbt's logs and the report hold no clear
    address."""
    document = yaml.safe_load((BUNDLED_DATASETS_DIR / "flights.yaml").read_text())
    document["columns"]["passenger_email"] = EMAIL
    document["checks"]["max_reject_ratio"] = 0.05
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "flights.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.setenv("PIPELINE_DATASETS_DIR", str(tmp_path / "datasets"))
    settings = Settings.from_env()
    spec = load_specs(settings.datasets_dir)["flights"]
    frame = flights_with_email(settings.landing_dir, "2024-01", 1, defects=0.02)
    path = settings.landing_dir / "flights_2024-01.tsv"
    broken = path.read_text().splitlines()[1].replace("@", "-at-")
    with path.open("a") as file:  # an address that breaks the pattern: rejected, hashed
        file.write(broken + "\n")

    (refused,) = load_months(build_definitions(settings), spec, ["2024-01"], instance)
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    (loaded,) = load_months(build_definitions(settings), spec, ["2024-01"], instance)

    assert not refused.success and f"{KEY_VARIABLE} is not set" in refused.errors[0]
    assert loaded.success, loaded.errors
    assert loaded.rows["rows_rejected"] > 1
    with open_warehouse(settings) as warehouse:
        assert MARKER not in every_value(warehouse)
        distinct = warehouse.query("select count(distinct passenger_email) as n from raw.flights")
        rows = warehouse.query("select * from pipeline.audit_log order by seq")
        kinds = [row["kind"] for row in rows]
        logged = verify(rows, read_anchors(anchors_file(instance), warehouse.location()))
    assert distinct == [{"n": frame["passenger_email"].n_unique()}]
    # Both runs anchored the head they left, in the anchors file and in their metadata.
    # Each run also wrote the dataset's report, itself an audit entry anchored as it was written.
    assert kinds == ["spec_seen", "load_failed", "report_written", "published", "report_written"]
    # Every entry names the run it was written in, the reports' too.
    runs = [row["run_id"] for row in rows]
    assert None not in runs and runs == [runs[0]] * 3 + [runs[3]] * 2 and runs[0] != runs[3], runs
    assert logged.ok and (logged.head.seq, logged.anchors) == (5, 4), logged
    published = instance.fetch_materializations(dg.AssetKey(["raw", "flights"]), limit=1)
    metadata = published.records[0].asset_materialization.metadata
    assert metadata["audit_head_seq"].value == 4
    (entry,) = [r for r in rows if r["seq"] == 4]
    assert metadata["audit_head_hash"].value == entry["entry_hash"]
    home = Path(instance.root_directory)
    assert any(home.rglob("*.db")), "the instance's storage is where the search looks"
    assert (settings.reports_dir / "flights.html").is_file(), "the report is searched too"
    leaks = [
        found
        for root in (
            home,
            DBT_PROJECT_DIR / "logs",
            DBT_PROJECT_DIR / "target",
            settings.reports_dir,
        )
        for found in root.rglob("*")
        if found.is_file() and MARKER.encode() in found.read_bytes()
    ]
    assert leaks == []
    # The search does look where values go: the rejects sample shows the broken address hashed.
    digest = keyed_hash(KEY.encode(), broken.split("\t")[-1]).encode()
    assert any(digest in found.read_bytes() for found in home.rglob("*") if found.is_file())


def test_no_clear_value_reaches_an_alert(
    settings: Settings,
    instance: dg.DagsterInstance,
    flights: DatasetSpec,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refused month's mail carries findings and sample rejected lines: with the address hashed,
    in every part (text, HTML, the CSV attachment)."""
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    spec = with_column(flights, "passenger_email", EMAIL)
    flights_with_email(settings.landing_dir, "2024-01", 1, defects=0.05)
    path = settings.landing_dir / "flights_2024-01.tsv"
    header, first, *rest = path.read_text().splitlines()
    broken = first.replace("@", "-at-")  # an address that breaks the pattern: the first reject
    path.write_text("\n".join([header, broken, first, *rest]) + "\n")

    result = dg.materialize(
        [build_load_asset(spec), build_report_asset(spec)],
        partition_key="2024-01",
        resources=build_resources(Settings.from_env()),
        instance=instance,
        raise_on_error=False,
    )

    assert not result.success
    (mail,) = inbox.messages
    contents = [part.get_content() for part in mail.walk() if not part.is_multipart()]
    text = "\n".join(c if isinstance(c, str) else c.decode("latin-1") for c in contents)
    assert "rejected line" in text  # the CSV's sample of rejected lines is there
    assert keyed_hash(KEY.encode(), broken.split("\t")[-1]) in text
    assert MARKER not in text


def test_marking_a_column_sensitive_loads_the_months_loaded_before_again(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A column marked `pii: hash` after months were loaded: a plain load skipped them as
    'already loaded from this file', leaving the addresses in clear."""
    document = yaml.safe_load((BUNDLED_DATASETS_DIR / "flights.yaml").read_text())
    document["columns"]["passenger_email"] = {k: v for k, v in EMAIL.items() if k != "pii"}
    # A key check's summary names the most repeated key: an address, before it was marked.
    document["checks"]["unique"] = {"columns": ["passenger_email"], "severity": "WARN"}
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    (datasets / "flights.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.setenv("PIPELINE_DATASETS_DIR", str(datasets))
    january, _, march = (
        flights_with_email(settings.landing_dir, month, seed, defects)
        for seed, (month, defects) in enumerate([("2024-01", 0), ("2024-02", 0), ("2024-03", 0.05)])
    )
    assert run("load", "flights").returncode == 1  # 2024-03 is refused; its candidate is kept
    summaries = (
        "select month, count(*) as n from pipeline.check_results "
        f"where summary like '%{MARKER}%' group by month order by month"
    )
    with open_warehouse(settings) as warehouse:
        assert [row["month"] for row in warehouse.query(summaries)] == [
            "2024-01",
            "2024-02",
            "2024-03",
        ]
    archive = tmp_path / "archive"
    archive.mkdir()
    (settings.landing_dir / "flights_2024-01.tsv").rename(archive / "flights_2024-01.tsv")

    document["columns"]["passenger_email"] = EMAIL
    (datasets / "flights.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    marked = run("load", "flights")

    assert marked.returncode == 1, marked.stdout  # 2024-03 is refused again
    for month in ("2024-02", "2024-03"):
        assert (
            f"{month} is loaded again from its file: loaded with sensitive columns none; the spec "
            "now says passenger_email: hash."
        ) in marked.stdout
    # A month whose file is gone cannot be: the summary says so, and what to do.
    assert (
        "the spec now says passenger_email: hash: deliver the file again, or purge the month"
        in (marked.stdout)
    )
    with open_warehouse(settings) as warehouse:
        clear = warehouse.query(
            "select _month, count(*) as n from raw.flights "
            f"where passenger_email like '%{MARKER}%' group by _month"
        )
        # The refused month's candidate, kept for inspection, is the new load's, hashed.
        (candidate,) = warehouse.query(
            "select table_name from information_schema.tables where table_schema = 'candidates' "
            "and table_name like 'flights__202403%' and table_name not like '%rejects'"
        )
        kept = warehouse.query(
            f"select count(*) as n, count_if(passenger_email like '%{MARKER}%') as clear "
            f"from candidates.{candidate['table_name']}"
        )
        quoted = warehouse.query(summaries)
        withheld = warehouse.query(
            "select count(*) as n from pipeline.check_results where summary = "
            "'(withheld: written before the spec marked passenger_email: hash)'"
        )
    assert clear == [{"_month": "2024-01", "n": january.height}]  # every address of 2024-01
    # The earlier verdicts on the reloaded months keep their outcome, not their words.
    assert [row["month"] for row in quoted] == ["2024-01"] and withheld[0]["n"] > 0
    assert kept[0]["n"] > march.height * 0.9 and kept[0]["clear"] == 0
    assert "is loaded again" not in run("load", "flights").stdout  # once, not on every load
