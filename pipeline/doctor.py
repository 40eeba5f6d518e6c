"""`pipeline doctor`: is this deployment able to load? One finding per thing it looked at."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.ingest import staging
from pipeline.ingest.files import (
    compressed_advice,
    compression,
    misnamed_compressed_month,
    misnamed_plain_month,
    open_delivered,
    plain_advice,
)
from pipeline.ingest.header import UTF8_BOM, LoadError, header_names
from pipeline.ingest.pii import KEY_VARIABLE
from pipeline.partitions import dataset_partitions
from pipeline.settings import (
    AlertSettings,
    Settings,
    snowflake_key_problem,
    snowflake_missing_variables,
)
from pipeline.specs import DatasetSpec, SpecError, load_specs
from pipeline.warehouse.duckdb import missing_file
from pipeline.warehouse.sql import Run

if TYPE_CHECKING:
    from dagster_dbt import DbtProject

    from pipeline.warehouse.base import Warehouse

PREVIEW_BYTES = 64 * 1024


@dataclass(frozen=True)
class Finding:
    """One line of the report: OK, or a problem with a hint on what to do."""

    ok: bool
    topic: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        word = "OK     " if self.ok else "PROBLEM"
        hint = f"\n          hint: {self.hint}" if self.hint else ""
        return f"{word} {self.topic}: {self.message}{hint}"


def examine(settings: Settings, fix: bool = False) -> Iterator[Finding]:
    """Everything doctor checks, in the order a load needs it; with `fix`, staged parts that no
    running load holds are removed too."""
    try:
        specs = load_specs(settings.datasets_dir)
    except SpecError as error:
        yield Finding(False, "specs", str(error), "fix the spec file named above")
        return
    yield Finding(
        bool(specs),
        "specs",
        f"{len(specs)} dataset(s) in {settings.datasets_dir}: {', '.join(specs) or 'none'}",
        "" if specs else "add a YAML spec (see the README, 'Adding a dataset')",
    )
    yield from examine_landing(settings.landing_dir, list(specs.values()))
    disabled = settings.snowflake.disabled if settings.snowflake else frozenset()
    yield from examine_sensitive(list(specs.values()), settings.warehouse, disabled)
    yield examine_staging(settings.staging_dir, fix)
    yield examine_instance()
    dbt = examine_dbt()
    yield dbt
    # The warehouse is opened through the definitions, which the dbt project is part of.
    reachable = dbt.ok
    for finding in examine_warehouse(settings) if dbt.ok else ():
        reachable &= finding.ok
        yield finding
    # A DuckDB file that is not there is not looked into: opening it would create it.
    reachable &= settings.warehouse != "duckdb" or not missing_file(settings.duckdb_path)
    smtp = examine_smtp(settings.alerts, list(specs.values()))
    if smtp is not None:
        yield smtp
    if reachable:
        yield from examine_datasets(settings, list(specs.values()))
    pending = examine_undelivered(settings) if reachable else None
    if pending is not None:
        yield pending
    dotenv = examine_dotenv(Path.cwd() / ".env")
    if dotenv is not None:
        yield dotenv


def examine_dotenv(path: Path) -> Finding | None:
    """Variables a `.env` sets that this process does not have: `dagster dev` reads the file
    for the runs it launches, the `pipeline` commands read only their environment, so alerts
    or metrics configured there were silently off for `pipeline load`."""
    if not path.is_file():
        return None
    names = [
        line.removeprefix("export ").split("=", 1)[0].strip()
        for line in path.read_text(errors="replace").splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    ]
    unset = [name for name in names if name and name not in os.environ]
    if not unset:
        return None
    return Finding(
        False,
        "environment",
        f"{path} sets {', '.join(unset)}, which `make dev` gives its runs but this shell does "
        "not have: pipeline commands read only their environment",
        f"export them first: set -a; . {path}; set +a",
    )


def examine_landing(landing_dir: Path, specs: list[DatasetSpec]) -> Iterator[Finding]:
    """Files per dataset and month, files no dataset claims, and a look inside the latest file."""
    if not os.path.isdir(landing_dir):
        yield Finding(
            False,
            "landing",
            f"{landing_dir} does not exist (or this user cannot reach it)",
            "create it or set PIPELINE_LANDING_DIR",
        )
        return
    try:
        listed = sorted(landing_dir.iterdir())
    except OSError as error:  # a traceback here ended doctor after its first line
        yield Finding(
            False,
            "landing",
            f"{landing_dir} cannot be read: {error.strerror}",
            "give the loader read access to it, or set PIPELINE_LANDING_DIR",
        )
        return
    claimed: set[str] = set()
    for spec in specs:
        months = {}
        for path in listed:
            month = spec.month_of(path.name)
            if month is not None:
                months[month] = path
        claimed.update(path.name for path in months.values())
        # The sensor and `pipeline load` skip these: say so here rather than count them.
        keys = set(dataset_partitions(spec).get_partition_keys())
        outside = sorted(month for month in months if month not in keys)
        if outside:
            yield Finding(
                False,
                f"landing {spec.name}",
                f"{', '.join(months[month].name for month in outside)}: outside the months of "
                f"{spec.name} (start_month {spec.start_month}, up to the last complete month)",
                "check the file's name, or start_month in the spec",
            )
        months = {month: path for month, path in months.items() if month in keys}
        if not months:
            yield Finding(True, f"landing {spec.name}", f"no {spec.file_pattern} files yet")
            continue
        yield Finding(
            True,
            f"landing {spec.name}",
            f"{len(months)} month(s) from {min(months)} to {max(months)}",
        )
        yield preview(months[max(months)], spec)
    others = [path.name for path in listed if path.is_file() and path.name not in claimed]
    for name in list(others):
        found = _compressed_delivery(name, specs)
        if found is not None:
            others.remove(name)
            yield found
    if others:
        shown = ", ".join(others[:5]) + (" …" if len(others) > 5 else "")
        yield Finding(
            False,
            "landing",
            f"{len(others)} file(s) match no dataset: {shown}",
            "rename them to a spec's file_pattern, or move them out of the landing folder",
        )


def _compressed_delivery(name: str, specs: list[DatasetSpec]) -> Finding | None:
    """A file that a spec's pattern would claim but for a compression suffix (`.tsv.gz` where
    the pattern says `.tsv`, or `.tsv` where it says `.tsv.gz`): not a file of no dataset, to be
    renamed, but a month in the other form."""
    path = Path(name)
    for spec in specs:
        month = misnamed_compressed_month(spec, path)
        if month is not None:
            return Finding(
                False,
                f"landing {spec.name}",
                f"{name} is a {compression(path)}-compressed {spec.name} file for {month}, but "
                f"file_pattern {spec.file_pattern} does not end in {path.suffix}",
                compressed_advice(spec, path),
            )
        month = misnamed_plain_month(spec, path)
        if month is not None:
            kind = compression(Path(spec.file_pattern))
            return Finding(
                False,
                f"landing {spec.name}",
                f"{name} is an uncompressed {spec.name} file for {month}, but file_pattern "
                f"{spec.file_pattern} says {kind}",
                plain_advice(spec),
            )
    return None


def preview(path: Path, spec: DatasetSpec) -> Finding:
    """The first lines of a file (decompressed if its name says it is compressed): encoding, line
    endings, delimiter and header against the spec."""
    topic = f"file {path.name}"
    try:
        with open_delivered(path) as opened:
            head = opened.content.read(PREVIEW_BYTES)
    except LoadError as error:
        return Finding(False, topic, str(error), "ask for the file to be delivered again")
    bom = head.startswith(UTF8_BOM)
    head = head[len(UTF8_BOM) :] if bom else head
    facts = [f"{compression(path)}-compressed"] if compression(path) else []
    try:
        text = head.decode("utf-8")
        facts.append("UTF-8 with BOM" if bom else "UTF-8")
    except UnicodeDecodeError as error:
        line = head[: error.start].count(b"\n") + 1
        if line == 1:
            return Finding(
                False, topic, f"the header is not UTF-8 (byte {error.start})", "convert it to UTF-8"
            )
        text = head[: error.start].decode("utf-8")
        cut = error.start >= len(head) - 4  # a character cut at the preview's end
        facts.append(
            ("UTF-8 with BOM" if bom else "UTF-8")
            + ("" if cut else f", but line {line} is not (the load rejects such lines)")
        )
    first = text.split("\n", 1)[0]
    if "\r" in first.rstrip("\r"):
        return Finding(
            False, topic, "its lines end in CR alone (classic Mac OS)", "convert them to LF or CRLF"
        )
    facts.append("CRLF line endings" if first.endswith("\r") else "LF line endings")
    try:
        header = header_names(first.rstrip("\r"), spec)
    except csv.Error as error:
        return Finding(False, topic, f"the header cannot be read: {error}", "fix its quoting")
    if len(header) == 1:
        delimiters = {"tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
        found = [name for name, char in delimiters.items() if first.count(char) >= 1]
        return Finding(
            False,
            topic,
            f"header has one field with delimiter {spec.delimiter!r}; found {found or 'none'}",
            "set `delimiter` in the spec to the file's separator",
        )
    missing = [name for name, c in spec.columns.items() if name not in header and not c.optional]
    facts.append(f"{len(header)} columns, delimiter {spec.delimiter!r}")
    if missing:
        return Finding(
            False,
            topic,
            f"header lacks {', '.join(missing)} ({'; '.join(facts)})",
            "the file or the spec's column names are wrong; a column added to the spec after "
            "files without it were delivered is `optional: true`",
        )
    extra = [name for name in header if name not in spec.columns]
    if extra:
        facts.append(f"extra columns ignored: {', '.join(extra)}")
    absent = [name for name in spec.columns if name not in header]
    if absent:
        facts.append(f"optional columns absent, loaded as null: {', '.join(absent)}")
    return Finding(True, topic, "; ".join(facts))


def examine_sensitive(
    specs: list[DatasetSpec], warehouse: str, disabled: frozenset[str] = frozenset()
) -> list[Finding]:
    """What the specs' `pii` columns need from the deployment, every missing piece at once;
    nothing when no spec has any. A load without it refuses the month. `disabled`: the Snowflake
    capabilities turned off (PIPELINE_SNOWFLAKE_DISABLE), as for the test server."""
    marked = {
        kind: [f"{spec.name}.{name}" for spec in specs for name in spec.pii_columns(kind)]
        for kind in ("hash", "mask", "redact")
    }
    hashed, masked = marked["hash"], marked["mask"]
    problems = []
    if hashed and not (os.environ.get(KEY_VARIABLE) or "").strip():
        problems.append(
            Finding(
                False,
                "sensitive columns",
                f"{KEY_VARIABLE} is not set; {', '.join(hashed)} say pii: hash",
                "set it to the deployment's secret key (README, 'Sensitive columns')",
            )
        )
    if masked and warehouse != "snowflake":
        problems.append(
            Finding(
                False,
                "sensitive columns",
                f"{', '.join(masked)} say pii: mask, which needs Snowflake's masking policies "
                f"(PIPELINE_WAREHOUSE={warehouse})",
                "use pii: hash or pii: redact, or load the dataset into Snowflake",
            )
        )
    elif masked and "masking_policies" in disabled:
        problems.append(
            Finding(
                False,
                "sensitive columns",
                f"{', '.join(masked)} say pii: mask, but masking_policies is turned off "
                "(PIPELINE_SNOWFLAKE_DISABLE, as for a Snowflake-protocol test server)",
                "use pii: hash or pii: redact, or an account with masking policies",
            )
        )
    protected = sum(len(columns) for columns in marked.values())
    if problems or not protected:
        return problems
    return [
        Finding(True, "sensitive columns", f"{protected} column(s) protected as their specs say")
    ]


def examine_staging(staging_dir: Path, fix: bool) -> Finding:
    """Staged parts left by killed loads (a running load holds its own, and keeps them), and
    whether loads can stage there at all."""
    unwritable = _unwritable(staging_dir)
    if unwritable is not None:
        return Finding(
            False,
            "staging",
            f"{staging_dir}: {unwritable}: no load can stage its parts",
            "give the loader write access, or set PIPELINE_STAGING_DIR to a folder it can write",
        )
    if fix:
        removed = staging.sweep(staging_dir)
        return Finding(True, "staging", f"removed {len(removed)} staging(s) no load was using")
    left = staging.abandoned(staging_dir)
    stale = [directory for directory in staging.stale(staging_dir) if directory not in left]
    problems = [
        f"{len(found)} {what}"
        for found, what in [
            (left, "left half-written by a killed load"),
            (stale, "older than a day"),
        ]
        if found
    ]
    # Not a problem, but --fix removes them too: say so, or doctor's OK and --fix disagree.
    retained = [
        " ".join(directory.relative_to(staging_dir).parts[:2])
        for directory in staging.kept(staging_dir)
        if directory not in stale
    ]
    note = (
        f"; {len(retained)} complete staging(s) kept for a retry ({', '.join(retained)}): the "
        "next load of the same file reuses them, --fix removes them"
        if retained
        else ""
    )
    return Finding(
        not problems,
        "staging",
        f"staging(s) in {staging_dir}: {'; '.join(problems)}{note}"
        if problems
        else f"no stale staged parts in {staging_dir}{note}",
        "pipeline doctor --fix removes those no running load holds" if problems else "",
    )


def _unwritable(directory: Path) -> str | None:
    """Why the loader could not create `directory` or files in it; None if it can."""
    # os.path's tests say False where Path's raise (a parent this user cannot search).
    existing = next(path for path in (directory, *directory.parents) if os.path.exists(path))
    if not os.path.isdir(existing):
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user"
    return None


def examine_instance() -> Finding:
    """The Dagster instance the CLI and the UI share."""
    import dagster as dg

    try:
        instance = dg.DagsterInstance.get()
        runs = instance.get_runs_count()
    except Exception as error:  # any failure here is the finding itself
        return Finding(False, "dagster", f"instance not usable: {error}", "check DAGSTER_HOME")
    return Finding(True, "dagster", f"instance at {instance.root_directory}, {runs} run(s)")


def _instance_runs() -> int | None:
    """How many runs the Dagster instance records; None if it cannot be read (examine_instance
    says why)."""
    import dagster as dg

    try:
        with dg.DagsterInstance.get() as instance:
            return instance.get_runs_count()
    except Exception:
        return None


def examine_dbt(project: DbtProject | None = None) -> Finding:
    """Whether dbt parses the project (at once if nothing changed since the last parse)."""
    from pipeline.project import DbtParseError, dbt_project, ensure_manifest

    project = project or dbt_project
    try:
        ensure_manifest(project)
    except DbtParseError as error:
        return Finding(
            False, "dbt", str(error), f"{error.hint}; the warehouse is not checked until then"
        )
    return Finding(True, "dbt", f"the project in {project.project_dir} parses")


# Dataset months whose latest publish or purge is a publish: what the raw tables serve.
SERVED_MONTHS = (
    "select count(*) as months from (select status, row_number() over (partition by dataset, "
    "month order by finished_at desc) as n from pipeline.load_ledger "
    "where status in ('loaded', 'purged')) as latest where n = 1 and status = 'loaded'"
)


def examine_warehouse(settings: Settings) -> Iterator[Finding]:
    """A connection and the objects a load needs, on the configured warehouse."""
    if settings.warehouse == "snowflake":
        yield from examine_snowflake(settings)
        return
    from pipeline.definitions import open_warehouse

    where = f"duckdb ({settings.duckdb_path})"
    runs = _instance_runs()
    # Opened, a mistyped path became a new, empty warehouse that doctor called OK.
    if missing_file(settings.duckdb_path):
        yield Finding(
            not runs,
            "warehouse",
            f"{where}: no file there"
            + (f", but the Dagster instance records {runs} run(s)" if runs else "")
            + ("" if runs else "; the first load creates it"),
            "is PIPELINE_DUCKDB_PATH the file the loads wrote?" if runs else "",
        )
        return
    try:
        with open_warehouse(settings) as warehouse:
            rows = warehouse.query("select count(*) as loads from pipeline.load_ledger")
            served = warehouse.query(SERVED_MONTHS)[0]["months"]
    except Exception as error:  # any failure here is the finding itself
        yield Finding(
            False,
            "warehouse",
            f"{where}: {error}",
            "is another process (a run, the UI's backfill) writing to it? DuckDB allows one writer",
        )
        return
    loads = rows[0]["loads"]
    # A purge deletes the month's runs: only months still served must be known to the instance.
    unknown = bool(served) and runs == 0
    yield Finding(
        not unknown,
        "warehouse",
        f"{where}: {loads} load(s) recorded"
        + (
            f", {served} month(s) served that the Dagster instance, which records no run, does "
            "not know"
            if unknown
            else ""
        ),
        "is DAGSTER_HOME the instance the loads ran in? With another, `pipeline load` loads "
        "every month again"
        if unknown
        else "",
    )


def examine_datasets(settings: Settings, specs: list[DatasetSpec]) -> Iterator[Finding]:
    """A problem for each dataset whose spec changed the type of a column its raw table holds
    (its next load is refused before reading the file: Warehouse.require_column_types), and for
    each custom rule whose SQL the warehouse refuses. Only asked once the warehouse is OK."""
    from pipeline.definitions import open_warehouse
    from pipeline.ingest.stream import new_load_id
    from pipeline.warehouse.base import ColumnTypeChanged

    with open_warehouse(settings) as warehouse:
        for spec in specs:
            try:
                try:
                    warehouse.require_column_types(spec, spec.start_month, new_load_id())
                except ColumnTypeChanged as error:
                    yield Finding(False, f"dataset {spec.name}", str(error))
                # Asked of the spec's columns, not the table's: a changed type hid a bad rule.
                yield from _examine_rules(warehouse, spec)
            except Exception as error:  # a privilege, a lost connection: the finding itself
                yield Finding(
                    False,
                    f"dataset {spec.name}",
                    f"its tables could not be examined: {str(error).splitlines()[0]}",
                    "`pipeline load` needs the same access (README, 'Running on Snowflake')",
                )


def _examine_rules(warehouse: Warehouse, spec: DatasetSpec) -> Iterator[Finding]:
    """Each rule's `where` asked of no rows of the month's columns, as its check asks it of the
    month's candidate: a misspelt column failed every month (a CRITICAL rule refused each one)."""
    from pipeline.warehouse.base import staged_columns
    from pipeline.warehouse.sql import typed_nulls

    nulls = typed_nulls(warehouse.dialect, staged_columns(spec, spec.name))
    for rule in spec.rules:
        try:
            warehouse.query(f"select count(*) as n from ({nulls}) m where ({rule.where})")
        except Exception as error:
            if not warehouse.is_statement_error(error):
                raise
            yield Finding(
                False,
                f"dataset {spec.name} rule {rule.name!r}",
                f"the warehouse refuses its where: {str(error).splitlines()[0]}",
                "it reads the month's rows: the spec's columns and _line_number",
            )


