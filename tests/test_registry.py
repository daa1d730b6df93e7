"""The registry schema (ranker/registry.py): every problem is one error naming the key, where it
is and what to do; defaults, features, timestamps and the generated files dbt and editors read."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ranker.config import read_project
from ranker.registry import (
    BUILTIN_FEATURES,
    OPT_IN_FEATURES,
    REGISTRY_VAR,
    Registry,
    RegistryError,
    Stratification,
    compact_spec,
    generated_files,
    nearest,
    parse_registry,
)


@pytest.fixture(scope="module")
def demo_registry(project_dir: Path) -> dict[str, Any]:
    return read_project(project_dir).vars[REGISTRY_VAR]


def _changed(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``raw`` with ``value`` at a dotted ``path`` (list items by index)."""
    changed = copy.deepcopy(raw)
    *parents, last = path.split(".")
    node: Any = changed
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is _DELETE:
        del node[int(last) if isinstance(node, list) else last]
    elif isinstance(node, list):
        index = int(last)
        node[index : index + 1] = [value]  # replaces an item, or appends one past the end
    else:
        node[last] = value
    return changed


_DELETE = object()


def test_demo_registry_parses_with_defaults(demo_registry: dict[str, Any]) -> None:
    registry = parse_registry(demo_registry)
    assert registry.canvas_names == ("home", "search", "related", "category")
    assert registry.canvas("search").required_context == ("query_text",)
    assert registry.sentinel("query_text") == "__none__"
    assert registry.stratification == Stratification()  # left out: the default
    assert registry.training.yetirank_permutations == 1  # the measured fast default
    assert registry.split.valid_from == datetime(2026, 2, 2)
    assert (
        registry.canvas("home").exclude_engaged and registry.canvas("related").exclude_source_item
    )
    features = registry.model_features
    assert features.categorical == ("task_type", "country", "device", "category", "item_category")
    assert "query_title_match" in features.numeric and "user_id" not in features.all


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        # an unknown key anywhere: named, where it is, and the nearest valid key
        (
            "stratificaton",
            {"budget": 10},
            "unknown key `stratificaton` in vars.unirank; did you mean `stratification`?",
        ),
        (
            "canvases.0.requried_context",
            ["user_id"],
            "unknown key `requried_context` in vars.unirank.canvases[home]; did you mean "
            "`required_context`?",
        ),
        (
            "training.learnig_rate",
            0.2,
            "unknown key `learnig_rate` in vars.unirank.training; did you mean `learning_rate`?",
        ),
        (
            "canvases.2.serving.fallbaks",
            ["popular_in_canvas"],
            "unknown key `fallbaks` in vars.unirank.canvases[related].serving; did you mean "
            "`fallbacks`?",
        ),
        (
            "features.5",
            {"model": "int_features__price", "colums": []},
            "unknown key `colums` in vars.unirank.features[int_features__price]; did you mean "
            "`columns`?",
        ),
        ("zzz", 1, "unknown key `zzz` in vars.unirank; valid keys: inputs, context_columns"),
        # wrong values, named with their place
        (
            "stratification",
            {"strategy": "random"},
            "vars.unirank.stratification.strategy is 'random'",
        ),
        ("canvases.3.weight", 0, "vars.unirank.canvases[category].weight is 0"),
        ("canvases.0.serving.k", 0, "vars.unirank.canvases[home].serving.k is 0"),
        ("training.depth", 40, "vars.unirank.training.depth is 40"),
        ("inputs", _DELETE, "vars.unirank.inputs is missing"),
        (
            "canvases.1.serving.sources",
            ["title_search"],
            "vars.unirank.canvases[search].serving.sources[0] is 'title_search'",
        ),
        # rules across keys
        (
            "canvases.1.context_columns",
            ["query_txt", "user_id"],
            "canvas 'search' names unknown context column 'query_txt'",
        ),
        (
            "canvases.0.required_context",
            ["query_text"],
            "canvas 'home' requires context column 'query_text'",
        ),
        ("canvases.3.name", "home", "canvas 'home' is declared twice"),
        (
            "split",
            {"valid_from": "2026-03-01", "test_from": "2026-02-01"},
            "valid_from < test_from is needed",
        ),
        (
            "split",
            {"valid_from": "2026-02-01T10:00:00+02:00", "test_from": "2026-03-01"},
            "naive timestamp (UTC, no time zone)",
        ),
        ("split", {"valid_from": "Feb 2", "test_from": "2026-03-01"}, "'Feb 2' is not a date"),
        (
            "context_columns.0.type",
            "uuid",
            "vars.unirank.context_columns[user_id].type is 'uuid'",
        ),
        (
            "canvases.2.serving.key",
            "category",
            "canvas 'related' serving key 'category' is not one of its context_columns",
        ),
        (
            "canvases.2.serving.max_k",
            3,
            "canvas 'related' serving max_k=3 is below its k=10",
        ),
        (
            "canvases.0.impute",
            [{"column": "country", "rule": "user_top_category"}],
            "canvas 'home' imputes 'country', which it fills itself",
        ),
        (
            "canvases.0.impute",
            [{"column": "genre", "rule": "user_top_category"}],
            "canvas 'home' imputes unknown context column 'genre'",
        ),
        (
            "canvases.1.impute",
            [{"column": "category", "rule": "source_item_category"}],
            "canvas 'search' imputes 'category' with source_item_category, which reads "
            "'source_item_id'; the canvas does not fill it",
        ),
        (
            "canvases.0.impute",
            [{"column": "category", "rule": "user_top_category"}] * 2,
            "canvas 'home' imputes 'category' twice",
        ),
        (
            "canvases.0.impute.0.rule",
            "user_favourite",
            "canvases[home].impute[0].rule",
        ),
        (
            "features.0",
            {"model": "int_features__item_popularity", "columns": []},
            "is built in: its columns are fixed",
        ),
        (
            "features.5",
            {"model": "int_features__price"},
            "feature model 'int_features__price' declares no columns",
        ),
        (
            "features.5",
            {
                "model": "int_features__price",
                "columns": [{"name": "price", "type": "float", "default": "none"}],
            },
            "column 'price' is float but its default is 'none'",
        ),
        (
            "features.5",
            {
                "model": "int_features__price",
                "columns": [{"name": "label", "type": "int", "default": 0}],
            },
            "column 'label' clashes",
        ),
        (
            "features.5",
            {
                "model": "int_features__price",
                "columns": [{"name": "price", "type": "float", "default": -1}],
                "canvases": ["checkout"],
            },
            "is meant for unknown canvas 'checkout'",
        ),
    ],
)
def test_a_bad_registry_is_one_error_naming_the_key(
    demo_registry: dict[str, Any], path: str, value: Any, expected: str
) -> None:
    with pytest.raises(RegistryError) as info:
        parse_registry(_changed(demo_registry, path, value))
    assert expected in str(info.value)


