"""`make snowflake-local`, the Snowflake-protocol server a user starts to try the Snowflake path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from pipeline_tests.mailserver import free_port
from pipeline_tests.snowflake_server import LOCAL_DAGSTER_HOMES, REPO

SERVER = [sys.executable, "-m", "pipeline_tests.snowflake_server"]


def test_a_second_server_on_a_taken_port_says_so_and_leaves_the_first_ones_instance() -> None:
    # It emptied the running server's Dagster instance before failing on the port with a
    # traceback: `status` then showed every loaded month as missing.
    port = str(free_port())
    environment = {**os.environ, "SNOWFLAKE_LOCAL_PORT": port}
    first = subprocess.Popen(
        SERVER,
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    home = LOCAL_DAGSTER_HOMES / port
    try:
        assert first.stdout is not None
        exports = []
        while not exports or not exports[-1].startswith("# then"):  # its last line
            exports.append(first.stdout.readline())
            assert exports[-1], "the server stopped before printing its variables"
        assert f"export DAGSTER_HOME={home}\n" in exports
        # Not the demo's: those are the DuckDB warehouse's reports.
        assert (
            f"export PIPELINE_REPORTS_DIR={REPO / 'data' / 'snowflake-local' / 'reports'}\n"
            in exports
        )
        (home / "runs.db").parent.mkdir(parents=True, exist_ok=True)
        (home / "runs.db").write_text("the first server's runs")

        second = subprocess.run(SERVER, cwd=REPO, env=environment, capture_output=True, text=True)

        assert second.returncode == 1
        assert second.stderr == (
            f"Port {port} on 127.0.0.1 is taken (a server started before?): stop it, or choose "
            "another with SNOWFLAKE_LOCAL_PORT=<port> make snowflake-local\n"
        )
        assert (home / "runs.db").read_text() == "the first server's runs"
    finally:
        first.terminate()
        first.wait(timeout=60)
        shutil.rmtree(home, ignore_errors=True)