def examine_undelivered(settings: Settings) -> Finding | None:
    """Alerts recorded as not delivered, with the command that runs each month again (which
    sends them); None when there are none. Only asked once the warehouse finding is OK."""
    from pipeline.alerts.notify import undelivered
    from pipeline.definitions import open_warehouse
    from pipeline.reports.advice import reload_command

    with open_warehouse(settings) as warehouse:
        try:
            pending = undelivered(warehouse)
        except Exception as error:
            if not warehouse.is_statement_error(error):
                raise
            return None  # no alerts or ledger table yet: nothing was ever announced
    if not pending:
        return None
    shown = "; ".join(
        f"{row['dataset']} {row['month']} {row['check_name']} by {row['channel']} "
        f"({(row['error'] or 'failed').splitlines()[0]})"
        for row in pending
    )
    # A refused or failed month runs again with --retry-failed, a published one with --force.
    commands = dict.fromkeys(
        reload_command(row["dataset"], row["month"]).replace(
            "--force", "--retry-failed" if row["attempt"] == "failed" else "--force"
        )
        for row in pending
    )
    return Finding(
        False,
        "alerts",
        f"{len(pending)} alert(s) not delivered: {shown}",
        f"fix the channel, then run the month again, which sends them: {'; '.join(commands)}",
    )