def test_split_accepts_dates_and_timestamps(demo_registry: dict[str, Any]) -> None:
    """A two-day log can be split: timestamps are kept to the second, not cut to the date."""
    registry = parse_registry(
        _changed(
            demo_registry,
            "split",
            {"valid_from": "2026-02-02 12:00", "test_from": "2026-02-02T18:30"},
        )
    )
    assert registry.split.valid_from == datetime(2026, 2, 2, 12, 0)
    assert registry.split.test_from == datetime(2026, 2, 2, 18, 30)
    from datetime import date

    dated = parse_registry(
        _changed(
            demo_registry, "split", {"valid_from": date(2026, 2, 2), "test_from": "2026-02-09"}
        )
    )
    assert dated.split.valid_from == datetime(2026, 2, 2)


def test_builtin_features_follow_the_declared_context(demo_registry: dict[str, Any]) -> None:
    """A built-in column whose context column the project lacks is left out; a built-in model
    left with no column is an error naming what it needs."""
    narrow = _changed(
        demo_registry,
        "context_columns",
        [
            {"name": "user_id", "sentinel": "__anonymous__"},
            {"name": "source_item_id", "sentinel": "__none__"},
        ],
    )
    narrow["canvases"] = [
        {
            "name": "related",
            "label_model": "int_related__labels",
            "context_columns": ["source_item_id", "user_id"],
        }
    ]
    registry = parse_registry(narrow)
    match = next(f for f in registry.feature_models if f.model == "int_features__context_match")
    assert [c.name for c in match.columns] == ["source_category_match"]
    narrow["context_columns"] = [{"name": "user_id", "sentinel": "__anonymous__"}]
    narrow["canvases"][0]["context_columns"] = ["user_id"]
    with pytest.raises(RegistryError, match=r"needs the context column\(s\) \['source_item_id'\]"):
        parse_registry(narrow)


def test_a_project_feature_is_one_entry(demo_registry: dict[str, Any]) -> None:
    registry = parse_registry(
        _changed(
            demo_registry,
            "features.5",
            {
                "model": "int_features__price",
                "columns": [
                    {"name": "price", "type": "float", "default": -1},
                    {"name": "brand", "type": "string", "default": "__none__"},
                ],
                "canvases": ["search"],
            },
        )
    )
    own = registry.feature_models[-1]
    assert not own.builtin and own.canvases == ("search",)
    assert registry.model_features.categorical[-1] == "brand"
    assert registry.model_features.numeric[-1] == "price"


