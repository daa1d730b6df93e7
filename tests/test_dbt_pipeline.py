"""The dbt project end to end on DuckDB: the demo build, stratification against the Python
formula, determinism, compile-time registry errors, the quarantine gate and a fifth canvas."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from ranker.build import BuildError, dbt_executable, run_dbt
from ranker.config import Settings, load_settings

from .conftest import copy_project

pytestmark = pytest.mark.dbt


def _query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def _dbt(project: Path, duckdb_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """dbt as a user would call it, without unirank's Python validation in front."""
    env = dict(os.environ, UNIRANK_DUCKDB_PATH=str(duckdb_path))
    return subprocess.run(
        [dbt_executable(), *args, "--project-dir", str(project), "--profiles-dir", str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_demo_build_fills_every_canvas_and_split(demo_warehouse: Settings) -> None:
    rows = _query(
        demo_warehouse.duckdb_path,
        "select task_type, split, count(distinct request_id) from ranking_examples group by all",
    )
    counts = {(t, s): n for t, s, n in rows}
    for canvas in demo_warehouse.registry.canvas_names:
        for split in ("train", "valid", "test"):
            assert counts.get((canvas, split), 0) > 100, (canvas, split)


def test_mart_has_registry_features_and_no_null_context(demo_warehouse: Settings) -> None:
    registry = demo_warehouse.registry
    columns = {
        name
        for (name,) in _query(
            demo_warehouse.duckdb_path,
            "select column_name from information_schema.columns where table_name = 'ranking_examples'",
        )
    }
    assert set(registry.model_features.all) <= columns
    nulls = " + ".join(f"count(*) - count({c.name})" for c in registry.context_columns)
    assert _query(demo_warehouse.duckdb_path, f"select {nulls} from ranking_examples")[0][0] == 0


def test_canvas_specific_features_default_outside_their_canvas(demo_warehouse: Settings) -> None:
    rows = _query(
        demo_warehouse.duckdb_path,
        """
        select task_type,
            min(query_title_match), max(query_title_match),
            min(source_coengagement), max(source_coengagement),
            min(category_match), max(category_match)
        from ranking_examples group by task_type
        """,
    )
    by_canvas = {r[0]: r[1:] for r in rows}
    assert by_canvas["home"][:4] == (-1.0, -1.0, -1, -1)
    # home has no browsed category, but imputes the user's top one (registry `impute`): users
    # without history keep the sentinel (-1), the others match some candidates (1)
    assert by_canvas["home"][4:] == (-1, 1)
    # related has no query, but imputes its source item's title
    assert by_canvas["related"][1] > 0
    assert by_canvas["search"][0] >= 0 and by_canvas["search"][1] > 0
    assert by_canvas["related"][2] >= 0 and by_canvas["related"][3] > 0
    assert by_canvas["category"][4] == 0 and by_canvas["category"][5] == 1


def _kept_requests(path: Path) -> dict[str, set[str]]:
    kept: dict[str, set[str]] = {}
    for task, request in _query(
        path, "select distinct task_type, request_id from int_labels_unioned"
    ):
        kept.setdefault(task, set()).add(request)
    return kept


@pytest.mark.parametrize(
    "stratification",
    [
        {"strategy": "traffic", "budget": 3000, "seed": 42},
        {"strategy": "equal", "budget": 2000, "seed": 42},
        {"strategy": "weights", "budget": 3000, "seed": 42},
    ],
)
def test_stratified_union_matches_python_and_keeps_requests_whole(
    demo_warehouse: Settings, warehouse_copy: Path, stratification: dict[str, Any]
) -> None:
    # candidate rules off: every label row of a kept request stays (the rules have their tests)
    canvases = [
        {
            "name": c.name,
            "label_model": c.label_model,
            "context_columns": list(c.context_columns),
            "required_context": list(c.required_context),
            "weight": w,
            "exclude_source_item": False,
        }
        for c, w in zip(demo_warehouse.registry.canvases, (4.0, 3.0, 2.0, 1.0), strict=True)
    ]
    overrides = {"stratification": stratification, "canvases": canvases}
    settings = load_settings(demo_warehouse.project_dir, overrides, duckdb_path=warehouse_copy)
    run_dbt(settings, ["run", "--select", "int_labels_unioned"], echo=False)

    available = dict(
        _query(
            warehouse_copy,
            " union all ".join(
                f"select '{c.name}', count(distinct request_id) from {c.label_model}"
                for c in settings.registry.canvases
            ),
        )
    )
    weights = {c.name: c.weight for c in settings.registry.canvases}
    expected = settings.registry.stratification.target_requests(available, weights)
    kept = _kept_requests(warehouse_copy)
    assert {k: len(v) for k, v in kept.items()} == expected

    # Requests are never split: a kept request has all the candidates its label model has.
    split_requests = _query(
        warehouse_copy,
        " union all ".join(
            f"""select count(*) from (
                select request_id, count(*) as n from {c.label_model} group by request_id
            ) as prepared
            inner join (
                select request_id, count(*) as n from int_labels_unioned group by request_id
            ) as unioned using (request_id)
            where prepared.n <> unioned.n"""
            for c in settings.registry.canvases
        ),
    )
    assert all(n == 0 for (n,) in split_requests)

    # Deterministic: a second run selects exactly the same requests.
    run_dbt(settings, ["run", "--select", "int_labels_unioned"], echo=False)
    assert _kept_requests(warehouse_copy) == kept


def test_union_unit_tests_keep_their_vars_under_command_line_vars(
    demo_warehouse: Settings, warehouse_copy: Path
) -> None:
    """The union's unit tests pin their registry with `overrides: vars`. A build with --vars for
    a registry key (another budget, as the Spark equivalence test passes) must not replace it:
    dbt gives a unit test's overrides precedence over --vars, whether unirank-cli passes the
    key inside the whole registry or a user passes it alone to dbt."""
    overrides = {"stratification": {"strategy": "traffic", "budget": 600, "seed": 1}}
    settings = load_settings(demo_warehouse.project_dir, overrides, duckdb_path=warehouse_copy)
    result = run_dbt(
        settings, ["test", "--select", "int_labels_unioned,test_type:unit"], echo=False
    )
    assert result.output.count(" PASS int_labels_unioned::union_") == 7, result.output
    alone = _dbt(
        demo_warehouse.project_dir,
        warehouse_copy,
        "test",
        "--select",
        "int_labels_unioned,test_type:unit",
        "--vars",
        json.dumps(overrides),
    )
    assert alone.stdout.count(" PASS int_labels_unioned::union_") == 7, alone.stdout


def _misspelt(registry: dict[str, Any], change: str) -> dict[str, Any]:
    """The demo registry with one of the misspellings a user makes."""
    registry = copy.deepcopy(registry)
    if change == "top level":
        registry["stratificaton"] = registry.pop("stratification", {"budget": 1000})
    elif change == "canvas":
        registry["canvases"][0]["requried_context"] = registry["canvases"][0].pop(
            "required_context"
        )
    elif change == "training":
        registry["training"] = {"learnig_rate": 0.2}
    elif change == "type":
        registry["canvases"][0]["weight"] = -2
    elif change == "reference":
        registry["canvases"][1]["context_columns"] = ["query_txt", "user_id"]
    elif change == "knob":
        registry["canvases"][0]["serving"]["max_k"] = 5
    elif change == "impute":
        registry["canvases"][1]["impute"] = [{"column": "category", "rule": "source_item_title"}]
    elif change == "online":
        registry["canvases"][0]["serving"]["mode"] = "online"
        registry["features"].append(
            {
                "model": "int_features__session",
                "columns": [{"name": "session_views", "type": "int", "default": 0}],
            }
        )
    return registry


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            "top level",
            "unknown key `stratificaton` in vars.unirank; did you mean `stratification`?",
        ),
        (
            "canvas",
            "unknown key `requried_context` in vars.unirank.canvases[home]; did you mean "
            "`required_context`?",
        ),
        (
            "training",
            "unknown key `learnig_rate` in vars.unirank.training; did you mean `learning_rate`?",
        ),
        ("type", "vars.unirank.canvases[home].weight is -2"),
        ("reference", "canvas 'search' names unknown context column 'query_txt'"),
        ("knob", "canvas 'home' serving max_k=5 is below its k=20"),
        (
            "impute",
            "canvas 'search' imputes 'category' with source_item_title, which reads "
            "'source_item_id'; the canvas does not fill it",
        ),
        (
            "online",
            "canvas 'home' serving mode online scores at request time, but feature model "
            "'int_features__session' (grain request) cannot be computed then",
        ),
    ],
)
def test_a_bad_registry_stops_dbt_alone_and_the_cli_with_the_same_message(
    tmp_path: Path, change: str, expected: str
) -> None:
    """The registry in a project's dbt_project.yml, misspelt: `dbt parse` alone (no Python in
    front) and `unirank-cli registry` both refuse it, naming the key, where it is and the
    nearest valid key, before any table is written."""
    project = copy_project(tmp_path / "project")
    config_path = project / "dbt_project.yml"
    config = yaml.safe_load(config_path.read_text())
    config["vars"]["unirank"] = _misspelt(config["vars"]["unirank"], change)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    result = _dbt(project, tmp_path / "w.duckdb", "parse")
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr
    cli = CliRunner().invoke(app, ["registry", "--project-dir", str(project)])
    assert cli.exit_code == 1
    assert expected in " ".join(cli.output.split())
    assert not (tmp_path / "w.duckdb").exists()


