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
    elsewhere, in_other_months = 0, []
    if unique.across_months:
        elsewhere = month.query(
            f"select count(*) as n from (select {key} from {month.rows} "
            f"intersect select {key} from {month.published} where _month <> ?) d",
            [month.month],
        )[0]["n"]
        in_other_months = _in_other_months(month, unique.columns) if elsewhere else []
    found = duplicates + elsewhere
    # Summaries reach check_results, dq_check_history (read by BI tools), mails and reports: a
    # key with a sensitive column is named only in the run's metadata, as the samples are.
    named = not any(month.spec.columns[name].pii for name in unique.columns)
    scope = "in this month" + (" or another" if unique.across_months else "")
    return CheckOutcome(
        passed=found == 0,
        severity=unique.severity,
        summary=(
            f"key ({shown}) is unique {scope}"
            if found == 0
            else f"{duplicates} key(s) ({shown}) repeat within the month"
            + (_most_repeated(sample, unique.columns) if sample and named else "")
            + (f", {elsewhere} also appear in another month" if unique.across_months else "")
            + (_first(in_other_months, unique.columns) if in_other_months and named else "")
        ),
        observed=found,
        threshold=0,
        facts={"repeated_keys": duplicates, "keys_in_other_months": elsewhere},
        samples={"repeated": sample, "in_other_months": in_other_months},
    )


def _in_other_months(month: MonthUnderCheck, columns: list[str]) -> list[dict]:
    """A sample of the month's keys that published months hold too, with those months (keys
    compared as the INTERSECT that counts them does: nulls equal)."""
    published = ", ".join(f"p.{month.column(name)}" for name in columns)
    same = " and ".join(
        f"p.{month.column(name)} is not distinct from m.{month.column(name)}" for name in columns
    )
    return month.query(
        f"select {published}, p._month as other_month from {month.published} p "
        f"join (select distinct {month.columns(columns)} from {month.rows}) m on {same} "
        f"where p._month <> ? group by {published}, p._month "
        f"order by p._month, {published} limit {SAMPLE_KEYS}",
        [month.month],
    )


def _first(keys: list[dict], columns: list[str]) -> str:
    """` (first: EWR 1545 in 2024-01)`: one key found in another month, as the summary names it."""
    return f" (first: {_values(keys[0], columns)} in {keys[0]['other_month']})"


def _most_repeated(sample: list[dict], columns: list[str]) -> str:
    """` (most: EWR 1545, 3 times)`: the key the month repeats most, as the summary names it; the
    summary said only how many keys repeat, and the keys were in the run's metadata alone."""
    return f" (most: {_values(sample[0], columns)}, {sample[0]['copies']} times)"


def _values(row: dict, columns: list[str]) -> str:
    return " ".join(str(row[name.lower()]) for name in columns)
