"""`pipeline`: load, purge and report months, read their status and audit trail, check a file
without loading it (`validate`) and a deployment (`doctor`), make sample data.

Exit codes: 0 all months fine; 1 a month failed to load or failed an ERROR check (a data problem),
or the warehouse could not be used; 2 a usage or setup mistake, found before anything ran
(unknown dataset, bad month range, a spec or setting that does not parse).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO

import click

if TYPE_CHECKING:  # imported by the commands that use them: `pipeline --help` stays fast
    from pipeline.settings import Settings
    from pipeline.specs import DatasetSpec

EXIT_DATA_PROBLEM = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # as a shell reports a command ended by Ctrl-C
# Why `purge` refuses a DuckDB path with no file (_warehouse): the month's rows are not there.
NOT_PURGED = "the month cannot be purged there: check the path"


class SetupError(click.ClickException):
    """A spec or setting the user must correct before any command can run."""

    exit_code = EXIT_USAGE


class MonthParam(click.ParamType):
    """A month as `YYYY-MM`, zero-padded whatever was typed (`partitions.parse_month`)."""

    name = "month"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        from pipeline.partitions import parse_month

        try:
            return parse_month(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


MONTH = MonthParam()
FIRST_MONTH = click.option(
    "--from",
    "first",
    type=MONTH,
    metavar="YYYY-MM",
    help="First month (default: the spec's first).",
)


def last_month(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--to`: the same option in every command but for its default, which `help_text` says."""
    return click.option("--to", "last", type=MONTH, metavar="YYYY-MM", help=help_text)


# The summary shows each failure's first line; the run's full log stays in the UI.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _instance():
    """The Dagster instance at DAGSTER_HOME (default `.dagster_home/`), created if absent, with
    the runs of `pipeline load` processes that died marked failed (see pipeline.orphans)."""
    from pipeline.instance import DEFAULT_HOME, prepare_instance
    from pipeline.orphans import fail_orphaned_runs

    created = not os.environ.get("DAGSTER_HOME") and not Path(DEFAULT_HOME).exists()
    instance = prepare_instance()
    if created:
        # Run from another folder, the default makes an empty instance there: say so.
        click.echo(
            f"Note: created a Dagster instance in {instance.root_directory}, since DAGSTER_HOME "
            "is not set; the loads run from another folder are not in it.",
            err=True,
        )
    fail_orphaned_runs(instance)
    return instance


# Where the errors of a warehouse that cannot be reached (or, for DuckDB, opened) come from.
WAREHOUSE_ERROR_MODULES = ("duckdb", "_duckdb", "snowflake.connector")


@contextlib.contextmanager
def _warehouse(settings, reading: str | None = None) -> Iterator:
    """The warehouse, with a failure to reach or open it as one line that says what to run, not
    the connector's traceback; any other error is raised as it is.

    A command that only reads (`reading` says what it then cannot do) refuses a DuckDB file that
    is not there: opening it created an empty warehouse wherever a mistyped path pointed, and
    every month showed as missing.
    """
    from pipeline.warehouse.duckdb import missing_file

    if (
        reading is not None
        and settings.warehouse == "duckdb"
        and missing_file(settings.duckdb_path)
    ):
        raise SetupError(
            f"{settings.duckdb_path}: no warehouse file there (PIPELINE_DUCKDB_PATH); {reading}"
        )
    open_warehouse = _definitions().open_warehouse
    try:
        with open_warehouse(settings) as warehouse:
            yield warehouse
    except Exception as exc:
        if not type(exc).__module__.startswith(WAREHOUSE_ERROR_MODULES):
            raise
        from pipeline.warehouse.duckdb import LOCK_CONFLICT

        hint = (
            "another process holds the file: a run, or a DuckDB shell; try again when it is done"
            if LOCK_CONFLICT in str(exc)
            else "`pipeline doctor` checks its settings and connection"
        )
        raise click.ClickException(
            f"the {settings.warehouse} warehouse could not be used: {str(exc).splitlines()[0]} "
            f"({hint})"
        ) from None


def _code_location():
    """Definitions and specs, with spec and settings mistakes shown as one line each."""
    return _definitions().defs, _specs()


def _definitions() -> ModuleType:
    """The module that builds the definitions (from the specs, the settings and the dbt
    project), with a mistake in any of them shown as one line."""
    from pipeline.project import DbtParseError
    from pipeline.specs import SpecError

    try:
        import pipeline.definitions as definitions
    except DbtParseError as exc:
        raise SetupError(f"{exc}\nHint: {exc.hint}.") from None
    except (SpecError, ValueError) as exc:
        raise SetupError(str(exc)) from None
    return definitions


def _specs() -> dict:
    """The specs alone (no Dagster definitions, no dbt), mistakes shown as one line each."""
    from pipeline.settings import Settings
    from pipeline.specs import SpecError, load_specs

    try:
        return load_specs(Settings.from_env().datasets_dir)
    except (SpecError, ValueError) as exc:
        raise SetupError(str(exc)) from None


