"""Compressed drops: a `.gz`, `.zst` or `.bz2` month loads exactly as the plain file does, read
compressed; a cut-off or corrupt one is refused, never loaded short."""

from __future__ import annotations

import bz2
import dataclasses
import gzip
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import zstandard

from pipeline.assets.loads import build_load_asset
from pipeline.definitions import build_resources, open_warehouse
from pipeline.doctor import examine_landing, preview
from pipeline.ingest.header import LoadError
from pipeline.ingest.stream import ingest_file
from pipeline.resources import LandingFiles
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec

MONTH = "2024-03"
COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "": lambda content: content,
    ".gz": gzip.compress,
    ".zst": lambda content: zstandard.ZstdCompressor(write_checksum=True).compress(content),
    ".bz2": bz2.compress,
}


def compressed_spec(flights: DatasetSpec, suffix: str) -> DatasetSpec:
    """The bundled flights spec for files named `flights_<month>.tsv<suffix>`, with room for
    the planted defects under the reject check."""
    return flights.model_copy(
        update={
            "file_pattern": f"flights_{{month}}.tsv{suffix}",
            "checks": flights.checks.model_copy(update={"max_reject_ratio": 0.05}),
        }
    )


def planted_defects(tmp_path: Path) -> bytes:
    """A month with every kind of planted defect (about 2% of ~1,400 lines)."""
    path = tmp_path / "plain.tsv"
    write_tsv(month_frame(MONTH, rows_per_day=50, seed=7, defect_ratio=0.02), path)
    return path.read_bytes()


