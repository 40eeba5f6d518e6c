"""Dataset specs: the YAML/JSON contract a user writes to add a dataset.

A spec is checked completely when the code location loads, so a typo shows up as one message that
names the file and the field, not as a failure deep inside a run.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ColumnType = Literal["string", "int", "float", "decimal", "bool", "date", "timestamp"]
# How a column of personal data is kept: see the README, "Sensitive columns".
Pii = Literal["hash", "redact", "mask"]
SPEC_SUFFIXES = (".yaml", ".yml", ".json")
MONTH_PLACEHOLDER = "{month}"
_IDENTIFIER = r"^[A-Za-z][A-Za-z0-9_]*$"
# What Dagster accepts as an asset owner and tag (dagster/_core/definitions/utils.py,
# dagster/_utils/tags.py), checked here so a mistake names the spec file rather than failing the
# code location inside Dagster.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,7}")
_TAG_KEY = re.compile(r"([A-Za-z0-9_.-]{1,63}/)?[A-Za-z0-9_.-]{1,63}")
_TAG_VALUE = re.compile(r"[A-Za-z0-9_.-]{0,63}")


class SpecError(ValueError):
    """A dataset spec that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _polars_regex_error(pattern: str) -> str | None:
    """What polars says of a regex it cannot compile (look-around, backreferences), or None.

    Python's `re` accepted them, and the load then failed on every block and was retried.
    """
    try:
        pl.select(pl.lit("").str.contains(pattern))
    except pl.exceptions.ComputeError as exc:
        said = [line for line in str(exc).splitlines() if line.startswith("error: ")]
        return said[0].removeprefix("error: ") if said else str(exc).splitlines()[0]
    return None


class ColumnSpec(_Strict):
    """One column of the file: its type and the rules every value must follow."""

    type: ColumnType
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    allowed: list[str | int | float | bool] | None = None
    format: str | None = Field(default=None, description="strptime format for date/timestamp")
    precision: Annotated[int, Field(ge=1, le=38)] = 18
    scale: Annotated[int, Field(ge=0, le=37)] = 2
    allow_non_finite: bool = Field(
        default=False, description="float columns: load nan, inf and -inf instead of rejecting them"
    )
    pii: Pii | None = Field(
        default=None,
        description="hash (keyed HMAC-SHA256), redact (null) or mask (Snowflake masking policy)",
    )
    optional: bool = Field(
        default=False,
        description="a file may lack the column (files from before it was added): null there",
    )

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern {value!r} does not compile: {exc}") from exc
            unsupported = _polars_regex_error(value)
            if unsupported:
                raise ValueError(
                    f"pattern {value!r} cannot be matched by the loader, whose regex engine "
                    f"(Rust's, in polars) lacks some of Python's syntax: {unsupported}"
                )
        return value

    @model_validator(mode="after")
    def _rules_fit_type(self) -> ColumnSpec:
        numeric = self.type in ("int", "float", "decimal")
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"min/max apply to int, float and decimal columns, not {self.type}")
        if self.pattern is not None and self.type != "string":
            raise ValueError(f"pattern applies to string columns, not {self.type}")
        if self.format is not None and self.type not in ("date", "timestamp"):
            raise ValueError(f"format applies to date and timestamp columns, not {self.type}")
        if self.allow_non_finite and self.type != "float":
            raise ValueError(f"allow_non_finite applies to float columns, not {self.type}")
        if self.scale > self.precision:
            raise ValueError(f"scale {self.scale} is larger than precision {self.precision}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is larger than max {self.max:g}: no value fits")
        if self.allowed is not None:
            self._allowed_fit_type(self.allowed)
        if self.pii in ("hash", "mask") and self.type != "string":
            raise ValueError(f"pii: {self.pii} applies to string columns, not {self.type}")
        if self.optional and not self.nullable:
            raise ValueError(
                "optional and nullable: false contradict: a file without the column loads it "
                "as null"
            )
        return self

    def _allowed_fit_type(self, allowed: list[str | int | float | bool]) -> None:
        """Every allowed value is of the column's type: a string column's `[01, 02]` reads as
        the numbers 1 and 2, which no text equals (the load failed on it after its retries)."""
        fits = {
            "string": lambda value: isinstance(value, str),
            "int": lambda value: isinstance(value, int) and not isinstance(value, bool),
            "float": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
            "bool": lambda value: isinstance(value, bool),
        }
        fits["decimal"] = fits["float"]
        if self.type not in fits:
            raise ValueError(f"allowed applies to {', '.join(fits)} columns, not {self.type}")
        odd = [value for value in allowed if not fits[self.type](value)]
        if odd:
            hint = ": quote them in the spec ('01', not 01)" if self.type == "string" else ""
            raise ValueError(f"allowed values {odd} are not of the column's type {self.type}{hint}")


