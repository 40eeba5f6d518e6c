"""The staging folder: a month's validated parts between the file and the warehouse.

A month's parts live in `<staging>/<dataset>/<month>/<key>/`, where the key names the file as
delivered and the spec it was validated with. A complete staging ends with a manifest; until the
month is published or refused for good, a retry of the warehouse step reuses it instead of reading
a 100 GB file again. A process holds an advisory lock on the folder while it uses it, so parts
whose process was killed are recognised (the kernel drops the lock) and swept.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.specs import DatasetSpec

MANIFEST = "staged.json"
LOCK = ".lock"
ORPHAN_AGE_SECONDS = 24 * 3600


def staging_key(spec: DatasetSpec, fingerprint: str, pii_key: str | None = None) -> str:
    """Names one delivery of a file validated by one version of its spec, and hashed with one
    key if the spec hashes columns: parts hashed with a key since rotated are not reused.

    The key enters as its own keyed hash of a constant: the folder's name cannot give it away.
    """
    digest = hashlib.blake2b(digest_size=10)
    digest.update(fingerprint.encode())
    digest.update(spec.model_dump_json().encode())
    if pii_key and spec.pii_columns("hash"):
        digest.update(hmac.digest(pii_key.encode(), b"pipeline staging", "sha256"))
    return digest.hexdigest()


def month_staging(root: Path, dataset: str, month: str) -> Path:
    """Where every staging of a dataset month lives."""
    return root / dataset / month


@contextmanager
def claimed(directory: Path) -> Iterator[Path]:
    """Hold the folder's lock while the block runs, creating the folder if needed."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield directory
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_manifest(directory: Path, facts: dict[str, object]) -> None:
    """Mark the staging complete: written last, atomically, so a killed ingest leaves none."""
    directory.mkdir(parents=True, exist_ok=True)  # a file without data lines wrote no part
    temporary = directory / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps(facts, default=_json_value))
    os.replace(temporary, directory / MANIFEST)


def read_manifest(directory: Path) -> dict[str, object] | None:
    """The facts of a complete staging whose parts are all there, or None."""
    path = directory / MANIFEST
    if not path.is_file():
        return None
    facts = json.loads(path.read_text())
    parts = [*facts["row_parts"], *facts["reject_parts"]]
    if not all(Path(part).is_file() for part in parts):
        return None
    return facts


def remove(directory: Path) -> None:
    """Delete a staging (the month was published or refused for good)."""
    shutil.rmtree(directory, ignore_errors=True)


def sweep(root: Path, *, older_than: float | None = None, keep: Path | None = None) -> list[Path]:
    """Remove stagings below `root` (any depth of dataset/month) that no process holds.

    With `older_than` (seconds), only those untouched for that long. Returns what was removed.
    """
    removed = []
    for lock in sorted(root.glob(f"**/{LOCK}")):
        directory = lock.parent
        if directory == keep:
            continue
        if older_than is not None and directory not in stale(directory, older_than):
            continue
        with _taken(lock) as taken:
            if taken:  # else a live process is using it
                remove(directory)
                removed.append(directory)
    return removed


def abandoned(root: Path) -> list[Path]:
    """Stagings below `root` that a killed load left half-written: no manifest, and no process
    holds them. (A complete one is kept on purpose, for a retry of the warehouse step.)"""
    return [
        lock.parent
        for lock in sorted(root.glob(f"**/{LOCK}"))
        if read_manifest(lock.parent) is None and not _held(lock)
    ]


def kept(root: Path) -> list[Path]:
    """Complete stagings below `root` that no process holds: kept for a retry of the warehouse
    step, which reuses them instead of reading the file again."""
    return [
        lock.parent
        for lock in sorted(root.glob(f"**/{LOCK}"))
        if read_manifest(lock.parent) is not None and not _held(lock)
    ]


def _held(lock: Path) -> bool:
    """Whether a live process holds the staging whose lock file this is."""
    with _taken(lock) as taken:
        return not taken


@contextmanager
def _taken(lock: Path) -> Iterator[bool]:
    """Take the staging's lock if no process holds it, for the block; False if one does, or if
    this user cannot open it: another user's staging (cron and the daemon as different users) is
    not this load's to remove, and its PermissionError failed every load of the dataset."""
    try:
        opened = lock.open("a")
    except OSError:
        yield False
        return
    with opened as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def stale(root: Path, older_than: float = ORPHAN_AGE_SECONDS) -> list[Path]:
    """Stagings below `root` untouched for `older_than` seconds (held or not)."""
    return [
        lock.parent
        for lock in sorted(root.glob(f"**/{LOCK}"))
        if time.time() - _last_touched(lock.parent) >= older_than
    ]


def _last_touched(directory: Path) -> float:
    """When parts or the manifest were last written, or the staging made (a load still reading
    its first block has written nothing yet); the lock is opened by every claim, so its time
    says nothing. One this user cannot read counts as touched now: it is not swept."""
    try:
        return max(
            [directory.stat().st_mtime]
            + [path.stat().st_mtime for path in directory.iterdir() if path.name != LOCK]
        )
    except OSError:
        return time.time()


def _json_value(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in a staging manifest")
