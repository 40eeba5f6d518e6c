"""The demo's sample files: generating them again must not look like new deliveries."""

from __future__ import annotations

from pathlib import Path

from pipeline.sample_data import write_demo_year


def test_writing_the_sample_again_leaves_identical_files_untouched(tmp_path: Path) -> None:
    first = {path: path.stat().st_mtime_ns for path in write_demo_year(tmp_path, rows_per_day=5)}
    (tmp_path / "flights_2024-02.tsv").write_text("edited by hand\n")

    again = write_demo_year(tmp_path, rows_per_day=5)

    changed = [path.name for path in again if path.stat().st_mtime_ns != first[path]]
    assert changed == ["flights_2024-02.tsv"]  # only the edited file is written back
    assert (tmp_path / "flights_2024-02.tsv").read_text().startswith("flight_date\t")
