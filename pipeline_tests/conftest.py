"""Fixtures that create real things: a temp landing folder, DuckDB file and Dagster instance."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from pipeline.settings import BUNDLED_DATASETS_DIR, Settings
from pipeline.specs import DatasetSpec, load_specs
from pipeline.warehouse.duckdb import DuckDBWarehouse

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A deployment in a temp folder, set through the same environment variables users set."""
    monkeypatch.setenv("PIPELINE_DATASETS_DIR", str(BUNDLED_DATASETS_DIR))
    monkeypatch.setenv("PIPELINE_LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("PIPELINE_STAGING_DIR", str(tmp_path / "staging"))
    monkeypatch.setenv("PIPELINE_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("PIPELINE_WAREHOUSE", raising=False)
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "landing").mkdir()
    return Settings.from_env()


@pytest.fixture
def instance(settings: Settings) -> Iterator[dg.DagsterInstance]:
    """A real, persistent Dagster instance in the temp DAGSTER_HOME."""
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture
def warehouse(settings: Settings) -> DuckDBWarehouse:
    return DuckDBWarehouse(path=str(settings.duckdb_path))


@pytest.fixture(scope="session")
def flights() -> DatasetSpec:
    """The bundled example spec."""
    return load_specs(BUNDLED_DATASETS_DIR)["flights"]
