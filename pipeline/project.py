"""The dbt project, described once for dagster-dbt."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliInvocation, DbtCliResource, DbtProject
from dbt.adapters.base import BaseAdapter
from packaging.version import Version

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
DBT_PACKAGE = "pipeline_reports"  # `name` in dbt_project.yml

# The dbt installed beside this Python, so the venv works without being activated.
DBT_EXECUTABLE = shutil.which("dbt", path=str(Path(sys.executable).parent)) or "dbt"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
# The run's values (month, fiscal days, dataset, run id) as dbt's macros read them (run_var.sql).
RUN_VARS_ENV = "PIPELINE_DBT_VARS"
PARTIAL_PARSE_FILE = "partial_parse.msgpack"
# dagster-dbt hands dbt this process's environment: one build sets it at a time.
_ENVIRONMENT = threading.Lock()
# The folder dagster-dbt gives each dbt command in target/: `<op>-<run id[:7]>-<random[:7]>`, or
# the random part alone outside a run. Kept this many days for whoever debugs a build.
BUILD_FOLDER = re.compile(r"(\w+-[0-9a-f]{7}-)?[0-9a-f]{7}")
BUILD_FOLDER_DAYS = 7
COLOUR_CODE = re.compile(r"\x1b\[[0-9;]*m")
DBT_ERROR_START = "Encountered an error:"


class DbtParseError(RuntimeError):
    """dbt could not parse the project: a model, source or YAML file in it is wrong."""

    @property
    def hint(self) -> str:
        """What to do, for the CLI and doctor."""
        if "depends on a source named" in str(self):
            return (
                "a model that reads a dataset with source() needs its table declared in "
                "dbt_project/models/staging/sources.yml"
            )
        return "fix the file dbt names"


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

    def build(
        self, variables: Mapping[str, object], context: dg.AssetExecutionContext
    ) -> DbtCliInvocation:
        """`dbt build` of the context's models, with the run's values in the environment.

        Not in `--vars`: dbt keys its saved parse on them, so with a new month in them every
        run parsed the whole project again (about 2 s a month, `make bench`). The macros read
        them when a node runs (macros/run_var.sql).
        """
        with _ENVIRONMENT, _environment({RUN_VARS_ENV: json.dumps(variables)}):
            return self.cli(["build"], context=context, raise_on_error=False)


def keep_parse(invocation: DbtCliInvocation, project: DbtProject = dbt_project) -> None:
    """Make a finished build's parse the one the next build starts from.

    dagster-dbt gives every build a folder of its own and copies `target/partial_parse.msgpack`
    into it; dbt reuses that only if it was parsed with the same profile (the DuckDB file, the
    Snowflake account), which `dbt parse` at start-up (`ensure_manifest`) may not have had.
    Replaced whole, so builds running at once each read one complete file.
    """
    parsed = invocation.target_path / PARTIAL_PARSE_FILE
    if not parsed.exists():
        return
    kept = project.project_dir / project.target_path / PARTIAL_PARSE_FILE
    copy = kept.with_name(f"{PARTIAL_PARSE_FILE}.{os.getpid()}-{threading.get_ident()}")
    shutil.copyfile(parsed, copy)
    os.replace(copy, kept)


def sweep_build_folders(
    project: DbtProject = dbt_project, older_than: float = BUILD_FOLDER_DAYS * 86400
) -> list[Path]:
    """Remove the folders dagster-dbt gave builds (artifacts, logs, compiled SQL: about 2 MB
    each, two per month's run) that are older than `older_than` seconds; returns them.

    dagster-dbt never removes them. Only its own names are touched: a `target/run` or
    `target/compiled` of dbt run by hand stays.
    """
    target = project.project_dir / project.target_path
    cutoff = time.time() - older_than
    removed = []
    for folder in target.iterdir() if target.is_dir() else ():
        if BUILD_FOLDER.fullmatch(folder.name) and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
    """`dbt parse` with the dbt beside this Python (dagster-dbt's preparer looks on PATH).

    Into a folder of its own, whose parse and manifest then replace the project's whole:
    processes starting at once on a fresh checkout (a webserver and a daemon, test workers)
    each read a complete manifest, never one another parse is still writing.
    """
    target = project.project_dir / project.target_path
    scratch = target / f"parse-{os.getpid()}-{threading.get_ident()}"
    try:
        result = subprocess.run(
            [
                DBT_EXECUTABLE,
                "parse",
                "--project-dir",
                str(project.project_dir),
                "--target-path",
                str(scratch),
            ],
            cwd=project.project_dir,
            env={**os.environ, "DBT_PROFILES_DIR": str(project.profiles_dir)},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DbtParseError(
                f"dbt could not parse {project.project_dir}: "
                f"{_dbt_error(result.stdout + result.stderr)}"
            )
        # The manifest last: its time says whether the sources changed since.
        for name in (PARTIAL_PARSE_FILE, project.manifest_path.name):
            os.replace(scratch / name, target / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _dbt_error(output: str) -> str:
    """dbt's error out of its log, on one line: what follows "Encountered an error:", without
    the colour codes and times of the lines before (or the log's last lines, if it has none)."""
    text = COLOUR_CODE.sub("", output)
    _, found, error = text.rpartition(DBT_ERROR_START)
    lines = [line.strip() for line in (error if found else text).splitlines() if line.strip()]
    if not lines:
        return "(dbt said nothing)"
    first, *rest = lines if found else lines[-12:]
    return f"{first}: {' '.join(rest)}" if rest else first


def _newest_source(project_dir: Path) -> float:
    """When a model, test or macro was last written, added, removed or renamed: a folder's time
    changes with its entries, so a deleted model makes the manifest stale too (it kept the model,
    and every run then built it from a file that was gone)."""
    newest = 0.0
    for folder, subfolders, files in os.walk(project_dir):
        # Not into dbt's own output: every run leaves a folder of artifacts in target/, and
        # walking them made every command slower the longer the deployment ran.
        subfolders[:] = [name for name in subfolders if name not in DBT_GENERATED_DIRS]
        sources = [name for name in files if name.endswith(DBT_SOURCE_SUFFIXES)]
        for name in [*subfolders, *sources]:
            newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime)
    return newest
