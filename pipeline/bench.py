"""`make bench`: the pipeline's ingest on one core and on all of them, against a naive baseline
and DuckDB's own reader, over two shapes of month file.

Each variant runs in its own process, measured in the same invocation (the machine is shared and
noisy, so only ratios within one run mean anything): wall time, peak RSS from the kernel's
accounting of that process and its children (`wait4`), and the disk the staged parts took.

    python -m pipeline.bench --sizes 1GB,5GB --defects 0,0.001
    python -m pipeline.bench --sizes 100GB --compress zst --shapes real --defects 0.001 \
        --variants cli --staging /mnt/scratch
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl
import yaml

from pipeline.specs import DatasetSpec

MONTH = "2024-05"
VARIANTS = {
    "pipeline-1core": "the same ingest pinned to one core (so 1 worker, polars on 1 thread)",
    "pipeline": "pipeline ingest on all cores: stream + validate + Parquet parts + DuckDB publish",
    "parse": "bound: the ingest's blocks split into text columns by its polars parse, no more",
    "cli": "`pipeline load` as a user runs it: Dagster, ingest, checks, publish, ledger models",
    "duckdb": "floor: DuckDB typed read_csv into a table",
    "naive": "naive: pandas read_csv of the whole file + pandera + insert",
    "snowflake-staging": "pipeline ingest staged as 200 MB Snowflake parts (upload not included)",
}
SHAPES = {
    "synthetic": "the example flights dataset: 10 columns, decimals, booleans, ISO timestamps",
    "real": "13 short columns shaped like the public flights data (ints, codes, one timestamp)",
}
COMPRESSIONS = {"none": "", "zst": ".zst"}
UNITS = {"MB": 10**6, "GB": 10**9}
# Distinct slices a generated file cycles through: enough that no compressor's window sees a
# repeat, few enough that a 100 GB month is written at disk speed rather than numpy's.
DISTINCT_SLICES = 4
SLICE_ROWS = 250_000
# The real-shaped dataset: nycflights13's columns, without its floats-as-text.
REAL_SPEC = {
    "name": "departures",
    "file_pattern": "departures_{month}.tsv",
    "start_month": MONTH,
    "date_column": "flight_date",
    "null_values": ["", "NA"],
    "columns": {
        "flight_date": {"type": "date", "nullable": False},
        "carrier": {"type": "string", "nullable": False, "pattern": "^[A-Z0-9]{2}$"},
        "flight": {"type": "int", "nullable": False, "min": 1},
        "tailnum": {"type": "string", "pattern": "^N[0-9A-Z]{3,5}$"},
        "origin": {"type": "string", "nullable": False, "allowed": ["EWR", "JFK", "LGA"]},
        "dest": {"type": "string", "nullable": False, "pattern": "^[A-Z]{3}$"},
        "sched_dep_time": {"type": "int", "min": 0, "max": 2359},
        "dep_time": {"type": "int", "min": 0, "max": 2400},
        "dep_delay": {"type": "int"},
        "arr_delay": {"type": "int"},
        "air_time": {"type": "int", "min": 0},
        "distance": {"type": "int", "min": 0},
        "time_hour": {"type": "timestamp"},
    },
    # The bench measures the load; its volume and freshness need months of history.
    "checks": {"max_reject_ratio": 0.01, "volume": None, "freshness": None},
}


@dataclass(frozen=True)
class Measurement:
    variant: str
    seconds: float
    cpu_seconds: float  # user + system, the process and its children: the work, whoever waits
    peak_rss_bytes: int
    staging_bytes: int | None  # the staged parts' size on disk at their largest
    disk_bytes: int | None = None  # `cli`: parts, database and its temp files, at their largest
    publish_seconds: float | None = None  # `pipeline`, `pipeline-1core`: the insert into `raw`

    def throughput(self, size: int) -> float:
        return size / self.seconds / 1e6


@dataclass(frozen=True)
class MonthFile:
    shape: str
    path: Path
    rows: int
    plain_bytes: int  # the content's size, decompressed


def parse_size(text: str) -> int:
    """`1GB`, `500MB` → bytes (decimal units, as disk sizes are quoted)."""
    for unit, factor in UNITS.items():
        if text.upper().endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def bench_spec(shape: str, path: Path | None = None) -> DatasetSpec:
    """The dataset a shape's files belong to; named like `path` (`.tsv.zst`) if given."""
    if shape == "synthetic":
        from pipeline.settings import BUNDLED_DATASETS_DIR
        from pipeline.specs import load_specs

        flights = load_specs(BUNDLED_DATASETS_DIR)["flights"]
        # Defects at the bench's ratio must publish: the publish is part of what is measured.
        checks = flights.checks.model_copy(update={"max_reject_ratio": 0.01})
        spec = flights.model_copy(update={"checks": checks})
    else:
        spec = DatasetSpec.model_validate(REAL_SPEC)
    if path is not None:
        suffix = path.name[path.name.index(".tsv") :]  # `.tsv`, `.tsv.zst`
        spec = spec.model_copy(update={"file_pattern": f"{spec.name}_{{month}}{suffix}"})
    return spec


