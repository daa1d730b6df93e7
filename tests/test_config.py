"""The registry as Python reads it: the project's own values, overrides and every validation error."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ranker.config import (
    RegistryError,
    Stratification,
    load_settings,
    parse_registry,
    parse_var_overrides,
    read_project_vars,
    resolve_dataset_vars,
)


@pytest.fixture(scope="module")
def project_vars(project_dir: Path) -> dict[str, Any]:
    return read_project_vars(project_dir)


def _with(project_vars: dict[str, Any], **changes: Any) -> dict[str, Any]:
    variables = copy.deepcopy(project_vars)
    variables.update(changes)
    return variables


def _canvases_with(
    project_vars: dict[str, Any], index: int, **changes: Any
) -> list[dict[str, Any]]:
    canvases = copy.deepcopy(project_vars["canvases"])
    canvases[index].update(changes)
    return canvases


def test_project_registry_loads(project_dir: Path) -> None:
    settings = load_settings(project_dir)
    registry = settings.registry
    assert registry.canvas_names == ("home", "search", "related", "category")
    assert registry.canvas("search").required_context == ("query_text",)
    assert registry.sentinel("query_text") == "__none__"
    assert registry.stratification.strategy == "traffic"
    assert registry.split.valid_from < registry.split.test_from
    assert "task_type" in registry.features.categorical
    assert settings.duckdb_path == project_dir / "warehouse" / "unirank.duckdb"


def test_project_training_block_reaches_catboost(project_dir: Path) -> None:
    """Every key of vars.training lands in TrainParams unchanged, and the speed levers reach the
    CatBoost parameters (the defaults `unirank-cli train` and the benchmarks use)."""
    from ranker.train import TrainParams

    raw = read_project_vars(project_dir)["training"]
    params = TrainParams.from_settings(load_settings(project_dir))
    assert {key: getattr(params, key) for key in raw} == raw
    catboost = params.catboost_params()
    assert catboost["loss_function"] == f"YetiRank:permutations={raw['yetirank_permutations']}"
    assert catboost["one_hot_max_size"] == raw["one_hot_max_size"]
    assert catboost["learning_rate"] == raw["learning_rate"]


def test_override_replaces_a_whole_key(project_dir: Path) -> None:
    settings = load_settings(project_dir, {"stratification": {"strategy": "equal", "budget": 100}})
    assert settings.registry.stratification == Stratification("equal", 100, 0)


def test_duckdb_path_follows_the_environment(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("UNIRANK_DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    assert load_settings(project_dir).duckdb_path == tmp_path / "w.duckdb"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda v: {"canvases": _canvases_with(v, 1, context_columns=["query_txt", "user_id"])},
            "canvas 'search' names unknown context column 'query_txt'",
        ),
        (
            lambda v: {"canvases": _canvases_with(v, 2, label_model="int_relatd__labels")},
            "canvas 'related' names label model 'int_relatd__labels'",
        ),
        (lambda v: {"canvases": _canvases_with(v, 3, weight=0)}, "canvas 'category' has weight 0"),
        (
            lambda v: {"canvases": _canvases_with(v, 0, weight=-1.5)},
            "canvas 'home' has weight -1.5",
        ),
        (
            lambda v: {"canvases": _canvases_with(v, 0, required_context=["query_text"])},
            "canvas 'home' requires context column 'query_text'",
        ),
        (
            lambda v: {"canvases": [*v["canvases"], v["canvases"][0]]},
            "canvas 'home' is declared twice",
        ),
        (
            lambda v: {"stratification": {"strategy": "random", "budget": 10}},
            "stratification.strategy is 'random'",
        ),
        (
            lambda v: {"stratification": {"strategy": "equal", "budget": 0}},
            "stratification.budget is 0",
        ),
        (
            lambda v: {"split": {"valid_from": "2026-03-01", "test_from": "2026-02-01"}},
            "valid_from < test_from",
        ),
        (
            lambda v: {
                "context_columns": [*v["context_columns"], {"name": "device", "sentinel": "x"}]
            },
            "context column 'device' is declared twice",
        ),
        (
            lambda v: {"context_columns": [{"name": "user_id", "type": "uuid", "sentinel": "x"}]},
            "has type 'uuid'",
        ),
    ],
)
def test_bad_registry_names_the_entry(
    project_vars: dict[str, Any], project_dir: Path, change: Any, expected: str
) -> None:
    with pytest.raises(RegistryError) as info:
        parse_registry(_with(project_vars, **change(project_vars)), project_dir)
    assert expected in str(info.value)


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


def test_target_requests_examples() -> None:
    n = {"home": 450, "search": 300, "related": 150, "category": 100}
    w = {"home": 1.0, "search": 1.0, "related": 1.0, "category": 2.0}
    assert Stratification("traffic", 500, 0).target_requests(n, w) == {
        "home": 225,
        "search": 150,
        "related": 75,
        "category": 50,
    }
    assert Stratification("equal", 400, 0).target_requests(n, w) == {
        "home": 100,
        "search": 100,
        "related": 100,
        "category": 100,
    }
    assert Stratification("weights", 500, 0).target_requests(n, w) == {
        "home": 100,
        "search": 100,
        "related": 100,
        "category": 100,
    }
    assert Stratification("equal", 10_000, 0).target_requests(n, w) == n


@given(
    counts=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 10_000), min_size=1
    ),
    budget=st.integers(1, 20_000),
)
@example(counts={"a": 113}, budget=15)  # float ceil(113 * (15 / 113)) gave 16
def test_traffic_keeps_canvas_shares(counts: dict[str, int], budget: int) -> None:
    weights = dict.fromkeys(counts, 1.0)
    kept = Stratification("traffic", budget, 0).target_requests(counts, weights)
    total = sum(counts.values())
    for canvas, n in counts.items():
        assert kept[canvas] <= n
        if budget < total:  # every canvas keeps the same share, rounded up
            assert abs(kept[canvas] - n * budget / total) < 1
    assert sum(kept.values()) <= min(total, budget) + len(counts)


def test_each_dataset_has_its_own_canvases_and_folders(project_dir: Path) -> None:
    demo = load_settings(project_dir)
    movielens = load_settings(project_dir, {"dataset": "movielens"})
    diginetica = load_settings(project_dir, {"dataset": "diginetica"})
    assert demo.registry.dataset == "demo"
    assert movielens.registry.canvas("home").label_model == "int_movielens__home_labels"
    assert "search" not in diginetica.registry.canvas_names  # the sample has no queries
    assert movielens.registry.split.test_from.isoformat() == "2017-01-01"
    # a dataset never shares a warehouse, a model pointer or reports with another
    paths = [(s.duckdb_path, s.artifacts_dir, s.reports_dir) for s in (demo, movielens, diginetica)]
    for kind in range(3):
        assert len({p[kind] for p in paths}) == 3
    assert movielens.duckdb_path.parent.name == "movielens"


def test_registry_key_precedence_is_vars_then_dataset_block_then_top_level() -> None:
    project = {
        "split": {"valid_from": "2026-01-01", "test_from": "2026-02-01"},
        "stratification": {"strategy": "traffic", "budget": 10, "seed": 1},
        "dataset": "demo",
        "datasets": {
            "demo": {},
            "logs": {"split": {"valid_from": "2016-01-01", "test_from": "2017-01-01"}},
        },
    }
    assert resolve_dataset_vars(project)["split"]["valid_from"] == "2026-01-01"
    chosen = resolve_dataset_vars(project, {"dataset": "logs"})
    # the dataset block wins over the top level
    assert chosen["split"]["valid_from"] == "2016-01-01"
    assert chosen["stratification"]["budget"] == 10  # a key the block does not set: top level
    given_split = {"valid_from": "2015-01-01", "test_from": "2015-06-01"}
    assert (
        resolve_dataset_vars(project, {"dataset": "logs", "split": given_split})["split"]
        == given_split
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dataset": "netflix"}, "vars.dataset is 'netflix'; declare it under vars.datasets"),
        ({"datasets": {"demo": {"quarantine_max_share": 0.5}}}, "a dataset block may set only"),
    ],
)
def test_bad_dataset_selection_names_the_problem(
    project_dir: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(RegistryError, match=message):
        load_settings(project_dir, overrides)


def test_a_dataset_without_its_contract_models_is_named(project_dir: Path) -> None:
    datasets = {"demo": {}, "shop": {}}
    with pytest.raises(RegistryError, match="dataset 'shop' has no model 'int_shop__items'"):
        load_settings(project_dir, {"dataset": "shop", "datasets": datasets})
