"""The demo's sample files: generating them again must not look like new deliveries, nor
destroy a file a user put in their place."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pipeline.cli import main
from pipeline.sample_data import write_demo_year


def test_writing_the_sample_again_leaves_identical_files_untouched(tmp_path: Path) -> None:
    first = {
        file.path: file.path.stat().st_mtime_ns
        for file in write_demo_year(tmp_path, rows_per_day=5)
    }

    again = write_demo_year(tmp_path, rows_per_day=5)

    assert [file.path.stat().st_mtime_ns for file in again] == list(first.values())
    assert not any(file.kept for file in again)


def test_a_corrected_file_is_kept_and_named_until_overwrite_is_asked(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    assert CliRunner().invoke(main, ["sample-data", "--landing-dir", str(landing)]).exit_code == 0
    corrected = landing / "flights_2024-08.tsv"
    corrected.write_text("flight_date\tcarrier\n2024-08-01\tAA\n")

    again = CliRunner().invoke(main, ["sample-data", "--landing-dir", str(landing)])

    assert again.exit_code == 0
    assert corrected.read_text() == "flight_date\tcarrier\n2024-08-01\tAA\n"
    assert "14 sample files" in again.output
    assert "differ from the sample (a corrected delivery?): flights_2024-08.tsv." in again.output
    assert "`pipeline sample-data --overwrite` replaces them" in again.output

    args = ["sample-data", "--landing-dir", str(landing), "--overwrite"]
    overwritten = CliRunner().invoke(main, args)

    assert overwritten.exit_code == 0
    assert corrected.read_text().startswith("flight_date\tcarrier\tflight\t")
    assert "15 sample files" in overwritten.output
    assert "differ from the sample" not in overwritten.output