def bench_file(
    directory: Path, shape: str, size: int, defects: float, compress: str = "none"
) -> MonthFile:
    """A month file of `size` bytes (uncompressed) of `shape`, generated once and reused.

    Generated in a child process: a measured variant is forked from this one, and the kernel
    counts the RSS a process had before `exec` in its peak, so this one must stay small.
    """
    stem = f"{shape}_{size // 10**6}MB_{defects:g}"
    path = directory / f"{stem}.tsv{COMPRESSIONS[compress]}"
    facts_file = _facts_file(path)
    if not (path.exists() and facts_file.exists()):
        arguments = [shape, str(size), repr(defects), compress, str(path)]
        subprocess.run(
            [sys.executable, "-m", "pipeline.bench", "--generate", *arguments], check=True
        )
    facts = json.loads(facts_file.read_text())
    return MonthFile(shape, path, facts["rows"], facts["plain_bytes"])


def generate(
    shape: str, size: int, defects: float, compress: str, path: Path, slice_rows: int = SLICE_ROWS
) -> None:
    """Write the month file and its facts (rows, uncompressed bytes) beside it.

    With `compress="zst"` the lines are compressed as they are written: a 100 GB month never
    exists uncompressed on disk.
    """
    slices = [_slice(shape, seed, defects, slice_rows) for seed in range(DISTINCT_SLICES)]
    with _writing(path, compress) as sink:
        rows, written = write_month(sink, slices, size)
    _facts_file(path).write_text(json.dumps({"rows": rows, "plain_bytes": written}))


def _facts_file(path: Path) -> Path:
    """Where a generated file's rows and uncompressed size are kept: beside it."""
    return path.with_name(path.name + ".json")