def _spec(specs: dict, dataset: str):
    if dataset not in specs:
        known = ", ".join(sorted(specs)) or "none"
        raise click.UsageError(f"unknown dataset {dataset!r}; datasets: {known}")
    return specs[dataset]


def _months(spec, first: str | None, last: str | None) -> list[str]:
    from pipeline.partitions import dataset_partitions, month_range

    keys = dataset_partitions(spec).get_partition_keys()
    if not keys:
        raise click.UsageError(f"{spec.name} has no complete month yet (start {spec.start_month})")
    try:
        months = month_range(first or keys[0], last or keys[-1])
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    outside = [month for month in months if month not in keys]
    if outside:
        raise click.UsageError(
            f"{', '.join(outside)} outside the months of {spec.name}, {keys[0]}..{keys[-1]} "
            "(start_month in the spec; the current month is not complete yet)"
        )
    return months


@contextlib.contextmanager
def _summary_stream(quiet: bool) -> Iterator[TextIO]:
    """A stream to the terminal for the summary, with everything else on stdout hidden if `quiet`.

    dagster-dbt echoes dbt's log to stdout, and Dagster's compute-log capture tees it to file
    descriptor 1 itself, so hiding it means pointing descriptor 1 elsewhere; the run's events still
    keep the log for the UI.
    """
    if not quiet:
        yield sys.stdout
        return
    sys.stdout.flush()
    terminal = os.dup(1)
    sink = os.open(os.devnull, os.O_WRONLY)
    os.dup2(sink, 1)
    try:
        with open(terminal, "w", closefd=False) as stream:
            yield stream
            stream.flush()
    finally:
        sys.stdout.flush()
        os.dup2(terminal, 1)
        os.close(terminal)
        os.close(sink)


def _figures(rows: dict[str, int]) -> str:
    if not rows:
        return f"{'-':>10} {'-':>10} {'-':>9}"
    return f"{rows['rows_read']:>10,} {rows['rows_loaded']:>10,} {rows['rows_rejected']:>9,}"


def _checks(checks: dict[str, str]) -> str:
    """Failures by name, passes and checks that did not run by count: `schema FAILED (ERROR);
    5 passed`, `8 not run`."""
    from pipeline.runner import FAILED_ERROR

    if not checks:
        return "-"
    words = list(checks.values())
    failed = [
        f"{name.split(':')[-1]} {word}"
        for name, word in checks.items()
        if word not in ("passed", "not run")
    ]
    failed.sort(key=lambda text: not text.endswith(FAILED_ERROR))  # ERROR first, as in a load
    counted = [f"{words.count(word)} {word}" for word in ("passed", "not run") if word in words]
    return "; ".join(failed + counted)


# Commands that never connect to the warehouse, so need no Snowflake variables (doctor names them).
NO_CONNECTION = ("doctor", "validate", "sample-data")
HEADER = f"{'month':<8} {'status':<13} {'read':>10} {'loaded':>10} {'rejected':>9}  checks"


