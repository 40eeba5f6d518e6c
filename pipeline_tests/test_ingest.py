"""Streaming ingest: every line is loaded or rejected with its number and reason, never lost."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.ingest.files import fingerprint, open_delivered
from pipeline.ingest.header import LoadError
from pipeline.ingest.lines import LineTally
from pipeline.ingest.stream import StagedLoad, ingest_file
from pipeline.sample_data import month_frame, write_tsv
from pipeline.settings import Settings
from pipeline.specs import DatasetSpec
from pipeline_tests.support import materialize_load, scalar

SPEC = {
    "name": "flights",
    "file_pattern": "flights_{month}.tsv",
    "start_month": "2024-01",
    "date_column": "flight_date",
    "null_values": ["", "NA"],
    "columns": {
        "flight_date": {"type": "date", "nullable": False},
        "carrier": {"type": "string", "nullable": False, "pattern": "^[A-Z0-9]{2}$"},
        "flight": {"type": "int", "nullable": False, "min": 1},
        "origin": {"type": "string", "nullable": False, "allowed": ["EWR", "JFK", "LGA"]},
        "distance": {"type": "float", "min": 0},
        "time_hour": {"type": "timestamp"},
        "note": {"type": "string"},
    },
    "checks": {"max_reject_ratio": 0.001},
}
HEADER = "flight_date\tcarrier\tflight\torigin\tdistance\ttime_hour\tnote"
# line number -> (line, the rule it breaks or None)
LINES = {
    2: ("2024-01-01\tAA\t11\tEWR\t1400.5\t2024-01-01T05:00:00Z\tok", None),
    3: ("2024-01-01\tAA\t12\tEWR\t1400.5\t2024-01-01T05:00:00Z\tok\textra", "line has 8 fields"),
    4: ("2024-01-32\tAA\t13\tEWR\t1400.5\t2024-01-01T05:00:00Z\tok", "is not a valid date"),
    5: ("2024-01-02\tAA\t1x4\tJFK\t1400.5\t2024-01-02T05:00:00Z\tok", "is not a valid int"),
    6: ("2024-01-02\t\t15\tJFK\t1400.5\t2024-01-02T05:00:00Z\tok", "is required but has no value"),
    7: ("2024-02-01\tAA\t16\tJFK\t1400.5\t2024-02-01T05:00:00Z\tok", "must fall inside 2024-01"),
    8: ('2024-01-03\t"A\t17\tLGA\t1400.5\t2024-01-03T05:00:00Z\tok', "must match pattern"),
    9: ("2024-01-03\tB6\t18\tLGA\t187\t2024-01-03T05:00:00+02:00\tafter the quote", None),
    10: ("2024-01-03\tabc\t19\tLGA\t187\t2024-01-03T05:00:00Z\tok", "must match pattern"),
    11: ("2024-01-04\tDL\t20\tXXX\t187\t2024-01-04T05:00:00Z\tok", "must be one of EWR, JFK, LGA"),
    12: ("2024-01-04\tDL\t0\tEWR\t187\t2024-01-04T05:00:00Z\tok", "must be >= 1"),
    13: ("2024-01-05\tDL\t21\tEWR\tNA\t\tnulls allowed", None),
    14: ("2024-01-05\tDL\t22\tEWR", "line has 4 fields"),
    15: ('2024-01-06\tUA\t23\tJFK\t-1\t2024-01-06T05:00:00\the said "hi', "must be >= 0"),
    16: ('2024-01-06\tUA\t24\tJFK\t0\t2024-01-06 05:00:00\the said "hi', None),
}
GOOD = [number for number, (_, rule) in LINES.items() if rule is None]


@pytest.fixture
def spec() -> DatasetSpec:
    return DatasetSpec.model_validate(SPEC)


def write(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "landing" / "flights_2024-01.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def text(lines: list[str], newline: str = "\n", final: str = "\n") -> bytes:
    return (newline.join(lines) + final).encode()


def ingest(tmp_path: Path, spec: DatasetSpec, content: bytes, **options) -> StagedLoad:
    return ingest_file(spec, write(tmp_path, content), "2024-01", tmp_path / "staging", **options)


def frames(staged: StagedLoad) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = pl.concat([pl.read_parquet(p) for p in staged.row_parts]).sort("_line_number")
    rejects = pl.concat([pl.read_parquet(p) for p in staged.reject_parts]).sort("_line_number")
    return rows, rejects


def test_planted_defects_are_rejected_with_line_and_reason(
    tmp_path: Path, spec: DatasetSpec
) -> None:
    staged = ingest(tmp_path, spec, text([HEADER] + [line for line, _ in LINES.values()]))
    rows, rejects = frames(staged)

    assert staged.rows_read == len(LINES) == staged.rows_loaded + staged.rows_rejected
    assert rows["_line_number"].to_list() == GOOD
    assert rejects["_line_number"].to_list() == [n for n in LINES if n not in GOOD]
    for reject in rejects.iter_rows(named=True):
        line, rule = LINES[reject["_line_number"]]
        assert rule in reject["_reason"], reject
        assert reject["_raw_line"] == line
    by_line = {r["_line_number"]: r for r in rejects.iter_rows(named=True)}
    assert by_line[5]["_column"] == "flight" and by_line[5]["_value"] == "1x4"
    assert by_line[11]["_reason"] == "origin: must be one of EWR, JFK, LGA (value 'XXX')"


def test_a_block_whose_only_rejects_are_dates_that_do_not_parse(
    tmp_path: Path, flights: DatasetSpec
) -> None:
    # polars 2.1 panicked (`assertion failed: i < self.len()`) building their reasons: the
    # failed values came chunked unlike the other columns, and the whole load failed.
    path = tmp_path / "flights_2024-10.tsv"
    write_tsv(month_frame("2024-10", rows_per_day=600, seed=1).head(599), path)
    bad = "2024-13-45\tB6\t12\tJFK\tSFO\t2586.0\t1\t218.28\tfalse\t2024-10-15T12:20:00Z\n"
    with path.open("a") as handle:
        handle.write(bad * 2)
    rows, rejects = frames(ingest_file(flights, path, "2024-10", tmp_path / "staging"))
    assert rows.height == 599
    assert rejects["_line_number"].to_list() == [601, 602]
    assert (
        rejects["_reason"].to_list()
        == ["flight_date: is not a valid date in the format %Y-%m-%d (value '2024-13-45')"] * 2
    )


def test_a_panic_inside_polars_fails_the_load_as_an_error_naming_the_block(
    tmp_path: Path, spec: DatasetSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A panic is a BaseException: the load's handlers, which record the failed attempt and
    # alert, never saw it (the panic above ended a load with no ledger row and no mail).
    def panic(*_: object) -> None:
        raise pl.exceptions.PanicException("assertion failed: i < self.len()")

    monkeypatch.setattr("pipeline.ingest.batches.build_rejects", panic)
    with pytest.raises(LoadError, match=r"flights_2024-01.tsv: polars failed on the block "):
        ingest(tmp_path, spec, text([HEADER, LINES[2][0]]))


def test_a_file_that_cannot_be_read_is_a_load_error_naming_it(tmp_path: Path) -> None:
    # A PermissionError's traceback stopped the landing sensor, `pipeline load` and doctor.
    folder = tmp_path / "flights_2024-01.tsv"  # a folder cannot be read, even by root
    folder.mkdir()
    with pytest.raises(LoadError, match=f"{folder}: the file cannot be read"):
        fingerprint(folder)
    with (
        pytest.raises(LoadError, match=f"{folder}: the file cannot be read"),
        open_delivered(folder),
    ):
        pass


def test_a_run_of_a_month_whose_file_cannot_be_read_fails_once_and_is_recorded(
    settings: Settings, flights: DatasetSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its fingerprint was taken outside the step's recording: retried three times, no ledger row.
    path = settings.landing_dir / flights.file_name("2024-01")
    write_tsv(month_frame("2024-01", 2, seed=1), path)
    opened = Path.open

    def denied(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return opened(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    result = materialize_load(flights, "2024-01", settings)

    (failure,) = result.get_step_failure_events()
    assert "the file cannot be read (Permission denied)" in failure.step_failure_data.error.message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    error = scalar(settings, "select error from pipeline.load_ledger where status = 'failed'")
    assert "the file cannot be read (Permission denied)" in str(error)


def test_rows_are_typed_and_nulls_applied(tmp_path: Path, spec: DatasetSpec) -> None:
    rows, _ = frames(ingest(tmp_path, spec, text([HEADER] + [line for line, _ in LINES.values()])))
    after_quote = rows.filter(pl.col("_line_number") == 9).row(0, named=True)
    assert after_quote["flight"] == 18 and after_quote["distance"] == 187.0
    assert after_quote["time_hour"].isoformat() == "2024-01-03T03:00:00+00:00"
    nulls = rows.filter(pl.col("_line_number") == 13).row(0, named=True)
    assert nulls["distance"] is None and nulls["time_hour"] is None
    stray = rows.filter(pl.col("_line_number") == 16).row(0, named=True)
    assert stray["note"] == 'he said "hi'
    assert stray["time_hour"].isoformat() == "2024-01-06T05:00:00+00:00"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(text([HEADER, LINES[2][0], LINES[9][0]], "\r\n", "\r\n"), id="crlf"),
        pytest.param(b"\xef\xbb\xbf" + text([HEADER, LINES[2][0], LINES[9][0]]), id="utf8-bom"),
        pytest.param(text([HEADER, LINES[2][0], LINES[9][0]], final=""), id="no-final-newline"),
        pytest.param(text([HEADER, LINES[2][0], LINES[9][0]], final="\n\n"), id="blank-last-line"),
        pytest.param(text([HEADER, LINES[2][0], LINES[9][0]], "\r\n", "\r\n\r\n"), id="crlf-blank"),
    ],
)
def test_format_variations_load_cleanly(tmp_path: Path, spec: DatasetSpec, content: bytes) -> None:
    staged = ingest(tmp_path, spec, content)
    rows = rows_of(staged)
    assert (staged.rows_read, staged.rows_loaded, staged.rows_rejected) == (2, 2, 0)
    assert rows["_line_number"].to_list() == [2, 3]
    assert rows["note"].to_list() == ["ok", "after the quote"]


def test_the_line_tally_counts_every_blank_line_of_a_block() -> None:
    """Every block of up to six bytes of line ends, CRs and text, against the lines as split."""
    for size in range(1, 7):
        for pieces in itertools.product([b"\n", b"\r", b"a"], repeat=size):
            block = b"".join(pieces)
            if not block.endswith(b"\n"):
                continue  # blocks are whole lines
            lines = block.split(b"\n")[:-1]
            tally = LineTally()
            tally.add(block)
            assert (tally.lines, tally.blank) == (
                len(lines),
                sum(line in (b"", b"\r") for line in lines),
            ), block


def rows_of(staged: StagedLoad) -> pl.DataFrame:
    """The loaded rows of a file that should have no rejects."""
    assert staged.reject_parts == ()
    return pl.concat([pl.read_parquet(p) for p in staged.row_parts]).sort("_line_number")


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_tiny_blocks_give_the_same_result_in_file_order(
    tmp_path: Path, spec: DatasetSpec, workers: int
) -> None:
    content = text([HEADER] + [line for line, _ in LINES.values()] * 4, "\r\n")
    whole = frames(ingest(tmp_path, spec, content, workers=1))
    staged = ingest(tmp_path, spec, content, block_bytes=7, workers=workers)
    pieces = frames(staged)
    assert whole[0].equals(pieces[0])
    assert whole[1].equals(pieces[1])
    # The parts themselves are numbered in file order, however many blocks were validated at once.
    in_part_order = pl.concat([pl.read_parquet(p) for p in staged.row_parts])["_line_number"]
    assert in_part_order.is_sorted() and in_part_order.len() == whole[0].height


def test_a_line_that_is_not_utf8_is_rejected_alone(tmp_path: Path, spec: DatasetSpec) -> None:
    bad = LINES[2][0].replace("ok", "caf").encode() + b"\xe9"
    content = b"\n".join([HEADER.encode(), bad, LINES[9][0].encode()]) + b"\n"
    rows, rejects = frames(ingest(tmp_path, spec, content))
    assert rows["_line_number"].to_list() == [3]
    assert rejects.row(0, named=True)["_line_number"] == 2
    assert "not valid UTF-8" in rejects.row(0, named=True)["_reason"]


def test_quoted_fields_only_when_the_spec_says_so(tmp_path: Path, spec: DatasetSpec) -> None:
    quoted = spec.model_copy(update={"quote": '"'})
    line = '2024-01-01\tAA\t11\tEWR\t1\t2024-01-01T05:00:00Z\t"tab\there"'
    rows = rows_of(ingest(tmp_path, quoted, text([HEADER, line])))
    assert rows["note"].to_list() == ["tab\there"]
    staged = ingest(tmp_path, spec, text([HEADER, line]))
    assert staged.rows_rejected == 1


def test_columns_may_be_reordered_and_extra_ones_are_ignored(
    tmp_path: Path, spec: DatasetSpec
) -> None:
    names = HEADER.split("\t")
    fields = LINES[2][0].split("\t")
    order = [6, 5, 4, 3, 2, 1, 0]
    header = "\t".join([names[i] for i in order] + ["gate"])
    line = "\t".join([fields[i] for i in order] + ["B12"])
    staged = ingest(tmp_path, spec, text([header, line]))
    rows = rows_of(staged)
    assert staged.extra_columns == ("gate",)
    assert rows.row(0, named=True)["carrier"] == "AA"


def test_a_header_missing_a_column_refuses_the_whole_file(
    tmp_path: Path, spec: DatasetSpec
) -> None:
    header = HEADER.replace("\torigin", "")
    with pytest.raises(LoadError) as error:
        ingest(tmp_path, spec, text([header, LINES[2][0]]))
    message = str(error.value)
    assert "flights_2024-01.tsv line 1" in message and "lacks column(s) origin" in message
    assert not (tmp_path / "staging").exists() or not any((tmp_path / "staging").rglob("*.parquet"))
    assert "case-sensitive" not in message

    # A name in another case is pointed out: "lacks origin" with Origin in the list was a puzzle.
    with pytest.raises(LoadError) as error:
        ingest(tmp_path, spec, text([HEADER.replace("origin", "Origin"), LINES[2][0]]))
    assert "; it has 'Origin' for 'origin': names are case-sensitive; nothing" in str(error.value)

    # A control character in a name is escaped: printed as it was, an escape code garbled it.
    with pytest.raises(LoadError) as error:
        ingest(tmp_path, spec, text([HEADER.replace("origin", "ori\x1bgin"), LINES[2][0]]))
    assert "flight, ori\\x1bgin, distance" in str(error.value)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        # Read as one line: the whole file in memory, then hours comparing its "names".
        (text([HEADER, *[LINES[2][0]] * 3], newline="\r", final="\r"), "end in CR alone"),
        (b"x\t" * (1 << 20), "no line end in its first 1 MiB"),
        (text(["", HEADER, LINES[2][0]]), "line 1 is blank: the header must come first"),
    ],
    ids=["cr-only", "no-line-end", "blank-first"],
)
def test_a_file_whose_first_line_is_no_header_is_refused_saying_why(
    tmp_path: Path, spec: DatasetSpec, content: bytes, said: str
) -> None:
    with pytest.raises(LoadError, match=f"flights_2024-01.tsv line 1: .*{said}"):
        ingest(tmp_path, spec, content)


def test_repeated_or_blank_extra_columns_are_ignored_like_any_extra_column(
    tmp_path: Path, spec: DatasetSpec
) -> None:
    # A header ending in two tabs (a spreadsheet's export) "repeated" a blank name: refused.
    staged = ingest(tmp_path, spec, text([f"{HEADER}\tgate\tgate\t\t", f"{LINES[2][0]}\t\t\t\t"]))
    assert (staged.rows_loaded, staged.extra_columns) == (1, ("gate", ""))
    with pytest.raises(LoadError, match=r"the header repeats column\(s\) carrier$"):
        ingest(tmp_path, spec, text([f"{HEADER}\tcarrier", f"{LINES[2][0]}\tAA"]))


def test_a_file_without_its_header_does_not_show_sensitive_values(
    tmp_path: Path, spec: DatasetSpec
) -> None:
    # Line 1 is then data, and the message quoted it whole: an e-mail of a `pii: redact` column
    # in the ledger, the run's log and the report.
    columns = SPEC["columns"] | {"note": {"type": "string", "pii": "redact"}}
    marked = DatasetSpec.model_validate(SPEC | {"columns": columns})
    line = LINES[2][0].replace("\tok", "\talice@example.com")
    with pytest.raises(LoadError) as error:
        ingest(tmp_path, marked, text([line, line]))
    message = str(error.value)
    assert "alice@example.com" not in message and "2024-01-01" not in message
    assert "(found: 7 other field(s), not shown: the spec marks sensitive columns)" in message
    # Without sensitive columns the fields are shown: most often the cure is in them.
    with pytest.raises(LoadError, match="found: 2024-01-01, AA, 11"):
        ingest(tmp_path, spec, text([line, line]))


def test_an_empty_file_and_a_missing_file_are_load_errors(
    tmp_path: Path, spec: DatasetSpec
) -> None:
    with pytest.raises(LoadError, match="line 1: the file is empty"):
        ingest(tmp_path, spec, b"")
    with pytest.raises(LoadError, match="no file for flights 2024-02"):
        ingest_file(spec, tmp_path / "nope.tsv", "2024-02", tmp_path / "staging")


def test_the_fingerprint_is_of_the_file_as_it_was_opened(tmp_path: Path, spec: DatasetSpec) -> None:
    # Regression: it was taken after the read, so a correction moved into place meanwhile was
    # recorded as loaded, and the landing sensor never loaded it.
    good = [line for line, rule in LINES.values() if rule is None]
    path = write(tmp_path, text([HEADER] + good * 50))
    delivered = fingerprint(path)
    correction = path.with_name("correction.tsv")
    correction.write_bytes(text([HEADER] + good * 60))

    def replace_once(*_: object) -> None:
        if correction.exists():
            correction.replace(path)

    staged = ingest_file(
        spec, path, "2024-01", tmp_path / "staging", block_bytes=1024, progress=replace_once
    )

    assert staged.rows_read == len(good) * 50  # the open file was read to its end
    assert staged.fingerprint == delivered != fingerprint(path)


@pytest.mark.parametrize("how", ["rewritten in place", "moved away"])
def test_a_file_changed_while_it_is_read_is_refused_and_one_moved_is_read_whole(
    flights: DatasetSpec, tmp_path: Path, how: str
) -> None:
    # `cat corrected.tsv > flights_2024-01.tsv` during a load: the month published the lines
    # read before the rewrite and one cut at the splice, counted and reconciled (the counts were
    # of what was read), exit 0: a month of neither version.
    path = tmp_path / flights.file_name("2024-01")
    write_tsv(month_frame("2024-01", 40, seed=1), path)
    whole = ingest_file(flights, path, "2024-01", tmp_path / "whole")
    size = path.stat().st_size
    corrected = tmp_path / "corrected.tsv"
    write_tsv(month_frame("2024-01", 2, seed=2), corrected)
    changed: list[int] = []

    def change(read: int, *_: Any) -> None:
        if not changed:
            changed.append(read)
            if how == "moved away":
                path.rename(tmp_path / "archived.tsv")
            else:
                path.write_bytes(corrected.read_bytes())

    def ingest() -> StagedLoad:
        return ingest_file(
            flights, path, "2024-01", tmp_path / "staged", block_bytes=4096, progress=change
        )

    if how == "moved away":
        staged = ingest()
        assert (staged.rows_loaded, staged.rows_rejected) == (
            whole.rows_loaded,
            whole.rows_rejected,
        )
    else:
        with pytest.raises(LoadError, match="the file changed while it was read") as refused:
            ingest()
        assert str(path) in str(refused.value) and "nothing was loaded" in str(refused.value)
    assert changed[0] < size  # while the file was being read, not after


@pytest.mark.parametrize("block_bytes", [4096, 64], ids=["one-block", "a-line-a-block"])
def test_a_value_that_starts_with_a_bom_loads_as_written_on_every_line(
    tmp_path: Path, spec: DatasetSpec, block_bytes: int
) -> None:
    # polars drops a BOM at the start of what it parses: on line 2 and on a block's first line
    # `\ufeffX` loaded as `X`, on the others as written.
    names = HEADER.split("\t")
    header = "\t".join(["note", *names[:-1]])
    line = "\t".join(["\ufeffX", *LINES[2][0].split("\t")[:-1]])
    staged = ingest(tmp_path, spec, text([header, *[line] * 5]), block_bytes=block_bytes)
    assert rows_of(staged)["note"].to_list() == ["\ufeffX"] * 5