def test_drift_checks_leave_out_counts_that_grow_by_construction(
    demo_registry: dict[str, Any],
) -> None:
    """The report and `monitor` test rates, shares, normalised values and categories; a
    cumulative count (built in, or a project column declared `drift: false`) and task_type
    (constant within a canvas) are not tested."""
    registry = parse_registry(
        _changed(
            demo_registry,
            "features.5",
            {
                "model": "int_features__price",
                "columns": [
                    {"name": "price", "type": "float", "default": -1},
                    {"name": "sales", "type": "int", "default": 0, "drift": False},
                ],
            },
        )
    )
    stable = registry.drift_features
    for counted in ("item_engagements", "user_engagements", "source_coengagement", "sales"):
        assert counted in registry.model_features.all and counted not in stable.all, counted
    for kept in ("item_category_rank_pct", "user_category_affinity", "price", "item_category"):
        assert kept in stable.all, kept
    assert "task_type" not in stable.all
    context_features = [c.name for c in registry.context_columns if c.feature]
    assert context_features and set(context_features) <= set(stable.categorical)
    with pytest.raises(RegistryError, match="drift"):
        parse_registry(
            _changed(
                demo_registry,
                "features.5",
                {
                    "model": "int_features__price",
                    "columns": [
                        {"name": "p", "type": "float", "default": -1, "drift": "sometimes"}
                    ],
                },
            )
        )


def test_features_default_to_every_builtin_but_the_opt_in_ones(
    demo_registry: dict[str, Any],
) -> None:
    raw = copy.deepcopy(demo_registry)
    del raw["features"]
    assert [f.model for f in parse_registry(raw).features] == [
        m for m in BUILTIN_FEATURES if m not in OPT_IN_FEATURES
    ]
    assert OPT_IN_FEATURES == ("int_features__representation",)


def test_generated_files_are_current(project_dir: Path) -> None:
    """The dbt macro and the published JSON Schema are regenerated from ranker/registry.py
    (`python -m ranker.registry`); a schema change without them fails here."""
    for relative, text in generated_files().items():
        assert (project_dir / relative).read_text() == text, f"regenerate {relative}"


def test_json_schema_forbids_unknown_keys() -> None:
    schema = json.loads(generated_files()["docs/registry.schema.json"])
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(Registry.model_fields)
    assert schema["$defs"]["Canvas"]["additionalProperties"] is False


def test_compact_spec_carries_defaults_and_bounds() -> None:
    spec = compact_spec()
    assert spec["keys"]["training"]["keys"]["learning_rate"] == {
        "type": "number",
        "above": 0,
        "max": 1,
        "default": 0.1,
    }
    assert spec["keys"]["features"]["items"]["shorthand"] == "model"
    assert set(spec["required"]) == {"inputs", "context_columns", "canvases", "split"}


def test_target_requests_examples() -> None:
    n = {"home": 450, "search": 300, "related": 150, "category": 100}
    w = {"home": 1.0, "search": 1.0, "related": 1.0, "category": 2.0}
    assert Stratification(strategy="traffic", budget=500).target_requests(n, w) == {
        "home": 225,
        "search": 150,
        "related": 75,
        "category": 50,
    }
    assert Stratification(strategy="equal", budget=400).target_requests(n, w) == dict.fromkeys(
        n, 100
    )
    assert Stratification(strategy="weights", budget=500).target_requests(n, w) == dict.fromkeys(
        n, 100
    )
    assert Stratification(strategy="equal", budget=10_000).target_requests(n, w) == n


@given(
    counts=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 10_000), min_size=1
    ),
    budget=st.integers(1, 20_000),
)
@example(counts={"a": 113}, budget=15)  # float ceil(113 * (15 / 113)) gave 16
def test_traffic_keeps_canvas_shares(counts: dict[str, int], budget: int) -> None:
    weights = dict.fromkeys(counts, 1.0)
    kept = Stratification(strategy="traffic", budget=budget).target_requests(counts, weights)
    total = sum(counts.values())
    for canvas, n in counts.items():
        assert kept[canvas] <= n
        if budget < total:  # every canvas keeps the same share, rounded up
            assert abs(kept[canvas] - n * budget / total) < 1
    assert sum(kept.values()) <= min(total, budget) + len(counts)


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("stratificaton", "stratification"),
        ("requried_context", "required_context"),
        ("learnig_rate", "learning_rate"),
        ("colums", "columns"),
        ("zzz", None),
        ("budget", "budget"),
    ],
)
def test_nearest_key_is_the_closest_by_edit_distance(word: str, expected: str | None) -> None:
    keys = [
        "inputs", "context_columns", "canvases", "features", "split", "stratification",
        "training", "learning_rate", "required_context", "columns", "budget",
    ]  # fmt: skip
    assert nearest(word, keys) == expected
