"""profiles.yml targets as Python reads them, and clear errors for a Spark target that cannot run
(extra not installed, unknown target, a Thrift target for in-process work). No Spark is started."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from ranker.config import load_settings
from ranker.profiles import ProfileError, engine, load_target
from ranker.score import ScoringError, score_candidates
from ranker.spark import SparkError, session


def test_default_target_is_duckdb(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNIRANK_TARGET", raising=False)
    assert load_target(project_dir).name == "duckdb"
    assert engine(load_settings(project_dir)) == "duckdb"
    monkeypatch.setenv("UNIRANK_TARGET", "spark")
    assert engine(load_settings(project_dir)) == "spark"


def test_spark_writes_every_file_under_the_spark_dir(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UNIRANK_SPARK_DIR")
    target = load_target(project_dir, "spark")
    spark_dir = project_dir / "warehouse" / "spark"  # an ignored folder (.gitignore: warehouse/)
    parameters = target.output["server_side_parameters"]
    assert target.output["method"] == "session"
    assert parameters["spark.sql.session.timeZone"] == "UTC"
    assert parameters["spark.sql.warehouse.dir"].startswith(str(spark_dir))
    assert parameters["spark.local.dir"].startswith(str(spark_dir))
    assert (
        f"databaseName={spark_dir}/metastore_db"
        in parameters["spark.hadoop.javax.jdo.option.ConnectionURL"]
    )
    assert f"-Dderby.system.home={spark_dir} " in parameters["spark.driver.extraJavaOptions"]
    assert "warehouse/" in (project_dir / ".gitignore").read_text().splitlines()

    monkeypatch.setenv("UNIRANK_SPARK_DIR", "/data/spark")
    moved = load_target(project_dir, "spark").output["server_side_parameters"]
    assert moved["spark.sql.warehouse.dir"] == "/data/spark/tables"


def test_each_project_has_its_own_warehouse(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """unirank's demo and each example project read their own profiles.yml: a DuckDB file inside
    their own folder, so no two projects share a warehouse, a model pointer or a cache."""
    monkeypatch.delenv("UNIRANK_DUCKDB_PATH", raising=False)
    projects = [project_dir, *sorted((project_dir / "examples").glob("*/dbt_project.yml"))]
    folders = [p if p.is_dir() else p.parent for p in projects]
    settings = [load_settings(folder) for folder in folders]
    for folder, s in zip(folders, settings, strict=True):
        assert s.duckdb_path.is_relative_to(folder / "warehouse")
        assert s.artifacts_dir == folder / "artifacts"
    assert len({s.duckdb_path for s in settings}) == len(settings) >= 3


def test_profiles_are_found_where_dbt_looks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--profiles-dir, then the project folder, then DBT_PROFILES_DIR, then ~/.dbt."""
    from ranker.profiles import profiles_dir

    project, elsewhere, home = tmp_path / "p", tmp_path / "e", tmp_path / "home"
    for folder in (project, elsewhere, home / ".dbt"):
        folder.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DBT_PROFILES_DIR", raising=False)
    assert profiles_dir(project) is None
    (home / ".dbt" / "profiles.yml").write_text("x: {}\n")
    assert profiles_dir(project) == home / ".dbt"
    (elsewhere / "profiles.yml").write_text("x: {}\n")
    monkeypatch.setenv("DBT_PROFILES_DIR", str(elsewhere))
    assert profiles_dir(project) == elsewhere
    (project / "profiles.yml").write_text("x: {}\n")
    assert profiles_dir(project) == project
    assert profiles_dir(project, explicit=elsewhere) == elsewhere


def test_unknown_target_names_the_known_ones(project_dir: Path) -> None:
    with pytest.raises(ProfileError, match=r"target 'sparky' is not in .*\['duckdb', 'spark'"):
        load_target(project_dir, "sparky")
    result = CliRunner().invoke(
        app, ["train", "--target", "sparky", "--project-dir", str(project_dir)]
    )
    assert result.exit_code == 1
    assert "target 'sparky' is not in" in result.output


@pytest.mark.parametrize("command", [["build"], ["train"], ["score"]])
def test_spark_target_without_the_extra_says_how_to_install_it(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: list[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # `import pyspark` now fails
    monkeypatch.setenv("UNIRANK_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    result = CliRunner().invoke(
        app, [*command, "--target", "spark", "--project-dir", str(project_dir)]
    )
    assert result.exit_code == 1
    assert "pip install -e '.[spark]'" in result.output.replace("\n", " ")


def test_duckdb_scoring_refuses_a_spark_target(project_dir: Path) -> None:
    settings = load_settings(project_dir, target="spark")
    with pytest.raises(ScoringError, match="score_candidates_spark"):
        score_candidates(settings)


def test_a_thrift_target_cannot_host_python_work(project_dir: Path) -> None:
    settings = load_settings(project_dir, target="spark_thrift")
    assert engine(settings) == "spark"
    with pytest.raises(SparkError, match="need a `method: session` target"):
        session(settings)
