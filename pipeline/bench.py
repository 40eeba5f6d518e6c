"""`make bench`: the pipeline's ingest against a naive baseline and DuckDB's own reader.

Each variant runs in its own process, measured in the same invocation (the machine is shared and
noisy, so only ratios within one run mean anything): wall time, and peak RSS from the kernel's
accounting of that process (`wait4`).

    python -m pipeline.bench --sizes 1GB,5GB --defects 0.001
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MONTH = "2024-05"
VARIANTS = {
    "pipeline": "pipeline ingest: stream + pandera + Parquet parts + DuckDB month replace",
    "naive": "naive: pandas read_csv of the whole file + pandera + insert",
    "duckdb": "floor: DuckDB typed read_csv into a table",
    "snowflake-staging": "pipeline ingest staged as 200 MB Snowflake parts (upload not included)",
}
UNITS = {"MB": 10**6, "GB": 10**9}


@dataclass(frozen=True)
class Measurement:
    variant: str
    seconds: float
    peak_rss_bytes: int

    def throughput(self, size: int) -> float:
        return size / self.seconds / 1e6


def parse_size(text: str) -> int:
    """`1GB`, `500MB` → bytes (decimal units, as disk sizes are quoted)."""
    for unit, factor in UNITS.items():
        if text.upper().endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def bench_file(directory: Path, size: int, defects: float) -> tuple[Path, int]:
    """A month file of `size` bytes for the example dataset, generated once and reused."""
    from pipeline.sample_data import write_large_month

    path = directory / f"flights_{size // 10**6}MB_{defects:g}.tsv"
    rows_file = path.with_suffix(".rows")
    if not (path.exists() and rows_file.exists()):
        rows = write_large_month(path, MONTH, size, defects)
        rows_file.write_text(str(rows))
    return path, int(rows_file.read_text())


def measure(variant: str, path: Path, workdir: Path) -> Measurement:
    """Run one variant in a child process; its wall time and peak resident memory."""
    database = workdir / f"bench_{variant}.duckdb"
    database.unlink(missing_ok=True)
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "pipeline.bench", "--run", variant, str(path), str(database)]
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"variant {variant} failed on {path}")
    database.unlink(missing_ok=True)
    return Measurement(variant, seconds, usage.ru_maxrss * 1024)


def run_variant(variant: str, path: Path, database: Path) -> None:
    """The body of one measured process."""
    from pipeline.settings import BUNDLED_DATASETS_DIR
    from pipeline.specs import load_specs

    spec = load_specs(BUNDLED_DATASETS_DIR)["flights"]
    if variant == "pipeline":
        _run_pipeline(spec, path, database)
    elif variant == "naive":
        _run_naive(spec, path, database)
    elif variant == "snowflake-staging":
        _run_snowflake_staging(spec, path, database)
    else:
        _run_duckdb(spec, path, database)


def _run_pipeline(spec, path: Path, database: Path) -> None:
    from pipeline.ingest.stream import ingest_file
    from pipeline.warehouse.duckdb import DuckDBWarehouse

    staged = ingest_file(spec, path, MONTH, database.parent / "staging")
    DuckDBWarehouse(path=str(database)).replace_month(staged, run_id="bench")
    shutil.rmtree(staged.staging_dir)


def _run_snowflake_staging(spec, path: Path, database: Path) -> None:
    """What a Snowflake load does on the loader's machine before PUT: parts rolled to 200 MB."""
    from pipeline.ingest.stream import ingest_file
    from pipeline.settings import SnowflakeSettings

    part_bytes = SnowflakeSettings.from_env().part_mb * 1024 * 1024
    staged = ingest_file(spec, path, MONTH, database.parent / "staging", part_bytes=part_bytes)
    shutil.rmtree(staged.staging_dir)


def _run_naive(spec, path: Path, database: Path) -> None:
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
        connection.execute("create table flights as select * from frame")


def _run_duckdb(spec, path: Path, database: Path) -> None:
    import duckdb

    from pipeline.warehouse.duckdb import DIALECT

    columns = {name: DIALECT.column_type(column) for name, column in spec.columns.items()}
    with duckdb.connect(str(database)) as connection:
        connection.execute(
            "create table flights as select * from read_csv(?, delim='\t', header=true, "
            "quote='', escape='', store_rejects=true, columns=?)",
            [str(path), columns],
        )


def report(size: int, rows: int, defects: float, results: dict[str, Measurement]) -> list[str]:
    lines = [f"\n{size / 1e9:.1f} GB, {rows:,} rows, defects {defects:.2%}"]
    for variant, result in results.items():
        lines.append(
            f"  {variant:<17} {result.seconds:8.1f} s {result.throughput(size):8.1f} MB/s "
            f"{rows / result.seconds:12,.0f} rows/s  "
            f"peak RSS {result.peak_rss_bytes / 2**30:5.2f} GiB   {VARIANTS[variant]}"
        )
    ours = results["pipeline"].seconds
    ratios = [
        f"{name} / pipeline time = {r.seconds / ours:.2f}x"
        for name, r in results.items()
        if name != "pipeline"
    ]
    lines.append("  " + "; ".join(ratios))
    if "duckdb" in results:
        lines.append(f"  pipeline throughput is {results['duckdb'].seconds / ours:.0%} of DuckDB's")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", default="1GB", help="comma-separated file sizes (default 1GB)")
    parser.add_argument(
        "--defects", type=float, default=0.001, help="defect ratio of the dirty file"
    )
    parser.add_argument(
        "--naive-max", default="1GB", help="skip the naive baseline above this size"
    )
    parser.add_argument("--dir", default="data/bench", help="where files and databases go")
    parser.add_argument("--run", nargs=3, metavar=("VARIANT", "FILE", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_variant(args.run[0], Path(args.run[1]), Path(args.run[2]))
        return
    workdir = Path(args.dir)
    workdir.mkdir(parents=True, exist_ok=True)
    output = []
    for size in (parse_size(text) for text in args.sizes.split(",")):
        for defects in (0.0, args.defects):
            path, rows = bench_file(workdir, size, defects)
            variants = [v for v in VARIANTS if v != "naive" or size <= parse_size(args.naive_max)]
            results = {variant: measure(variant, path, workdir) for variant in variants}
            lines = report(path.stat().st_size, rows, defects, results)
            print("\n".join(lines), flush=True)
            output.extend(lines)
    (workdir / "results.txt").write_text("\n".join(output) + "\n")


if __name__ == "__main__":
    main()
