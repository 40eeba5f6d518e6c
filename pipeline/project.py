"""The dbt project, described once for dagster-dbt."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from dbt.adapters.base import BaseAdapter
from packaging.version import Version

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
DBT_PACKAGE = "pipeline_reports"  # `name` in dbt_project.yml

# The dbt installed beside this Python, so the venv works without being activated.
DBT_EXECUTABLE = shutil.which("dbt", path=str(Path(sys.executable).parent)) or "dbt"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


class DbtCli(DbtCliResource):
    """dagster-dbt's dbt resource, without two things it does before every build that this project
    never uses: it asks `dbt --version` (3 s, a whole start of dbt, for every month) to tell dbt
    Core from the Fusion engine, and it sets up a dbt adapter in the Dagster process (1.2 s) that
    only `fetch_row_counts` and `fetch_column_metadata` read; the build step counts rows through
    the warehouse instead (assets/dbt.py).
    """

    @cached_property
    def _cli_version(self) -> Version:
        # DBT_EXECUTABLE is the dbt installed beside this Python: dbt-core's version is its own.
        return Version(installed_version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> BaseAdapter | None:
        return None


DBT_SOURCE_SUFFIXES = (".sql", ".yml", ".yaml", ".csv", ".md")
DBT_GENERATED_DIRS = ("target", "logs", "dbt_packages")


def ensure_manifest(project: DbtProject = dbt_project) -> Path:
    """The dbt manifest, parsed again (a few seconds) if any model, test or macro is newer.

    A stale manifest names tests that no longer exist, and the run fails on them; re-parsing on
    change keeps a fresh clone and an edited model working without a manual step.
    """
    manifest = project.manifest_path
    if not manifest.exists() or _newest_source(project.project_dir) > manifest.stat().st_mtime:
        _parse(project)
    return manifest


def _parse(project: DbtProject) -> None:
    """`dbt parse` with the dbt beside this Python (dagster-dbt's preparer looks on PATH)."""
    result = subprocess.run(
        [DBT_EXECUTABLE, "parse", "--project-dir", str(project.project_dir)],
        cwd=project.project_dir,
        env={**os.environ, "DBT_PROFILES_DIR": str(project.profiles_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"dbt parse failed in {project.project_dir}:\n{result.stdout[-4000:]}")


def _newest_source(project_dir: Path) -> float:
    return max(
        path.stat().st_mtime
        for path in project_dir.rglob("*")
        if path.suffix in DBT_SOURCE_SUFFIXES
        and not any(part in DBT_GENERATED_DIRS for part in path.relative_to(project_dir).parts)
    )