def test_a_registry_key_given_to_dbt_alone_is_checked_too(
    project_dir: Path, tmp_path: Path
) -> None:
    result = _dbt(
        project_dir,
        tmp_path / "w.duckdb",
        "parse",
        "--vars",
        json.dumps({"stratification": {"strategy": "stratified", "budget": 10}}),
    )
    assert result.returncode != 0
    assert "vars.unirank.stratification.strategy is stratified" in result.stdout


def test_quarantine_share_above_the_limit_fails_the_build(
    demo_warehouse: Settings, warehouse_copy: Path
) -> None:
    settings = load_settings(
        demo_warehouse.project_dir, {"quarantine_max_share": 0.001}, duckdb_path=warehouse_copy
    )
    with pytest.raises(BuildError, match="quarantine_summary"):
        run_dbt(settings, ["build", "--select", "quarantine_summary"], echo=False)
    reasons = dict(
        _query(
            warehouse_copy,
            "select quarantine_reason, count(*) from quarantined_rows group by all",
        )
    )
    assert {"unknown canvas", "unparseable requested_at", "null request_id", "null item_id"} <= set(
        reasons
    )


FIFTH_CANVAS_MODEL = """
{#- Trending: items pushed in a country-wide "trending now" row. Demo stand-in: logged-out
    category-page requests re-read as trending requests of their country. -#}
with

impressions_graded as (
    select * from {{ ref('int_demo__impressions_graded') }}
),

final as (
    select
        'trending-' || request_id as request_id,
        item_id,
        country,
        label,
        requested_at
    from impressions_graded
    where canvas = 'category'
        and user_id is null
)

select * from final
"""


