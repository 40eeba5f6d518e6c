"""The dbt project, described once for dagster-dbt."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from dagster_dbt import DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
DBT_PACKAGE = "pipeline_reports"  # `name` in dbt_project.yml

# The dbt installed beside this Python, so the venv works without being activated.
DBT_EXECUTABLE = shutil.which("dbt", path=str(Path(sys.executable).parent)) or "dbt"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def ensure_manifest(project: DbtProject = dbt_project) -> Path:
    """Parse the dbt project if it has no manifest yet (a fresh clone); under `dagster dev`,
    re-parse so model edits show up without a manual step."""
    project.prepare_if_dev()
    if not project.manifest_path.exists():
        project.preparer.prepare(project)
    return project.manifest_path
