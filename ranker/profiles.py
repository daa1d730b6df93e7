"""The dbt target the project builds into, read from the committed ``profiles.yml``.

dbt renders ``profiles.yml`` with Jinja (``env_var``, and ``var`` over the ``--vars`` given on the
command line: dbt renders profiles before it reads the project's vars); this module renders it
the same way, so Python knows which engine holds the warehouse (DuckDB or Spark) and starts its
own Spark session with exactly the parameters dbt uses. Only the small Jinja subset profiles need is supported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ranker.errors import UnirankError

# libyaml's parser when PyYAML has it: the same documents, ten times faster than the pure-Python
# one (reading dbt_project.yml and profiles.yml is most of a one-shot command's set-up).
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str | Any) -> Any:
    """``yaml.safe_load`` of a string or open file, with the fastest safe loader available."""
    return yaml.load(text, Loader=_YAML_LOADER)


if TYPE_CHECKING:
    import jinja2

    from ranker.config import Project, Settings

PROFILES_FILE = "profiles.yml"
DEFAULT_PROFILE = "unirank"
ENGINES = ("duckdb", "spark")


class ProfileError(UnirankError, ValueError):
    """profiles.yml or the requested target is missing or unusable; the message says which."""


@dataclass(frozen=True)
class Target:
    """One rendered output of profiles.yml."""

    name: str
    type: str
    output: Mapping[str, Any]

    @property
    def engine(self) -> str:
        return self.type


SPARK_DIR_VARIABLE = "UNIRANK_SPARK_DIR"
DEFAULT_SPARK_DIR = Path("warehouse") / "spark"


def target_environment(project_dir: Path) -> dict[str, str]:
    """Environment variables that pin profiles.yml's relative paths to the project folder, so
    dbt (run from the project folder) and Python (run from anywhere) find the same Spark files."""
    spark_dir = Path(os.environ.get(SPARK_DIR_VARIABLE, str(DEFAULT_SPARK_DIR)))
    if not spark_dir.is_absolute():
        spark_dir = project_dir / spark_dir
    return {SPARK_DIR_VARIABLE: str(spark_dir)}


def _env_var_from(environment: Mapping[str, str]) -> Any:
    def env_var(name: str, default: str | None = None) -> str:
        if name in environment:
            return environment[name]
        if default is None:
            raise ProfileError(f"profiles.yml needs the environment variable {name}; set it")
        return default

    return env_var


def _var_from(variables: Mapping[str, Any]) -> Any:
    def var(name: str, default: Any = None) -> Any:
        if name in variables:
            return variables[name]
        if default is None:
            raise ProfileError(f"profiles.yml needs the var {name}; pass it with --vars")
        return default

    return var


def _render(value: Any, environment: jinja2.Environment) -> Any:
    if isinstance(value, str):
        return environment.from_string(value).render() if "{" in value else value
    if isinstance(value, Mapping):
        return {str(k): _render(v, environment) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, environment) for v in value]
    return value


def _environment(
    variables: Mapping[str, str], cli_vars: Mapping[str, Any] | None = None
) -> jinja2.Environment:
    import jinja2  # only a profile that templates values needs it

    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    environment.globals["env_var"] = _env_var_from(variables)
    environment.globals["var"] = _var_from(cli_vars or {})
    environment.filters["as_number"] = lambda v: v
    environment.filters["as_text"] = lambda v: v
    environment.filters["as_bool"] = lambda v: v
    return environment


def _profile_name(project_dir: Path) -> str:
    path = project_dir / "dbt_project.yml"
    if not path.is_file():
        return DEFAULT_PROFILE
    project = load_yaml(path.read_text()) or {}
    return str(project.get("profile", project.get("name", DEFAULT_PROFILE)))


def profiles_dir(project_dir: Path, explicit: Path | None = None) -> Path | None:
    """Where dbt finds profiles.yml for this project, as dbt looks: ``--profiles-dir``, then
    the project folder, then ``DBT_PROFILES_DIR``, then ~/.dbt. None when there is none."""
    candidates = [explicit, project_dir]
    if os.environ.get("DBT_PROFILES_DIR"):
        candidates.append(Path(os.environ["DBT_PROFILES_DIR"]))
    candidates.append(Path.home() / ".dbt")
    for candidate in candidates:
        if candidate is not None and (candidate / PROFILES_FILE).is_file():
            return candidate.resolve()
    return None


def load_target(
    project_dir: Path,
    target: str | None = None,
    cli_vars: Mapping[str, Any] | None = None,
    profiles_in: Path | None = None,
    env_overrides: Mapping[str, str] | None = None,
) -> Target:
    """The rendered output ``target`` (or the profile's default target) of profiles.yml.
    ``cli_vars`` are what ``var()`` sees there: the ``--vars`` passed to dbt;
    ``env_overrides`` what ``env_var()`` sees besides this process's environment."""
    project_dir = Path(project_dir).resolve()
    directory = profiles_dir(project_dir, profiles_in)
    if directory is None:
        raise ProfileError(
            f"no {PROFILES_FILE} for {project_dir} (looked in the project folder, "
            "DBT_PROFILES_DIR and ~/.dbt); add one with a duckdb target"
        )
    path = directory / PROFILES_FILE
    profiles = load_yaml(path.read_text()) or {}
    name = _profile_name(project_dir)
    profile = profiles.get(name)
    if not isinstance(profile, Mapping):
        raise ProfileError(f"{path} has no profile {name!r}")
    environment = _environment(
        {**os.environ, **target_environment(project_dir), **(env_overrides or {})}, cli_vars
    )
    target_name = target or str(_render(profile.get("target", "duckdb"), environment))
    outputs = profile.get("outputs") or {}
    if target_name not in outputs:
        raise ProfileError(f"target {target_name!r} is not in {path}; use one of {sorted(outputs)}")
    output = _render(outputs[target_name], environment)
    kind = str(output.get("type", ""))
    if kind not in ENGINES:
        raise ProfileError(
            f"target {target_name!r} has type {kind!r}; unirank runs on {list(ENGINES)}"
        )
    return Target(name=target_name, type=kind, output=output)


def settings_target(settings: Settings) -> Target:
    """The target the settings' warehouse lives in (``settings.target`` or the default)."""
    return load_target(
        settings.project_dir, settings.target, settings.var_overrides, settings.profiles_dir
    )


def engine(settings: Settings) -> str:
    """``duckdb`` or ``spark``: the engine of the settings' target. A project without any
    profiles.yml (a library user with their own dbt setup) and no named target is DuckDB."""
    if (
        settings.target is None
        and profiles_dir(settings.project_dir, settings.profiles_dir) is None
    ):
        return "duckdb"
    return settings_target(settings).engine


def duckdb_path(
    project: Project,
    target: str | None,
    cli_vars: Mapping[str, Any],
    profiles_in: Path | None = None,
) -> Path | None:
    """The DuckDB file of the project's target (relative to the project folder, where dbt
    runs), or None when the target is not DuckDB or there is no profiles.yml."""
    if profiles_dir(project.directory, profiles_in) is None:
        return None
    rendered = load_target(project.directory, target, cli_vars, profiles_in)
    if rendered.engine != "duckdb" or not rendered.output.get("path"):
        return None
    return Path(str(rendered.output["path"]))
