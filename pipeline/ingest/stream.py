"""A month's file, streamed block by block into staged Parquet parts of rows and rejects."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, TypedDict, TypeVar, Unpack

import polars as pl

from pipeline.ingest import staging
from pipeline.ingest.batches import ValidatedBatch, validate_block
from pipeline.ingest.files import (
    compressed_advice,
    compressed_siblings,
    compression,
    fingerprint,
    open_delivered,
    plain_advice,
)
from pipeline.ingest.header import LoadError, read_header
from pipeline.ingest.lines import Block, LineTally, iter_blocks
from pipeline.ingest.parts import PartWriter
from pipeline.ingest.pii import Protection
from pipeline.ingest.schema import build_schema
from pipeline.specs import DatasetSpec

DEFAULT_BLOCK_BYTES = 16 * 1024 * 1024
Batch = TypeVar("Batch")  # what `validate_ahead`'s function makes of a block
# (bytes read so far, file size, lines read so far, of them rejected)
Progress = Callable[[int, int, int, int], None]


@dataclass(frozen=True)
class StagedLoad:
    """A validated month waiting in the staging folder for the warehouse to take it atomically.

    `rows_read` is counted from the file's bytes (line ends, less the header and blank lines);
    `rows_loaded` and `rows_rejected` are what the parser staged. Staging refuses a file where
    they do not add up, and the warehouse counts again what it inserts.
    """

    spec: DatasetSpec
    month: str
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

    def facts(self) -> dict[str, object]:
        """Everything but the spec, as the staging manifest keeps it."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "spec"}

    @classmethod
    def from_facts(cls, spec: DatasetSpec, facts: dict[str, Any]) -> StagedLoad:
        values = {name: tuple(v) if isinstance(v, list) else v for name, v in facts.items()}
        values["started_at"] = dt.datetime.fromisoformat(facts["started_at"])
        return cls(spec=spec, **values)


class ReconciliationError(LoadError):
    """Counts that should agree do not: something was lost or doubled, so nothing is published."""


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or `taskset`
    narrows), not the machine's: the default number of block validators."""
    return len(os.sched_getaffinity(0))


def validate_ahead(
    blocks: Iterator[Block], validate: Callable[[Block], Batch], workers: int
) -> Iterator[Batch]:
    """Validate `workers` blocks at once, in threads, and yield them in file order.

    Threads, not processes: the parse, the casts and the checks run in polars and numpy, which
    release the GIL, and a worker process would have to send its validated frames back (pickled)
    for the parts to be written in order, which measured about twice as slow in all (README,
    Benchmark). One block more than `workers` is submitted, so that every worker has a block
    while this thread writes the oldest one's parts: with exactly `workers`, one worker sat idle
    through each write, and the ingest took 7% longer on two cores. The bound keeps memory at
    `workers + 1` blocks in flight however large the file.
    """
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="validate") as pool:
        pending: deque[Future[Batch]] = deque()
        for block in blocks:
            pending.append(pool.submit(validate, block))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def new_load_id() -> str:
    """A unique id for one load attempt: the ledger's, and every row's `_load_id`."""
    return uuid.uuid4().hex


class IngestOptions(TypedDict, total=False):
    """`ingest_file`'s keyword arguments, which `stage_file` passes on."""

    block_bytes: int
    workers: int | None
    part_bytes: int
    progress: Progress | None
    pii_key: str | None


def stage_file(
    spec: DatasetSpec, path: Path, month: str, staging_dir: Path, **options: Unpack[IngestOptions]
) -> StagedLoad:
    """The month's staged parts in `staging_dir` (see `staging.staging_key`): reused when a
    complete staging is there already (a retried warehouse step), else ingested anew."""
    facts = staging.read_manifest(staging_dir)
    if facts is not None:
        return StagedLoad.from_facts(spec, facts)
    return ingest_file(spec, path, month, staging_dir, **options)