@contextmanager
def _writing(path: Path, compress: str) -> Iterator[BinaryIO]:
    """A file to write, zstd-compressed on all cores if asked; renamed into place when whole."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as handle:
        if compress == "zst":
            import zstandard

            compressor = zstandard.ZstdCompressor(level=3, threads=-1, write_checksum=True)
            with compressor.stream_writer(handle, closefd=False) as sink:
                yield sink  # type: ignore[misc]
        else:
            yield handle
    partial.rename(path)


def write_month(
    sink: BinaryIO, slices: list[tuple[bytes, bytes, int]], size: int
) -> tuple[int, int]:
    """Write the header, then `slices` (header, body, rows) in turn until `size` bytes; the rows
    and bytes written."""
    header = slices[0][0]
    sink.write(header)
    written, rows = len(header), 0
    index = 0
    while written < size:
        _, body, count = slices[index % len(slices)]
        sink.write(body)
        written += len(body)
        rows += count
        index += 1
    return rows, written


def _slice(shape: str, seed: int, defects: float, rows: int) -> tuple[bytes, bytes, int]:
    """One slice of a month as TSV: its header line, its lines and their count."""
    from pipeline.sample_data import month_frame

    if shape == "synthetic":
        days = 31  # month_frame's volumes vary by day; about `rows` in all
        frame = month_frame(MONTH, rows // days, seed=1000 + seed, defect_ratio=defects)
    else:
        frame = _real_shaped_frame(seed, defects, rows)
    buffer = io.BytesIO()
    frame.write_csv(buffer, separator="\t", quote_style="never")
    text = buffer.getvalue()
    cut = text.index(b"\n") + 1
    return text[:cut], text[cut:], frame.height


def _real_shaped_frame(seed: int, defects: float, rows: int) -> pl.DataFrame:
    """Rows like nycflights13's: short codes and small integers, every day of the month."""
    from pipeline.sample_data import CARRIERS, DESTINATIONS, DISTANCES, ORIGINS, _plant_defects

    rng = np.random.default_rng(seed)
    days = np.sort(rng.integers(0, 31, rows))
    dates = np.datetime64(f"{MONTH}-01") + days.astype("timedelta64[D]")
    route = rng.integers(0, len(DESTINATIONS), rows)
    scheduled = rng.integers(5, 23, rows) * 100 + rng.integers(0, 60, rows)
    dep_delay = np.round(rng.gamma(1.2, 12.0, rows) - 8).astype(int)
    missing = rng.random(rows) < 0.02  # cancelled: no departure, no delays
    hours = dates.astype("datetime64[h]") + (scheduled // 100).astype("timedelta64[h]")

    def numbers(values: np.ndarray) -> np.ndarray:
        return np.where(missing, "NA", values.astype(str))

    frame = pl.DataFrame(
        {
            "flight_date": dates.astype(str),
            "carrier": CARRIERS[rng.integers(0, len(CARRIERS), rows)],
            "flight": rng.integers(1, 6000, rows).astype(str),
            "tailnum": np.char.add("N", rng.integers(100, 99999, rows).astype(str)),
            "origin": ORIGINS[rng.integers(0, len(ORIGINS), rows)],
            "dest": DESTINATIONS[route],
            "sched_dep_time": scheduled.astype(str),
            "dep_time": numbers(np.minimum(scheduled + np.maximum(dep_delay, 0), 2359)),
            "dep_delay": numbers(dep_delay),
            "arr_delay": numbers(dep_delay + rng.integers(-20, 20, rows)),
            "air_time": numbers((DISTANCES[route] / 8).astype(int)),
            "distance": DISTANCES[route].astype(int).astype(str),
            "time_hour": np.char.add(np.datetime_as_string(hours, unit="s"), "Z"),
        }
    )
    return _plant_defects(frame, MONTH, rng, defects)


def measure(
    variant: str, month_file: MonthFile, workdir: Path, staging: Path | None = None
) -> Measurement:
    """Run one variant in a child process; its wall time, peak resident memory (its own and its
    children's: dbt under `pipeline load`) and the disk its staged parts took.

    `staging`: where the `cli` variant stages its parts (see `_run_cli`), if not under `workdir`.
    """
    run_dir = workdir / f"run_{variant}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    report = run_dir / "staged.json"
    elsewhere = ["--staging", str(staging)] if staging is not None else []
    command = [sys.executable, "-m", "pipeline.bench", *elsewhere]
    command += ["--run", variant, month_file.shape]
    pin: Callable[[], None] | None = None
    if variant == "pipeline-1core":
        first = min(os.sched_getaffinity(0))
        pin = lambda: os.sched_setaffinity(0, {first})  # noqa: E731
    started = time.perf_counter()
    with (run_dir / "output.log").open("w") as log:
        child = subprocess.Popen(
            [*command, str(month_file.path), str(run_dir)],
            preexec_fn=pin,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Unpinned, the ingest takes its default: a worker per core available.
            env=os.environ | {"PIPELINE_INGEST_WORKERS": "1"} if pin else None,
        )
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"variant {variant} failed on {month_file.path}: see {log.name}")
    disk = json.loads(report.read_text()) if report.exists() else {}
    shutil.rmtree(run_dir)
    cpu = usage.ru_utime + usage.ru_stime
    rss = usage.ru_maxrss * 1024
    return Measurement(
        variant, seconds, cpu, rss, disk.get("bytes"), disk.get("disk"), disk.get("publish")
    )


