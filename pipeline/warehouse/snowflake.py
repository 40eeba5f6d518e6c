"""Snowflake: staged Parquet parts uploaded with PUT, bulk-loaded with COPY INTO.

Follows Snowflake's loading guidance: compressed Parquet parts of 100-250 MB, uploaded in
parallel to an internal stage under a path of their own, `COPY INTO` a per-load transient table
by column name, then the month is replaced in one transaction from that table. The stage files
and the transient table are removed afterwards, whatever happened.

Connections come from dagster-snowflake's `SnowflakeResource` (credentials are `dagster.EnvVar`s,
see definitions.py). Every operation opens its own session and is retried as a whole on transient
errors, which is also how a dropped session is reconnected.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import copy_context
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
from dagster_snowflake import SnowflakeResource
from pydantic import Field
from snowflake.connector import DictCursor, SnowflakeConnection
from snowflake.connector import errors as sf_errors

from pipeline.ingest.header import LoadError
from pipeline.ingest.stream import StagedLoad
from pipeline.settings import SNOWFLAKE_PART_MB, SnowflakeSettings, snowflake_variables_problem
from pipeline.specs import DatasetSpec
from pipeline.warehouse.base import (
    META_SCHEMA,
    RAW_SCHEMA,
    Warehouse,
    count_rows,
    current_statement_context,
    staged_parts,
)
from pipeline.warehouse.sql import Dialect, Run

T = TypeVar("T")
DIALECT = Dialect(
    types={
        "string": "VARCHAR",
        "int": "NUMBER(38, 0)",
        "float": "FLOAT",
        "bool": "BOOLEAN",
        "date": "DATE",
        "timestamp": "TIMESTAMP_TZ",
    },
    decimal="NUMBER({precision}, {scale})",
    upper_case=True,
    scratch_table="TRANSIENT TABLE",
    # Snowflake widens a NUMBER's precision in place, but changes neither its scale nor its kind.
    retype_advice="Change the column: ALTER TABLE RAW.<table> ALTER COLUMN <column> SET DATA "
    "TYPE <the spec's type> where Snowflake allows it (more precision, a longer VARCHAR), "
    "otherwise add a column of the spec's type, UPDATE it from the old one, drop the old one "
    "and rename the new one",
)
STAGE = "LOAD_STAGE"
MASKING_POLICY = "PII_MASK"
MASKED = "***MASKED***"
# A rejects table repeats its lines' values in these columns: masked too when a column is.
REJECT_VALUE_COLUMNS = ("_raw_line", "_value", "_reason")
# Connector and server codes worth another try: the network, a session that went away, the
# connector's own "retryable" verdict, and Snowflake's transient service errors.
TRANSIENT_ERRNOS = frozenset(
    {
        250002,  # connection is closed
        250003,  # failed to get a response
        250005,  # failed to connect to the server
        251011,  # connection timeout
        251012,  # retryable HTTP code
        390111,  # session no longer exists
        390114,  # authentication token expired
    }
)
FAILED_TO_CONNECT = 250001  # what bad credentials end in, after the connector's own retries
INSUFFICIENT_PRIVILEGES = "42501"  # SQLSTATE of a statement the role may not run


def is_transient(error: BaseException) -> bool:
    """Worth retrying: network trouble or a transient service error, never bad SQL or access."""
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    if isinstance(error, sf_errors.ProgrammingError):
        return False  # SQL, object or privilege errors: the same statement fails again
    if isinstance(error, sf_errors.Error):
        if error.errno in TRANSIENT_ERRNOS:
            return True
        return isinstance(error, sf_errors.OperationalError) and error.errno != FAILED_TO_CONNECT
    return False


class SnowflakeWarehouse(Warehouse):
    """A Snowflake database (SNOWFLAKE_DATABASE) with the schemas RAW, PIPELINE and ANALYTICS.

    `query_tag`, `stage_cleanup` and `masking_policies` are capabilities a Snowflake-compatible
    test server may lack (PIPELINE_SNOWFLAKE_DISABLE): without `query_tag` statements still carry
    their comment; without `stage_cleanup` a load's stage files stay under the load's own path;
    without `masking_policies` a dataset with a `pii: mask` column is refused.
    `pii_reader_roles` (PIPELINE_PII_READER_ROLES) are the roles that read masked columns in clear.
    """

    snowflake: SnowflakeResource
    part_mb: int = SNOWFLAKE_PART_MB
    upload_threads: int = 4
    retry_attempts: int = 5
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    query_tag: bool = True
    stage_cleanup: bool = True
    masking_policies: bool = True
    pii_reader_roles: list[str] = Field(default_factory=list)

    @property
    def dialect(self) -> Dialect:
        return DIALECT

    @property
    def part_bytes(self) -> int:
        return self.part_mb * 1024 * 1024

    def catalog_key(self) -> tuple[object, ...]:
        connection = self.snowflake.additional_snowflake_connection_args or {}
        return (
            "snowflake",
            self.snowflake.account,
            connection.get("host"),
            connection.get("port"),
            self.snowflake.database,
        )

    def location(self) -> str:
        return f"snowflake:{self.snowflake.account}/{self.snowflake.database}"

    def mask_columns(self, run: Run, spec: DatasetSpec, table: str) -> None:
        """Create the masking policy if absent, give it the current reader roles, and attach it to
        the table's `pii: mask` columns (or, for the rejects table, the columns that repeat a
        line's values). Idempotent: FORCE re-attaches a policy already there."""
        masked = spec.pii_columns("mask")
        if not masked:
            return
        if not self.masking_policies:
            raise LoadError(
                f"{spec.name}: column(s) {', '.join(masked)} say pii: mask, but masking_policies "
                "is turned off (PIPELINE_SNOWFLAKE_DISABLE); nothing was loaded"
            )
        policy = DIALECT.table(META_SCHEMA, MASKING_POLICY)
        body = masking_body(self.pii_reader_roles)
        run(
            f"CREATE MASKING POLICY IF NOT EXISTS {policy} AS (val STRING) "
            f"RETURNS STRING -> {body}",
            [],
        )
        run(f"ALTER MASKING POLICY {policy} SET BODY -> {body}", [])
        for column in masked if table == spec.name else REJECT_VALUE_COLUMNS:
            run(
                f"ALTER TABLE {DIALECT.table(RAW_SCHEMA, table)} MODIFY COLUMN "
                f"{DIALECT.quote(column)} SET MASKING POLICY {policy} FORCE",
                [],
            )

    @contextmanager
    def connection(self) -> Iterator[SnowflakeConnection]:
        """A session, closed however the block ends (the resource only closes it on success)."""
        with self.snowflake.get_connection() as connection:
            try:
                context = current_statement_context()
                if self.query_tag and context is not None:
                    connection.cursor().execute(f"ALTER SESSION SET QUERY_TAG = '{context.tag()}'")
                yield connection
            finally:
                connection.close()

    @contextmanager
    def session(self) -> Iterator[Run]:
        with self.connection() as connection:
            yield statement_runner(connection)

    def attempt(self, what: str, operation: Callable[[Run], T]) -> T:
        """Run the operation in a fresh session, again after a transient error, with backoff."""
        for attempt in range(1, self.retry_attempts + 1):
            try:
                with self.session() as run:
                    return operation(run)
            except Exception as error:
                if attempt == self.retry_attempts or not is_transient(error):
                    raise
                # Exponential backoff with jitter, so parallel months don't retry in step.
                delay = min(self.retry_max_seconds, self.retry_base_seconds * 2 ** (attempt - 1))
                delay *= random.uniform(0.5, 1.5)
                dg.get_dagster_logger().warning(
                    f"Snowflake {what}: transient error ({_describe(error)}); "
                    f"attempt {attempt + 1} of {self.retry_attempts} in {delay:.1f}s"
                )
                time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def is_statement_error(self, error: Exception) -> bool:
        return (
            isinstance(error, sf_errors.ProgrammingError)
            and error.sqlstate != INSUFFICIENT_PRIVILEGES
        )

    def fill_candidate(
        self, run: Run, staged: StagedLoad, load_id: str, table: str, target: str
    ) -> int:
        """Upload the table's parts to a stage path of this attempt and COPY them into a
        candidate table; returns the rows it then holds.

        Counted in the table rather than summed from COPY's answer: when that answer is lost, the
        connector sends the COPY again, and a COPY run again skips the files it already loaded
        (load metadata) and answers 0 rows, though the candidate holds them all.
        """
        self.create_candidate_table(run, staged.spec, table, target)
        parts = staged_parts(staged)[table]
        if not parts:
            return 0
        run(f"CREATE STAGE IF NOT EXISTS {META_SCHEMA}.{STAGE} FILE_FORMAT = (TYPE = PARQUET)", [])
        attempt_id = uuid.uuid4().hex[:12]  # a retried load never meets its own leftovers
        stage = f"@{META_SCHEMA}.{STAGE}/{staged.dataset}/{staged.month}"
        directory = f"{stage}/{load_id}/{attempt_id}/{table}/"
        try:
            self._upload(parts, directory)
            run(
                f"COPY INTO {target} FROM {directory} FILE_FORMAT = (TYPE = PARQUET) "
                "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE",
                [],
            )
        finally:
            self._remove_stage_files(run, directory)
        return count_rows(run, target)

    def _upload(self, parts: Sequence[str], directory: str) -> None:
        """PUT the parts in parallel: `upload_threads` sessions, each putting its share in turn.

        One PUT per part rather than a wildcard PUT, because the test server lacks wildcards;
        the parallelism is the same.
        """

        def put_all(share: Sequence[str]) -> None:
            with self.session() as run:
                for part in share:
                    location = Path(part).resolve().as_posix().replace("'", "\\'")
                    run(
                        f"PUT 'file://{location}' {directory} "
                        "AUTO_COMPRESS = FALSE OVERWRITE = TRUE",
                        [],
                    )

        threads = max(1, min(self.upload_threads, len(parts)))
        shares = [parts[n::threads] for n in range(threads)]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            # Each thread gets a copy of the statement context, so its PUTs carry the comment.
            uploads = [pool.submit(copy_context().run, put_all, share) for share in shares]
            for upload in uploads:
                upload.result()

    def _remove_stage_files(self, run: Run, directory: str) -> None:
        """Remove an attempt's stage files; a failure here is logged, not raised, because the
        candidate is already loaded or the attempt already failed."""
        if not self.stage_cleanup:
            return
        try:
            run(f"REMOVE {directory}", [])
        except sf_errors.Error as error:
            dg.get_dagster_logger().warning(
                f"Snowflake clean-up failed, run it by hand: REMOVE {directory} "
                f"({_describe(error)})"
            )


