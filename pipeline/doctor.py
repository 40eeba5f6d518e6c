"""`pipeline doctor`: is this deployment able to load? One finding per thing it looked at."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.ingest.header import UTF8_BOM
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec, SpecError, load_specs

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


def examine(settings: Settings) -> Iterator[Finding]:
    """Everything doctor checks, in the order a load needs it."""
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
    yield examine_instance()
    yield examine_warehouse(settings)


def examine_landing(landing_dir: Path, specs: list[DatasetSpec]) -> Iterator[Finding]:
    """Files per dataset and month, files no dataset claims, and a look inside the latest file."""
    if not landing_dir.is_dir():
        yield Finding(
            False,
            "landing",
            f"{landing_dir} does not exist",
            "create it or set PIPELINE_LANDING_DIR",
        )
        return
    claimed: set[str] = set()
    for spec in specs:
        months = {}
        for path in landing_dir.iterdir():
            month = spec.month_of(path.name)
            if month is not None:
                months[month] = path
        claimed.update(path.name for path in months.values())
        if not months:
            yield Finding(True, f"landing {spec.name}", f"no {spec.file_pattern} files yet")
            continue
        yield Finding(
            True,
            f"landing {spec.name}",
            f"{len(months)} month(s) from {min(months)} to {max(months)}",
        )
        yield preview(months[max(months)], spec)
    others = sorted(
        path.name for path in landing_dir.iterdir() if path.is_file() and path.name not in claimed
    )
    if others:
        shown = ", ".join(others[:5]) + (" …" if len(others) > 5 else "")
        yield Finding(
            False,
            "landing",
            f"{len(others)} file(s) match no dataset: {shown}",
            "rename them to a spec's file_pattern, or move them out of the landing folder",
        )


def preview(path: Path, spec: DatasetSpec) -> Finding:
    """The first lines of a file: encoding, line endings, delimiter and header against the spec."""
    with path.open("rb") as handle:
        head = handle.read(PREVIEW_BYTES)
    topic = f"file {path.name}"
    facts = []
    if head.startswith(UTF8_BOM):
        facts.append("UTF-8 with BOM")
        head = head[len(UTF8_BOM) :]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # not just a character cut at the preview's end
            return Finding(False, topic, f"not UTF-8 at byte {error.start}", "convert it to UTF-8")
        text = head[: error.start].decode("utf-8")
    first = text.split("\n", 1)[0]
    facts.append("CRLF line endings" if first.endswith("\r") else "LF line endings")
    header = first.rstrip("\r").split(spec.delimiter)
    if len(header) == 1:
        delimiters = {"tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
        found = [name for name, char in delimiters.items() if first.count(char) >= 1]
        return Finding(
            False,
            topic,
            f"header has one field with delimiter {spec.delimiter!r}; found {found or 'none'}",
            "set `delimiter` in the spec to the file's separator",
        )
    missing = [name for name in spec.columns if name not in header]
    facts.append(f"{len(header)} columns, delimiter {spec.delimiter!r}")
    if missing:
        return Finding(
            False,
            topic,
            f"header lacks {', '.join(missing)} ({'; '.join(facts)})",
            "the file or the spec's column names are wrong",
        )
    extra = [name for name in header if name not in spec.columns]
    if extra:
        facts.append(f"extra columns ignored: {', '.join(extra)}")
    return Finding(True, topic, "; ".join(facts))


def examine_instance() -> Finding:
    """The Dagster instance the CLI and the UI share."""
    import dagster as dg

    try:
        instance = dg.DagsterInstance.get()
        runs = instance.get_runs_count()
    except Exception as error:  # any failure here is the finding itself
        return Finding(False, "dagster", f"instance not usable: {error}", "check DAGSTER_HOME")
    return Finding(True, "dagster", f"instance at {instance.root_directory}, {runs} run(s)")


def examine_warehouse(settings: Settings) -> Finding:
    """A connection and a query on the configured warehouse."""
    from pipeline.definitions import build_resources

    warehouse = build_resources(settings)["warehouse"]
    where = f"{settings.warehouse} ({settings.duckdb_path})"
    try:
        loads = warehouse.query("select count(*) as loads from pipeline.load_ledger")[0]["loads"]
    except Exception as error:  # any failure here is the finding itself
        return Finding(
            False,
            "warehouse",
            f"{where}: {error}",
            "is another process (a run, the UI's backfill) writing to it? DuckDB allows one writer",
        )
    return Finding(True, "warehouse", f"{where}: {loads} load(s) recorded")