def fastest(
    variants: list[str],
    month_file: MonthFile,
    workdir: Path,
    repeat: int,
    staging: Path | None = None,
) -> dict[str, Measurement]:
    """Each variant's fastest of `repeat` runs, the variants taking turns: on a shared machine
    a neighbour's burst then slows one round of every variant, not every run of one."""
    best: dict[str, Measurement] = {}
    publishes: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeat):
        for variant in variants:
            result = measure(variant, month_file, workdir, staging)
            # Each run as it ends: a long run that a later variant's failure stops is not lost.
            print(measured(month_file, result), file=sys.stderr, flush=True)
            if variant not in best or result.seconds < best[variant].seconds:
                best[variant] = result
            if result.publish_seconds is not None:
                publishes[variant].append(result.publish_seconds)
    # The bound adds the publish to the parse: the shortest of any round, like every other time.
    return {
        variant: replace(result, publish_seconds=min(publishes[variant]))
        if variant in publishes
        else result
        for variant, result in best.items()
    }


def run_variant(
    variant: str, shape: str, path: Path, run_dir: Path, staging: Path | None = None
) -> None:
    """The body of one measured process."""
    spec = bench_spec(shape, path)
    database = run_dir / "bench.duckdb"
    if variant in ("pipeline", "pipeline-1core"):
        _run_pipeline(spec, path, run_dir, database)
    elif variant == "parse":
        _run_parse(spec, path)
    elif variant == "cli":
        _run_cli(spec, path, run_dir, staging)
    elif variant == "naive":
        _run_naive(spec, path, database)
    elif variant == "snowflake-staging":
        _run_snowflake_staging(spec, path, run_dir)
    else:
        _run_duckdb(spec, path, database)


def _run_pipeline(spec: DatasetSpec, path: Path, run_dir: Path, database: Path) -> None:
    from pipeline.ingest.stream import ingest_file
    from pipeline.settings import Settings
    from pipeline.warehouse.duckdb import DuckDBWarehouse

    settings = Settings.from_env()
    staged = ingest_file(spec, path, MONTH, run_dir / "staging", workers=settings.ingest_workers)
    # As the CLI's warehouse is set up: PIPELINE_DUCKDB_MEMORY_LIMIT applies here too.
    limit = {"memory_limit": settings.duckdb_memory_limit} if settings.duckdb_memory_limit else {}
    warehouse = DuckDBWarehouse(path=str(database), **limit)
    started = time.perf_counter()
    warehouse.replace_month(staged, run_id="bench")
    _report_staging(staged.row_parts + staged.reject_parts, run_dir, time.perf_counter() - started)
    shutil.rmtree(staged.staging_dir)


def _run_parse(spec: DatasetSpec, path: Path, block_bytes: int | None = None) -> None:
    """What the ingest's own parse costs alone: the blocks it reads (and the lines it counts as
    it reads them), split into the spec's columns as text by the same polars call on as many
    workers; nothing typed, checked or written. With the pipeline's publish, which can start
    only once the month is validated, the least time this design can take (see `_bound`)."""
    from pipeline.ingest.files import open_delivered
    from pipeline.ingest.header import read_header
    from pipeline.ingest.lines import Block, field_parser_options, iter_blocks
    from pipeline.ingest.stream import DEFAULT_BLOCK_BYTES, available_cores, validate_ahead
    from pipeline.settings import Settings

    with open_delivered(path) as opened:
        header = read_header(opened.content, spec, path)
        # The lines of the wrong shape in a defect file, which the ingest sets aside unparsed,
        # are cut or padded here instead.
        options = field_parser_options(spec, header) | {"truncate_ragged_lines": True}

        def parse(block: Block) -> int:
            return pl.read_csv(block.data, **options).height

        blocks = iter_blocks(
            opened.content, first_line=2, block_bytes=block_bytes or DEFAULT_BLOCK_BYTES
        )
        workers = Settings.from_env().ingest_workers or available_cores()
        rows = sum(validate_ahead(blocks, parse, workers))
    print(f"{rows:,} lines parsed")


