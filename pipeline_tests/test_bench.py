"""`make bench`'s month files: what the lead's 100 GB run relies on, checked on a few MB."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import yaml
import zstandard

from pipeline.bench import (
    Measurement,
    _bound,
    _run_duckdb,
    _run_parse,
    _run_pipeline,
    bench_spec,
    generate,
)
from pipeline.ingest.stream import ingest_file
from pipeline.specs import load_specs

MONTH = "2024-05"


def test_a_zstd_month_is_written_compressed_and_loads_as_the_facts_say(tmp_path: Path) -> None:
    path = tmp_path / "real_2MB_0.01.tsv.zst"
    generate("real", 2_000_000, 0.01, "zst", path, slice_rows=5_000)
    facts = (tmp_path / "real_2MB_0.01.tsv.zst.json").read_text()
    plain = zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read()
    spec = bench_spec("real", path)
    lines = plain.count(b"\n") - 1  # less the header

    staged = ingest_file(spec, path, MONTH, tmp_path / "staging")

    assert not list(tmp_path.glob("*.tsv"))  # never written out plain
    assert f'"plain_bytes": {len(plain)}' in facts and len(plain) >= 2_000_000
    assert f'"rows": {lines}' in facts
    assert staged.rows_read == lines
    assert staged.rows_rejected > 0 and staged.rows_loaded > 0.98 * staged.rows_read
    assert len(staged.header) == 13 and spec.file_name(MONTH) == "departures_2024-05.tsv.zst"


def test_the_real_shaped_spec_round_trips_through_the_yaml_the_cli_variant_writes(
    tmp_path: Path,
) -> None:
    spec = bench_spec("real", tmp_path / "real_1MB_0.tsv.zst")
    (tmp_path / "departures.yaml").write_text(
        yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True))
    )
    assert load_specs(tmp_path)["departures"] == spec


def test_duckdbs_floor_loads_every_line_of_a_clean_month_nulls_included(tmp_path: Path) -> None:
    """The floor the bench's shares are taken against does the same work: a clean month's `NA`
    fields are nulls to it, as to the spec, not rejects (which made it twice as slow)."""
    path = tmp_path / "real_1MB_0.tsv"
    generate("real", 1_000_000, 0.0, "none", path, slice_rows=5_000)
    lines = path.read_bytes().count(b"\n") - 1
    spec = bench_spec("real", path)
    assert b"\tNA\t" in path.read_bytes() and "NA" in spec.null_values

    _run_duckdb(spec, path, tmp_path / "floor.duckdb")

    with duckdb.connect(str(tmp_path / "floor.duckdb")) as connection:
        (loaded, nulls) = connection.execute(
            f"SELECT count(*), count(*) - count(dep_time) FROM {spec.name}"
        ).fetchone()
    assert loaded == lines and nulls > 0


def test_the_bound_parses_every_line_and_adds_the_publish_the_pipeline_timed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The `parse` variant and the pipeline's publish make the bound the README quotes: the
    parse must see every line of every block (a lost block would flatter it), and the publish
    be timed apart from the ingest."""
    path = tmp_path / "real_1MB_0.01.tsv"
    generate("real", 1_000_000, 0.01, "none", path, slice_rows=5_000)
    lines = path.read_bytes().count(b"\n") - 1
    spec = bench_spec("real", path)

    _run_parse(spec, path, block_bytes=64 * 1024)  # 16 blocks
    started = time.perf_counter()
    _run_pipeline(spec, path, tmp_path, tmp_path / "bench.duckdb")
    whole = time.perf_counter() - started

    assert capsys.readouterr().out.strip() == f"{lines:,} lines parsed"
    publish = json.loads((tmp_path / "staged.json").read_text())["publish"]
    assert 0 < publish < whole
    results = {
        "parse": Measurement("parse", 4.0, 7.0, 0, None),
        "pipeline": Measurement("pipeline", 15.0, 28.0, 0, 1, publish_seconds=6.0),
        "duckdb": Measurement("duckdb", 5.0, 9.0, 0, None),
    }
    assert _bound(results) == [
        "  staged, then published: at least parse 4.0 s + publish 6.0 s = 10.0 s, so at most "
        "50% of DuckDB's throughput"
    ]
    assert _bound({name: results[name] for name in ("pipeline", "duckdb")}) == []
    assert _bound({name: results[name] for name in ("parse", "pipeline")}) == [
        "  no bound from parse without duckdb in the same run"
    ]


def test_a_mistyped_variant_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """A typo used to run DuckDB's load (the fallback variant) and then fail on the name: at 100
    GB, an hour's run lost."""
    bench = [sys.executable, "-m", "pipeline.bench", "--dir", str(tmp_path)]
    refused = subprocess.run(
        [*bench, "--variants", "pipeline, duckdb"], capture_output=True, text=True, check=False
    )

    assert refused.returncode == 2
    assert (
        "--variants: unknown ' duckdb'; of " in refused.stderr
        and "pipeline-1core" in refused.stderr
    )
    assert not list(tmp_path.iterdir())  # no month file generated, nothing run