SMTP_TIMEOUT_SECONDS = 10


def examine_smtp(alerts: AlertSettings, specs: Sequence[DatasetSpec] = ()) -> Finding | None:
    """When PIPELINE_SMTP_HOST is set: connect and say EHLO (and STARTTLS when asked); no login,
    no mail. Names settings, never the password. Default recipients (PIPELINE_ALERT_TO) are
    needed only for the `specs` that list none of their own (`alerts.email`)."""
    import smtplib

    if not alerts.smtp_host:
        return None
    where = f"{alerts.smtp_host}:{alerts.smtp_port}"
    try:
        with smtplib.SMTP(alerts.smtp_host, alerts.smtp_port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
            code, _ = smtp.ehlo()
            tls = smtp.has_extn("starttls")
            if alerts.smtp_starttls and tls:
                smtp.starttls()
                smtp.ehlo()
    except (smtplib.SMTPException, OSError) as error:
        return Finding(
            False,
            "smtp",
            f"{where}: {error}",
            "check PIPELINE_SMTP_HOST and PIPELINE_SMTP_PORT (587 for STARTTLS, 25 for plain)",
        )
    if alerts.smtp_starttls and not tls:
        return Finding(
            False,
            "smtp",
            f"{where} answers EHLO but offers no STARTTLS",
            "use the submission port, or PIPELINE_SMTP_STARTTLS=false on a trusted network",
        )
    unaddressed = [spec.name for spec in specs if not spec.alerts.email]
    missing = [
        name
        for name, value in (
            ("PIPELINE_ALERT_FROM", alerts.sender),
            ("PIPELINE_ALERT_TO", bool(alerts.recipients) or (bool(specs) and not unaddressed)),
        )
        if not value
    ]
    if missing:
        whose = f" ({', '.join(unaddressed)} list none in alerts.email)" if unaddressed else ""
        return Finding(
            False,
            "smtp",
            f"{where} answers, but {', '.join(missing)} not set",
            f"set them: alerts need a sender and recipients{whose}",
        )
    return Finding(
        code == 250,
        "smtp",
        f"{where} answers EHLO ({code})" + (", STARTTLS ok" if alerts.smtp_starttls else ""),
    )


def examine_snowflake(settings: Settings) -> Iterator[Finding]:
    """Variables, connection, role, warehouse, database and schemas, each its own finding.

    Names variables, never their values: a doctor report is pasted into tickets.
    """
    from snowflake.connector import errors as sf_errors

    from pipeline.warehouse.base import CANDIDATE_SCHEMA, META_SCHEMA, RAW_SCHEMA, REPORT_SCHEMA
    from pipeline.warehouse.snowflake import DIALECT

    missing = snowflake_missing_variables()
    if missing:
        yield Finding(
            False,
            "snowflake variables",
            f"not set: {', '.join(missing)}",
            "export them (README, 'Running on Snowflake')",
        )
        return
    problem = snowflake_key_problem()
    if problem:
        yield Finding(False, "snowflake key", problem)
        return
    # Only now: importing the definitions builds the Snowflake resource, which needs them.
    from pipeline.definitions import open_warehouse

    try:
        with open_warehouse(settings) as warehouse, warehouse.session() as run:
            yield Finding(True, "snowflake connection", f"logged in to {_endpoint(settings)}")
            role = run("select current_role() as role", [])[0]["role"]
            yield Finding(
                bool(role), "snowflake role", f"using role {role}", "" if role else _GRANTS
            )
            yield _use_warehouse(run)
            database = run("select current_database() as db", [])[0]["db"]
            wanted = os.environ["SNOWFLAKE_DATABASE"].upper()
            if (database or "").upper() != wanted:
                yield Finding(
                    False,
                    "snowflake database",
                    f"{wanted} is not usable (current database: {database})",
                    "create it, or grant USAGE on it to the role: " + _GRANTS,
                )
                return
            yield Finding(True, "snowflake database", f"{database}")
            schemas = {
                row["schema_name"]
                for row in run("select schema_name from information_schema.schemata", [])
            }
            for schema in (RAW_SCHEMA, META_SCHEMA, CANDIDATE_SCHEMA, REPORT_SCHEMA):
                name = DIALECT.name(schema)
                yield Finding(
                    True,
                    f"snowflake schema {name}",
                    "exists" if name in schemas else "will be created by the first load or dbt run",
                    "" if name in schemas else "needs CREATE SCHEMA on the database: " + _GRANTS,
                )
    except (sf_errors.Error, OSError) as error:
        yield Finding(
            False,
            "snowflake connection",
            f"{_endpoint(settings)}: {str(error).splitlines()[0]}",
            "check SNOWFLAKE_ACCOUNT/USER and the password or key; SNOWFLAKE_HOST and "
            "SNOWFLAKE_PORT for a proxy or a test server (is it running?)",
        )


_GRANTS = "see the GRANT script in the README, 'Running on Snowflake'"


def _use_warehouse(run: Run) -> Finding:
    """Queries need a warehouse the role may use."""
    from snowflake.connector import errors as sf_errors

    from pipeline.warehouse.snowflake import DIALECT

    name = os.environ.get("SNOWFLAKE_WAREHOUSE")
    if not name:
        return Finding(False, "snowflake warehouse", "SNOWFLAKE_WAREHOUSE is not set", _GRANTS)
    try:
        run(f"USE WAREHOUSE {DIALECT.quote(name)}", [])
    except (sf_errors.ProgrammingError, ValueError) as error:
        return Finding(
            False, "snowflake warehouse", f"{name}: {str(error).splitlines()[0]}", _GRANTS
        )
    return Finding(True, "snowflake warehouse", name.upper())


def _endpoint(settings: Settings) -> str:
    sf = settings.snowflake
    account = os.environ.get("SNOWFLAKE_ACCOUNT", "")
    if sf is not None and sf.host:
        return f"account {account} at {sf.protocol or 'https'}://{sf.host}:{sf.port or 443}"
    return f"account {account}"