def _run_snowflake_staging(spec: DatasetSpec, path: Path, run_dir: Path) -> None:
    """What a Snowflake load does on the loader's machine before PUT: parts rolled to 200 MB."""
    from pipeline.ingest.stream import ingest_file
    from pipeline.settings import Settings, SnowflakeSettings

    part_bytes = SnowflakeSettings.from_env().part_mb * 1024 * 1024
    workers = Settings.from_env().ingest_workers
    staged = ingest_file(
        spec, path, MONTH, run_dir / "staging", part_bytes=part_bytes, workers=workers
    )
    _report_staging(staged.row_parts + staged.reject_parts, run_dir)
    shutil.rmtree(staged.staging_dir)


def _run_cli(spec: DatasetSpec, path: Path, run_dir: Path, staging: Path | None = None) -> None:
    """`pipeline load` in a deployment of its own: the spec, the file (linked) and an instance.

    The staged parts are measured as they grow, by a thread watching the staging folder, and so
    is the disk of `run_dir` (the database, its temporary files and the instance). The parts are
    part of that unless `staging` puts them elsewhere: another volume, as a deployment may, when
    one disk cannot hold the month's file, its parts and its database at once."""
    import threading

    deployment = {
        "PIPELINE_DATASETS_DIR": run_dir / "datasets",
        "PIPELINE_LANDING_DIR": run_dir / "landing",
        "PIPELINE_STAGING_DIR": (staging or run_dir) / "staging",
        "PIPELINE_DUCKDB_PATH": run_dir / "bench.duckdb",
        "DAGSTER_HOME": run_dir / "dagster_home",
    }
    for name in ("PIPELINE_DATASETS_DIR", "PIPELINE_LANDING_DIR", "DAGSTER_HOME"):
        deployment[name].mkdir()
    spec_file = deployment["PIPELINE_DATASETS_DIR"] / f"{spec.name}.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True)))
    (deployment["PIPELINE_LANDING_DIR"] / spec.file_name(MONTH)).symlink_to(path.resolve())
    largest = disk = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal largest, disk
        while not done.wait(0.5):
            parts = deployment["PIPELINE_STAGING_DIR"].rglob("*.parquet")
            largest = max(largest, sum(_size(part) for part in parts))
            written = (path for path in run_dir.rglob("*") if not path.is_symlink())
            disk = max(disk, sum(_size(path) for path in written if path.is_file()))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    pipeline = Path(sys.executable).with_name("pipeline")
    command = [str(pipeline), "load", spec.name, "--from", MONTH, "--to", MONTH]
    env = os.environ | {name: str(value) for name, value in deployment.items()}
    finished = subprocess.run(command, env=env, check=False)
    done.set()
    watcher.join()
    if staging is not None:
        shutil.rmtree(deployment["PIPELINE_STAGING_DIR"], ignore_errors=True)
    (run_dir / "staged.json").write_text(json.dumps({"bytes": largest, "disk": disk}))
    if finished.returncode != 0:
        raise SystemExit(f"pipeline load exited with {finished.returncode}")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # published and removed while being summed
        return 0


def _report_staging(
    parts: tuple[str, ...], run_dir: Path, publish_seconds: float | None = None
) -> None:
    """The parts' size on disk, and how long their publish took, for `measure` to read."""
    total = sum(Path(part).stat().st_size for part in parts)
    (run_dir / "staged.json").write_text(json.dumps({"bytes": total, "publish": publish_seconds}))