def test_fifth_canvas_needs_one_model_and_one_registry_entry(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    (project / "models" / "intermediate" / "demo" / "int_trending__labels.sql").write_text(
        FIFTH_CANVAS_MODEL
    )
    config_path = project / "dbt_project.yml"
    config = yaml.safe_load(config_path.read_text())
    config["vars"]["unirank"]["canvases"].append(
        {
            "name": "trending",
            "label_model": "int_trending__labels",
            "context_columns": ["country"],
            "required_context": ["country"],
            "weight": 1.0,
        }
    )
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    settings = load_settings(project, duckdb_path=tmp_path / "w.duckdb")
    assert settings.registry.canvas_names[-1] == "trending"
    run_dbt(settings, ["build"], echo=False)  # every dbt test, sentinel invariants included
    rows = _query(
        settings.duckdb_path,
        """select count(distinct request_id), min(user_id), max(user_id), min(query_text), min(device)
           from ranking_examples where task_type = 'trending'""",
    )
    n_requests, min_user, max_user, query, device = rows[0]
    assert n_requests > 20
    assert min_user == max_user == "__anonymous__"
    assert query == "__none__" and device == "__unknown__"


def test_cli_build_on_generated_parquet_logs(
    project_dir: Path, tiny_logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIRANK_DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    result = CliRunner().invoke(
        app, ["build", "--project-dir", str(project_dir), "--logs", str(tiny_logs)]
    )
    assert result.exit_code == 0, result.output
    for canvas in ("home", "search", "related", "category"):
        assert canvas in result.output
    users = _query(tmp_path / "w.duckdb", "select count(*) from stg_demo__users")[0][0]
    assert users == len(list(tiny_logs.glob("users/*.parquet"))) * 300
