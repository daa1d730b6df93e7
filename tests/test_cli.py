"""The CLI wiring, through typer's CliRunner: help, registry, generate, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("generate", "build", "registry"):
        assert command in result.output


def test_registry_shows_canvases(project_dir: Path) -> None:
    result = runner.invoke(app, ["registry", "--project-dir", str(project_dir)])
    assert result.exit_code == 0, result.output
    for canvas in ("home", "search", "related", "category"):
        assert canvas in result.output
    assert "traffic" in result.output


def test_bad_registry_override_is_a_clear_error(project_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            "registry",
            "--project-dir",
            str(project_dir),
            "--vars",
            "{stratification: {strategy: random}}",
        ],
    )
    assert result.exit_code == 1
    assert "stratification.strategy is 'random'" in result.output
    assert "Traceback" not in result.output


def test_generate_writes_a_parquet_set(tmp_path: Path) -> None:
    out = tmp_path / "logs"
    result = runner.invoke(app, ["generate", "--rows", "3000", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out / "impressions").num_rows > 2500
    assert "impressions" in result.output


def test_generate_refuses_too_few_rows(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "--rows", "10", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0
    assert not (tmp_path / "x").exists()


def test_build_on_missing_logs_is_a_clear_error(project_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["build", "--project-dir", str(project_dir), "--logs", str(tmp_path / "nowhere")]
    )
    assert result.exit_code == 1
    assert "is not a folder" in result.output