def _run_naive(spec: DatasetSpec, path: Path, database: Path) -> None:
    """What a first attempt looks like: one DataFrame, pandera on it, then a bulk insert."""
    import duckdb
    import pandas as pd
    import pandera.pandas as pa

    frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, on_bad_lines="skip")
    checks = {}
    for name, column in spec.columns.items():
        rules = []
        if column.min is not None:
            rules.append(pa.Check.ge(column.min))
        if column.pattern is not None:
            rules.append(pa.Check.str_matches(column.pattern))
        if column.allowed is not None:
            rules.append(pa.Check.isin(column.allowed))
        checks[name] = pa.Column(nullable=column.nullable, checks=rules)
    try:
        pa.DataFrameSchema(checks).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        bad = errors.failure_cases["index"].dropna().unique()
        frame = frame.drop(index=bad)
    with duckdb.connect(str(database)) as connection:
        connection.execute(f"create table {spec.name} as select * from frame")


def _run_duckdb(spec: DatasetSpec, path: Path, database: Path) -> None:
    """DuckDB's typed `read_csv` of the file into a table, reading the spec's null markers as
    nulls (without them every `NA` line was a reject, kept in memory: 15 s and 2.5 GiB for the
    real 1 GB month instead of 7 s and 0.8 GiB, and killed for want of memory at 20 GB)."""
    import duckdb

    from pipeline.warehouse.duckdb import DIALECT

    columns = {name: DIALECT.column_type(column) for name, column in spec.columns.items()}
    # As the warehouse connects (and DuckDB's own advice for loads larger than memory).
    with duckdb.connect(str(database), config={"preserve_insertion_order": False}) as connection:
        connection.execute(
            f"create table {spec.name} as select * from read_csv(?, delim='\t', header=true, "
            "quote='', escape='', store_rejects=true, nullstr=?, columns=?)",
            [str(path), list(spec.null_values), columns],
        )


def report(month_file: MonthFile, defects: float, results: dict[str, Measurement]) -> list[str]:
    size = month_file.plain_bytes
    on_disk = month_file.path.stat().st_size
    compressed = f", {on_disk / 1e9:.2f} GB as delivered" if on_disk != size else ""
    lines = [
        f"\n{month_file.shape}: {size / 1e9:.1f} GB{compressed}, {month_file.rows:,} rows, "
        f"defects {defects:.2%} ({month_file.path.name})"
    ]
    lines.extend(measured(month_file, result) for result in results.values())
    lines.extend(_ratios(results))
    return lines


def measured(month_file: MonthFile, result: Measurement) -> str:
    """One run's line: time, CPU, throughput, peak memory and disk."""
    staged = (
        f"  staged {result.staging_bytes / 2**30:5.2f} GiB"
        if result.staging_bytes is not None
        else " " * 20
    )
    if result.disk_bytes is not None:
        staged += f", disk {result.disk_bytes / 2**30:5.2f} GiB"
    return (
        f"  {result.variant:<17} {result.seconds:8.1f} s (cpu {result.cpu_seconds:6.1f} s) "
        f"{result.throughput(month_file.plain_bytes):8.1f} MB/s "
        f"{month_file.rows / result.seconds:12,.0f} rows/s  "
        f"peak RSS {result.peak_rss_bytes / 2**30:5.2f} GiB{staged}   {VARIANTS[result.variant]}"
    )


def _ratios(results: dict[str, Measurement]) -> list[str]:
    """Each variant's time against the pipeline's, the scaling from one core to all, and the
    pipeline and the CLI, whichever ran, as a share of DuckDB's throughput."""
    lines = []
    ours = results["pipeline"].seconds if "pipeline" in results else None
    if ours is not None:
        others = [
            f"{name} / pipeline time = {r.seconds / ours:.2f}x"
            for name, r in results.items()
            if name != "pipeline"
        ]
        lines.append("  " + "; ".join(others))
    if ours is not None and "pipeline-1core" in results:
        cores = len(os.sched_getaffinity(0))
        speedup = results["pipeline-1core"].seconds / ours
        lines.append(
            f"  1 core → {cores} cores: {speedup:.2f}x faster, parallel efficiency "
            f"{speedup / cores:.0%}; cpu {results['pipeline'].cpu_seconds:.1f} s against "
            f"{results['pipeline-1core'].cpu_seconds:.1f} s on one core"
        )
    if "duckdb" in results:
        floor = results["duckdb"].seconds
        shares = [
            f"{label} {floor / results[name].seconds:.0%}"
            for name, label in (("pipeline", "pipeline ingest"), ("cli", "`pipeline load`"))
            if name in results
        ]
        if shares:
            lines.append("  throughput as a share of DuckDB's: " + "; ".join(shares))
    return lines + _bound(results)


