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


def test_command_help_reads_as_written() -> None:
    """A command's help prints every option's full name and text as written (no markup eats
    `[spark]`, no truncated names) and its paragraphs rewrap instead of breaking mid-line."""
    result = runner.invoke(app, ["train", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "--early-stopping-rounds" in result.output
    assert "'.[spark]'" in result.output.replace("\n", "").replace(" ", "")
    lines = [line.strip() for line in result.output.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("Reads the ranking mart"))
    paragraph = lines[start : lines.index("", start)]
    assert len(paragraph) <= 4  # the docstring's 8 lines, rewrapped to 200 columns


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


def test_help_names_init_and_starts_without_the_heavy_libraries() -> None:
    """`--help` lists `init`; the CLI module imports no stage (CatBoost, pandas, DuckDB, ...)
    until a command needs it, so help and lookups start fast."""
    import subprocess
    import sys

    result = runner.invoke(app, ["--help"])
    assert "init" in result.output and "recommend" in result.output
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, cli.main; print(sorted(m for m in ('catboost', 'pandas', 'duckdb', "
            "'pyarrow', 'evidently', 'pydantic') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"


def test_cli_default_memory_limit_is_scorings() -> None:
    from cli.main import DEFAULT_MEMORY_LIMIT
    from ranker.score import DEFAULT_MEMORY_LIMIT as SCORING

    assert DEFAULT_MEMORY_LIMIT == SCORING


def test_registry_schema_is_the_published_one(project_dir: Path) -> None:
    import json

    result = runner.invoke(app, ["registry", "--schema"])
    assert result.exit_code == 0
    published = json.loads((project_dir / "docs" / "registry.schema.json").read_text())
    assert json.loads(result.output) == published


def test_registry_misspelling_names_the_nearest_key(project_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            "registry",
            "--project-dir",
            str(project_dir),
            "--vars",
            "{training: {learnig_rate: 0.2}}",
        ],
    )
    assert result.exit_code == 1
    assert "did you mean `learning_rate`?" in " ".join(result.output.split())


def test_recommend_context_must_be_column_equals_value(project_dir: Path) -> None:
    result = runner.invoke(
        app, ["recommend", "home", "--context", "u0000001", "--project-dir", str(project_dir)]
    )
    assert result.exit_code == 1
    assert "is not COLUMN=VALUE" in result.output
