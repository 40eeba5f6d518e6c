"""A month's file, streamed block by block into staged Parquet parts of rows and rejects."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pipeline.ingest.batches import ValidatedBatch, validate_block
from pipeline.ingest.files import fingerprint
from pipeline.ingest.header import LoadError, read_header
from pipeline.ingest.lines import Block, iter_blocks
from pipeline.ingest.parts import PartWriter
from pipeline.ingest.schema import build_schema
from pipeline.specs import DatasetSpec

DEFAULT_BLOCK_BYTES = 16 * 1024 * 1024
DEFAULT_WORKERS = 2
Progress = Callable[[int, int], None]  # (bytes read so far, file size)


@dataclass(frozen=True)
class StagedLoad:
    """A validated month waiting in the staging folder for the warehouse to take it atomically."""

    spec: DatasetSpec
    month: str
    load_id: str
    source_file: str
    file_size: int
    fingerprint: str
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    blank_lines: int
    header: tuple[str, ...]  # the file's column names, in file order
    extra_columns: tuple[str, ...]
    staging_dir: str
    row_parts: tuple[str, ...]
    reject_parts: tuple[str, ...]
    started_at: dt.datetime

    @property
    def dataset(self) -> str:
        return self.spec.name


def validate_ahead(
    blocks: Iterator[Block], validate: Callable[[Block], ValidatedBatch], workers: int
) -> Iterator[ValidatedBatch]:
    """Validate up to `workers` blocks at once and yield them in file order.

    numpy, polars and pyarrow release the GIL, so the next block is parsed while this one is
    written; the bound keeps memory at `workers` blocks however large the file.
    """
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="validate") as pool:
        pending: deque[Future[ValidatedBatch]] = deque()
        for block in blocks:
            pending.append(pool.submit(validate, block))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def new_load_id() -> str:
    """A unique id for one load attempt, used for staging paths and the ledger."""
    return uuid.uuid4().hex


def ingest_file(
    spec: DatasetSpec,
    path: Path,
    month: str,
    staging_root: Path,
    *,
    load_id: str | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    workers: int = DEFAULT_WORKERS,
    part_bytes: int = 0,
    progress: Progress | None = None,
) -> StagedLoad:
    """Validate `path` as `spec`'s file for `month` and stage its rows and rejects as Parquet.

    Memory holds `workers` blocks at a time; `part_bytes` is the warehouse's preferred part size
    (0: one part per block, see PartWriter). Raises `LoadError` before staging anything if the
    file is missing or its header lacks a spec column.
    """
    if not path.is_file():
        raise LoadError(
            f"{path}: no file for {spec.name} {month} (file_pattern {spec.file_pattern})"
        )
    load_id = load_id or new_load_id()
    started_at = dt.datetime.now(dt.UTC)
    staging_dir = staging_root / spec.name / month / load_id
    size = path.stat().st_size
    schema = build_schema(spec, month)
    rows_loaded = rows_rejected = blank_lines = 0
    rows_out = PartWriter(staging_dir, "rows", part_bytes)
    rejects_out = PartWriter(staging_dir, "rejects", part_bytes)
    with path.open("rb") as handle:
        header = read_header(handle, spec, path)
        blocks = iter_blocks(handle, first_line=2, block_bytes=block_bytes)
        try:
            for batch in validate_ahead(
                blocks, partial(validate_block, header=header, spec=spec, schema=schema), workers
            ):
                rows_out.write(batch.rows)
                rejects_out.write(batch.rejects)
                rows_loaded += batch.rows.height
                rows_rejected += batch.rejects.height
                blank_lines += batch.blank_lines
                if progress is not None:
                    progress(handle.tell(), size)
        finally:
            rows_out.close()
            rejects_out.close()
    return StagedLoad(
        spec=spec,
        month=month,
        load_id=load_id,
        source_file=str(path),
        file_size=size,
        fingerprint=fingerprint(path),
        rows_read=rows_loaded + rows_rejected,
        rows_loaded=rows_loaded,
        rows_rejected=rows_rejected,
        blank_lines=blank_lines,
        header=header.names,
        extra_columns=header.extra_columns,
        staging_dir=str(staging_dir),
        row_parts=tuple(str(p) for p in rows_out.paths),
        reject_parts=tuple(str(p) for p in rejects_out.paths),
        started_at=started_at,
    )
