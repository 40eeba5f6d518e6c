"""The audit trail outside the warehouse: anchoring the log's head, and verifying the chain.

The chain in `pipeline.audit_log` (warehouse/audit.py) shows an entry edited, removed or moved;
an administrator who rewrites every entry after the one they changed, or deletes the newest ones,
leaves a chain that is consistent again. So every run writes the head it left (sequence number and
hash) into its own Dagster event metadata and appends it to an anchors file under DAGSTER_HOME,
one JSON line per anchor; `verify` then also checks that every anchored entry is still there with
the same hash. Ship the anchors file to write-once storage to take it out of that administrator's
reach too (README, "Audit trail").
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dagster as dg

from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline.warehouse.audit import (
    AUDIT_TABLE,
    GENESIS_HASH,
    AuditEvent,
    AuditHead,
    entry_hash,
)
from pipeline.warehouse.base import META_SCHEMA, Warehouse

ANCHORS_FILE = "audit_heads.log"
SPEC_KINDS = ("spec_seen", "spec_changed")
# Tags a run gets from whoever launched it: the UI's user (Dagster+), a sensor, a schedule, a
# backfill. The first one present names the actor.
LAUNCHER_TAGS = (
    ("dagster/user", "{}"),
    ("dagster/sensor_name", "sensor {}"),
    ("dagster/schedule_name", "schedule {}"),
    ("dagster/backfill", "backfill {}"),
)


def record_event(
    warehouse: Warehouse, kind: str, *, anchors: Path | None = None, **facts: Any
) -> AuditHead:
    """Append an event that changes nothing else in the warehouse (`report_written`) to the
    audit log, and anchor the new head in `anchors` if given (an alert's entry is written with
    its row in pipeline.alerts instead, `Warehouse.record_alert`).

    `facts` are AuditEvent fields: dataset, month, run_id, source_file, fingerprint, detail, ...
    """
    head = warehouse.record_audit(AuditEvent(kind=kind, **facts))
    if anchors is not None:
        write_anchor(anchors, warehouse.location(), head, facts.get("run_id"))
    return head


def spec_fingerprint(spec: DatasetSpec) -> str:
    """SHA-256 of the spec as validated (defaults filled in), so a reformatted file is the same
    spec and any change of meaning is a new fingerprint."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


def record_spec(warehouse: Warehouse, spec: DatasetSpec, run_id: str) -> AuditHead | None:
    """Append `spec_seen` the first time a dataset's spec is loaded with, `spec_changed` when its
    fingerprint differs from the last one recorded; nothing (None) when it is the same."""
    fingerprint = spec_fingerprint(spec)
    last = warehouse.query(
        f"select fingerprint from {META_SCHEMA}.{AUDIT_TABLE} where dataset = ? "
        f"and kind in ({', '.join('?' for _ in SPEC_KINDS)}) order by seq desc limit 1",
        [spec.name, *SPEC_KINDS],
    )
    if last and last[0]["fingerprint"] == fingerprint:
        return None
    return record_event(
        warehouse,
        "spec_changed" if last else "spec_seen",
        dataset=spec.name,
        run_id=run_id,
        fingerprint=fingerprint,
        detail=f"was {last[0]['fingerprint']}" if last else None,
    )


def run_actor(tags: Mapping[str, str]) -> str:
    """Who a run acts for: its launcher's tag if it has one, else the OS user running it."""
    for tag, shown in LAUNCHER_TAGS:
        if tags.get(tag):
            return shown.format(tags[tag])
    return getpass.getuser()


# Anchors


@dataclass(frozen=True)
class Anchor:
    """A head as a run saw it, kept outside the warehouse."""

    seq: int
    entry_hash: str
    warehouse: str
    anchored_at: str
    run_id: str | None
    line: int = 0  # in the anchors file


def anchors_file(instance: dg.DagsterInstance) -> Path:
    """Where heads are anchored: PIPELINE_AUDIT_ANCHORS, else DAGSTER_HOME/audit_heads.log. A
    shared deployment sets a file on its shared volume: a run in a pod or a container of its own
    has a DAGSTER_HOME that goes with it."""
    return Settings.from_env().audit_anchors or Path(instance.root_directory) / ANCHORS_FILE


def anchor(warehouse: Warehouse, anchors: Path, run_id: str | None) -> dict[str, Any]:
    """Anchor the current head in `anchors`; return it as event metadata for the run (empty
    while the log is)."""
    head = warehouse.audit_head()
    if head is None:
        return {}
    write_anchor(anchors, warehouse.location(), head, run_id)
    return {"audit_head_seq": head.seq, "audit_head_hash": head.entry_hash}