class CompletenessSpec(_Strict):
    """Which days of a month must have rows.

    `every_day` (default); `weekdays`: the listed days of the week (0 = Monday … 6 = Sunday;
    default Monday to Friday); `business_days`: those days minus the public holidays of
    `country` (and `subdiv`) from the `holidays` package (a shop open Monday to Saturday:
    `weekdays: [0, 1, 2, 3, 4, 5]`). `extra_closed_dates` / `extra_open_dates` adjust any
    calendar.
    """

    calendar: Literal["every_day", "business_days", "weekdays"] = "every_day"
    country: str = "US"
    subdiv: str | None = None
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] = [0, 1, 2, 3, 4]
    extra_closed_dates: list[dt.date] = []
    extra_open_dates: list[dt.date] = []
    severity: Literal["ERROR", "WARN"] = "ERROR"

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        import holidays

        if value not in holidays.list_supported_countries():
            raise ValueError(f"country {value!r} is not known to the holidays package")
        return value

    @model_validator(mode="after")
    def _known_subdivision(self) -> CompletenessSpec:
        """Asked of the package itself, which also takes names (`New York`) for codes (`NY`)."""
        import holidays

        try:
            holidays.country_holidays(self.country, subdiv=self.subdiv)
        except NotImplementedError:
            known = holidays.list_supported_countries()[self.country]
            raise ValueError(
                f"subdiv {self.subdiv!r} is not a subdivision of {self.country} in the holidays "
                f"package; known: {', '.join(known) or 'none'}"
            ) from None
        return self


class UniqueSpec(_Strict):
    """A key that must not repeat within a month (and, with `across_months`, across months)."""

    columns: Annotated[list[str], Field(min_length=1)]
    across_months: bool = False
    severity: Literal["ERROR", "WARN"] = "ERROR"


class VolumeSpec(_Strict):
    """Volume anomalies: each day's row count against the same weekday in the trailing months.

    A day is flagged when its robust z-score, 0.6745 * (count - median) / MAD over that weekday's
    history, is beyond `max_z`; the MAD is at least `min_mad_ratio` of the median, so a constant
    history does not make every small wobble an anomaly. The month's total is compared with the
    total the weekday medians predict for its days. With fewer than `min_history_months` earlier
    months loaded within `lookback_months`, the check passes and says so instead of guessing.
    """

    lookback_months: Annotated[int, Field(ge=1, le=36)] = 6
    min_history_months: Annotated[int, Field(ge=1, le=36)] = 2
    min_days_per_weekday: Annotated[int, Field(ge=1)] = 4
    max_z: Annotated[float, Field(gt=0)] = 3.5
    min_mad_ratio: Annotated[float, Field(gt=0, le=1)] = 0.1
    max_total_change: Annotated[float, Field(gt=0)] = 0.25
    severity: Literal["ERROR", "WARN"] = "WARN"

    @model_validator(mode="after")
    def _history_fits_lookback(self) -> VolumeSpec:
        if self.min_history_months > self.lookback_months:
            raise ValueError(
                f"min_history_months ({self.min_history_months}) is more than lookback_months "
                f"({self.lookback_months})"
            )
        return self


