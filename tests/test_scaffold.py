"""`unirank-cli init` as a new user meets it: a project of their own that installs unirank as a
package, grows a canvas and a feature of its own, and builds, trains, scores and recommends
through the CLI - with no file of unirank changed. And the generic feature checks: a feature
model that reads the probe's own time, or treats serving probes differently, fails the build."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from ranker.config import UNIRANK_ROOT
from ranker.scaffold import ScaffoldError, init_project
from ranker.warehouse_publish import failed_path

pytestmark = pytest.mark.dbt

CLI = str(Path(sys.executable).with_name("unirank-cli"))

OWN_FEATURE = """
{#- The item's clicks earlier the same day, strictly before the probe. -#}
with

feature_probes as (
    select * from {{ ref('int_feature_probes') }}
),

engagements as (
    select * from {{ ref('int_sample__engagements') }}
),

final as (
    select
        feature_probes.request_id,
        feature_probes.item_id,
        count(engagements.item_id) as item_clicks_today
    from feature_probes
    left join engagements
        on engagements.item_id = feature_probes.item_id
        and engagements.engaged_at __COMPARISON__ feature_probes.requested_at
        and engagements.engaged_at >= date_trunc('day', feature_probes.requested_at)
    __WHERE__
    group by feature_probes.request_id, feature_probes.item_id
)

select * from final
"""


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "UNIRANK_DUCKDB_PATH"}
    env["COLUMNS"] = "200"  # rich tables unfolded, as on a wide terminal
    return subprocess.run(
        [CLI, *args], cwd=project, env=env, capture_output=True, text=True, check=False
    )


def _package_fingerprint() -> str:
    """A hash of every file of the unirank dbt package a project builds from."""
    digest = hashlib.sha256()
    for folder in ("models", "macros", "seeds", "tests/dbt"):
        for path in sorted((UNIRANK_ROOT / folder).rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(UNIRANK_ROOT)).encode())
                digest.update(path.read_bytes())
    digest.update((UNIRANK_ROOT / "dbt_project.yml").read_bytes())
    return digest.hexdigest()


def _add_feature(project: Path, comparison: str = "<", where: str = "") -> None:
    (project / "models" / "features" / "int_features__item_clicks_today.sql").write_text(
        OWN_FEATURE.replace("__COMPARISON__", comparison).replace("__WHERE__", where)
    )
    config_path = project / "dbt_project.yml"
    config = yaml.safe_load(config_path.read_text())
    features = config["vars"]["unirank"]["features"]
    if not any(isinstance(f, dict) for f in features):
        features.append(
            {
                "model": "int_features__item_clicks_today",
                "columns": [{"name": "item_clicks_today", "type": "int", "default": 0}],
            }
        )
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def _query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def fresh_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`unirank-cli init shop` in a new folder, untouched."""
    base = tmp_path_factory.mktemp("init")
    result = _cli(base, "init", "shop")
    assert result.returncode == 0, result.stdout + result.stderr
    return base / "shop"


def test_init_writes_a_project_that_installs_unirank(fresh_project: Path) -> None:
    config = yaml.safe_load((fresh_project / "dbt_project.yml").read_text())
    assert config["name"] == config["profile"] == "shop"
    registry = config["vars"]["unirank"]
    assert [c["name"] for c in registry["canvases"]] == ["home", "related"]
    packages = yaml.safe_load((fresh_project / "packages.yml").read_text())
    assert packages == {"packages": [{"local": str(UNIRANK_ROOT)}]}
    profile = yaml.safe_load((fresh_project / "profiles.yml").read_text())
    assert "warehouse/shop.duckdb" in profile["shop"]["outputs"]["duckdb"]["path"]
    header = (fresh_project / "seeds" / "sample_impressions.csv").read_text().splitlines()[0]
    assert (
        header == "request_id,canvas,user_id,source_item_id,item_id,position,clicked,requested_at"
    )
    label_model = (fresh_project / "models" / "labels" / "int_home__labels.sql").read_text()
    assert "one row per (request, candidate item)" in label_model  # the contract, spelled out
    assert "unirank-cli build" in (fresh_project / "README.md").read_text()


def test_init_refuses_to_overwrite(fresh_project: Path, tmp_path: Path) -> None:
    before = (fresh_project / "dbt_project.yml").read_text()
    result = _cli(fresh_project.parent, "init", "shop")
    assert result.returncode == 1
    assert "already holds a dbt project" in result.stderr
    assert (fresh_project / "dbt_project.yml").read_text() == before
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "README.md").write_text("mine")
    with pytest.raises(ScaffoldError, match=r"already has README\.md"):
        init_project(tmp_path / "half")
    assert (tmp_path / "half" / "README.md").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "half").iterdir()) == ["README.md"]


GUIDE = UNIRANK_ROOT / "docs" / "own-data.md"
_STEP = re.compile(r"<!-- guide: (?P<what>[^>]+?) -->\n```\w*\n(?P<body>.*?)```", re.S)


def guide_steps() -> list[tuple[str, str]]:
    """The walkthrough of docs/own-data.md: (what, body) for every marked block, in order."""
    return [(m["what"], m["body"]) for m in _STEP.finditer(GUIDE.read_text())]


