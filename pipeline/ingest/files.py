"""Facts about a landing file that identify one delivery of it."""

from __future__ import annotations

import hashlib
from pathlib import Path

SAMPLE_BYTES = 1 << 20


def fingerprint(path: Path) -> str:
    """Size, modification time and a hash of the first and last MiB.

    Hashing all of a 100 GB file would cost a second full read; a corrected delivery changes its
    size, its modification time or (almost always) its head or tail.
    """
    stat = path.stat()
    digest = hashlib.blake2b(digest_size=12)
    with path.open("rb") as handle:
        digest.update(handle.read(SAMPLE_BYTES))
        if stat.st_size > SAMPLE_BYTES:
            handle.seek(max(stat.st_size - SAMPLE_BYTES, SAMPLE_BYTES))
            digest.update(handle.read(SAMPLE_BYTES))
    return f"{stat.st_size}-{stat.st_mtime_ns}-{digest.hexdigest()}"