def write_anchor(anchors: Path, location: str, head: AuditHead, run_id: str | None) -> None:
    """Append one line; O_APPEND keeps concurrent runs' lines whole."""
    line = json.dumps(
        {
            "seq": head.seq,
            "entry_hash": head.entry_hash,
            "warehouse": location,
            "anchored_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "run_id": run_id,
        },
        sort_keys=True,
    )
    anchors.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(anchors, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, (line + "\n").encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_anchors(anchors: Path, location: str) -> list[Anchor]:
    """The anchors of the warehouse at `location`; a line that is not an anchor is an error."""
    return [item for item in _every_anchor(anchors) if item.warehouse == location]


def _every_anchor(anchors: Path) -> list[Anchor]:
    if not anchors.is_file():
        return []
    found = []
    for number, text in enumerate(anchors.read_text().splitlines(), start=1):
        try:
            fields = json.loads(text)
            found.append(Anchor(**{**fields, "seq": int(fields["seq"])}, line=number))
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError(f"{anchors} line {number} is not an anchor: {error}") from None
    return found


# Verification


@dataclass(frozen=True)
class Verdict:
    """What `verify` found: `problem` names the first entry that does not verify, or is None."""

    entries: int
    head: AuditHead | None
    anchors: int
    problem: str | None = None
    # Warehouse locations the anchors file holds heads of, other than the one verified: with
    # none of its own, the log was likely copied or restored from one of these.
    elsewhere: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(
    rows: Sequence[Mapping[str, Any]], anchors: Sequence[Anchor], from_seq: int = 1
) -> Verdict:
    """Recompute the chain of `rows` (the log from `from_seq - 1` on, any order, and any entry
    numbered below 1 or not at all) and compare it with `anchors`: the first entry, by number,
    that does not verify is named, and why."""
    strays = [row for row in rows if not _numbered(row)]
    entries = sorted(filter(_numbered, rows), key=lambda row: int(row["seq"]))
    before = [row for row in entries if int(row["seq"]) < from_seq]
    checked = [row for row in entries if int(row["seq"]) >= from_seq]
    head = AuditHead(int(checked[-1]["seq"]), checked[-1]["entry_hash"]) if checked else None
    relevant = [item for item in anchors if item.seq >= from_seq]
    verdict = Verdict(len(checked), head, len(relevant))
    problems = [
        *(
            (0, f"an entry numbered {row['seq']}: outside the chain, {_shown(row)}")
            for row in strays
        ),
        *_chain_problems(checked, before[-1] if before else None, from_seq, entries),
        *_anchor_problems(checked, relevant),
    ]
    if not problems:
        return verdict
    return replace(verdict, problem=min(problems, key=lambda problem: problem[0])[1])


def _numbered(row: Mapping[str, Any]) -> bool:
    """Whether an entry has a place in the chain, a whole number from 1: only a forger (who
    may retype the column) writes others."""
    try:
        return int(row["seq"]) >= 1 and int(row["seq"]) == row["seq"]
    except (ValueError, OverflowError, TypeError):
        return False


def _chain_problems(
    checked: Sequence[Mapping[str, Any]],
    previous: Mapping[str, Any] | None,
    from_seq: int,
    everything: Sequence[Mapping[str, Any]],
) -> list[tuple[int, str]]:
    """The first break in the chain, as (entry number, message): at most one, since every entry
    after a break fails to link too."""
    expected = from_seq
    for row in checked:
        seq = int(row["seq"])
        if previous is not None and seq == int(previous["seq"]):
            return [(seq, f"entry {seq}: duplicated, {_shown(previous)} and {_shown(row)}")]
        if seq > expected:
            gap = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
            return [(expected, f"entry {gap}: missing, the log goes on with {seq}")]
        if entry_hash(row) != row["entry_hash"]:
            return [(seq, _altered(row, everything))]
        link = GENESIS_HASH if seq == 1 else previous["entry_hash"] if previous else None
        if link is not None and row["prev_hash"] != link:
            return [
                (
                    seq,
                    f"entry {seq}: does not follow entry {seq - 1}, {_shown(row)}: entry "
                    f"{seq - 1} was replaced",
                )
            ]
        previous, expected = row, seq + 1
    return []


def _altered(row: Mapping[str, Any], everything: Sequence[Mapping[str, Any]]) -> str:
    """Why an entry no longer matches its hash: renumbered (it matches under another entry's
    number: the log was reordered) or edited."""
    seq = int(row["seq"])
    for other in everything:
        number = int(other["seq"])
        if number != seq and entry_hash({**row, "seq": number}) == row["entry_hash"]:
            return f"entry {seq}: reordered, {_shown(row)} was entry {number}"
    return f"entry {seq}: edited, {_shown(row)} no longer matches its hash"


def _anchor_problems(
    checked: Sequence[Mapping[str, Any]], anchors: Sequence[Anchor]
) -> list[tuple[int, str]]:
    by_seq = {int(row["seq"]): row for row in checked}
    head = max(by_seq, default=0)
    problems = []
    for item in anchors:
        seq = item.seq
        by = f"run {item.run_id}" if item.run_id else "a command outside any run"
        where = f"anchored {item.anchored_at} by {by} (anchors file line {item.line})"
        if seq > head:
            problems.append(
                (seq, f"entry {seq}: missing, the head ({head}) is behind its anchor: {where}")
            )
        elif seq in by_seq and by_seq[seq]["entry_hash"] != item.entry_hash:
            shown = _shown(by_seq[seq])
            problems.append(
                (seq, f"entry {seq}: rewritten, {shown} differs from its anchor: {where}")
            )
    return problems


def _shown(row: Mapping[str, Any]) -> str:
    """An entry as a person recognises it: `published flights 2024-03 (run 1a2b3c4d)`."""
    what = " ".join(str(row[name]) for name in ("kind", "dataset", "month") if row.get(name))
    return f"{what} (run {row.get('run_id') or '-'})"


def verify_log(
    warehouse: Warehouse, anchors: Path, from_seq: int = 1, location: str | None = None
) -> Verdict:
    """`verify` over the warehouse's audit log and the anchors file's heads for `location`
    (default: the warehouse's own; another's to verify a copy or a restored backup of it).

    An anchors file that does not parse (itself tampered with) is a problem like any other.
    """
    location = location or warehouse.location()
    rows = warehouse.query(
        f"select * from {META_SCHEMA}.{AUDIT_TABLE} where seq >= ? or seq < 1 or seq is null",
        [from_seq - 1],
    )
    try:
        every = _every_anchor(anchors)
    except ValueError as exc:
        return Verdict(0, None, 0, problem=str(exc))
    verdict = verify(rows, [item for item in every if item.warehouse == location], from_seq)
    others = sorted({item.warehouse for item in every} - {location})
    return replace(verdict, elsewhere=tuple(others))