def run_guide(folder: Path) -> Path:
    """Do what the guide says, in ``folder``: run its commands as a shell would (the venv on
    PATH, as after `source .venv/bin/activate`), write its files, add its registry entries.
    Returns the project folder."""
    env = {k: v for k, v in os.environ.items() if k != "UNIRANK_DUCKDB_PATH"}
    env["PATH"] = f"{Path(CLI).parent}{os.pathsep}{env['PATH']}"
    env["COLUMNS"] = "200"
    cwd = project = folder
    for what, body in guide_steps():
        if what.startswith("run"):
            cwd = folder if what == "run in a new folder" else project
            for line in body.strip().splitlines():
                if line.startswith("cd "):
                    cwd = project = cwd / line[3:].strip()
                    continue
                done = subprocess.run(
                    line, shell=True, cwd=cwd, env=env, capture_output=True, text=True, check=False
                )
                assert done.returncode == 0, f"{line}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
                if line == "unirank-cli build":
                    # the generic feature checks ran on every registered feature model
                    for check in ("are_point_in_time", "serve_as_trained", "one_row_per_probe"):
                        assert f"PASS assert_feature_models_{check}" in done.stderr + done.stdout
        elif what.startswith("file "):
            path = project / what.removeprefix("file ")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
        elif what.startswith("add to vars.unirank."):
            key = what.removeprefix("add to vars.unirank.")
            config_path = project / "dbt_project.yml"
            config = yaml.safe_load(config_path.read_text())
            config["vars"]["unirank"][key].extend(yaml.safe_load(body))
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        else:
            raise AssertionError(f"unknown guide step {what!r}")
    return project


def test_the_guide_builds_trains_scores_and_recommends_without_changing_unirank(
    tmp_path: Path,
) -> None:
    """docs/own-data.md, done as written: a new project grows a canvas and a feature of its own
    and goes through build, train, score and recommend - with no file of unirank changed."""
    unirank_before = _package_fingerprint()
    kinds = [what.split()[0] for what, _ in guide_steps()]
    assert kinds.count("file") == 2 and kinds.count("add") == 2 and kinds.count("run") >= 3
    project = run_guide(tmp_path)

    warehouse = project / "warehouse" / "shop.duckdb"
    per_canvas = dict(
        _query(
            warehouse,
            "select task_type, max(item_clicks_today) from ranking_examples group by task_type",
        )
    )
    assert set(per_canvas) == {"home", "related", "popular"}
    assert all(v is not None and v > 0 for v in per_canvas.values())
    current = (project / "artifacts" / "models" / "CURRENT").read_text().strip()
    metadata = json.loads(
        (project / "artifacts" / "models" / current / "metadata.json").read_text()
    )
    assert "item_clicks_today" in metadata["features"]
    assert {e["task"] for e in metadata["metrics"]} >= {"home", "related", "popular", "all"}
    assert all("item_clicks_today" in f for f in metadata["feature_importance"].values())
    assert (project / "reports" / current / "index.html").is_file()

    score = _cli(project, "score")
    assert score.returncode == 0, score.stderr[-3000:]
    served = _query(warehouse, "select count(*), max(item_clicks_today) from serving_candidates")
    assert served[0][0] > 0 and served[0][1] is not None
    cache = project / "warehouse" / "cache" / "current.duckdb"
    ((user,),) = _query(
        cache, "select min(context_key) from recommendations where task_type = 'home'"
    )
    answer = _cli(project, "recommend", "home", "--context", f"user_id={user}", "--json")
    assert answer.returncode == 0, answer.stderr
    recommendation = json.loads(answer.stdout)
    assert recommendation["answered_by"] == "cache" and len(recommendation["items"]) == 10
    assert recommendation["model_version"] == current

    assert _package_fingerprint() == unirank_before


@pytest.fixture(scope="module")
def built_project(fresh_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the fresh project with the feature of its own, built once."""
    import shutil

    project = tmp_path_factory.mktemp("checks") / "shop"
    shutil.copytree(fresh_project, project)
    _add_feature(project)
    result = _cli(project, "build")
    assert result.returncode == 0, result.stdout[-2000:]
    return project


@pytest.mark.parametrize(
    ("mutation", "failing_check"),
    [
        # reads the probe's own time: the click a request is labelled with counts as "before"
        ({"comparison": "<="}, "assert_feature_models_are_point_in_time"),
        # a different answer for serving probes than for training ones
        (
            {"where": "where not feature_probes.is_serving"},
            "assert_feature_models_serve_as_trained",
        ),
    ],
)
def test_a_feature_model_that_leaks_or_skews_fails_the_build(
    built_project: Path, tmp_path: Path, mutation: dict[str, str], failing_check: str
) -> None:
    """The same feature model, mutated, in a copy of a built project: the generic check fails
    the build and names the model and the column (the failing rows are stored for `select *
    from` in the audit schema). The correct model passes them (the guide's test)."""
    import shutil

    project = tmp_path / "shop"
    shutil.copytree(built_project, project, symlinks=True)
    _add_feature(project, **mutation)
    result = _cli(project, "build", "--select", f"+{failing_check}")
    assert result.returncode == 1
    assert f"Failure in test {failing_check}" in result.stderr
    # The warehouse is the last good build; the failed build's own tables (with the stored
    # failures) are kept beside it, and the error says where.
    warehouse = failed_path(project / "warehouse" / "shop.duckdb")
    assert str(warehouse) in result.stderr
    rows = _query(
        warehouse,
        f"select feature_model, feature, differing_probes from main_dbt_test__audit.{failing_check}",
    )
    assert rows and rows[0][:2] == ("int_features__item_clicks_today", "item_clicks_today")
    assert rows[0][2] > 0