@click.group()
@click.pass_context
def main(context: click.Context) -> None:
    """Validated monthly TSV loads with Dagster, DuckDB/Snowflake and dbt."""
    import dagster as dg

    from pipeline.settings import Settings, snowflake_key_problem, snowflake_variables_problem

    for category in (dg.BetaWarning, dg.PreviewWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    try:
        settings = Settings.from_env()  # a setting's mistake, once, before any command reads them
    except ValueError as exc:
        raise SetupError(str(exc)) from None
    # Doctor reports them among its findings; the runs read the key only when they connect.
    # Before the definitions: building them imports dagster-snowflake (4 s) only to say so.
    if settings.warehouse == "snowflake" and context.invoked_subcommand not in NO_CONNECTION:
        problem = snowflake_variables_problem() or snowflake_key_problem()
        if problem:
            raise SetupError(problem)


@main.command()
@click.argument("dataset")
@FIRST_MONTH
@last_month(
    "Last month (default: the latest that has landed, with --retry-failed also the latest "
    "that failed; else the last complete one)."
)
@click.option("--force", is_flag=True, help="Reload months already loaded from the same file.")
@click.option(
    "--retry-failed", is_flag=True, help="Run only months whose last run or check failed."
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=1,
    envvar="PIPELINE_PARALLEL_MONTHS",
    show_envvar=True,
    show_default=True,
    help="Months run at once, each in a process of its own (Snowflake only).",
)
@click.option("--verbose", is_flag=True, help="Show Dagster's and dbt's logs.")
def load(
    dataset: str,
    first: str | None,
    last: str | None,
    force: bool,
    retry_failed: bool,
    parallel: int,
    verbose: bool,
) -> None:
    """Load DATASET month by month: validate, load, check, and rebuild its reports.

    Every month is its own Dagster run in DAGSTER_HOME, so it shows in the UI with its own status
    and check results. Months already loaded from the same file are skipped, so re-running a
    half-finished batch does only the rest. On Snowflake, --parallel N runs N months at once and
    lists them as they finish.
    """
    defs, specs = _code_location()
    from pipeline.progress import watched_by
    from pipeline.runner import MonthResult, load_months, month_statuses, plan_months
    from pipeline.settings import Settings
    from pipeline.terminal import load_display

    spec = _spec(specs, dataset)
    instance = _instance()
    default_last = (
        _last_known_month(spec, instance, first)
        if retry_failed
        else _last_landed_month(spec, first)
    )
    settings = Settings.from_env()
    for note in _compressed_unclaimed(spec, settings.landing_dir, first, last):
        click.echo(note)
    if last is None and default_last is None and not retry_failed:
        # Else every month since the spec's start would be a run failing for want of a file.
        click.echo(
            f"Nothing to load: no file of {spec.name} has landed in {settings.landing_dir} "
            f"(file_pattern {spec.file_pattern}{f', from {first} on' if first else ''}). Deliver "
            "a month's file, or name the months with --to to see each one's failure."
        )
        return
    months = _months(spec, first, last or default_last)
    files = {month: settings.landing_dir / spec.file_name(month) for month in months}
    with _warehouse(settings) as warehouse:
        if parallel > 1 and not warehouse.parallel_months:
            raise click.UsageError(
                f"--parallel {parallel}: {settings.warehouse} lets one process write its database "
                "at a time, so its months load one after another. Months load in parallel on "
                "Snowflake (PIPELINE_WAREHOUSE=snowflake)."
            )
        statuses = month_statuses(defs, spec, instance, months, warehouse)
        location = warehouse.location()
    plan = plan_months(
        statuses,
        {month: _delivered(path) for month, path in files.items()},
        force=force,
        retry_failed=retry_failed,
        sensitive_columns=spec.sensitive_columns(),
    )
    _name_compressed_twins(spec, plan.skipped, files)
    count = f"{len(months)} month{'s' if len(months) > 1 else ''}"
    click.echo(f"Loading {spec.name}: {months[0]}..{months[-1]} ({count})")
    for month, reason in plan.reloaded.items():
        click.echo(f"{month} is loaded again from its file: {reason}.")
    lost = [status.month for status in statuses if status.lost and status.month in plan.run]
    if lost:
        # A mistyped PIPELINE_DUCKDB_PATH is a new, empty database: said before hours of loads.
        many = f"{len(lost)} months, {lost[0]} to {lost[-1]}"
        shown = ", ".join(lost) if len(lost) <= 3 else many
        click.echo(
            f"{location} has no load of {shown}, which Dagster recorded as loaded (a new or "
            "emptied database, or a mistyped path): loading them again."
        )
    click.echo(HEADER)
    with (
        _summary_stream(quiet=not verbose) as out,
        load_display(out, spec.name, plan.run, live=not verbose) as display,
        watched_by(display),
    ):
        # Skipped months are listed among the others in month order, as the runs reach them.
        waiting = dict(sorted(plan.skipped.items()))

        def show_skipped(before: str | None = None) -> None:
            for month in [month for month in waiting if before is None or month < before]:
                display.line(f"{month:<8} {'skipped':<13} {waiting.pop(month)}")

        results: list[MonthResult] = []

        def show(result: MonthResult) -> None:
            results.append(result)
            show_skipped(before=result.month)
            status = "ok" if result.success else "FAILED"
            figures = _figures(result.rows)
            display.line(f"{result.month:<8} {status:<13} {figures}  {_checks(result.checks)}")
            for line in result.errors + result.notes:
                display.line(f"{'':<8} {line}")
            display.month_done(result.month, result.success, result.rows)

        # Ctrl-C between two months' runs, or while months run in workers, comes here; within a
        # month's run it fails the month (interrupted), and the months after it are not run.
        interrupted = False
        try:
            load_months(
                defs,
                spec,
                plan.run,
                instance,
                on_month=show,
                run_config=None if verbose else QUIET_RUN_CONFIG,
                parallel=parallel,
            )
        except KeyboardInterrupt:
            interrupted = True
        show_skipped()
    results.sort(key=lambda result: result.month)  # shown as they ended, summed up in order
    _summarise(spec, results, plan.skipped, files)
    if plan.failing:
        click.echo(
            f"Still failing from an earlier load: {', '.join(plan.failing)} (each one's line "
            f"above says what loads it again; `pipeline status {spec.name}` says why it failed)."
        )
    stopped = interrupted or any(result.interrupted for result in results)
    if not stopped:
        _withhold_earlier_summaries(
            settings, spec, [r.month for r in results if r.month in plan.reloaded]
        )
    if stopped:
        done = {result.month for result in results}
        not_run = [month for month in plan.run if month not in done]
        again = not_run + [result.month for result in results if result.interrupted]
        # The same choice of months (a plain load would skip those --force was reloading), as
        # many at once.
        flags = " --force" * force + " --retry-failed" * retry_failed
        flags += f" --parallel {parallel}" if parallel > 1 else ""
        click.echo(
            f"Interrupted.{' Not run: ' + ', '.join(not_run) + '.' if not_run else ''}"
            + (f" To go on: `pipeline load {spec.name} {_range(again)}{flags}`." if again else "")
        )
        sys.exit(EXIT_INTERRUPTED)
    if plan.failing or not all(result.success for result in results):
        sys.exit(EXIT_DATA_PROBLEM)


def _withhold_earlier_summaries(settings: Settings, spec: DatasetSpec, months: list[str]) -> None:
    """After months were loaded again for a new marking of sensitive columns: the verdicts of
    their earlier loads keep their outcome, not their words, which could quote a newly marked
    column in clear (a repeated key's value)."""
    if not months:
        return
    try:
        with _warehouse(settings) as warehouse:
            for month in months:
                warehouse.withhold_earlier_summaries(spec.name, month, spec.sensitive_columns())
    except click.ClickException as exc:  # the months are loaded: their summary stands
        click.echo(
            f"Warning: the earlier check summaries of {', '.join(months)} were not withheld "
            f"({exc.message}); they may quote {spec.sensitive_columns()} in clear."
        )


def _delivered(path: Path) -> str | None:
    """The fingerprint of a month's file; None if there is none. A file that cannot be read
    differs from every fingerprint: its month is run, and fails naming the file, while the other
    months load."""
    from pipeline.ingest.files import fingerprint
    from pipeline.ingest.header import LoadError

    if not path.is_file():
        return None
    try:
        return fingerprint(path)
    except LoadError:
        return "unreadable"


def _name_compressed_twins(
    spec: DatasetSpec, skipped: dict[str, str], files: dict[str, Path]
) -> None:
    """Add to a skipped month's reason the compressed file beside its file, which the load does
    not read: a correction sent as `.gz` next to the month's `.tsv` was skipped as "already
    loaded from this file", and only doctor named it."""
    from pipeline.ingest.files import compressed_advice, compressed_siblings

    for month, reason in skipped.items():
        twins = compressed_siblings(files[month])
        if twins and files[month].is_file():
            skipped[month] = (
                f"{reason}; {twins[0].name} beside it is not read: "
                f"{compressed_advice(spec, twins[0])}"
            )


def _summarise(
    spec: DatasetSpec, results: Sequence, skipped: dict[str, str], files: dict[str, Path]
) -> None:
    """Counts, where the rejects are (a refused month's never reached raw), and what to do about
    each failed month: deliver its file if there is none, else correct the file or the spec."""
    from pipeline.ingest.files import compressed_advice, compressed_siblings

    dataset = spec.name

    failed = [result for result in results if not result.success]
    read = sum(result.rows.get("rows_read", 0) for result in results)

    def rejected(published: bool) -> int:
        return sum(r.rows.get("rows_rejected", 0) for r in results if r.published == published)

    held = rejected(published=False)
    elsewhere = f", {held:,} more in the refused months' candidates (`pipeline status`)"
    click.echo(
        f"\nMonths: {len(results) - len(failed)} loaded, {len(skipped)} skipped, "
        f"{len(failed)} failed; {read:,} rows read, {rejected(published=True):,} rejected "
        f"(quarantined in raw.{dataset}_rejects){elsewhere if held else ''}."
    )
    for result in failed:
        # Every ERROR check that refused it: fixing the first alone met the next on reload.
        first, *more = result.errors[: max(1, result.refusals)] or ["see the run in the Dagster UI"]
        click.echo(f"  {result.month} failed: {first}")
        for reason in more:
            click.echo(f"  {'':<{len(result.month)}} and {reason}")
    undelivered = sorted(r.month for r in failed if not files[r.month].is_file())
    siblings = {month: compressed_siblings(files[month]) for month in undelivered}
    compressed = [month for month in undelivered if siblings[month]]
    if compressed:
        advice = compressed_advice(spec, siblings[compressed[0]][0])
        click.echo(
            f"{_names(compressed, files)} came compressed: {advice}; then `pipeline load "
            f"{dataset} {_range(compressed)}`."
        )
    missing = [month for month in undelivered if month not in compressed]
    if missing:
        click.echo(
            f"Deliver {_names(missing, files)} to {files[missing[0]].parent}, then "
            f"`pipeline load {dataset} {_range(missing)}`."
        )
    refused = sorted(r.month for r in failed if r.month not in undelivered and r.refused)
    if refused:
        # The same advice whatever the range: a plain load reads a corrected file and skips an
        # unchanged refused one, so correcting one file of several does not re-read the others.
        again = f"pipeline load {dataset} {_range(refused)}"
        click.echo(
            f"Correct the file, then `{again}` (a corrected file is loaded, an unchanged one "
            "skipped); after correcting the spec or a setting instead, add --retry-failed."
        )
    # An interrupted month has nothing to fix: the closing line says how to go on.
    stopped = sorted(
        r.month for r in failed if r.month not in undelivered + refused and not r.interrupted
    )
    if stopped:
        # No check refused their files, so a plain load runs these months again, file or not.
        click.echo(
            f"Fix what the reason above names for {', '.join(stopped)} (the file, the spec, a "
            f"setting or the warehouse), then `pipeline load {dataset} {_range(stopped)}`."
        )


def _names(months: Sequence[str], files: dict[str, Path]) -> str:
    return ", ".join(files[month].name for month in months)


def _range(months: Sequence[str]) -> str:
    return f"--from {min(months)} --to {max(months)}"


@main.command()
@click.argument("dataset")
@click.option("--month", required=True, type=MONTH, metavar="YYYY-MM", help="The month to delete.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(dataset: str, month: str, yes: bool) -> None:
    """Delete MONTH of DATASET from the raw, rejects and report tables.

    The deletion is recorded in the load ledger and the month shows as not materialized: the
    next `pipeline load` of it loads it again; the landing sensor does not load the same file
    again by itself, a corrected one it does.
    """
    defs, specs = _code_location()
    from pipeline.definitions import metrics_resource
    from pipeline.metrics import MetricsNotSent
    from pipeline.runner import month_runs, purge_month
    from pipeline.settings import Settings

    spec = _spec(specs, dataset)
    _months(spec, month, month)
    instance = _instance()
    settings = Settings.from_env()
    # Not held open over the prompt: DuckDB lets one process at a time open its file.
    with _warehouse(settings, reading=NOT_PURGED) as warehouse:
        attempt = warehouse.latest_attempt(spec.name, month)
    if (attempt is None or attempt["status"] == "purged") and not month_runs(
        defs, spec, month, instance
    ):
        click.echo(
            f"{dataset} {month} has nothing to purge: no load of it was attempted, or none since "
            "its last purge."
        )
        return
    if not yes and not click.confirm(
        f"Delete {dataset} {month} from raw, rejects and report tables?"
    ):
        click.echo("Nothing purged.")
        return
    with _warehouse(settings, reading=NOT_PURGED) as warehouse:
        deleted = purge_month(defs, spec, month, instance, warehouse)
        # Its metrics said `published 1` until the dataset's next load rebuilt them; the month
        # is purged already, so metrics that cannot be sent are only a warning.
        try:
            metrics_resource(settings).export(warehouse, spec)
        except MetricsNotSent as exc:
            click.echo(f"warning: metrics {exc}", err=True)
    for table, count in deleted.items():
        click.echo(f"{table}: {count:,} row{'' if count == 1 else 's'} deleted")
    click.echo(
        f"{dataset} {month} purged; recorded in pipeline.load_ledger and pipeline.audit_log. "
        f"`pipeline load {dataset} {_range([month])}` loads it again."
    )


@main.command()
@click.argument("dataset")
@FIRST_MONTH
@last_month("Last month (default: the latest landed, loaded or failed).")
def status(dataset: str, first: str | None, last: str | None) -> None:
    """One line per month of DATASET: materialized / check failed / failed / missing, rows, checks.

    Without --to, months up to the latest one that has landed, been loaded or failed to load.
    """
    defs, specs = _code_location()
    from pipeline.runner import month_statuses
    from pipeline.settings import Settings

    spec = _spec(specs, dataset)
    instance = _instance()
    known = _last_known_month(spec, instance, first)
    settings = Settings.from_env()
    if last is None and known is None:
        # Else every month since start_month, each `missing`: true, and no help.
        click.echo(
            f"No month of {spec.name} has landed in {settings.landing_dir}, been loaded or failed "
            f"yet{f' from {first} on' if first else ''}; --to lists the months up to one."
        )
        return
    months = _months(spec, first, last or known)
    with _warehouse(
        settings, reading="nothing was loaded there: check the path, or load a month first"
    ) as warehouse:
        statuses = month_statuses(defs, spec, instance, months, warehouse)
    click.echo(HEADER)
    for month in statuses:
        # Materialized data whose ERROR check failed is not a usable month: say so up front.
        shown = "check failed" if month.status == "materialized" and month.failed else month.status
        click.echo(f"{month.month:<8} {shown:<13} {_figures(month.rows)}  {_checks(month.checks)}")
        if month.detail:
            click.echo(f"{'':<8} {month.status} ({month.detail})")
        for line in month.errors:
            click.echo(f"{'':<8} {line}")


def _last_known_month(spec, instance, first: str | None) -> str | None:
    """The latest month from `first` on that has landed, been loaded or failed to load: where
    `status` and `load --retry-failed` stop by default, so neither lists empty years nor leaves
    out a month whose run failed for want of a file."""
    from pipeline.assets.loads import raw_asset_key
    from pipeline.partitions import dataset_partitions

    partitions = dataset_partitions(spec)
    by_partition = instance.get_status_by_partition(
        raw_asset_key(spec), partitions.get_partition_keys(), partitions
    )
    known = {month for month, status in (by_partition or {}).items() if status is not None}
    return _latest(_landed_months(spec) | known, first)


def _last_landed_month(spec, first: str | None) -> str | None:
    """The latest month from `first` on whose file is in the landing folder: where a load without
    --to stops, so the months not delivered yet are not each a failed run."""
    return _latest(_landed_months(spec), first)


def _latest(months: set[str], first: str | None) -> str | None:
    return max((month for month in months if first is None or month >= first), default=None)


def _compressed_unclaimed(spec, landing: Path, first: str | None, last: str | None) -> list[str]:
    """A line for each month of the dataset (from `first` to `last`, if given) delivered only
    compressed under a pattern that does not name the compression (`.tsv.gz` for `.tsv`): a load
    without --to left such a month out unsaid."""
    from pipeline.ingest.files import compressed_advice, compression, misnamed_compressed_month

    try:
        paths = sorted(landing.iterdir())
    except OSError:  # not there, or unreadable: what loads from it says so
        return []
    notes = []
    for path in paths:
        month = misnamed_compressed_month(spec, path)
        if month is None:
            continue
        if (first and month < first) or (last and month > last):
            continue
        if (landing / spec.file_name(month)).exists():
            continue  # delivered plain as well: that file is the month's
        notes.append(
            f"Not loaded: {path.name} is {compression(path)}-compressed, and file_pattern "
            f"{spec.file_pattern} does not end in {path.suffix}: {compressed_advice(spec, path)}."
        )
    return notes


def _landed_months(spec) -> set[str]:
    from pipeline.settings import Settings

    landing = Settings.from_env().landing_dir
    try:
        names = [path.name for path in landing.iterdir()] if landing.is_dir() else []
    except OSError as exc:  # was a traceback from `load`, `status` and `validate`
        raise SetupError(
            f"the landing folder {landing} cannot be read: {exc.strerror}; give the loader read "
            "access to it, or set PIPELINE_LANDING_DIR"
        ) from None
    return _complete(spec, {spec.month_of(name) for name in names})


def _complete(spec, months: set[str | None]) -> set[str]:
    """Those of `months` that are the dataset's partitions (complete months since its start)."""
    from pipeline.partitions import dataset_partitions

    return months & set(dataset_partitions(spec).get_partition_keys())


@main.group()
def audit() -> None:
    """The audit log: verify its hash chain, show a dataset's history."""


@audit.command("verify")
@click.option(
    "--from",
    "from_seq",
    type=click.IntRange(min=1),
    default=1,
    metavar="SEQ",
    help="Verify from entry SEQ on (default: the first).",
)
@click.option(
    "--anchors",
    "anchors_path",
    # Must exist: a mistyped path to the shipped copy would otherwise verify against nothing.
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An anchors file to compare with (default: DAGSTER_HOME/audit_heads.log), e.g. the "
    "copy shipped to write-once storage.",
)
@click.option(
    "--anchored-as",
    "location",
    metavar="LOCATION",
    help="Compare with the heads anchored for LOCATION (as `verify` prints it, e.g. "
    "duckdb:/srv/data/warehouse.duckdb): to verify a copy or a restored backup of that warehouse.",
)
def audit_verify(from_seq: int, anchors_path: Path | None, location: str | None) -> None:
    """Recompute the audit log's hash chain and compare it with the anchored heads.

    Exit 0 with `OK: N entries, head <hash>`; exit 1 naming the first entry that does not verify
    and why: edited, missing, reordered, outside the chain, or the head behind its anchor.
    """
    _code_location()
    from pipeline.audit import anchors_file, verify_log
    from pipeline.settings import Settings

    anchors = anchors_path or anchors_file(_instance())
    settings = Settings.from_env()
    # An empty warehouse's empty log would verify.
    with _warehouse(settings, reading="nothing to verify") as warehouse:
        verdict = verify_log(warehouse, anchors, from_seq, location)
        location = location or warehouse.location()
        if verdict.ok and not verdict.entries and from_seq > 1:
            # "OK: 0 entries" for a number past the head read as a log that verifies.
            head = warehouse.audit_head()
            raise click.UsageError(
                f"--from {from_seq}: the log's last entry is {head.seq if head else 0}; nothing "
                f"to verify from {from_seq} on."
            )
    if not verdict.ok:
        click.echo(f"FAILED: {verdict.problem}")
        sys.exit(EXIT_DATA_PROBLEM)
    click.echo(
        f"OK: {verdict.entries} entries, head {verdict.head.entry_hash if verdict.head else '-'}"
    )
    if verdict.anchors:
        click.echo(f"{verdict.anchors} anchored head(s) in {anchors} agree with the log.")
    else:
        which = f" from entry {from_seq} on" if from_seq > 1 else ""
        click.echo(
            f"No anchored heads{which} for {location} in {anchors}: the chain is consistent, but "
            "the newest entries deleted or the whole chain rewritten would not show."
        )
    if not verdict.anchors and verdict.elsewhere:
        click.echo(
            f"{anchors} holds heads of {', '.join(verdict.elsewhere)}: if this warehouse is a "
            "copy or a restored backup of one, verify it with --anchored-as <that location>."
        )


AUDIT_HEADER = (
    f"{'seq':>5}  {'recorded (UTC)':<19}  {'kind':<14} {'month':<8} {'actor':<16} "
    f"{'read':>10} {'loaded':>10} {'rejected':>9}  run       detail"
)


@audit.command("show")
@click.argument("dataset")
@click.option("--month", type=MONTH, metavar="YYYY-MM", help="Only this month's entries.")
def audit_show(dataset: str, month: str | None) -> None:
    """The audit entries of DATASET (of one month with --month), oldest first."""
    _, specs = _code_location()
    from pipeline.settings import Settings
    from pipeline.warehouse.audit import AUDIT_TABLE
    from pipeline.warehouse.base import META_SCHEMA

    # A report of several datasets is one entry, its dataset `flights,settlements`.
    sql = (
        f"select * from {META_SCHEMA}.{AUDIT_TABLE} "
        "where (dataset = ? or contains(',' || dataset || ',', ?))"
    )
    with _warehouse(Settings.from_env(), reading="no audit log to show") as warehouse:
        rows = warehouse.query(
            sql + (" and month = ? order by seq" if month else " order by seq"),
            [dataset, f",{dataset},", *([month] if month else [])],
        )
    if not rows:
        _spec(specs, dataset)  # a removed dataset keeps its history; an unknown one is a typo
        click.echo(f"No audit entries for {dataset}{' ' + month if month else ''}.")
        return
    click.echo(AUDIT_HEADER)
    for row in rows:
        click.echo(_audit_line(row))


def _audit_line(row: dict) -> str:
    """One entry under AUDIT_HEADER: counts with separators, the file's name, what it says.

    A forged entry may lack what every real one has (`audit verify` names it): a missing
    field is shown as `-`, not a traceback."""
    figures = " ".join(
        f"{'-' if row[name] is None else f'{row[name]:,}':>{width}}"
        for name, width in (("rows_read", 10), ("rows_loaded", 10), ("rows_rejected", 9))
    )
    text = {name: "-" if value is None else str(value) for name, value in row.items()}
    detail = "; ".join(
        part
        for part in (
            Path(row["source_file"]).name if row["source_file"] else None,
            f"fingerprint {text['fingerprint'][:16]}" if text["kind"].startswith("spec") else None,
            row["detail"],
        )
        if part
    )
    recorded = row["recorded_at"]
    when = f"{recorded.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}" if recorded else "-"
    return (
        f"{text['seq']:>5}  {when:<19}  {text['kind']:<14} {text['month']:<8} "
        f"{text['actor']:<16} {figures}  {text['run_id'][:8]:<8}  {detail}"
    ).rstrip()


@main.command()
@click.argument("datasets", nargs=-1, required=True)
@FIRST_MONTH
@last_month("Last month (default: the latest the load ledger knows).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PATH.html, or PATH.pdf for a PDF (default: <PIPELINE_REPORTS_DIR>/<dataset>.html).",
)
def report(
    datasets: tuple[str, ...], first: str | None, last: str | None, output: Path | None
) -> None:
    """Write one self-contained report (HTML, or PDF through headless Chromium) of DATASETS:
    a summary per month, each month's findings with what to do, and the load ledger."""
    _, specs = _code_location()
    from pipeline.audit import anchors_file
    from pipeline.reports.build import ReportNotWritten, output_path, report_path, write_report
    from pipeline.reports.pdf import BrowserMissing, PrintFailed
    from pipeline.settings import Settings

    chosen = [_spec(specs, dataset) for dataset in dict.fromkeys(datasets)]
    for spec in chosen:
        _months(spec, first, last)
    settings = Settings.from_env()
    try:
        path = output_path(output or report_path(settings.reports_dir, [s.name for s in chosen]))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'-o'") from None
    try:
        with _warehouse(settings, reading="nothing to report") as warehouse:
            written = write_report(warehouse, chosen, path, anchors_file(_instance()), first, last)
    except (BrowserMissing, PrintFailed) as exc:
        raise click.ClickException(str(exc)) from None
    except ReportNotWritten as exc:
        raise SetupError(str(exc)) from None
    click.echo(f"Wrote {written} ({written.stat().st_size / 1e6:.1f} MB)")


@main.command()
@click.option("--fix", is_flag=True, help="Remove staged parts no running load holds.")
def doctor(fix: bool) -> None:
    """Check the specs, the landing folder, staging, the Dagster instance and the warehouse."""
    from pipeline.doctor import examine
    from pipeline.settings import Settings

    _instance()
    problems = 0
    for finding in examine(Settings.from_env(), fix):
        click.echo(str(finding))
        problems += not finding.ok
    if problems:
        click.echo(f"\n{problems} problem(s) found.")
        sys.exit(EXIT_DATA_PROBLEM)


@main.command()
@click.argument("dataset")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--month", type=MONTH, help="The file's month (default: read from its name).")
def validate(dataset: str, file: Path, month: str | None) -> None:
    """Check FILE as DATASET's month, as a load would, without loading it.

    The file is read and checked by the load's own code in a temporary folder: its rejected
    lines, and the month's checks. Nothing is written to the warehouse, the ledger or the Dagster
    instance. Exits 1 if the load would refuse the month.
    """
    import os

    from pipeline.ingest.header import LoadError
    from pipeline.ingest.pii import KEY_VARIABLE
    from pipeline.settings import Settings
    from pipeline.validate import validate_file

    spec = _spec(_specs(), dataset)
    month = month or spec.month_of(file.name)
    if month is None:
        raise click.UsageError(
            f"{file.name} does not fit the file_pattern of {spec.name}, {spec.file_pattern}: "
            "give its month with --month"
        )
    _months(spec, month, month)
    try:
        found = validate_file(
            spec,
            file,
            month,
            workers=Settings.from_env().ingest_workers,
            pii_key=os.environ.get(KEY_VARIABLE) or None,
        )
    except LoadError as exc:  # the file cannot be read, or its header lacks a spec column
        click.echo(f"The load would refuse {file.name}: {exc}")
        sys.exit(EXIT_DATA_PROBLEM)
    _report_validation(spec, file, month, found)
    if found.refused_by:
        sys.exit(EXIT_DATA_PROBLEM)


def _report_validation(spec, file: Path, month: str, found) -> None:
    """The file's counts, each check's verdict, its rejects by kind, and the load's verdict."""
    staged = found.staged
    click.echo(
        f"{file.name} as {spec.name} {month}: {staged.rows_read:,} lines read, "
        f"{staged.rows_loaded:,} valid, {staged.rows_rejected:,} rejected"
    )
    width = max(len(name) for name in found.outcomes)
    for name, outcome in found.outcomes.items():
        verdict = "passed" if outcome.passed else f"FAILED ({outcome.severity})"
        if outcome.passed and outcome.severity == "INFO":
            verdict = "INFO"
        click.echo(f"  {name:<{width}}  {verdict:<14}  {outcome.summary}")
    if found.reject_kinds:
        click.echo("Rejected lines by column and rule:")
        for kind in found.reject_kinds:
            what = f"{kind['column_name']}: {kind['rule']}" if kind["column_name"] else kind["rule"]
            click.echo(f"  {kind['lines']:>8,} line(s), first line {kind['first_line']:,}: {what}")
        click.echo("First rejected lines:")
        for reject in found.first_rejects:
            click.echo(f"  line {reject['line']:,}: {reject['reason']}")
    unjudged = ["volume"] if spec.checks.volume else []
    if spec.checks.unique and spec.checks.unique.across_months:
        unjudged.append("keys across months")
    if unjudged:
        click.echo(
            f"Not judged here: {' and '.join(unjudged)} (against the months loaded before this "
            "one: the load judges them)."
        )
    if file.name != spec.file_name(month):
        # Judged on its content: a load looks the month up by the pattern's name alone, and a
        # compressed file under a plain pattern (or the reverse) is not it.
        click.echo(
            f"Named {file.name}, the load would not find it: deliver it to the landing folder as "
            f"{spec.file_name(month)} (the file_pattern, {spec.file_pattern})."
        )
    if found.refused_by:
        click.echo(f"The load would refuse this month: {', '.join(found.refused_by)} failed.")
    else:
        click.echo("The load would publish this month.")


@main.command("sample-data")
@click.option(
    "--landing-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="PIPELINE_LANDING_DIR",
    default="data/landing",
    show_default=True,
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace sample files that were changed since they were written (kept by default).",
)
def sample_data(landing_dir: Path, overwrite: bool) -> None:
    """Write the bundled datasets' sample files, with planted defects, to the landing folder:
    a year of `flights` and three months of `settlements`. A file already there with the sample's
    bytes is left untouched (so loads skip it), and one with other bytes is kept."""
    from pipeline.sample_data import planted_problems, write_demo_year, write_settlements_demo

    files = write_demo_year(landing_dir, overwrite=overwrite) + write_settlements_demo(
        landing_dir, overwrite=overwrite
    )
    kept = [file.path.name for file in files if file.kept]
    click.echo(f"{len(files) - len(kept)} sample files in {landing_dir}; planted on purpose:")
    for problem in planted_problems():
        click.echo(f"  {problem}")
    if kept:
        click.echo(
            f"Left alone in {landing_dir}, as they differ from the sample (a corrected "
            f"delivery?): {', '.join(kept)}. "
            "`pipeline sample-data --overwrite` replaces them."
        )
