"""What a check found, independent of how Dagster shows it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["ERROR", "WARN"]


@dataclass(frozen=True)
class CheckOutcome:
    """The verdict of one check on one dataset month.

    `facts` are scalar figures (counts, ratios); `samples` are small tables of example rows, each a
    list of dicts, that a reader needs to see what is wrong.
    """

    passed: bool
    severity: Severity
    summary: str
    observed: float | None = None  # the figure the verdict is about, kept in check_results
    threshold: float | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
