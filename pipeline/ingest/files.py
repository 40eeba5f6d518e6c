"""A landing file as delivered: the facts that identify one delivery, and its lines, decompressed
as they are read when the file name says it is compressed (`.gz`, `.zst`, `.bz2`).

A compressed month is never written out decompressed: a 100 GB month may arrive as 10 GB of
zstd on a disk with room for that, not for the plain file beside its staged parts.
"""

from __future__ import annotations

import bz2
import datetime as dt
import hashlib
import io
import os
import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import zstandard

from pipeline.ingest.header import LoadError
from pipeline.specs import DatasetSpec

SAMPLE_BYTES = 1 << 20
# Compressed bytes handed to the decompressor at a time, and the decompressed buffer read from.
COMPRESSED_CHUNK_BYTES = 1 << 20
BUFFER_BYTES = 1 << 20


@contextmanager
def readable(path: Path) -> Iterator[BinaryIO]:
    """`path` opened for reading; one that cannot be (permissions, a folder) is a LoadError
    naming it, so a sensor, a load or doctor says so in a line and goes on with other files."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise LoadError(f"{path}: the file cannot be read ({exc.strerror or exc})") from None
    with handle:
        yield handle


def fingerprint(path: Path) -> str:
    """Size, modification time and a hash of the first and last MiB.

    Hashing all of a 100 GB file would cost a second full read; a corrected delivery changes its
    size, its modification time or (almost always) its head or tail. A compressed file is
    fingerprinted as delivered, compressed.
    """
    stat = path.stat()
    digest = hashlib.blake2b(digest_size=12)
    with readable(path) as handle:
        digest.update(handle.read(SAMPLE_BYTES))
        if stat.st_size > SAMPLE_BYTES:
            handle.seek(max(stat.st_size - SAMPLE_BYTES, SAMPLE_BYTES))
            digest.update(handle.read(SAMPLE_BYTES))
    return f"{stat.st_size}-{stat.st_mtime_ns}-{digest.hexdigest()}"


class Decompressor(Protocol):
    """What zlib, bz2 and zstandard decompression objects share: one stream (a gzip member, a
    bzip2 stream, a zstd frame) at a time, then `eof` and the bytes after it."""

    eof: bool
    unused_data: bytes

    def decompress(self, data: bytes) -> bytes: ...


DECOMPRESSORS: dict[str, tuple[str, Callable[[], Decompressor]]] = {
    ".gz": ("gzip", lambda: zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)),
    ".zst": ("zstd", lambda: zstandard.ZstdDecompressor().decompressobj()),
    ".bz2": ("bzip2", bz2.BZ2Decompressor),
}
# How each format's files begin: a file that does not was never compressed so (a plain file
# renamed), which its decompressor calls corrupt "at or before byte <the file's size>". A zstd
# file may begin with a skippable frame (pzstd's), magic 0x184D2A50 to 0x184D2A5F.
MAGIC = {
    "gzip": re.compile(rb"\x1f\x8b"),
    "zstd": re.compile(rb"\x28\xb5\x2f\xfd|[\x50-\x5f]\x2a\x4d\x18"),
    "bzip2": re.compile(rb"BZh"),
}


def compression(path: Path) -> str | None:
    """The compression a file name says its content has (`gzip`, `zstd`, `bzip2`), or None."""
    known = DECOMPRESSORS.get(path.suffix.lower())
    return None if known is None else known[0]


def misnamed_compressed_month(spec: DatasetSpec, path: Path) -> str | None:
    """The month whose file `path` is, delivered compressed under a pattern that does not name
    the compression (`flights_2024-05.tsv.gz` under `flights_{month}.tsv`); None otherwise."""
    if compression(path) is None or spec.month_of(path.name) is not None:
        return None
    return spec.month_of(path.stem)


def compressed_advice(spec: DatasetSpec, path: Path) -> str:
    """What to do about `path`, a month delivered compressed under a pattern that names no
    compression. The pattern names one form for every month: changing it leaves the months
    delivered plain unfound, so the advice says so."""
    return (
        f"set file_pattern: {spec.file_pattern}{path.suffix} in the spec to load it as delivered "
        f"(every month of {spec.name} is then looked for {compression(path)}-compressed), or "
        "deliver it uncompressed"
    )


def plain_advice(spec: DatasetSpec) -> str:
    """What to do about a month delivered uncompressed under a pattern that names a compression."""
    pattern = Path(spec.file_pattern)
    return (
        f"compress it ({compression(pattern)}), or take {pattern.suffix} off the file_pattern "
        "if every month comes uncompressed"
    )


def misnamed_plain_month(spec: DatasetSpec, path: Path) -> str | None:
    """The month whose file `path` is, delivered uncompressed under a pattern that names a
    compression (`flights_2024-05.tsv` under `flights_{month}.tsv.gz`); None otherwise."""
    suffix = Path(spec.file_pattern).suffix
    if compression(path) is not None or compression(Path(spec.file_pattern)) is None:
        return None
    return spec.month_of(path.name + suffix)


def compressed_siblings(path: Path) -> list[Path]:
    """`path` delivered compressed under a name the pattern does not give (`x.tsv.gz` for
    `x.tsv`): the files beside it that would be its content."""
    siblings = (path.with_name(path.name + suffix) for suffix in DECOMPRESSORS)
    return [sibling for sibling in siblings if sibling.is_file()]


@dataclass(frozen=True)
class OpenFile:
    """A landing file open for reading: `content` gives its bytes decompressed, `delivered` is
    the file itself, whose position says how much of it has been read (compressed bytes), and
    `opened` its size and times when it was opened."""

    content: BinaryIO
    delivered: BinaryIO
    opened: os.stat_result

    def bytes_read(self) -> int:
        return self.delivered.tell()

    def change(self) -> str | None:
        """How the file was changed since it was opened, or None. A file rewritten in place
        while it is read (`cat new > old`) gives lines of neither version, and one cut short
        ends the read early; a file moved or deleted meanwhile is still read whole."""
        now = os.fstat(self.delivered.fileno())
        if (now.st_size, now.st_mtime_ns) == (self.opened.st_size, self.opened.st_mtime_ns):
            return None
        return (
            f"{self.opened.st_size:,} bytes when its read began, {now.st_size:,} bytes written "
            f"at {dt.datetime.fromtimestamp(now.st_mtime, dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
        )


@contextmanager
def open_delivered(path: Path) -> Iterator[OpenFile]:
    """Open `path` for reading its content, decompressing as it is read if its name says so."""
    with readable(path) as delivered:
        opened = os.fstat(delivered.fileno())
        known = DECOMPRESSORS.get(path.suffix.lower())
        if known is None:
            yield OpenFile(delivered, delivered, opened)
            return
        name, factory = known
        reader = _DecompressingReader(delivered, path, name, factory)
        with io.BufferedReader(reader, BUFFER_BYTES) as content:
            yield OpenFile(content, delivered, opened)


class _DecompressingReader(io.RawIOBase):
    """The decompressed bytes of a file of one or more concatenated streams (`cat a.gz b.gz`,
    `pzstd`'s frames, `pbzip2`'s streams), read a chunk at a time.

    A file that ends inside a stream is an error, never a quietly shorter month: zstandard's own
    `stream_reader` returns the bytes of a cut-off frame without complaint. Corrupt data is a
    `LoadError` naming the file and about where in it.
    """

    def __init__(
        self, delivered: BinaryIO, path: Path, name: str, factory: Callable[[], Decompressor]
    ):
        self._delivered = delivered
        self._path = path
        self._name = name
        self._factory = factory
        self._stream = factory()
        self._in_stream = False  # input given to the current stream, which has not ended
        self._output = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._output:
            begins = self._delivered.tell() == 0
            chunk = self._delivered.read(COMPRESSED_CHUNK_BYTES)
            if begins and chunk and not MAGIC[self._name].match(chunk):
                raise LoadError(
                    f"{self._path}: not {self._name}-compressed, though its name says so (it "
                    f"does not begin as {self._name} data does); nothing was loaded"
                )
            if not chunk:
                if self._in_stream:
                    raise LoadError(
                        f"{self._path}: the file ends inside a {self._name} stream (cut short "
                        f"after {self._delivered.tell():,} bytes?); nothing was loaded"
                    )
                return 0
            self._output = memoryview(self._decompress(chunk))
        count = min(len(buffer), len(self._output))
        buffer[:count] = self._output[:count]
        self._output = self._output[count:]
        return count

    def _decompress(self, data: bytes) -> bytes:
        pieces = []
        try:
            while data:
                pieces.append(self._stream.decompress(data))
                self._in_stream = not self._stream.eof
                data = self._stream.unused_data if self._stream.eof else b""
                if self._stream.eof:
                    self._stream = self._factory()
        except (zlib.error, OSError, zstandard.ZstdError) as error:
            raise LoadError(
                f"{self._path}: not readable as {self._name} (at or before byte "
                f"{self._delivered.tell():,}): {error}; nothing was loaded"
            ) from error
        return b"".join(pieces)