def load_through_the_asset(settings: Settings, spec: DatasetSpec, content: bytes) -> dict:
    """Land `content` as the month's file and run the load asset on DuckDB, in small blocks so
    that lines cross both block and decompression-chunk boundaries; what the warehouse holds."""
    path = settings.landing_dir / spec.file_name(MONTH)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    resources = build_resources(settings)
    files = resources["files"]
    assert isinstance(files, LandingFiles)
    resources["files"] = files.model_copy(update={"block_bytes": 8192})
    result = dg.materialize(
        [build_load_asset(spec)],
        partition_key=MONTH,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    stamped = "exclude (_load_id, _loaded_at, _source_file)"
    with open_warehouse(settings) as warehouse:
        return {
            "rows": warehouse.query(f"select * {stamped} from raw.flights order by _line_number"),
            "rejects": warehouse.query(
                f"select * {stamped} from raw.flights_rejects order by _line_number"
            ),
            "ledger": warehouse.query(
                "select rows_read, rows_loaded, rows_rejected from pipeline.load_ledger"
            ),
            "file_size": warehouse.query("select file_size from pipeline.load_ledger"),
        }


def test_plain_gzip_and_zstd_months_load_the_same_rows_rejects_and_line_numbers(
    settings: Settings, flights: DatasetSpec, tmp_path: Path
) -> None:
    content = planted_defects(tmp_path)
    loaded = {}
    for suffix in ("", ".gz", ".zst"):
        deployment = dataclasses.replace(
            settings,
            landing_dir=tmp_path / f"landing{suffix}",
            staging_dir=tmp_path / f"staging{suffix}",
            duckdb_path=tmp_path / f"warehouse{suffix}.duckdb",
        )
        delivered = COMPRESS[suffix](content)
        loaded[suffix] = load_through_the_asset(
            deployment, compressed_spec(flights, suffix), delivered
        )
        # The ledger keeps the file as delivered; everything else is about its lines.
        assert loaded[suffix].pop("file_size") == [{"file_size": len(delivered)}]

    plain = loaded[""]
    lines = content.count(b"\n") - 1
    (ledger,) = plain["ledger"]
    assert ledger["rows_read"] == lines == ledger["rows_loaded"] + ledger["rows_rejected"]
    assert len(plain["rejects"]) == ledger["rows_rejected"] > 20
    assert loaded[".gz"] == plain
    assert loaded[".zst"] == plain


@pytest.mark.parametrize("suffix", [".gz", ".zst", ".bz2"])
def test_a_month_in_several_concatenated_streams_reads_whole_with_progress_in_its_bytes(
    tmp_path: Path, flights: DatasetSpec, suffix: str
) -> None:
    content = planted_defects(tmp_path)
    spec = compressed_spec(flights, suffix)
    cut = content.index(b"\n", len(content) // 2) + 1
    delivered = COMPRESS[suffix](content[:cut]) + COMPRESS[suffix](content[cut:])
    path = tmp_path / "landing" / spec.file_name(MONTH)
    path.parent.mkdir()
    path.write_bytes(delivered)
    plain = tmp_path / "plain.tsv"

    reports = []
    staged = ingest_file(
        spec,
        path,
        MONTH,
        tmp_path / "staging",
        block_bytes=4096,
        progress=lambda *report: reports.append(report),
    )
    reference = ingest_file(flights, plain, MONTH, tmp_path / "reference")

    assert (staged.rows_read, staged.rows_loaded, staged.rows_rejected) == (
        reference.rows_read,
        reference.rows_loaded,
        reference.rows_rejected,
    )
    assert staged.file_size == len(delivered)
    bytes_done, bytes_total, rows, _ = reports[-1]  # progress is in the file's own bytes
    assert bytes_done == bytes_total == len(delivered) and rows == staged.rows_read
    read = [pl.read_parquet(part) for part in staged.reject_parts]
    expected = [pl.read_parquet(part) for part in reference.reject_parts]
    assert pl.concat(read).equals(pl.concat(expected))


@pytest.mark.parametrize("suffix", [".gz", ".zst", ".bz2"])
@pytest.mark.parametrize("damage", ["cut short", "corrupt"])
def test_a_cut_off_or_corrupt_file_is_refused_not_loaded_short(
    tmp_path: Path, flights: DatasetSpec, suffix: str, damage: str
) -> None:
    delivered = COMPRESS[suffix](planted_defects(tmp_path))
    if damage == "cut short":
        delivered = delivered[: len(delivered) * 2 // 3]
    else:
        middle = len(delivered) // 2
        delivered = delivered[:middle] + bytes(200) + delivered[middle + 200 :]
    spec = compressed_spec(flights, suffix)
    path = tmp_path / "landing" / spec.file_name(MONTH)
    path.parent.mkdir()
    path.write_bytes(delivered)

    expected = "ends inside" if damage == "cut short" else "not readable as"
    with pytest.raises(LoadError, match=f"{path}: .*{expected}"):
        ingest_file(spec, path, MONTH, tmp_path / "staging")
    assert not (tmp_path / "staging" / "staged.json").exists()


def test_doctor_previews_a_compressed_file_and_names_a_broken_one(
    tmp_path: Path, flights: DatasetSpec
) -> None:
    content = planted_defects(tmp_path)
    spec = compressed_spec(flights, ".zst")
    path = tmp_path / spec.file_name(MONTH)
    path.write_bytes(COMPRESS[".zst"](content))

    finding = preview(path, spec)
    assert finding.ok, finding
    assert finding.message.startswith("zstd-compressed; UTF-8; LF line endings; 10 columns")

    path.write_bytes(content)  # named .zst, but plain text: not "corrupt at byte <its size>"
    finding = preview(path, spec)
    assert not finding.ok and "not zstd-compressed, though its name says so" in finding.message


def test_a_compressed_file_under_a_plain_pattern_is_named_in_the_error(
    settings: Settings, flights: DatasetSpec, tmp_path: Path
) -> None:
    plain = settings.landing_dir / "flights_2024-03.tsv"
    write_tsv(month_frame("2024-03", 2, seed=3), plain)
    plain.with_name(plain.name + ".gz").write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    with pytest.raises(LoadError) as missing:
        ingest_file(flights, plain, "2024-03", tmp_path / "staging")
    assert str(missing.value).endswith(
        "no file for flights 2024-03 (file_pattern flights_{month}.tsv); flights_2024-03.tsv.gz "
        "is there: set file_pattern: flights_{month}.tsv.gz in the spec to load it as delivered "
        "(every month of flights is then looked for gzip-compressed), or deliver it uncompressed"
    )
    # The reverse: the pattern changed to .gz, a month still delivered plain. Doctor said it
    # matched no dataset and to rename it, which a plain file cannot be.
    gzipped = compressed_spec(flights, ".gz")
    plain.write_bytes(gzip.decompress(plain.with_name(plain.name + ".gz").read_bytes()))
    plain.with_name(plain.name + ".gz").unlink()
    with pytest.raises(LoadError) as uncompressed:
        ingest_file(gzipped, plain.with_name(plain.name + ".gz"), "2024-03", tmp_path / "staging")
    assert str(uncompressed.value).endswith(
        "; flights_2024-03.tsv is there, uncompressed: compress it (gzip), or take .gz off the "
        "file_pattern if every month comes uncompressed"
    )
    findings = [str(f) for f in examine_landing(settings.landing_dir, [gzipped])]
    assert not any("match no dataset" in finding for finding in findings), findings
    assert any(
        "flights_2024-03.tsv is an uncompressed flights file for 2024-03, but file_pattern "
        "flights_{month}.tsv.gz says gzip" in finding
        for finding in findings
    ), findings
