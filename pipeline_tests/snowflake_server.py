"""A Snowflake-protocol server on 127.0.0.1: the one the tests start (fakesnow, in memory), and
`make snowflake-local`, which runs it in the foreground so a user can try the Snowflake path of
the CLI, Dagster and dbt without an account."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import fakesnow
import snowflake.connector
from fakesnow.transforms import stage

# Not PIPELINE: the server (DuckDB underneath) cannot tell a database from the loader's schema
# of the same name.
LOCAL_DATABASE = "SANDBOX"
LOCAL_PORT = 8765  # SNOWFLAKE_LOCAL_PORT overrides it
REPO = Path(__file__).resolve().parent.parent
# Its own Dagster instance, one per port: months loaded into DuckDB by the demo are not loaded on
# this server, nor those of a server on another port.
LOCAL_DAGSTER_HOMES = REPO / ".dagster_home_snowflake_local"
# Its own reports and staged parts: the demo's reports are of the DuckDB warehouse.
LOCAL_DATA = REPO / "data" / "snowflake-local"


def remove_stage_folder() -> None:
    """Remove the folder fakesnow keeps PUT files in: it makes one in the temp folder when it is
    imported and never removes it, so every test session and server left a few MB behind."""
    shutil.rmtree(stage.LOCAL_BUCKET_PATH, ignore_errors=True)


def create_database(server: dict[str, Any], database: str) -> None:
    """A database on `server`, created over the real connector."""
    with snowflake.connector.connect(
        **{key: server[key] for key in ("user", "password", "account", "host", "port")},
        protocol=server["protocol"],
        login_timeout=20,
        network_timeout=20,
    ) as connection:
        connection.cursor().execute(f"CREATE DATABASE IF NOT EXISTS {database}")


def environment(server: dict[str, Any], database: str) -> dict[str, str]:
    """The variables a user sets to load into `database` on `server`."""
    return {
        "PIPELINE_WAREHOUSE": "snowflake",
        "SNOWFLAKE_ACCOUNT": server["account"],
        "SNOWFLAKE_USER": server["user"],
        "SNOWFLAKE_PASSWORD": server["password"],
        "SNOWFLAKE_DATABASE": database,
        "SNOWFLAKE_ROLE": "PIPELINE_LOADER",
        "SNOWFLAKE_WAREHOUSE": "PIPELINE_WH",
        "SNOWFLAKE_HOST": server["host"],
        "SNOWFLAKE_PORT": str(server["port"]),
        "SNOWFLAKE_PROTOCOL": server["protocol"],
        # What fakesnow lacks: ALTER SESSION SET QUERY_TAG, REMOVE, temporary tables in a
        # schema (dbt's incremental models).
        "PIPELINE_SNOWFLAKE_DISABLE": "query_tag,stage_cleanup,temporary_tables",
        # Its bugs come back as HTTP 500, which the connector would retry for minutes.
        "PIPELINE_SNOWFLAKE_TIMEOUT_SECONDS": "30",
    }


def main() -> None:
    """Serve until Ctrl-C, after printing the `export` lines for another shell."""
    port = int(os.environ.get("SNOWFLAKE_LOCAL_PORT") or LOCAL_PORT)
    if not _free(port):
        sys.exit(
            f"Port {port} on 127.0.0.1 is taken (a server started before?): stop it, or choose "
            "another with SNOWFLAKE_LOCAL_PORT=<port> make snowflake-local"
        )
    warnings.filterwarnings("ignore", module="fakesnow")  # its notes on its own internals
    home = LOCAL_DAGSTER_HOMES / str(port)
    with fakesnow.server(port=port) as server:
        # What the last server's loads recorded (runs, the audit log's anchors) describes tables
        # that went with it: kept, `status` showed months it no longer has and `audit verify`
        # took the new log for a rewritten one. Only once the port is this server's: a second
        # start on a taken port emptied the running server's instance.
        shutil.rmtree(home, ignore_errors=True)
        create_database(server, LOCAL_DATABASE)
        variables = environment(server, LOCAL_DATABASE) | {
            "DAGSTER_HOME": str(home),
            "PIPELINE_REPORTS_DIR": str(LOCAL_DATA / "reports"),
            "PIPELINE_STAGING_DIR": str(LOCAL_DATA / "staging"),
        }
        # It parses no masking policy statements: a `pii: mask` dataset is refused with the
        # reason instead (the tests leave the switch on and read the statements as text).
        variables["PIPELINE_SNOWFLAKE_DISABLE"] += ",masking_policies"
        print(
            f"# fakesnow on 127.0.0.1:{port}, in memory: its tables go when it stops (Ctrl-C), "
            f"and its Dagster instance ({home.relative_to(REPO)}/) is emptied when it starts."
        )
        print("# In another shell, from the repository, paste:")
        for name, value in variables.items():
            print(f"export {name}={shlex.quote(value)}")
        print(
            "# then: .venv/bin/pipeline doctor; .venv/bin/pipeline load flights --to 2024-03",
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            remove_stage_folder()


def _free(port: int) -> bool:
    """Whether a server can listen on 127.0.0.1:`port`."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


if __name__ == "__main__":
    main()