def ingest_file(
    spec: DatasetSpec,
    path: Path,
    month: str,
    staging_dir: Path,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    workers: int | None = None,
    part_bytes: int = 0,
    progress: Progress | None = None,
    pii_key: str | None = None,
) -> StagedLoad:
    """Validate `path` as `spec`'s file for `month` and stage its rows and rejects as Parquet
    parts in `staging_dir` (emptied first), ending with the staging manifest.

    A file named `.gz`, `.zst` or `.bz2` is decompressed as it is read (`files.open_delivered`):
    lines, rejects and counts are those of its content, its size and fingerprint those of the
    file as delivered, and progress is reported in its (compressed) bytes.

    `workers` blocks are validated at once (default: `available_cores()`), so memory holds about
    that many blocks; `part_bytes` is the warehouse's preferred part size
    (0: one part per block, see PartWriter); `pii_key` hashes the `pii: hash` columns. Raises
    `LoadError` before staging anything if the file is missing, its header lacks a spec column or
    a hashed column has no key, `LoadError` if a compressed file turns out corrupt or cut short,
    and `ReconciliationError` if the lines counted in the file are not exactly the rows and
    rejects staged; the staging then has no manifest, so nothing of it is reused or published.
    """
    require_file(spec, path, month)
    protection = Protection.for_spec(spec, pii_key, path)
    started_at = dt.datetime.now(dt.UTC)
    # The file as it is opened: a correction that replaces it during the read has another
    # fingerprint, so the landing sensor loads it next.
    delivered = fingerprint(path)
    for leftover in staging_dir.glob("*.parquet"):
        leftover.unlink()  # a killed ingest's parts; the manifest was never written
    size = path.stat().st_size
    workers = workers or available_cores()
    schema = build_schema(spec, month)
    tally = LineTally()
    rows_loaded = rows_rejected = 0
    rows_out = PartWriter(staging_dir, "rows", part_bytes)
    rejects_out = PartWriter(staging_dir, "rejects", part_bytes)
    with open_delivered(path) as opened:
        header = read_header(opened.content, spec, path)
        blocks = iter_blocks(opened.content, first_line=2, block_bytes=block_bytes, tally=tally)
        try:
            for batch in validate_ahead(
                blocks,
                partial(
                    _validated,
                    path=path,
                    header=header,
                    spec=spec,
                    schema=schema,
                    protection=protection,
                ),
                workers,
            ):
                rows_out.write(batch.rows)
                rejects_out.write(batch.rejects)
                rows_loaded += batch.rows.height
                rows_rejected += batch.rejects.height
                if progress is not None:
                    progress(opened.bytes_read(), size, rows_loaded + rows_rejected, rows_rejected)
            change = opened.change()
            if change is not None:
                raise LoadError(
                    f"{path}: the file changed while it was read ({change}): its lines are of "
                    "neither version, so nothing was loaded; load it again once it is whole"
                )
        finally:
            rows_out.close()
            rejects_out.close()
    if tally.data_lines != rows_loaded + rows_rejected:
        raise ReconciliationError(
            f"{path}: {tally.data_lines:,} data lines counted in the file, but the parser staged "
            f"{rows_loaded:,} rows and {rows_rejected:,} rejects; nothing was published"
        )
    staged = StagedLoad(
        spec=spec,
        month=month,
        source_file=str(path),
        file_size=size,
        fingerprint=delivered,
        rows_read=tally.data_lines,
        rows_loaded=rows_loaded,
        rows_rejected=rows_rejected,
        blank_lines=tally.blank,
        header=header.names,
        extra_columns=header.extra_columns,
        staging_dir=str(staging_dir),
        row_parts=tuple(str(p) for p in rows_out.paths),
        reject_parts=tuple(str(p) for p in rejects_out.paths),
        started_at=started_at,
    )
    staging.write_manifest(staging_dir, staged.facts())
    return staged


def _validated(block: Block, path: Path, **context: Any) -> ValidatedBatch:
    """`validate_block`, with a panic inside polars raised as a LoadError naming the block: a
    panic is a BaseException, which the handlers that record a failed load and alert skip, and
    the same block would panic again, so the load is not retried."""
    try:
        return validate_block(block, **context)
    except pl.exceptions.PanicException as exc:
        raise LoadError(
            f"{path}: polars failed on the block from line {block.first_line:,}: {exc}"
        ) from exc


def require_file(spec: DatasetSpec, path: Path, month: str) -> None:
    """Raise LoadError if the month's file is not there, saying so if it came compressed under
    a pattern that does not name the compression (`.tsv.gz` for `.tsv`)."""
    if path.is_file():
        return
    compressed = compressed_siblings(path)
    plain = path.with_suffix("") if compression(path) else None
    hint = ""
    if compressed:
        hint = f"; {compressed[0].name} is there: {compressed_advice(spec, compressed[0])}"
    elif plain is not None and plain.is_file():
        hint = f"; {plain.name} is there, uncompressed: {plain_advice(spec)}"
    raise LoadError(
        f"{path}: no file for {spec.name} {month} (file_pattern {spec.file_pattern}){hint}"
    )
