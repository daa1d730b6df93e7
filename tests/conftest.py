"""Shared fixtures: the project folder, small generated logs, and a demo warehouse built once."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from ranker import simulate
from ranker.build import run_dbt
from ranker.config import Settings, load_settings

# CI runs are reproducible (derandomized); local runs keep exploring new examples.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")

PROJECT_DIR = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "models", "macros", "seeds", "tests/dbt")


@pytest.fixture(scope="session")
def project_dir() -> Path:
    return PROJECT_DIR


@pytest.fixture(scope="session", autouse=True)
def _dbt_paths_outside_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """dbt's target/ and logs/ go to a temp folder, so tests never touch the user's."""
    base = tmp_path_factory.mktemp("dbt")
    saved = {
        k: os.environ.get(k) for k in ("DBT_TARGET_PATH", "DBT_LOG_PATH", "UNIRANK_DUCKDB_PATH")
    }
    os.environ["DBT_TARGET_PATH"] = str(base / "target")
    os.environ["DBT_LOG_PATH"] = str(base / "logs")
    os.environ.pop("UNIRANK_DUCKDB_PATH", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session", autouse=True)
def _spark_files_outside_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Spark (the `spark` target) keeps its metastore, tables and derby.log in a temp folder."""
    saved = os.environ.get("UNIRANK_SPARK_DIR")
    os.environ["UNIRANK_SPARK_DIR"] = str(tmp_path_factory.mktemp("spark"))
    yield
    if saved is None:
        os.environ.pop("UNIRANK_SPARK_DIR", None)
    else:
        os.environ["UNIRANK_SPARK_DIR"] = saved


def copy_project(destination: Path) -> Path:
    """A copy of the dbt project (no venv, no data) that a test may change."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = PROJECT_DIR / name
        target = destination / name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


@pytest.fixture(scope="session")
def tiny_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated Parquet set (about 20k impressions) in several chunks."""
    directory = tmp_path_factory.mktemp("logs") / "tiny"
    config = simulate.SimulationConfig(n_impressions=20_000, chunk_requests=300)
    simulate.generate(config, directory)
    return directory


@pytest.fixture(scope="session")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The default project (committed demo seeds) built with `dbt build` into a temp DuckDB file."""
    path = tmp_path_factory.mktemp("warehouse") / "demo.duckdb"
    settings = load_settings(PROJECT_DIR, duckdb_path=path)
    run_dbt(settings, ["build"], echo=False)
    return settings


@pytest.fixture(scope="session")
def tiny_warehouse(tiny_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny generated logs built with dbt: a small ranking mart for training tests."""
    path = tmp_path_factory.mktemp("tiny_warehouse") / "tiny.duckdb"
    overrides = {"demo_source": "parquet", "demo_path": str(tiny_logs)}
    run_dbt(load_settings(PROJECT_DIR, overrides, duckdb_path=path), ["build"], echo=False)
    return path


@pytest.fixture
def tiny_settings(tiny_warehouse: Path, tmp_path: Path) -> Settings:
    """Settings on a private copy of the tiny warehouse, with artifacts and reports in tmp_path."""
    copy = tmp_path / "tiny.duckdb"
    shutil.copy2(tiny_warehouse, copy)
    return load_settings(
        PROJECT_DIR,
        duckdb_path=copy,
        artifacts_dir=tmp_path / "artifacts",
        reports_dir=tmp_path / "reports",
    )


@pytest.fixture(scope="session")
def served_project(tiny_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The tiny mart with a trained model (no comparison, no reports) and a published cache.
    Shared read-only by lookup tests; tests that change it take `served_copy`."""
    from ranker.score import score_candidates
    from ranker.train import TrainParams, train_and_evaluate

    base = tmp_path_factory.mktemp("served")
    warehouse = base / "warehouse" / "tiny.duckdb"
    warehouse.parent.mkdir()
    shutil.copy2(tiny_warehouse, warehouse)
    settings = load_settings(
        PROJECT_DIR,
        duckdb_path=warehouse,
        artifacts_dir=base / "artifacts",
        reports_dir=base / "reports",
    )
    params = TrainParams(
        iterations=30,
        learning_rate=0.3,
        depth=4,
        early_stopping_rounds=10,
        compare=False,
        bootstrap_resamples=50,
        thread_count=2,
    )
    train_and_evaluate(settings, params, write_reports=False)
    score_candidates(settings, batch_rows=2_000)
    return settings


def with_serving(settings: Settings, **update: object) -> Settings:
    """``settings`` with ``update`` applied to every served canvas's registry ``serving``."""
    canvases = tuple(
        c.model_copy(update={"serving": c.serving.model_copy(update=update)})
        if c.serving is not None
        else c
        for c in settings.registry.canvases
    )
    registry = settings.registry.model_copy(update={"canvases": canvases})
    return dataclasses.replace(settings, registry=registry)


def with_serving_mode(settings: Settings, mode: str) -> Settings:
    return with_serving(settings, mode=mode)


def with_online_budget(settings: Settings, milliseconds: int) -> Settings:
    return with_serving(settings, online_timeout_ms=milliseconds)


@pytest.fixture(scope="session")
def cache_only_project(served_project: Settings) -> Settings:
    """`served_project` with every canvas in serving mode cache_only: what the cache and the
    fallback chain answer, without online scoring."""
    return with_serving_mode(served_project, "cache_only")


@pytest.fixture
def served_copy(served_project: Settings, tmp_path: Path) -> Settings:
    """A private copy of `served_project` (warehouse, cache and model) a test may change."""
    shutil.copytree(served_project.duckdb_path.parent, tmp_path / "warehouse", symlinks=True)
    shutil.copytree(served_project.artifacts_dir, tmp_path / "artifacts")
    return load_settings(
        PROJECT_DIR,
        duckdb_path=tmp_path / "warehouse" / served_project.duckdb_path.name,
        artifacts_dir=tmp_path / "artifacts",
        reports_dir=tmp_path / "reports",
    )


@pytest.fixture
def warehouse_copy(demo_warehouse: Settings, tmp_path: Path) -> Path:
    """A private copy of the built demo warehouse, for tests that rebuild part of it."""
    copy = tmp_path / "copy.duckdb"
    shutil.copy2(demo_warehouse.duckdb_path, copy)
    return copy
