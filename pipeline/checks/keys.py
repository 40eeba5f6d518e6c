"""Key uniqueness: a key that repeats within the month, or (optionally) appears in another month."""

from __future__ import annotations

from pipeline.checks.outcome import CheckOutcome
from pipeline.specs import DatasetSpec, UniqueSpec
from pipeline.warehouse.base import RAW_SCHEMA, Warehouse

SAMPLE_KEYS = 10


def check_unique(
    warehouse: Warehouse, spec: DatasetSpec, unique: UniqueSpec, month: str
) -> CheckOutcome:
    """Count duplicated keys in the warehouse and show the most repeated ones."""
    table = f"{RAW_SCHEMA}.{spec.name}"
    key = ", ".join(unique.columns)
    repeated = (
        f"select {key}, count(*) as copies from {table} where _month = ? "
        f"group by {key} having count(*) > 1"
    )
    duplicates = warehouse.query(f"select count(*) as keys from ({repeated}) d", [month])[0]["keys"]
    sample = warehouse.query(f"{repeated} order by copies desc limit {SAMPLE_KEYS}", [month])
    elsewhere = 0
    if unique.across_months:
        elsewhere = warehouse.query(
            f"select count(*) as keys from (select {key} from {table} where _month = ? "
            f"intersect select {key} from {table} where _month <> ?) d",
            [month, month],
        )[0]["keys"]
    found = duplicates + elsewhere
    scope = "in this month" + (" or another" if unique.across_months else "")
    return CheckOutcome(
        passed=found == 0,
        severity=unique.severity,
        summary=(
            f"key ({key}) is unique {scope}"
            if found == 0
            else f"{duplicates} key(s) ({key}) repeat within the month"
            + (f", {elsewhere} also appear in another month" if unique.across_months else "")
        ),
        observed=found,
        threshold=0,
        facts={"repeated_keys": duplicates, "keys_in_other_months": elsewhere},
        samples={"repeated": sample},
    )
