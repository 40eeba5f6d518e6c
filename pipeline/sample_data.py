"""Deterministic sample files for the bundled `flights` and `settlements` datasets.

The data has the rhythm real deliveries have (quieter weekends, dips on US public holidays, a spike
at month end) so that reports and volume checks have something to show, and chosen months carry
planted defects so the demo shows rejects being quarantined and a blocking check failing.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path

import holidays
import numpy as np
import polars as pl

from pipeline.checks.completeness import open_days
from pipeline.partitions import month_bounds, month_days, month_range
from pipeline.specs import CompletenessSpec

CARRIERS = np.array(["AA", "B6", "DL", "UA", "WN", "9E", "MQ", "YX", "NK", "AS"])
ORIGINS = np.array(["EWR", "JFK", "LGA"])
DESTINATIONS = np.array(["ATL", "BOS", "ORD", "LAX", "SFO", "MIA", "DFW", "DEN", "SEA", "MCO"])
DISTANCES = np.array([760, 187, 719, 2475, 2586, 1089, 1372, 1620, 2422, 944], dtype=float)
DEFECT_KINDS = (
    "wrong column count",
    "unparseable date",
    "non-numeric number",
    "null in a required column",
    "date outside the month",
    "stray quote",
    "pattern",
    "allowed",
    "min",
)
# Months of the demo year that carry defects: a few (under the allowed ratio) and many (over it).
PLANTED_DEFECT_RATIOS = {"2024-03": 0.0004, "2024-08": 0.02}
# A delivery that lost a day (the completeness check fails) and one with early departures (a
# WARNING rule fires).
PLANTED_MISSING_DAYS = {"2024-11": dt.date(2024, 11, 5)}
PLANTED_EARLY_DEPARTURES = {"2024-05": 12}
DEMO_YEAR = 2024
# The settlements example: three months of US business days. Its first two months have too
# little history for the volume check (INFO); batches on a public holiday (closed-days WARN), a
# day with three times the usual batches (volume WARN), a column the spec does not know
# (schema-drift WARN).
SETTLEMENT_MONTHS = ("2024-01", "2024-03")
BUSINESS_DAYS = CompletenessSpec(calendar="business_days", country="US")
BUSINESS_DAY_LOAD = (1.2, 1.0, 1.0, 1.0, 1.3)  # Monday … Friday
PLANTED_HOLIDAY_SETTLEMENTS = {"2024-02": [dt.date(2024, 2, 19)]}  # Washington's Birthday
PLANTED_SETTLEMENT_SPIKES = {"2024-03": [dt.date(2024, 3, 15)]}
PLANTED_EXTRA_COLUMNS = {"2024-03": "channel"}


def day_volumes(month: str, rows_per_day: int) -> list[tuple[dt.date, int]]:
    """Rows per day: weekends at 70%, US public holidays at 40%, the last two days at 130%."""
    first, last = month_bounds(month)
    closed = holidays.country_holidays("US", years=first.year)
    volumes = []
    for day in month_days(month):
        factor = 0.7 if day.weekday() >= 5 else 1.0
        if day in closed:
            factor = 0.4
        if (last - day).days < 2:
            factor *= 1.3
        volumes.append((day, round(rows_per_day * factor)))
    return volumes


def month_frame(
    month: str, rows_per_day: int, seed: int, defect_ratio: float = 0.0
) -> pl.DataFrame:
    """One month of rows as text columns, in file order, with planted defects."""
    rng = np.random.default_rng(seed)
    days = day_volumes(month, rows_per_day)
    dates = np.repeat(np.array([d for d, _ in days], dtype="datetime64[D]"), [n for _, n in days])
    n = len(dates)
    route = rng.integers(0, len(DESTINATIONS), n)
    minutes = rng.integers(5 * 60, 23 * 60, n)
    stamps = dates.astype("datetime64[m]") + minutes.astype("timedelta64[m]")
    delay = np.round(rng.gamma(1.2, 12.0, n) - 8).astype(int)
    frame = pl.DataFrame(
        {
            "flight_date": dates.astype(str),
            "carrier": CARRIERS[rng.integers(0, len(CARRIERS), n)],
            "flight": rng.integers(1, 6000, n).astype(str),
            "origin": ORIGINS[rng.integers(0, len(ORIGINS), n)],
            "dest": DESTINATIONS[route],
            "distance": DISTANCES[route].astype(str),
            "dep_delay": np.where(rng.random(n) < 0.02, "NA", delay.astype(str)),
            "fare": np.char.mod("%.2f", rng.gamma(4.0, 60.0, n)),
            "cancelled": np.where(rng.random(n) < 0.015, "true", "false"),
            "time_hour": np.char.add(np.datetime_as_string(stamps, unit="s"), "Z"),
        }
    )
    return _plant_defects(frame, month, rng, defect_ratio)


def _plant_defects(
    frame: pl.DataFrame, month: str, rng: np.random.Generator, ratio: float
) -> pl.DataFrame:
    count = round(frame.height * ratio)
    if count == 0:
        return frame
    rows = np.sort(rng.choice(frame.height, size=count, replace=False))
    kinds = np.arange(count) % len(DEFECT_KINDS)
    _, last = month_bounds(month)
    outside = (last + dt.timedelta(days=1)).isoformat()
    edits = {
        "wrong column count": ("time_hour", "2024-01-01T00:00:00Z\tEXTRA"),
        "unparseable date": ("flight_date", "2024-13-45"),
        "non-numeric number": ("flight", "12x"),
        "null in a required column": ("carrier", ""),
        "date outside the month": ("flight_date", outside),
        "stray quote": ("dest", '"JF'),
        "pattern": ("carrier", "a1x"),
        "allowed": ("origin", "XXX"),
        "min": ("distance", "-5.0"),
    }
    columns = {name: frame[name].to_numpy().astype(object) for name in frame.columns}
    for row, kind in zip(rows, kinds, strict=True):
        column, value = edits[DEFECT_KINDS[kind]]
        columns[column][row] = value
    return pl.DataFrame({name: values.astype(str) for name, values in columns.items()})


def settlements_frame(
    month: str, batches_per_day: int, seed: int, day_factors: dict[dt.date, float] | None = None
) -> pl.DataFrame:
    """One month of settlement batches as text columns: US business days only, busier Mondays
    and Fridays, counts that vary from day to day as real ones do; `day_factors` scales a day's
    volume, or adds a day the bank is closed on."""
    rng = np.random.default_rng(seed)
    factors = day_factors or {}
    days = sorted(set(open_days(month, BUSINESS_DAYS)) | set(factors))
    counts = rng.poisson(
        [batches_per_day * BUSINESS_DAY_LOAD[day.weekday()] * factors.get(day, 1) for day in days]
    )
    dates = np.repeat(np.array(days, dtype="datetime64[D]"), counts)
    n = len(dates)
    refund = np.where(rng.random(n) < 0.04, -1, 1)
    amounts = np.round(rng.lognormal(6.5, 1.1, n), 2) * refund
    seconds = rng.integers(17 * 3600, 23 * 3600, n).astype("timedelta64[s]")
    stamps = dates.astype("datetime64[s]") + seconds
    yymm = month[2:4] + month[5:7]
    return pl.DataFrame(
        {
            "settlement_date": dates.astype(str),
            "batch_id": [f"B{yymm}{index:05d}" for index in range(n)],
            "merchant_id": np.char.add("M", rng.integers(10000, 99999, n).astype(str)),
            "amount": np.char.mod("%.2f", amounts),
            "fee": np.char.mod("%.2f", np.round(np.abs(amounts) * 0.018 + 0.1, 2)),
            "settled_at": np.char.add(np.datetime_as_string(stamps, unit="s"), "Z"),
        }
    )


def write_tsv(frame: pl.DataFrame, path: Path) -> None:
    """Write text columns as TSV without any quoting, as upstream systems deliver them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        frame.write_csv(handle, separator="\t", quote_style="never")