class FreshnessSpec(_Strict):
    """A month's file must be loaded within `days_after_month_end` days of the month's end."""

    # A cron day of month (deadline = day N + 1 at 00:00 UTC) must exist in every month.
    days_after_month_end: Annotated[int, Field(ge=0, le=27)] = 5
    severity: Literal["ERROR", "WARN"] = "WARN"


class SchemaDriftSpec(_Strict):
    """How an extra column in a file's header is reported (a missing one always fails the load)."""

    severity: Literal["ERROR", "WARN"] = "WARN"


class ChecksSpec(_Strict):
    """Thresholds of the checks that run on every month; `volume: null` or `freshness: null`
    turns those off."""

    max_reject_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0
    completeness: CompletenessSpec = CompletenessSpec()
    unique: UniqueSpec | None = None
    volume: VolumeSpec | None = VolumeSpec()
    freshness: FreshnessSpec | None = FreshnessSpec()
    schema_drift: SchemaDriftSpec = SchemaDriftSpec()


class FiscalSpec(_Strict):
    """The dataset's fiscal calendar (see `pipeline/fiscal.py` for the conventions).

    Months: `year_start_month` alone. Weeks: a `week_pattern`, with years starting on the
    `week_start` weekday (0 = Monday … 6 = Sunday) nearest the 1st of `year_start_month`.
    """

    year_start_month: Annotated[int, Field(ge=1, le=12)] = 1
    week_pattern: Literal["4-4-5", "4-5-4", "5-4-4"] | None = None
    week_start: Annotated[int, Field(ge=0, le=6)] = 6

    @model_validator(mode="after")
    def _week_start_needs_pattern(self) -> FiscalSpec:
        if "week_start" in self.model_fields_set and self.week_pattern is None:
            raise ValueError("week_start applies only with a week_pattern (4-4-5, 4-5-4, 5-4-4)")
        return self


class RuleSpec(_Strict):
    """A custom SQL rule: rows matching `where` are findings.

    CRITICAL is a blocking ERROR check, WARNING a WARN check, INFO a passing check that records
    the count. The check fails when more than `max_violations` rows match.
    """

    name: Annotated[str, Field(min_length=1, max_length=80)]
    where: Annotated[str, Field(min_length=1)]
    severity: Literal["CRITICAL", "WARNING", "INFO"] = "WARNING"
    max_violations: Annotated[int, Field(ge=0)] = 0

    @property
    def check_name(self) -> str:
        """The asset check's name: the rule's name in lower case, words joined by _."""
        return "rule_" + re.sub(r"[^a-z0-9]+", "_", self.name.lower()).strip("_")


class AlertsSpec(_Strict):
    """Who hears about a month's findings besides PIPELINE_ALERT_TO, and which verdicts they hear
    about: a failed load and a late month always alert; failed checks of the levels in `on`."""

    email: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = []
    on: Annotated[list[Literal["ERROR", "WARN"]], Field(min_length=1)] = ["ERROR"]


