"""Parquet parts: how validated batches are staged for a warehouse's bulk load."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_PART_BYTES = 256 * 1024 * 1024


class PartWriter:
    """Append frames to numbered Parquet files, starting a new one past `part_bytes` of data.

    Parts are sized for the warehouse (Snowflake loads 100–250 MB compressed files best); each
    appended frame becomes one row group, so memory holds one batch, never a part.
    """

    def __init__(self, directory: Path, prefix: str, part_bytes: int = DEFAULT_PART_BYTES):
        self.directory = directory
        self.prefix = prefix
        self.part_bytes = part_bytes
        self.paths: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._written = 0

    def write(self, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
        if self._writer is None or self._written >= self.part_bytes:
            self._open(table.schema)
        assert self._writer is not None
        self._writer.write_table(table)
        self._written += table.nbytes

    def _open(self, schema: pa.Schema) -> None:
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.prefix}-{len(self.paths):05d}.parquet"
        self._writer = pq.ParquetWriter(path, schema, compression="zstd", compression_level=1)
        self.paths.append(path)
        self._written = 0

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