@dataclass(frozen=True)
class SampleFile:
    path: Path
    kept: bool  # a different file was there and was left alone


def write_sample(frame: pl.DataFrame, path: Path, overwrite: bool = False) -> SampleFile:
    """Write a sample file where there is none; leave the file alone if it is there already.

    Rewriting an identical file would give it a new modification time, and with it a new
    fingerprint: `make demo` run twice would reload every month instead of skipping them. A file
    with other bytes is kept unless `overwrite`: it may be a corrected delivery a user put there.
    """
    buffer = io.BytesIO()
    frame.write_csv(buffer, separator="\t", quote_style="never")
    content = buffer.getvalue()
    if path.is_file():
        if path.stat().st_size == len(content) and path.read_bytes() == content:
            return SampleFile(path, kept=False)
        if not overwrite:
            return SampleFile(path, kept=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return SampleFile(path, kept=False)


def write_demo_year(
    landing_dir: Path, year: int = DEMO_YEAR, rows_per_day: int = 600, overwrite: bool = False
) -> list[SampleFile]:
    """The example dataset's twelve monthly files for `year`, defects planted as documented."""
    files = []
    for index, month in enumerate(month_range(f"{year}-01", f"{year}-12")):
        frame = month_frame(
            month, rows_per_day, seed=index, defect_ratio=PLANTED_DEFECT_RATIOS.get(month, 0.0)
        )
        if month in PLANTED_MISSING_DAYS:
            frame = frame.filter(pl.col("flight_date") != str(PLANTED_MISSING_DAYS[month]))
        if month in PLANTED_EARLY_DEPARTURES:
            frame = frame.with_columns(
                pl.when(pl.int_range(pl.len()) < PLANTED_EARLY_DEPARTURES[month])
                .then(pl.lit("-75"))
                .otherwise(pl.col("dep_delay"))
                .alias("dep_delay")
            )
        files.append(write_sample(frame, landing_dir / f"flights_{month}.tsv", overwrite))
    return files


def write_settlements_demo(
    landing_dir: Path, batches_per_day: int = 150, overwrite: bool = False
) -> list[SampleFile]:
    """The settlements example's monthly files, defects planted as documented."""
    files = []
    for index, month in enumerate(month_range(*SETTLEMENT_MONTHS)):
        factors = {day: 3.0 for day in PLANTED_SETTLEMENT_SPIKES.get(month, [])}
        factors |= {day: 1.0 for day in PLANTED_HOLIDAY_SETTLEMENTS.get(month, [])}
        frame = settlements_frame(month, batches_per_day, seed=100 + index, day_factors=factors)
        if month in PLANTED_EXTRA_COLUMNS:
            frame = frame.with_columns(pl.lit("online").alias(PLANTED_EXTRA_COLUMNS[month]))
        files.append(write_sample(frame, landing_dir / f"settlements_{month}.tsv", overwrite))
    return files


def planted_problems() -> list[str]:
    """What the demo files carry on purpose and which check notices it, one line each."""
    return [
        *(
            f"flights {month}: about {ratio:.2%} of lines carry defects (rejected; the schema "
            "check fails above 0.1%)"
            for month, ratio in PLANTED_DEFECT_RATIOS.items()
        ),
        *(
            f"flights {month}: {count} departures over an hour early (a WARNING rule)"
            for month, count in PLANTED_EARLY_DEPARTURES.items()
        ),
        *(
            f"flights {month}: no rows for {day} (the completeness check fails)"
            for month, day in PLANTED_MISSING_DAYS.items()
        ),
        *(
            f"settlements {month}: batches on the public holiday {days[0]} (closed_days WARN)"
            for month, days in PLANTED_HOLIDAY_SETTLEMENTS.items()
        ),
        *(
            f"settlements {month}: three times the usual batches on {days[0]} (volume WARN)"
            for month, days in PLANTED_SETTLEMENT_SPIKES.items()
        ),
        *(
            f"settlements {month}: a column '{column}' the spec does not know (schema_drift WARN)"
            for month, column in PLANTED_EXTRA_COLUMNS.items()
        ),
    ]
