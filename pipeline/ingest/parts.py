"""Parquet parts: how validated batches are staged for a warehouse's bulk load."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq


class PartWriter:
    """Write validated batches as numbered Parquet parts of about `part_bytes` each.

    With `part_bytes=0` every batch is its own part, written by polars' parallel writer: about
    1.3x faster over a 1 GB month than appending row groups with pyarrow, and all DuckDB needs.
    A warehouse that uploads parts (Snowflake wants 100-250 MB files) asks for larger ones: batches
    are then appended as row groups until the part reaches the size. Memory stays at one batch.

    The parts carry no column statistics: the warehouses read every row of a part, so the
    min/max of each column were never used, and computing them was a fifth of the writer's time.
    """

    def __init__(self, directory: Path, prefix: str, part_bytes: int = 0):
        self.directory = directory
        self.prefix = prefix
        self.part_bytes = part_bytes
        self.paths: list[Path] = []
        self._open: pq.ParquetWriter | None = None

    def write(self, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        if self.part_bytes <= 0:
            frame.write_parquet(
                self._next_path(), compression="zstd", compression_level=1, statistics=False
            )
            return
        table = frame.to_arrow()
        if self._open is None:
            self._open = pq.ParquetWriter(
                self._next_path(),
                table.schema,
                compression="zstd",
                compression_level=1,
                write_statistics=False,
            )
        self._open.write_table(table)
        if self.paths[-1].stat().st_size >= self.part_bytes:
            self.close()

    def close(self) -> None:
        """Finish the part being appended to, if any; call once after the last batch."""
        if self._open is not None:
            self._open.close()
            self._open = None

    def _next_path(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.prefix}-{len(self.paths):05d}.parquet"
        self.paths.append(path)
        return path