def masking_body(reader_roles: Sequence[str]) -> str:
    """The policy's expression: the clear value for the reader roles, a mask for everyone else."""
    if not reader_roles:
        return f"'{MASKED}'"
    roles = ", ".join(f"'{role.upper()}'" for role in reader_roles)
    return f"CASE WHEN CURRENT_ROLE() IN ({roles}) THEN val ELSE '{MASKED}' END"


def statement_runner(connection: SnowflakeConnection) -> Run:
    """Run statements on the connection, each carrying the comment of who is asking."""

    def run(sql: str, parameters: Sequence[Any]) -> list[dict[str, Any]]:
        context = current_statement_context()
        comment = context.comment() if context is not None else ""
        cursor = connection.cursor(DictCursor)
        try:
            cursor.execute(comment + sql, [_bindable(value) for value in parameters] or None)
            rows = cursor.fetchall() if cursor.description else []
        finally:
            cursor.close()
        return [{name.lower(): value for name, value in row.items()} for row in rows]

    return run


def _bindable(value: object) -> object:
    """Time stamps as ISO text: bound as is, the connector would drop the time zone."""
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _describe(error: BaseException) -> str:
    errno = getattr(error, "errno", None)
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"{type(error).__name__} {errno}: {first_line}" if errno else first_line


