"""Run the dbt project (``dbt build`` and friends) with the settings' vars and warehouse.

dbt runs as a child process of the same virtual environment: its logs stream through, a failure
is a non-zero exit we turn into :class:`BuildError`, and the child dies with this process. On
DuckDB, dbt writes a copy aside that replaces the warehouse only when dbt passed
(ranker.warehouse_publish): a failed or killed build leaves the previous warehouse whole.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ranker.config import Settings
from ranker.errors import UnirankError
from ranker.profiles import load_target, profiles_dir, target_environment
from ranker.registry import REGISTRY_VAR, REPRESENTATION_MODEL, Registry
from ranker.warehouse_publish import aside_path, failed_path, publishing

logger = logging.getLogger(__name__)

# dbt commands that write the warehouse (tables, seeds, stored test failures).
WRITING_COMMANDS = ("build", "run", "seed", "snapshot", "test")
SELECTING = ("--select", "-s", "--exclude", "--selector", "--models", "-m")
PR_SET_PDEATHSIG = 1


class BuildError(UnirankError, RuntimeError):
    """dbt failed; the message carries dbt's own summary of what failed."""


@dataclass(frozen=True)
class BuildResult:
    command: tuple[str, ...]
    returncode: int
    output: str


def dbt_executable() -> str:
    """The dbt of this Python's environment (not whatever dbt is first on PATH)."""
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def dbt_vars(settings: Settings) -> dict[str, Any]:
    """The ``--vars`` dbt gets: the overrides as given, except that registry keys travel inside
    the whole registry (``{unirank: ...}``), so every unirank model - and a unit test that pins
    its own registry - sees exactly the registry Python validated."""
    registry_keys = set(Registry.model_fields)
    plain = {k: v for k, v in settings.var_overrides.items() if k not in registry_keys}
    if REGISTRY_VAR in settings.var_overrides or registry_keys & set(settings.var_overrides):
        plain[REGISTRY_VAR] = settings.registry_vars
    return plain


def dbt_command(settings: Settings, args: Sequence[str], target: str | None = None) -> list[str]:
    command = [dbt_executable(), *args, "--project-dir", str(settings.project_dir)]
    profiles = profiles_dir(settings.project_dir, settings.profiles_dir)
    if profiles is not None:
        command += ["--profiles-dir", str(profiles)]
    if target:
        command += ["--target", target]
    variables = dbt_vars(settings)
    if variables:
        command += ["--vars", json.dumps(variables, default=str)]
    return command


def needs_packages(project_dir: Path) -> bool:
    """Whether `dbt deps` has yet to install the project's packages (packages.yml lists some
    and dbt_packages/ holds none)."""
    if not (project_dir / "packages.yml").is_file():
        return False
    installed = project_dir / "dbt_packages"
    return not installed.is_dir() or not any(installed.iterdir())


def run_dbt(
    settings: Settings,
    args: Sequence[str],
    target: str | None = None,
    echo: bool = True,
) -> BuildResult:
    """Run ``dbt <args>`` for this project; raise :class:`BuildError` if it fails."""
    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, UNIRANK_DUCKDB_PATH=str(settings.duckdb_path))
    # the served answers `unirank-cli serve --sample-rate` writes (model served_answers)
    env.setdefault("UNIRANK_SERVED_DIR", str(settings.duckdb_path.parent / "served"))
    env.update(target_environment(settings.project_dir))
    target = target or settings.target
    engine = load_target(
        settings.project_dir, target, settings.var_overrides, settings.profiles_dir
    ).engine
    if engine == "spark":
        from ranker.spark import require_pyspark

        require_pyspark()
        if REPRESENTATION_MODEL in {f.model for f in settings.registry.feature_models}:
            # its item vectors are learned in a dbt Python model (int_item_representations)
            raise BuildError(
                f"feature model {REPRESENTATION_MODEL} needs the DuckDB target: dbt-spark's "
                "session method runs no Python models; drop it from `features` on Spark"
            )
    if not (echo and sys.stderr.isatty()):
        env["DBT_USE_COLORS"] = "false"
    if list(args[:1]) != ["deps"] and needs_packages(settings.project_dir):
        run_dbt(settings, ["deps"], echo=echo)
    command = dbt_command(settings, args, target)
    if (
        engine == "duckdb"
        and list(args[:1])
        and args[0] in WRITING_COMMANDS
        and _follows_path_variable(settings, target)
    ):
        # dbt writes aside; only a run that passed replaces the warehouse (warehouse_publish).
        try:
            with publishing(settings.duckdb_path, keep_all=starts_from_copy(args)) as aside:
                env["UNIRANK_DUCKDB_PATH"] = str(aside)
                return _run(command, settings.project_dir, env, args, echo)
        except BuildError as exc:
            failed = failed_path(settings.duckdb_path)
            gate = _quarantine_breaches(failed, settings.registry.quarantine_max_share)
            raise BuildError(
                f"{exc}\n{gate}The warehouse {settings.duckdb_path} is unchanged; this run's "
                f"tables (quarantined_rows, stored test failures) are in {failed}"
            ) from None
    return _run(command, settings.project_dir, env, args, echo)


