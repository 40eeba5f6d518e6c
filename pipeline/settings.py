"""Where things live, read from the environment in one place.

Every path a user can move is an environment variable with a default relative to the working
directory (the repository root when started from the Makefile). Paths are made absolute here
because dbt runs with the dbt project as its working directory: a relative warehouse path would
point somewhere else for dbt than for the loader.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

BUNDLED_DATASETS_DIR = Path(__file__).parent / "datasets"
SUPPORTED_WAREHOUSES = ("duckdb", "snowflake")
# Snowflake's advice for PUT + COPY: parts of 100-250 MB compressed (PIPELINE_SNOWFLAKE_PART_MB).
SNOWFLAKE_PART_MB = 200
# Snowflake features a stand-in server may lack; PIPELINE_SNOWFLAKE_DISABLE turns them off by name
# (what each degrades to: warehouse/snowflake.py; temporary_tables: dbt_project.yml).
SNOWFLAKE_CAPABILITIES = ("query_tag", "stage_cleanup", "temporary_tables", "masking_policies")


SNOWFLAKE_REQUIRED_VARIABLES = ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_DATABASE")


def snowflake_missing_variables() -> list[str]:
    """The connection variables a load needs that are not set, by name."""
    missing = [name for name in SNOWFLAKE_REQUIRED_VARIABLES if not os.environ.get(name)]
    if not (os.environ.get("SNOWFLAKE_PASSWORD") or os.environ.get("SNOWFLAKE_PRIVATE_KEY_PATH")):
        missing.append("SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH")
    return missing


def snowflake_variables_problem() -> str | None:
    """The unset connection variables in a line for the CLI and the code location, or None."""
    missing = snowflake_missing_variables()
    if not missing:
        return None
    return (
        f"PIPELINE_WAREHOUSE=snowflake: set {', '.join(missing)} "
        "(`pipeline doctor` lists every variable a load needs)"
    )


def snowflake_key_problem() -> str | None:
    """What keeps SNOWFLAKE_PRIVATE_KEY_PATH (and its passphrase) from logging in, in a line
    that holds no secret; None when no key is set or it loads as dagster-snowflake loads it
    (PEM, or PEM in base64). dagster-snowflake finds these mistakes only mid-connect, and says
    so in a traceback that suggests base64-encoding the key."""
    from cryptography.hazmat.primitives import serialization

    path = os.environ.get("SNOWFLAKE_PRIVATE_KEY_PATH")
    if not path:
        return None
    where = f"SNOWFLAKE_PRIVATE_KEY_PATH={path}"
    if not Path(path).is_file():
        return f"{where} is not a file"
    data = Path(path).read_bytes()
    passphrase = os.environ.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE")
    password = passphrase.encode() if passphrase else None
    for pem in (data, _base64_decoded(data)):
        try:
            serialization.load_pem_private_key(pem, password=password)
            return None
        except TypeError:  # encrypted without a passphrase, or a passphrase for a plain key
            return (
                f"{where}: the key is encrypted; set SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"
                if password is None
                else f"{where}: the key is not encrypted; unset SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"
            )
        except ValueError:
            continue
    return (
        f"{where}: not a PEM private key (rsa_key.p8), or SNOWFLAKE_PRIVATE_KEY_PASSPHRASE "
        "does not decrypt it"
    )


def _base64_decoded(data: bytes) -> bytes:
    try:
        return base64.b64decode(data)
    except binascii.Error:
        return b""


@dataclass(frozen=True)
class SnowflakeSettings:
    """How to reach Snowflake, apart from the credentials (read as dagster.EnvVar at run time).

    `host`/`port`/`protocol` point the connector and dbt at another endpoint (a proxy, or the test
    server); `disabled` names capabilities the endpoint lacks; `part_mb` sizes the uploaded parts;
    `pii_reader_roles` may read `pii: mask` columns in clear.
    """

    host: str | None
    port: int | None
    protocol: str | None
    timeout_seconds: int | None
    part_mb: int
    disabled: frozenset[str]
    pii_reader_roles: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> SnowflakeSettings:
        disabled = frozenset(name.lower() for name in _names_env("PIPELINE_SNOWFLAKE_DISABLE"))
        unknown = disabled - set(SNOWFLAKE_CAPABILITIES)
        if unknown:
            raise ValueError(
                f"PIPELINE_SNOWFLAKE_DISABLE names unknown capabilities {sorted(unknown)}; "
                f"known: {', '.join(SNOWFLAKE_CAPABILITIES)}"
            )
        readers = _names_env("PIPELINE_PII_READER_ROLES")
        odd = [role for role in readers if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", role)]
        if odd:
            raise ValueError(f"PIPELINE_PII_READER_ROLES: {odd[0]!r} is not a plain role name")
        return cls(
            host=os.environ.get("SNOWFLAKE_HOST") or None,
            port=_int_env("SNOWFLAKE_PORT"),
            protocol=os.environ.get("SNOWFLAKE_PROTOCOL") or None,
            timeout_seconds=_int_env("PIPELINE_SNOWFLAKE_TIMEOUT_SECONDS"),
            part_mb=_int_env("PIPELINE_SNOWFLAKE_PART_MB") or SNOWFLAKE_PART_MB,
            disabled=disabled,
            pii_reader_roles=readers,
        )


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go, apart from the secrets (PIPELINE_SMTP_PASSWORD and
    PIPELINE_ALERT_WEBHOOK_URL are read as dagster.EnvVar at run time, see definitions.py)."""

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_starttls: bool = True
    sender: str | None = None
    recipients: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> AlertSettings:
        recipients = os.environ.get("PIPELINE_ALERT_TO") or ""
        return cls(
            smtp_host=os.environ.get("PIPELINE_SMTP_HOST") or None,
            smtp_port=_int_env("PIPELINE_SMTP_PORT") or 587,
            smtp_user=os.environ.get("PIPELINE_SMTP_USER") or None,
            smtp_starttls=_bool_env("PIPELINE_SMTP_STARTTLS", default=True),
            sender=os.environ.get("PIPELINE_ALERT_FROM") or None,
            recipients=tuple(r.strip() for r in recipients.split(",") if r.strip()),
        )