def snowflake_warehouse(settings: SnowflakeSettings) -> SnowflakeWarehouse:
    """The Snowflake warehouse PIPELINE_WAREHOUSE=snowflake asks for, as `settings` configure it."""
    return SnowflakeWarehouse(
        snowflake=snowflake_resource(settings),
        part_mb=settings.part_mb,
        query_tag="query_tag" not in settings.disabled,
        stage_cleanup="stage_cleanup" not in settings.disabled,
        masking_policies="masking_policies" not in settings.disabled,
        pii_reader_roles=list(settings.pii_reader_roles),
    )


def snowflake_resource(settings: SnowflakeSettings) -> SnowflakeResource:
    """dagster-snowflake's resource; every credential is an EnvVar, read when a run connects.

    Optional variables are passed only when set, so an unset role or key never becomes "".
    Raises ValueError, naming the variables, when a required one is unset or neither a password
    nor a key is set: the resource's own messages are "Missing config", or a Dagster traceback
    when the run connects.
    """
    problem = snowflake_variables_problem()
    if problem:
        raise ValueError(problem)
    optional = {
        "role": "SNOWFLAKE_ROLE",
        "warehouse": "SNOWFLAKE_WAREHOUSE",
        "schema_": "SNOWFLAKE_SCHEMA",
        "password": "SNOWFLAKE_PASSWORD",
        "private_key_path": "SNOWFLAKE_PRIVATE_KEY_PATH",
        "private_key_password": "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE",
    }
    endpoint = {
        "host": settings.host,
        "port": settings.port,
        "protocol": settings.protocol,
        "network_timeout": settings.timeout_seconds,
    }
    return SnowflakeResource(
        account=dg.EnvVar("SNOWFLAKE_ACCOUNT"),
        user=dg.EnvVar("SNOWFLAKE_USER"),
        database=dg.EnvVar("SNOWFLAKE_DATABASE"),
        **{field: dg.EnvVar(name) for field, name in optional.items() if os.environ.get(name)},
        login_timeout=settings.timeout_seconds,
        # Statements bind parameters server-side, as the checks' qmark SQL is written.
        paramstyle="qmark",
        autocommit=True,
        additional_snowflake_connection_args={k: v for k, v in endpoint.items() if v is not None},
    )
