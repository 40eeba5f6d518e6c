"""Key uniqueness: a key that repeats within the month, or (optionally) appears in another month."""

from __future__ import annotations

from pipeline.checks.outcome import CheckOutcome
from pipeline.checks.scope import MonthUnderCheck
from pipeline.specs import UniqueSpec

SAMPLE_KEYS = 10


def check_unique(month: MonthUnderCheck, unique: UniqueSpec) -> CheckOutcome:
    """Count duplicated keys in the candidate and show the most repeated ones; with
    `across_months`, also keys the published months already hold."""
    key = month.columns(unique.columns)
    shown = ", ".join(unique.columns)
    repeated = (
        f"select {key}, count(*) as copies from {month.rows} group by {key} having count(*) > 1"
    )
    duplicates = month.query(f"select count(*) as n from ({repeated}) d")[0]["n"]
    sample = month.query(f"{repeated} order by copies desc limit {SAMPLE_KEYS}")
    elsewhere = 0
    if unique.across_months:
        elsewhere = month.query(
            f"select count(*) as n from (select {key} from {month.rows} "
            f"intersect select {key} from {month.published} where _month <> ?) d",
            [month.month],
        )[0]["n"]
    found = duplicates + elsewhere
    scope = "in this month" + (" or another" if unique.across_months else "")
    return CheckOutcome(
        passed=found == 0,
        severity=unique.severity,
        summary=(
            f"key ({shown}) is unique {scope}"
            if found == 0
            else f"{duplicates} key(s) ({shown}) repeat within the month"
            + (f", {elsewhere} also appear in another month" if unique.across_months else "")
        ),
        observed=found,
        threshold=0,
        facts={"repeated_keys": duplicates, "keys_in_other_months": elsewhere},
        samples={"repeated": sample},
    )
