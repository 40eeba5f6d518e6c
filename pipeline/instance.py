"""The Dagster instance at DAGSTER_HOME, prepared alike by `make install` and by the CLI.

Dagster's queued run coordinator creates a pool's limit (`default_limit` in dagster.yaml) only
while it dequeues runs that need the pool, and in that first pass it counts the pool as unlimited.
On a fresh instance, the first sensor tick or backfill that queued several months therefore
launched them all at once: three runs writing one DuckDB file, two of them failing on its lock.
So the warehouses' pools get their limits here, before any run is queued.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from pipeline.settings import SUPPORTED_WAREHOUSES

DEFAULT_HOME = ".dagster_home"
TEMPLATE = Path(__file__).with_name("dagster.yaml")


def prepare_instance() -> dg.DagsterInstance:
    """The instance at DAGSTER_HOME (default `.dagster_home/`): created from the template if it
    has no dagster.yaml, with every warehouse's pool limited as the instance's settings say."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(TEMPLATE, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    instance = dg.DagsterInstance.get()
    limit_pools(instance)
    return instance


def limit_pools(instance: dg.DagsterInstance) -> None:
    """Give each warehouse's pool (`duckdb`, `snowflake`) the instance's `default_limit`, unless
    it has a limit already (one set with `dagster instance concurrency set` is kept)."""
    storage = instance.event_log_storage
    configured = storage.get_concurrency_keys()
    for pool in SUPPORTED_WAREHOUSES:
        if pool not in configured:
            storage.initialize_concurrency_limit_to_default(pool)


if __name__ == "__main__":
    print(f"Dagster instance ready in {prepare_instance().root_directory}")
