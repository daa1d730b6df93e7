"""Settings: which dbt project, its registry as dbt resolves it, and where its outputs live.

A project is any dbt project that declares a registry under ``vars: unirank:`` - unirank's own
root (the demo) or a user's project that installs unirank as a dbt package. dbt hands a package
the root project's value of that var (a ``--vars`` value wins), so Python reads the same block:
the project's own ``vars.unirank``, with two kinds of override applied the way the macro
``unirank_registry`` applies them - ``--vars '{unirank: {...}}'`` replaces the registry, and a
registry key given at the top level of ``--vars`` (``{stratification: {...}}``) replaces that key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ranker.profiles import load_yaml
from ranker.registry import (
    REGISTRY_VAR,
    Registry,
    RegistryError,
    parse_registry,
)

UNIRANK_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_NAME = "unirank"
DEFAULT_DUCKDB_PATH = Path("warehouse") / "unirank.duckdb"

__all__ = [
    "PACKAGE_NAME",
    "UNIRANK_ROOT",
    "Project",
    "Registry",
    "RegistryError",
    "Settings",
    "load_settings",
    "parse_var_overrides",
    "read_project",
    "resolve_registry_vars",
]


@dataclass(frozen=True)
class Project:
    """A dbt project folder as unirank sees it."""

    directory: Path
    name: str
    profile: str
    vars: dict[str, Any]
    model_paths: tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    """Everything a command needs: the project, its registry and where its outputs live."""

    project_dir: Path
    duckdb_path: Path
    artifacts_dir: Path
    reports_dir: Path
    registry: Registry
    var_overrides: dict[str, Any]
    # The dbt target (profiles.yml) the warehouse lives in; None = the profile's default.
    target: str | None = None
    project_name: str = PACKAGE_NAME
    profiles_dir: Path | None = None
    # The registry block as declared, with --vars overrides applied (what dbt gets).
    registry_vars: dict[str, Any] = field(default_factory=dict)


def read_project(project_dir: Path | str) -> Project:
    directory = Path(project_dir).resolve()
    path = directory / "dbt_project.yml"
    if not path.is_file():
        raise RegistryError(
            f"no dbt_project.yml in {directory}; run in your project folder, pass --project-dir, "
            "or create a project with `unirank-cli init PATH`"
        )
    with path.open() as handle:
        project = load_yaml(handle) or {}
    if not isinstance(project, Mapping) or "name" not in project:
        raise RegistryError(f"{path} is not a dbt project file (it has no `name`)")
    return Project(
        directory=directory,
        name=str(project["name"]),
        profile=str(project.get("profile", project["name"])),
        vars=dict(project.get("vars") or {}),
        model_paths=tuple(project.get("model-paths") or ["models"]),
    )


def resolve_registry_vars(
    project: Project, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The registry block dbt hands unirank's models for this project and these ``--vars``."""
    overrides = dict(overrides or {})
    raw = overrides.get(REGISTRY_VAR, project.vars.get(REGISTRY_VAR))
    if raw is None:
        raise RegistryError(
            f"registry: {project.directory / 'dbt_project.yml'} declares no `vars: {REGISTRY_VAR}:` "
            "block; declare your canvases, context columns, inputs and split there (see "
            "`unirank-cli init` and docs/registry.md)"
        )
    if not isinstance(raw, Mapping):
        raise RegistryError(
            f"registry: vars.{REGISTRY_VAR} must be a mapping of registry keys, got {raw!r}"
        )
    keys = set(Registry.model_fields)
    return {**raw, **{k: v for k, v in overrides.items() if k in keys}}


def parse_var_overrides(text: str | None) -> dict[str, Any]:
    """Parse a ``--vars`` string (YAML or JSON, as dbt accepts) into a dict."""
    if not text:
        return {}
    try:
        value = load_yaml(text)
    except yaml.YAMLError as exc:
        raise RegistryError(f"--vars is not valid YAML/JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise RegistryError(
            f"--vars must be a mapping like '{{stratification: {{budget: 1000}}}}', got {text!r}"
        )
    return value


def known_models(project: Project) -> set[str]:
    """Names of the models dbt can find for this project: its own and its packages' (installed
    or, before `dbt deps`, unirank's own)."""
    roots = [project.directory / p for p in project.model_paths]
    packages = project.directory / "dbt_packages"
    if packages.is_dir():
        for package in packages.iterdir():
            if (package / "dbt_project.yml").is_file():
                roots.append(package / "models")
    roots.append(UNIRANK_ROOT / "models")
    return {p.stem for root in roots if root.is_dir() for p in root.rglob("*.sql")}


def check_models_exist(registry: Registry, project: Project) -> None:
    """Every model the registry names is a model of the project or of unirank."""
    models = known_models(project)
    named = [
        ("inputs.items", registry.inputs.items),
        ("inputs.engagements", registry.inputs.engagements),
        *((f"canvas '{c.name}' label_model", c.label_model) for c in registry.canvases),
        *((f"features[{f.model}]", f.model) for f in registry.features),
    ]
    if registry.inputs.source_rows:
        named.append(("inputs.source_rows", registry.inputs.source_rows))
    for where, model in named:
        if model not in models:
            raise RegistryError(
                f"registry: {where} names model '{model}', which is not a model of "
                f"{project.directory} (or of unirank); add models/.../{model}.sql or fix the name"
            )


def load_settings(
    project_dir: Path | str = ".",
    var_overrides: Mapping[str, Any] | None = None,
    duckdb_path: Path | str | None = None,
    artifacts_dir: Path | str | None = None,
    reports_dir: Path | str | None = None,
    target: str | None = None,
    profiles_dir: Path | str | None = None,
) -> Settings:
    """Read the project under ``project_dir``, apply ``--vars`` overrides, validate the registry
    and locate the outputs.

    The warehouse is the DuckDB file of the profile's target (profiles.yml, rendered as dbt
    renders it; relative paths are relative to the project folder). Models go to
    ``artifacts/`` (``UNIRANK_ARTIFACTS_DIR``), reports to ``reports/`` (``UNIRANK_REPORTS_DIR``)
    in the project folder. ``target`` names the profiles.yml target (``UNIRANK_TARGET``).
    """
    from ranker import profiles

    project = read_project(project_dir)
    overrides = dict(var_overrides or {})
    registry_vars = resolve_registry_vars(project, overrides)
    registry = parse_registry(registry_vars)
    check_models_exist(registry, project)
    target = target or os.environ.get("UNIRANK_TARGET") or None
    profiles_path = Path(profiles_dir).resolve() if profiles_dir else None
    if duckdb_path is None:
        duckdb_path = profiles.duckdb_path(project, target, overrides, profiles_path)
    return Settings(
        project_dir=project.directory,
        duckdb_path=_under(project.directory, duckdb_path or DEFAULT_DUCKDB_PATH),
        artifacts_dir=_under(
            project.directory,
            artifacts_dir or os.environ.get("UNIRANK_ARTIFACTS_DIR", "artifacts"),
        ),
        reports_dir=_under(
            project.directory, reports_dir or os.environ.get("UNIRANK_REPORTS_DIR", "reports")
        ),
        registry=registry,
        var_overrides=overrides,
        target=target,
        project_name=project.name,
        profiles_dir=profiles_path,
        registry_vars=registry_vars,
    )


def _under(project: Path, path: Path | str) -> Path:
    resolved = Path(path)
    return resolved if resolved.is_absolute() else project / resolved