@dataclass(frozen=True)
class Settings:
    """The locations and warehouse choice of one deployment."""

    datasets_dir: Path
    landing_dir: Path
    staging_dir: Path
    duckdb_path: Path
    warehouse: str
    reports_dir: Path
    reports_url: str | None = None  # where readers open reports_dir (links in the UI and alerts)
    snowflake: SnowflakeSettings | None = None
    alerts: AlertSettings = field(default_factory=AlertSettings)
    metrics_dir: Path | None = None  # where `<dataset>.prom` textfiles go (metrics.py)
    ingest_workers: int | None = None  # blocks validated at once; None: the cores available
    duckdb_memory_limit: str | None = None  # DuckDB's buffers; None: DuckDBWarehouse's default
    duckdb_lock_wait_seconds: int | None = None  # None: DuckDBWarehouse's default
    pushgateway_url: str | None = None
    sensor_interval_seconds: int = 60  # between a sensor's looks (landing folder, freshness)
    audit_anchors: Path | None = None  # None: DAGSTER_HOME/audit_heads.log (audit.anchors_file)

    @classmethod
    def from_env(cls) -> Settings:
        """Read the settings, resolving relative paths against the current directory."""

        def path(name: str, default: str | Path) -> Path:
            return Path(os.environ.get(name) or default).expanduser().resolve()

        warehouse = (os.environ.get("PIPELINE_WAREHOUSE") or "duckdb").lower()
        if warehouse not in SUPPORTED_WAREHOUSES:
            raise ValueError(
                f"PIPELINE_WAREHOUSE={warehouse!r} is not supported; "
                f"choose one of: {', '.join(SUPPORTED_WAREHOUSES)}"
            )
        metrics_dir = os.environ.get("PIPELINE_METRICS_DIR")
        anchors = os.environ.get("PIPELINE_AUDIT_ANCHORS")
        return cls(
            datasets_dir=path("PIPELINE_DATASETS_DIR", BUNDLED_DATASETS_DIR),
            landing_dir=path("PIPELINE_LANDING_DIR", "data/landing"),
            staging_dir=path("PIPELINE_STAGING_DIR", "data/staging"),
            duckdb_path=path("PIPELINE_DUCKDB_PATH", "data/warehouse.duckdb"),
            warehouse=warehouse,
            reports_dir=path("PIPELINE_REPORTS_DIR", "data/reports"),
            reports_url=os.environ.get("PIPELINE_REPORTS_URL") or None,
            snowflake=SnowflakeSettings.from_env() if warehouse == "snowflake" else None,
            alerts=AlertSettings.from_env(),
            metrics_dir=path("PIPELINE_METRICS_DIR", "") if metrics_dir else None,
            pushgateway_url=os.environ.get("PIPELINE_PUSHGATEWAY_URL") or None,
            ingest_workers=_positive_env("PIPELINE_INGEST_WORKERS"),
            duckdb_memory_limit=_memory_env("PIPELINE_DUCKDB_MEMORY_LIMIT"),
            duckdb_lock_wait_seconds=_int_env("PIPELINE_DUCKDB_LOCK_WAIT_SECONDS"),
            sensor_interval_seconds=_positive_env("PIPELINE_SENSOR_INTERVAL_SECONDS")
            or cls.sensor_interval_seconds,
            audit_anchors=path("PIPELINE_AUDIT_ANCHORS", "") if anchors else None,
        )

    def export_for_subprocesses(self) -> None:
        """Publish the resolved paths so dbt (a subprocess with another cwd) sees the same ones."""
        os.environ["PIPELINE_DUCKDB_PATH"] = str(self.duckdb_path)
        os.environ["PIPELINE_LANDING_DIR"] = str(self.landing_dir)
        os.environ["PIPELINE_STAGING_DIR"] = str(self.staging_dir)


def _names_env(name: str) -> tuple[str, ...]:
    """A comma-separated list of names, blanks dropped."""
    return tuple(n.strip() for n in (os.environ.get(name) or "").split(",") if n.strip())


def _positive_env(name: str) -> int | None:
    """An optional whole number of at least 1."""
    value = _int_env(name)
    if value is not None and value < 1:
        raise ValueError(f"{name}={value} must be at least 1 (or unset for the default)")
    return value


def _memory_env(name: str) -> str | None:
    """An optional DuckDB memory size (`512MB`, `2GB`), judged by DuckDB itself: a typo is an
    error that names the variable, not a failed connection whose advice is about locks."""
    value = os.environ.get(name) or None
    if value is None:
        return None
    import duckdb

    try:
        duckdb.connect(config={"memory_limit": value}).close()
    except duckdb.Error as exc:
        reason = str(exc).splitlines()[0]
        raise ValueError(
            f"{name}={value!r} is not a size such as 512MB or 2GB ({reason})"
        ) from None
    return value


def _int_env(name: str) -> int | None:
    """An optional whole-number variable; a typo is an error that names the variable."""
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a whole number") from None


def _bool_env(name: str, default: bool) -> bool:
    """An optional true/false variable; anything else is an error that names the variable."""
    value = (os.environ.get(name) or "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r} is not true or false")
