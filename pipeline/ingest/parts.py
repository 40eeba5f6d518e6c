"""Parquet parts: how validated batches are staged for a warehouse's bulk load."""

from __future__ import annotations

from pathlib import Path

import polars as pl


class PartWriter:
    """Write each validated batch as its own numbered Parquet part.

    One part per batch keeps memory at one batch and lets polars' parallel writer do the work: it
    measured about 1.3x faster over a 1 GB month than appending row groups to one file with
    pyarrow. A part holds one block of the file (16 MB of text by default, a few MB of Parquet).
    """

    def __init__(self, directory: Path, prefix: str):
        self.directory = directory
        self.prefix = prefix
        self.paths: list[Path] = []

    def write(self, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.prefix}-{len(self.paths):05d}.parquet"
        frame.write_parquet(path, compression="zstd", compression_level=1)
        self.paths.append(path)