class DatasetSpec(_Strict):
    """A dataset: where its monthly files are and what a valid row looks like."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=63)]
    file_pattern: str
    start_month: Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]
    date_column: str
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = "\t"
    null_values: list[str] = [""]
    quote: Annotated[str, Field(min_length=1, max_length=1)] | None = None
    description: str | None = None
    owners: list[str] = Field(default=[], description="email addresses or team:<name>")
    tags: dict[str, str] = {}
    ready_marker: str | None = Field(
        default=None,
        description="a suffix such as '.done': a file is loaded once FILE + suffix exists",
    )
    columns: Annotated[dict[str, ColumnSpec], Field(min_length=1)]
    checks: ChecksSpec = ChecksSpec()
    rules: list[RuleSpec] = []
    fiscal: FiscalSpec | None = None
    alerts: AlertsSpec = AlertsSpec()

    @field_validator("file_pattern")
    @classmethod
    def _pattern_has_month(cls, value: str) -> str:
        if value.count(MONTH_PLACEHOLDER) != 1 or "/" in value:
            raise ValueError(
                f"file_pattern must be a file name with exactly one {MONTH_PLACEHOLDER}, "
                f"e.g. 'flights_{{month}}.tsv'; got {value!r}"
            )
        return value

    @field_validator("owners")
    @classmethod
    def _owners_are_people_or_teams(cls, owners: list[str]) -> list[str]:
        for owner in owners:
            if not (_EMAIL.fullmatch(owner) or (owner.startswith("team:") and len(owner) > 5)):
                raise ValueError(f"owner {owner!r} must be an email address or team:<name>")
        return owners

    @field_validator("tags")
    @classmethod
    def _tags_dagster_accepts(cls, tags: dict[str, str]) -> dict[str, str]:
        for key, value in tags.items():
            if not _TAG_KEY.fullmatch(key) or key.startswith("dagster/"):
                raise ValueError(
                    f"tag {key!r}: keys are letters, digits, _ . - (up to 63), optionally with "
                    "one prefix/ that is not dagster/"
                )
            if not _TAG_VALUE.fullmatch(value):
                raise ValueError(
                    f"tag {key}: value {value!r} may hold only letters, digits, _ . - (up to 63)"
                )
        return tags

    @field_validator("columns")
    @classmethod
    def _column_names(cls, columns: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        seen: dict[str, str] = {}
        for name in columns:
            if not re.match(_IDENTIFIER, name):
                raise ValueError(
                    f"column name {name!r} must start with a letter and hold only letters, "
                    "digits and _ (names starting with _ are reserved for load metadata)"
                )
            # Warehouses fold case (Snowflake upper-cases), so `Carrier` and `carrier` collide.
            if name.lower() in seen:
                raise ValueError(f"duplicate column {name!r} (same as {seen[name.lower()]!r})")
            seen[name.lower()] = name
        return columns

    @field_validator("rules")
    @classmethod
    def _rule_names_unique(cls, rules: list[RuleSpec]) -> list[RuleSpec]:
        names = [rule.check_name for rule in rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"two rules share the check name {duplicates[0]!r}")
        return rules

    @model_validator(mode="after")
    def _date_column_is_a_required_date(self) -> DatasetSpec:
        column = self.columns.get(self.date_column)
        if column is None:
            raise ValueError(f"date_column {self.date_column!r} is not one of the columns")
        if column.type != "date":
            raise ValueError(f"date_column {self.date_column!r} must have type date")
        if column.optional:
            raise ValueError(f"date_column {self.date_column!r} cannot be optional: rows need it")
        unknown = [
            c
            for c in (self.checks.unique.columns if self.checks.unique else [])
            if c not in self.columns
        ]
        if unknown:
            raise ValueError(f"checks.unique names unknown column(s): {', '.join(unknown)}")
        if self.delimiter in ("\n", "\r") or self.delimiter == self.quote:
            raise ValueError("delimiter must differ from the quote and line-ending characters")
        if column.pii is not None:
            raise ValueError(f"date_column {self.date_column!r} cannot be pii: the checks need it")
        redacted = self.checks.unique and [
            c for c in self.checks.unique.columns if self.columns[c].pii == "redact"
        ]
        if redacted:
            raise ValueError(
                f"checks.unique names redacted column(s) {', '.join(redacted)}: once loaded their "
                "values are all null; pii: hash keeps them comparable"
            )
        optional = self.checks.unique and [
            c for c in self.checks.unique.columns if self.columns[c].optional
        ]
        if optional:
            raise ValueError(
                f"checks.unique names optional column(s) {', '.join(optional)}: in a month whose "
                "file lacks them they are all null, one key repeated on every line"
            )
        return self

    def pii_columns(self, *kinds: str) -> list[str]:
        """The columns marked with one of the `pii` kinds, in spec order."""
        return [name for name, column in self.columns.items() if column.pii in kinds]

    def sensitive_columns(self) -> str:
        """`name: kind, …` for the `pii` columns, or `none`: recorded with each published month,
        so a month loaded before a column was marked is loaded again from its file."""
        marked = [f"{name}: {column.pii}" for name, column in self.columns.items() if column.pii]
        return ", ".join(marked) or "none"

    def file_name(self, month: str) -> str:
        """The landing file name for a month (`YYYY-MM`)."""
        return self.file_pattern.replace(MONTH_PLACEHOLDER, month)

    def month_of(self, file_name: str) -> str | None:
        """The month a landing file belongs to, or None if the name does not fit the pattern."""
        prefix, suffix = self.file_pattern.split(MONTH_PLACEHOLDER)
        match = re.fullmatch(re.escape(prefix) + r"(\d{4}-\d{2})" + re.escape(suffix), file_name)
        if match is None:
            return None
        try:
            dt.date.fromisoformat(match.group(1) + "-01")
        except ValueError:
            return None
        return match.group(1)


class _SpecLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a duplicate column must be an error.

    And only `true` and `false` are booleans, as in YAML 1.2: PyYAML follows YAML 1.1, where
    `on`, `off`, `yes`, `no` are too, so the documented `alerts: {on: [ERROR, WARN]}` had the key
    True and `country: NO` (Norway) was False. A boolean field still takes `no` or `yes` (pydantic
    reads those strings as booleans).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in keys:
                raise SpecError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            keys.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        """A date YAML reads unquoted (`2024-13-02`) that is no date: PyYAML's ValueError named
        neither the line nor the value."""
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise SpecError(
                f"line {node.start_mark.line + 1}: {node.value} is not a date ({exc})"
            ) from None


BOOL_TAG = "tag:yaml.org,2002:bool"
_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_SpecLoader.add_constructor("tag:yaml.org,2002:timestamp", _SpecLoader.construct_yaml_timestamp)


def _read_document(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            return json.loads(text, object_pairs_hook=_reject_duplicate_json_keys)
        return yaml.load(text, Loader=_SpecLoader)
    except (yaml.YAMLError, json.JSONDecodeError, SpecError) as exc:
        raise SpecError(f"{path}: cannot be read: {exc}") from exc


def _reject_duplicate_json_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise SpecError(f"duplicate key {duplicates[0]!r}")
    return dict(pairs)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"field {field}: {message}")
    return "; ".join(lines)


def load_spec(path: Path) -> DatasetSpec:
    """Read and check one spec file."""
    document = _read_document(path)
    if not isinstance(document, dict):
        raise SpecError(f"{path}: a dataset spec must be a mapping of fields, got {document!r}")
    try:
        return DatasetSpec.model_validate(document)
    except ValidationError as exc:
        raise SpecError(f"{path}: {_describe(exc)}") from None


def load_specs(directory: Path) -> dict[str, DatasetSpec]:
    """Every spec in a folder, by dataset name; two files naming one dataset is an error."""
    if not directory.is_dir():
        raise SpecError(f"datasets folder {directory} does not exist (PIPELINE_DATASETS_DIR)")
    specs: dict[str, DatasetSpec] = {}
    origin: dict[str, Path] = {}
    for path in sorted(p for p in directory.iterdir() if p.suffix in SPEC_SUFFIXES):
        spec = load_spec(path)
        if spec.name in specs:
            raise SpecError(
                f"{path}: field name: dataset {spec.name!r} is already defined in "
                f"{origin[spec.name]}"
            )
        specs[spec.name] = spec
        origin[spec.name] = path
    return specs
