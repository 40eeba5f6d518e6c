"""The landing sensor, driven tick by tick over a temp landing folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest

from pipeline.definitions import build_definitions, open_warehouse
from pipeline.resources import LandingFiles
from pipeline.runner import load_months, purge_month
from pipeline.sample_data import month_frame, write_tsv
from pipeline.sensors import build_landing_sensor
from pipeline.settings import Settings
from pipeline.sizing import GB, pod_size
from pipeline.specs import DatasetSpec


class Ticks:
    """Evaluates the sensor like the daemon does, carrying the cursor from tick to tick."""

    def __init__(self, spec: DatasetSpec, settings: Settings, instance: dg.DagsterInstance):
        self.sensor = build_landing_sensor(spec, interval_seconds=60)
        self.files = LandingFiles(
            landing_dir=str(settings.landing_dir), staging_dir=str(settings.staging_dir)
        )
        self.instance = instance
        self.cursor: str | None = None
        self.seen_keys: set[str] = set()

    def tick(self) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources={"files": self.files}
        )
        result = self.sensor(context)
        self.cursor = result.cursor
        # The daemon launches a run key once; later requests with the same key are skipped.
        new = [r for r in result.run_requests or [] if r.run_key not in self.seen_keys]
        self.seen_keys.update(r.run_key for r in new)
        self.logged = context.log
        return new


@pytest.fixture
def ticks(flights: DatasetSpec, settings: Settings, instance: dg.DagsterInstance) -> Ticks:
    return Ticks(flights, settings, instance)


def land(settings: Settings, name: str, text: str) -> Path:
    path = settings.landing_dir / name
    path.write_text(text)
    return path


def test_a_new_file_is_loaded_once_when_stable(ticks: Ticks, settings: Settings) -> None:
    land(settings, "flights_2024-03.tsv", "header\nrow\n")
    assert ticks.tick() == []  # first sight: might still be written
    (request,) = ticks.tick()
    assert request.partition_key == "2024-03"
    assert request.run_key.startswith("flights:2024-03:")
    assert ticks.tick() == []  # unchanged file: same run key, no second run


def test_a_file_still_growing_waits(ticks: Ticks, settings: Settings) -> None:
    path = land(settings, "flights_2024-03.tsv", "header\n")
    ticks.tick()
    with path.open("a") as handle:
        handle.write("more rows\n")
    assert ticks.tick() == []
    assert len(ticks.tick()) == 1


def test_a_replaced_file_is_loaded_again(ticks: Ticks, settings: Settings) -> None:
    path = land(settings, "flights_2024-03.tsv", "header\nrow\n")
    ticks.tick()
    (first,) = ticks.tick()
    path.write_text("header\ncorrected row\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert ticks.tick() == []
    (second,) = ticks.tick()
    assert second.partition_key == "2024-03" and second.run_key != first.run_key


def test_a_month_already_loaded_from_the_file_is_not_loaded_again(
    ticks: Ticks, settings: Settings, flights: DatasetSpec, instance: dg.DagsterInstance
) -> None:
    # Loaded by `pipeline load` before the sensor was turned on, as after `make demo`.
    path = settings.landing_dir / "flights_2024-03.tsv"
    write_tsv(month_frame("2024-03", rows_per_day=5, seed=3), path)
    (loaded,) = load_months(build_definitions(settings), flights, ["2024-03"], instance)
    assert loaded.success

    ticks.tick()
    assert ticks.tick() == []  # stable, and the month is materialized from this very file

    write_tsv(month_frame("2024-03", rows_per_day=6, seed=3), path)  # a corrected delivery
    ticks.tick()
    (request,) = ticks.tick()
    assert request.partition_key == "2024-03"


def test_a_refused_file_and_a_purged_month_are_not_loaded_again(
    ticks: Ticks, settings: Settings, flights: DatasetSpec, instance: dg.DagsterInstance
) -> None:
    # After `make demo`, turning the sensor on loaded the refused months again from their
    # unchanged files; and a month purged while its file was in landing was back within a tick.
    refused_file = settings.landing_dir / "flights_2024-03.tsv"
    purged_file = settings.landing_dir / "flights_2024-04.tsv"
    write_tsv(month_frame("2024-03", rows_per_day=5, seed=3, defect_ratio=0.05), refused_file)
    write_tsv(month_frame("2024-04", rows_per_day=5, seed=4), purged_file)
    defs = build_definitions(settings)
    refused, loaded = load_months(defs, flights, ["2024-03", "2024-04"], instance)
    assert not refused.success and loaded.success
    with open_warehouse(settings) as warehouse:
        purge_month(defs, flights, "2024-04", instance, warehouse)

    ticks.tick()
    assert ticks.tick() == []

    # New deliveries of both months are loaded.
    write_tsv(month_frame("2024-03", rows_per_day=6, seed=3), refused_file)
    write_tsv(month_frame("2024-04", rows_per_day=6, seed=4), purged_file)
    ticks.tick()
    assert sorted(request.partition_key for request in ticks.tick()) == ["2024-03", "2024-04"]


def test_junk_names_are_skipped_not_crashed_on(
    ticks: Ticks, settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    land(settings, "flights_2024-13.tsv", "x\n")
    land(settings, "flights_1999-01.tsv", "x\n")
    land(settings, "flights_latest.tsv", "x\n")
    land(settings, "notes.txt", "x\n")
    assert ticks.tick() == [] and ticks.tick() == []
    messages = capfd.readouterr().err  # the sensor's log, as the daemon would show it
    assert "flights_2024-13.tsv: name does not fit" in messages
    assert "flights_1999-01.tsv: 1999-01 is outside the months of flights" in messages
    assert "flights_latest.tsv" in messages and "notes.txt" not in messages


def test_a_compressed_file_under_a_plain_pattern_is_named(
    ticks: Ticks, settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    # The pattern's glob never saw it: the sensor said nothing, and the month never loaded.
    land(settings, "flights_2024-03.tsv.gz", "x\n")
    assert ticks.tick() == []
    assert (
        "flights_2024-03.tsv.gz is compressed, but file_pattern flights_{month}.tsv does not end "
        "in .gz: add it to the pattern"
    ) in capfd.readouterr().err


def test_a_file_that_cannot_be_read_is_skipped_and_the_others_load(
    ticks: Ticks, settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    # An unreadable file failed every tick with PermissionError, and no other file loaded. A
    # folder by the file's name is unreadable for root too.
    (settings.landing_dir / "flights_2024-02.tsv").mkdir()
    (settings.landing_dir / "flights_2024-04.tsv").symlink_to("gone.tsv")  # a link to nothing
    land(settings, "flights_2024-03.tsv", "header\nrow\n")
    assert ticks.tick() == []
    (request,) = ticks.tick()
    assert request.partition_key == "2024-03"
    unreadable = settings.landing_dir / "flights_2024-02.tsv"
    logged = capfd.readouterr().err
    assert f"flights_2024-02.tsv: {unreadable}: the file cannot be read" in logged
    assert "flights_2024-04.tsv: No such file or directory" in logged


def test_a_ready_marker_when_the_spec_asks_for_one(
    flights: DatasetSpec, settings: Settings, instance: dg.DagsterInstance
) -> None:
    ticks = Ticks(flights.model_copy(update={"ready_marker": ".done"}), settings, instance)
    land(settings, "flights_2024-03.tsv", "header\nrow\n")
    assert ticks.tick() == [] and ticks.tick() == []
    land(settings, "flights_2024-03.tsv.done", "")
    assert len(ticks.tick()) == 1


def test_the_month_pod_is_sized_from_its_file(ticks: Ticks, settings: Settings) -> None:
    land(settings, "flights_2024-03.tsv", "header\nrow\n")
    ticks.tick()
    (request,) = ticks.tick()

    config = json.loads(request.tags["dagster-k8s/config"])["container_config"]
    assert config["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert config["env"] == [{"name": "PIPELINE_INGEST_WORKERS", "value": "1"}]


@pytest.mark.parametrize(
    ("gigabytes", "cores", "memory"),
    [(0.5, 1, "2Gi"), (5, 2, "3Gi"), (100, 4, "6Gi"), (400, 8, "10Gi")],
)
def test_bigger_months_get_bigger_pods(gigabytes: float, cores: int, memory: str) -> None:
    size = pod_size(int(gigabytes * GB))
    assert (size.cores, size.memory) == (cores, memory)
