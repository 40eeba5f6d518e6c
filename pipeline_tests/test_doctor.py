"""`pipeline doctor` says what is wrong with a deployment, one line each, with a hint."""

from __future__ import annotations

from pipeline.settings import Settings
from pipeline_tests.support import run

HEADER = (
    "flight_date\tcarrier\tflight\torigin\tdest\tdistance\tdep_delay\tfare\tcancelled\ttime_hour"
)


def test_a_healthy_deployment_is_all_ok(settings: Settings) -> None:
    (settings.landing_dir / "flights_2024-01.tsv").write_text(HEADER + "\r\n")
    result = run("doctor")
    assert result.returncode == 0, result.stdout
    assert "OK      landing flights: 1 month(s) from 2024-01 to 2024-01" in result.stdout
    assert "CRLF line endings" in result.stdout
    assert "OK      warehouse: duckdb" in result.stdout


def test_problems_are_named_with_hints(settings: Settings) -> None:
    (settings.landing_dir / "flights_2024-01.tsv").write_text(HEADER.replace("\t", ",") + "\n")
    (settings.landing_dir / "flights_2024-02.tsv").write_text(HEADER.replace("\tfare", "") + "\n")
    (settings.landing_dir / "flights-march.tsv").write_text("x\n")
    result = run("doctor")
    assert result.returncode == 1
    assert "PROBLEM file flights_2024-02.tsv: header lacks fare" in result.stdout
    assert "PROBLEM landing: 1 file(s) match no dataset: flights-march.tsv" in result.stdout
    assert "hint:" in result.stdout
    assert "Traceback" not in result.stderr
