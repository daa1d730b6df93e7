"""Settings: which project, its registry as dbt resolves it (`vars: unirank:` plus --vars), the
models it names, and where its warehouse and outputs live."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from ranker.build import dbt_vars
from ranker.config import (
    RegistryError,
    load_settings,
    parse_var_overrides,
    read_project,
    resolve_registry_vars,
)
from ranker.registry import Stratification

from .conftest import copy_project


def test_project_registry_loads(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNIRANK_DUCKDB_PATH", raising=False)
    settings = load_settings(project_dir)
    assert settings.project_name == "unirank"
    assert settings.registry.canvas_names == ("home", "search", "related", "category")
    # the warehouse is the profile's DuckDB file, relative to the project folder
    assert settings.duckdb_path == project_dir / "warehouse" / "unirank.duckdb"
    assert settings.artifacts_dir == project_dir / "artifacts"


def test_project_training_block_reaches_catboost(project_dir: Path) -> None:
    """The registry's training settings land in TrainParams unchanged, and the speed levers
    reach the CatBoost parameters (the defaults `unirank-cli train` and the benchmarks use)."""
    from ranker.train import TrainParams

    settings = load_settings(project_dir)
    params = TrainParams.from_settings(settings)
    training = settings.registry.training.model_dump()
    assert {key: getattr(params, key) for key in training} == training
    catboost = params.catboost_params()
    assert catboost["loss_function"] == f"YetiRank:permutations={training['yetirank_permutations']}"
    assert catboost["one_hot_max_size"] == training["one_hot_max_size"]


def test_a_registry_key_on_the_command_line_replaces_that_key(project_dir: Path) -> None:
    overrides = {"stratification": {"strategy": "equal", "budget": 100}, "demo_source": "seed"}
    settings = load_settings(project_dir, overrides)
    assert settings.registry.stratification == Stratification(strategy="equal", budget=100)
    assert settings.registry.canvas_names == ("home", "search", "related", "category")
    # dbt gets the whole registry, so a unit test that pins its own registry keeps it
    passed = dbt_vars(settings)
    assert passed["demo_source"] == "seed"
    assert passed["unirank"]["stratification"] == {"strategy": "equal", "budget": 100}
    assert passed["unirank"]["canvases"] == settings.registry_vars["canvases"]
    assert "stratification" not in passed


def test_the_whole_registry_can_be_replaced(project_dir: Path) -> None:
    raw = copy.deepcopy(read_project(project_dir).vars["unirank"])
    raw["canvases"] = raw["canvases"][:1]
    settings = load_settings(project_dir, {"unirank": raw})
    assert settings.registry.canvas_names == ("home",)
    assert resolve_registry_vars(read_project(project_dir), {"unirank": raw}) == raw


def test_bad_vars_text_is_a_registry_error() -> None:
    assert parse_var_overrides("{a: 1}") == {"a": 1}
    assert parse_var_overrides('{"a": {"b": 2}}') == {"a": {"b": 2}}
    with pytest.raises(RegistryError, match="mapping"):
        parse_var_overrides("just text")
    with pytest.raises(RegistryError, match="not valid"):
        parse_var_overrides("{a: [1,")


def test_missing_project_file_says_where(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"no dbt_project\.yml"):
        load_settings(tmp_path)


def test_a_project_without_a_registry_is_told_where_to_declare_it(tmp_path: Path) -> None:
    (tmp_path / "dbt_project.yml").write_text(
        yaml.safe_dump({"name": "shop", "config-version": 2, "vars": {"other": 1}})
    )
    with pytest.raises(RegistryError, match=r"declares no `vars: unirank:` block"):
        load_settings(tmp_path)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda r: r["canvases"][2].update(label_model="int_relatd__labels"),
            "canvas 'related' label_model names model 'int_relatd__labels', which is not a model",
        ),
        (
            lambda r: r["inputs"].update(items="int_shop__items"),
            "inputs.items names model 'int_shop__items'",
        ),
        (
            lambda r: r["features"].append(
                {
                    "model": "int_features__price",
                    "columns": [{"name": "price", "type": "float", "default": -1}],
                }
            ),
            "features[int_features__price] names model 'int_features__price'",
        ),
    ],
)
def test_a_model_the_registry_names_must_exist(
    project_dir: Path, change: Any, expected: str
) -> None:
    raw = copy.deepcopy(read_project(project_dir).vars["unirank"])
    change(raw)
    with pytest.raises(RegistryError) as info:
        load_settings(project_dir, {"unirank": raw})
    assert expected in str(info.value)


def test_a_project_that_installs_unirank_reads_its_own_registry_and_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another project: its own name, registry, models and profile (a DuckDB file inside it),
    with unirank's built-in models found before `dbt deps` installed the package."""
    monkeypatch.delenv("UNIRANK_DUCKDB_PATH", raising=False)
    project = copy_project(tmp_path / "unirank_copy")
    config = yaml.safe_load((project / "dbt_project.yml").read_text())
    config["name"] = config["profile"] = "shop"
    (project / "dbt_project.yml").write_text(yaml.safe_dump(config))
    (project / "profiles.yml").write_text(
        "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        "      path: \"{{ env_var('UNIRANK_DUCKDB_PATH', 'data/shop.duckdb') }}\"\n"
    )
    settings = load_settings(project)
    assert settings.project_name == "shop"
    assert settings.duckdb_path == project / "data" / "shop.duckdb"
    assert settings.registry.canvas_names == ("home", "search", "related", "category")
