"""Where things live, read from the environment in one place.

Every path a user can move is an environment variable with a default relative to the working
directory (the repository root when started from the Makefile). Paths are made absolute here
because dbt runs with the dbt project as its working directory: a relative warehouse path would
point somewhere else for dbt than for the loader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BUNDLED_DATASETS_DIR = Path(__file__).parent / "datasets"
SUPPORTED_WAREHOUSES = ("duckdb",)


@dataclass(frozen=True)
class Settings:
    """The locations and warehouse choice of one deployment."""

    datasets_dir: Path
    landing_dir: Path
    staging_dir: Path
    duckdb_path: Path
    warehouse: str

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
        return cls(
            datasets_dir=path("PIPELINE_DATASETS_DIR", BUNDLED_DATASETS_DIR),
            landing_dir=path("PIPELINE_LANDING_DIR", "data/landing"),
            staging_dir=path("PIPELINE_STAGING_DIR", "data/staging"),
            duckdb_path=path("PIPELINE_DUCKDB_PATH", "data/warehouse.duckdb"),
            warehouse=warehouse,
        )

    def export_for_subprocesses(self) -> None:
        """Publish the resolved paths so dbt (a subprocess with another cwd) sees the same ones."""
        os.environ["PIPELINE_DUCKDB_PATH"] = str(self.duckdb_path)
        os.environ["PIPELINE_LANDING_DIR"] = str(self.landing_dir)
        os.environ["PIPELINE_STAGING_DIR"] = str(self.staging_dir)