def _quarantine_breaches(warehouse: Path, limit: float) -> str:
    """One line per source table over the quarantine limit in a failed build's copy ('' when
    none is, or the copy has no quarantine_summary)."""
    import duckdb

    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            rows = con.execute(
                "select source_table, quarantined_rows, total_rows, quarantined_share "
                "from quarantine_summary where quarantined_share > ? order by source_table",
                [limit],
            ).fetchall()
    except duckdb.Error:
        return ""
    return "".join(
        f"quarantine gate: {table} has {quarantined:,} of {total:,} rows quarantined "
        f"({_percent(share)}, limit {_percent(limit)}); see quarantined_rows\n"
        for table, quarantined, total, share in rows
    )


def _percent(share: float) -> str:
    """A share as a percentage with three significant digits: 0.0385%, 0.23%, 30.2%."""
    return f"{share * 100:.3g}%"


def starts_from_copy(args: Sequence[str]) -> bool:
    """Whether a dbt run rebuilds only part of the warehouse (a selection, or a command other
    than a whole `build`), so its copy aside must start from the current warehouse."""
    return args[0] != "build" or any(arg.split("=")[0] in SELECTING for arg in args)


def _follows_path_variable(settings: Settings, target: str | None) -> bool:
    """Whether the target's DuckDB path is UNIRANK_DUCKDB_PATH when set (as every profile unirank
    writes says): only then can dbt be pointed at the copy aside. Otherwise dbt writes the
    warehouse in place, as plain dbt does, and a failed build can leave it half-built."""
    probe = str(aside_path(settings.duckdb_path))
    rendered = load_target(
        settings.project_dir,
        target,
        settings.var_overrides,
        settings.profiles_dir,
        env_overrides={"UNIRANK_DUCKDB_PATH": probe},
    )
    followed = str(rendered.output.get("path", "")) == probe
    if not followed:
        logger.warning(
            "the profile's DuckDB path does not read UNIRANK_DUCKDB_PATH: dbt builds the "
            "warehouse in place, not aside (a failed build is not rolled back)"
        )
    return followed


def _run(
    command: list[str], cwd: Path, env: dict[str, str], args: Sequence[str], echo: bool
) -> BuildResult:
    """Run dbt as a child that dies with this process (a killed CLI leaves no dbt running on)."""
    logger.info("running %s", " ".join(command))
    lines: list[str] = []
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_die_with_parent,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if echo:
                sys.stderr.write(line)
        returncode = process.wait()
    output = "".join(lines)
    if returncode != 0:
        raise BuildError(_failure_summary(args, output))
    return BuildResult(tuple(command), returncode, output)


def _die_with_parent() -> None:
    """In the child, before dbt starts: ask Linux to SIGKILL it when its parent dies, so a
    SIGKILL of unirank-cli (which cannot be caught) also ends its dbt. A no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _failure_summary(args: Sequence[str], output: str) -> str:
    """dbt's own closing summary of what failed (or the end of its output)."""
    lines = output.splitlines()
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if "Completed with" in line or "Encountered an error" in line
        ),
        max(0, len(lines) - 30),
    )
    detail = "\n".join(line.rstrip() for line in lines[start:] if line.strip())
    return f"dbt {' '.join(args[:1])} failed:\n{detail}"
