"""What a check found, independent of how Dagster shows it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# INFO is a passing verdict that could not judge and says why (a history too short for the
# volume check); Dagster has no INFO severity, so it shows as a passed check.
Severity = Literal["ERROR", "WARN", "INFO"]


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