def _bound(results: dict[str, Measurement]) -> list[str]:
    """How close to DuckDB this design can come: its parse alone (`parse`) plus its publish,
    which cannot start before the month is validated (write-audit-publish), with no time at all
    for typing, checking and staging the rows in between."""
    if "parse" not in results:
        return []
    missing = [name for name in ("pipeline", "duckdb") if name not in results]
    if missing:
        return [f"  no bound from parse without {' and '.join(missing)} in the same run"]
    # Rounded as printed, so that the line adds up as it reads.
    parse = round(results["parse"].seconds, 1)
    publish = round(results["pipeline"].publish_seconds or 0.0, 1)
    return [
        f"  staged, then published: at least parse {parse:.1f} s + publish {publish:.1f} s = "
        f"{parse + publish:.1f} s, so at most {results['duckdb'].seconds / (parse + publish):.0%} "
        "of DuckDB's throughput"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", default="1GB", help="comma-separated file sizes (default 1GB)")
    parser.add_argument(
        "--defects",
        default="0,0.001",
        help="comma-separated defect ratios, a file each (default: a clean one and 0.1%%)",
    )
    parser.add_argument(
        "--shapes", default=",".join(SHAPES), help=f"of: {', '.join(SHAPES)} (default: both)"
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"of: {', '.join(VARIANTS)} (default: all)"
    )
    parser.add_argument(
        "--compress",
        choices=list(COMPRESSIONS),
        default="none",
        help="generate zstd-compressed files (never written out plain), loaded as delivered",
    )
    parser.add_argument(
        "--naive-max", default="1GB", help="skip the naive baseline above this size"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per variant, taking turns; the fastest counts"
    )
    parser.add_argument("--dir", default="data/bench", help="where files and databases go")
    parser.add_argument(
        "--staging",
        type=Path,
        help="where `cli` stages its parts, if not under --dir (another disk; then not in 'disk')",
    )
    parser.add_argument(
        "--run", nargs=4, metavar=("VARIANT", "SHAPE", "FILE", "DIR"), help=argparse.SUPPRESS
    )
    parser.add_argument("--generate", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for option, known in (("variants", VARIANTS), ("shapes", SHAPES)):
        unknown = [name for name in getattr(args, option).split(",") if name not in known]
        if unknown:
            parser.error(
                f"--{option}: unknown {', '.join(map(repr, unknown))}; of {', '.join(known)}"
            )
    if args.generate:
        shape, size, defects, compress, path = args.generate
        generate(shape, int(size), float(defects), compress, Path(path))
        return
    if args.run:
        variant, shape, path, run_dir = args.run
        run_variant(variant, shape, Path(path), Path(run_dir), args.staging)
        return
    workdir = Path(args.dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    output = [f"python -m pipeline.bench {' '.join(sys.argv[1:])}  ({cores} cores available)"]
    print(output[0], flush=True)
    for size in (parse_size(text) for text in args.sizes.split(",")):
        for shape in args.shapes.split(","):
            for defects in (float(ratio) for ratio in args.defects.split(",")):
                month_file = bench_file(workdir, shape, size, defects, args.compress)
                variants = [
                    v
                    for v in args.variants.split(",")
                    if v != "naive" or size <= parse_size(args.naive_max)
                ]
                results = fastest(variants, month_file, workdir, args.repeat, args.staging)
                lines = report(month_file, defects, results)
                print("\n".join(lines), flush=True)
                output.extend(lines)
    (workdir / "results.txt").write_text("\n".join(output) + "\n")


if __name__ == "__main__":
    main()
