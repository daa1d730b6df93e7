"""Online scoring of contexts the cache does not hold: the same candidates, features and scores as
batch serving (train/serve skew, online edition), the per-canvas modes and budget, hot swaps."""

from __future__ import annotations

import json
import shutil
import threading
import time
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from cli.main import app
from ranker import artifacts
from ranker.cache_reader import current_cache_path, current_reader
from ranker.config import Settings
from ranker.online import OnlineScorer
from ranker.online_skew import skew
from ranker.online_tables import OnlineTables
from ranker.registry import RegistryError, parse_registry
from ranker.serve import online_scorer, recommend
from tests.conftest import PROJECT_DIR, with_online_budget, with_serving_mode

pytestmark = pytest.mark.dbt


def _cached(settings: Settings, canvas: str) -> tuple[dict[str, str], list[tuple[str, float]]]:
    """A cached context of ``canvas`` (every context column it was scored with, the carried ones
    too) and its cached (item, score) list."""
    with duckdb.connect(str(current_cache_path(settings)), read_only=True) as con:
        key = con.execute(
            "select min(context_key) from recommendations where task_type = ?", [canvas]
        ).fetchall()[0][0]
        rows = con.execute(
            "select item_id, score from recommendations where task_type = ? and context_key = ? "
            "order by rank",
            [canvas, key],
        ).fetchall()
    columns = settings.registry.canvas(canvas).context_columns
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        values = con.execute(
            f"select {', '.join(columns)} from serving_candidates "
            "where task_type = ? and context_key = ? limit 1",
            [canvas, key],
        ).fetchall()[0]
    sentinels = {c.name: str(c.sentinel) for c in settings.registry.context_columns}
    context = {c: str(v) for c, v in zip(columns, values, strict=True) if str(v) != sentinels[c]}
    return context, [(str(i), float(s)) for i, s in rows]


def test_online_features_and_scores_match_batch_serving(served_project: Settings) -> None:
    """For served contexts of every canvas, the online path finds the candidates batch serving
    found (same sources, same order) and computes the same value of every feature and the same
    score as the warehouse's serving_candidates - the SQL the model was trained on."""
    report = skew(served_project, contexts_per_canvas=8)
    served = [c for c in served_project.registry.canvases if c.serving is not None]
    assert report.contexts >= 2 * len(served) and report.candidates > 100 * len(served) // 2
    assert report.ok, "\n".join(str(m) for m in report.mismatches[:10])


def test_the_skew_check_fails_on_a_deliberate_mismatch(
    served_project: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An online feature one off from its SQL definition, and an online table that disagrees
    with the warehouse, are both reported, naming canvas, context, item and column."""
    counted = OnlineScorer._user_history

    def one_more(self: OnlineScorer, *args: Any) -> Any:
        values = counted(self, *args)
        if values is None:
            return None
        return lambda item: {
            **values(item),
            "user_item_engagements": values(item)["user_item_engagements"] + 1,
        }

    monkeypatch.setattr(OnlineScorer, "_user_history", one_more)
    report = skew(served_project, contexts_per_canvas=3)
    columns = {(m.canvas, m.column) for m in report.mismatches}
    assert ("home", "user_item_engagements") in columns and ("home", "score") in columns
    assert "item " in str(report.mismatches[0]) and "in batch" in str(report.mismatches[0])
    monkeypatch.undo()

    loaded = OnlineTables.__init__

    def stale(self: OnlineTables, *args: Any) -> None:
        loaded(self, *args)
        for values in self.item_features.values():
            values["item_engagements"] = values["item_engagements"] + 1

    monkeypatch.setattr(OnlineTables, "__init__", stale)
    report = skew(served_project, contexts_per_canvas=2)
    stale_columns = {m.column for m in report.mismatches}
    assert "item_engagements" in stale_columns and not report.ok


def test_mode_online_scores_a_cached_context_as_the_cache_did(served_project: Settings) -> None:
    """In mode `online` every lookup is scored at request time: for a context the cache holds,
    scored by the same model from the same build, the answer is the cache's list and scores."""
    online = with_serving_mode(served_project, "online")
    for canvas in ("home", "related", "search", "category"):
        context, cached = _cached(served_project, canvas)
        result = recommend(canvas, context, k=len(cached), settings=online)
        assert result.answered_by == "online", canvas
        got = [(r.item_id, r.score) for r in result.items]
        assert [i for i, _ in got] == [i for i, _ in cached], canvas
        assert all(abs(a[1] - b[1]) < 1e-9 for a, b in zip(got, cached, strict=True)), canvas  # type: ignore[operator]


def test_unseen_contexts_of_every_canvas_are_scored_online(served_project: Settings) -> None:
    """A new user, an unseen query, an item the cache has no entry for, a category with other
    context: candidates from the canvas's sources, scored by the current model, best first."""
    current = artifacts.current_name(artifacts.models_dir(served_project.artifacts_dir))
    with duckdb.connect(str(current_cache_path(served_project)), read_only=True) as con:
        title = str(
            con.execute("select title from item_catalogue order by item_id").fetchall()[0][0]
        )
        cached_items = {
            str(r[0])
            for r in con.execute(
                "select context_key from recommendations where task_type = 'related'"
            ).fetchall()
        }
        item = next(
            str(r[0])
            for r in con.execute(
                "select item_id from item_catalogue order by recent_engagements desc"
            ).fetchall()
            if str(r[0]) not in cached_items
        )
    contexts: list[tuple[str, dict[str, str]]] = [
        ("home", {"user_id": "brand-new-user", "country": "DE", "device": "ios"}),
        ("search", {"query_text": f"zzz {title.split()[0].upper()}"}),
        ("related", {"source_item_id": item, "user_id": "brand-new-user"}),
    ]
    for canvas, context in contexts:
        result = recommend(canvas, context, k=5, settings=served_project)
        assert result.answered_by == "online", (canvas, result)
        assert result.model_version == current and not result.over_budget
        scores = [r.score for r in result.items]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)  # type: ignore[type-var]
        serving = served_project.registry.canvas(canvas).serving
        assert serving is not None and {r.source for r in result.items} <= set(serving.sources)
        if canvas == "related":
            assert item not in {r.item_id for r in result.items}  # never its own source item


def test_over_the_budget_the_fallback_chain_answers_and_says_so(
    served_project: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Online scoring that runs past the canvas's online_timeout_ms, in the request (model and
    tables loaded) or in the worker that loads them: the fallback chain answers, flagged
    over_budget. What the worker scores is kept: once it is done, that context is answered
    online."""
    warm = with_online_budget(served_project, 20)
    assert online_scorer(warm).warm(current_reader(warm)) is None
    assembled = OnlineScorer.features

    def slow_features(self: OnlineScorer, *args: Any) -> Any:
        time.sleep(0.05)  # longer than the 20 ms budget
        return assembled(self, *args)

    monkeypatch.setattr(OnlineScorer, "features", slow_features)
    inline = recommend("home", {"user_id": "slow-user"}, k=5, settings=warm)
    assert inline.over_budget and inline.answered_by == "popular_in_canvas"
    assert len(inline.items) == 5 and all(r.score is None for r in inline.items)
    monkeypatch.undo()

    cold = with_online_budget(served_project, 20)  # a new scorer: nothing loaded yet
    release = threading.Event()
    scored = OnlineScorer.score

    def held(self: OnlineScorer, *args: Any) -> Any:
        release.wait(10)
        return scored(self, *args)

    monkeypatch.setattr(OnlineScorer, "score", held)
    first = recommend("home", {"user_id": "held-user"}, k=5, settings=cold)
    assert first.over_budget and first.answered_by == "popular_in_canvas"
    release.set()
    deadline = time.monotonic() + 10
    while True:  # the worker finishes the scoring it started
        again = recommend("home", {"user_id": "held-user"}, k=5, settings=cold)
        if again.answered_by == "online" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert again.answered_by == "online" and not again.over_budget


def test_a_new_current_model_scores_online_without_a_restart(served_copy: Settings) -> None:
    """CURRENT moved to another model version: the next online answers name it."""
    first = recommend("home", {"user_id": "someone-new"}, k=3, settings=served_copy)
    root = artifacts.models_dir(served_copy.artifacts_dir)
    old = artifacts.current_version(root)
    new_name = old.version + "-copy"
    shutil.copytree(old.path, root / new_name)
    metadata = json.loads((root / new_name / "metadata.json").read_text())
    metadata["version"] = new_name
    (root / new_name / "metadata.json").write_text(json.dumps(metadata))
    (root / "CURRENT").write_text(new_name)
    deadline = time.monotonic() + 5
    while True:  # one request loads the new model while others may still get the old one
        second = recommend("home", {"user_id": "someone-else"}, k=3, settings=served_copy)
        if second.model_version == new_name or time.monotonic() > deadline:
            break
    assert first.model_version == old.version and second.model_version == new_name
    assert second.answered_by == "online"


def test_a_cache_without_online_tables_falls_back_and_readyz_says_why(
    served_copy: Settings,
) -> None:
    """A cache scored from a warehouse built before online scoring: misses are answered by the
    fallback chain, never an error, and /readyz names the reason and the commands to run."""
    from fastapi.testclient import TestClient

    from ranker.http_service import create_app

    cache = current_cache_path(served_copy).resolve()
    with duckdb.connect(str(cache)) as con:
        con.execute("drop table online_item_features")
    result = recommend("home", {"user_id": "nobody-online"}, k=4, settings=served_copy)
    assert result.answered_by == "popular_in_canvas" and len(result.items) == 4
    with TestClient(create_app(served_copy)) as client:
        ready = client.get("/readyz").json()
    assert ready["canvases"]["home"]["mode"] == "cache_then_online"
    assert ready["canvases"]["home"]["online"] is False
    assert "unirank-cli build" in ready["canvases"]["home"]["online_unavailable"]


def test_cli_recommend_scores_an_unseen_context_online(
    served_project: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIRANK_DUCKDB_PATH", str(served_project.duckdb_path))
    monkeypatch.setenv("UNIRANK_ARTIFACTS_DIR", str(served_project.artifacts_dir))
    result = CliRunner().invoke(
        app,
        [
            "recommend", "home", "--context", "user_id=cli-new-user", "--context", "device=ios",
            "--k", "3", "--json", "--project-dir", str(PROJECT_DIR),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["answered_by"] == "online" and len(payload["items"]) == 3


def test_a_canvas_declared_online_cannot_use_a_feature_online_scoring_cannot_compute() -> None:
    """A project's own feature of `request` grain (the default) meant for a canvas whose serving
    mode is declared online: the registry names the canvas, the mode and the feature; declared
    `grain: item`, it is read from the latest probes and the registry is fine; left to the
    default mode, that canvas resolves to cache_only."""
    import yaml

    registry = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text())["vars"]["unirank"]
    registry["features"] = [
        *registry["features"],
        {
            "model": "int_features__session",
            "columns": [{"name": "session_views", "type": "int", "default": 0}],
            "canvases": ["home"],
        },
    ]
    assert parse_registry(registry).serving_mode("home") == "cache_only"
    assert parse_registry(registry).serving_mode("search") == "cache_then_online"
    registry["canvases"][0]["serving"]["mode"] = "online"
    with pytest.raises(RegistryError, match="canvas 'home' serving mode online scores at request"):
        parse_registry(registry)
    registry["features"][-1]["grain"] = "item"
    assert parse_registry(registry).serving_mode("home") == "online"


def test_online_tables_hold_every_catalogue_item_per_served_canvas(
    served_project: Settings,
) -> None:
    """online_item_features: one row per (served canvas, catalogue item), at the serving clock
    the batch candidates were featurised at."""
    with duckdb.connect(str(served_project.duckdb_path), read_only=True) as con:
        items = con.execute("select count(*) from item_catalogue").fetchall()[0][0]
        rows = con.execute(
            "select task_type, count(*), count(distinct item_id) from online_item_features group by 1"
        ).fetchall()
        clocks = con.execute(
            "select (select max(served_as_of) from online_item_features), "
            "(select max(served_as_of) from serving_candidates)"
        ).fetchall()[0]
    served = {c.name for c in served_project.registry.canvases if c.serving is not None}
    assert {r[0] for r in rows} == served
    assert all(r[1] == r[2] == items for r in rows)
    assert clocks[0] == clocks[1]


def test_cli_check_online_reports_agreement_and_lists_differences(
    served_project: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`unirank-cli check-online`: 0 differences and exit 0 on the served project; with an
    online feature off by one, exit 1 and the differences named."""
    monkeypatch.setenv("UNIRANK_DUCKDB_PATH", str(served_project.duckdb_path))
    monkeypatch.setenv("UNIRANK_ARTIFACTS_DIR", str(served_project.artifacts_dir))
    command = ["check-online", "--contexts", "3", "--project-dir", str(PROJECT_DIR)]
    agreed = CliRunner().invoke(app, command)
    assert agreed.exit_code == 0, agreed.output
    assert "0 differences" in " ".join(agreed.output.split())

    matched = OnlineScorer._context_match

    def off(self: OnlineScorer, *args: Any) -> Any:
        values = matched(self, *args)
        assert values is not None
        return lambda item: {
            **values(item),
            "category_match": min(values(item)["category_match"], 0),
        }

    monkeypatch.setattr(OnlineScorer, "_context_match", off)
    differed = CliRunner().invoke(app, command)
    assert differed.exit_code == 1
    assert "category_match is 1 in batch, 0 online" in " ".join(differed.output.split())


def test_online_imputes_a_missing_context_as_batch_serving_does(served_project: Settings) -> None:
    """The registry's `impute` rules give a served context, online, the values the SQL gave it
    at the serving clock (int_serving_contexts): home's category is the user's top category,
    related's query the source item's title. (category_name, which the demo does not declare,
    is the category itself: a dbt unit test pins the SQL, the last lines here the online rule.)"""
    registry = served_project.registry
    imputing = [c for c in registry.canvases if c.impute and c.serving is not None]
    assert {c.name for c in imputing} == {"home", "related"}
    scorer = OnlineScorer(served_project)
    _, _, features, _ = scorer.model()
    tables = scorer.tables(current_reader(served_project), features)
    warehouse = duckdb.connect(str(served_project.duckdb_path), read_only=True)
    try:
        for canvas in imputing:
            columns = [i.column for i in canvas.impute]
            contexts = warehouse.execute(
                f"select {', '.join([*canvas.context_columns, *columns])} "
                "from int_serving_contexts where task_type = ? order by context_key",
                [canvas.name],
            ).fetchall()
            filled = 0
            for row in contexts:
                given = dict(zip(canvas.context_columns, map(str, row), strict=False))
                expected = dict(zip(columns, row[len(canvas.context_columns) :], strict=True))
                online = scorer.full_context(tables, canvas, given)
                assert {c: online[c] for c in columns} == expected, (canvas.name, given)
                filled += any(v != registry.sentinel(c) for c, v in expected.items())
            assert filled > len(contexts) // 2, f"{canvas.name}: the rules filled too little"
    finally:
        warehouse.close()
    page = registry.canvas("category")
    named = type(page).model_validate(
        {**page.model_dump(), "impute": [{"column": "query_text", "rule": "category_name"}]}
    )
    assert scorer.full_context(tables, named, {"category": "jazz"})["query_text"] == "jazz"
    assert scorer.full_context(tables, named, {})["query_text"] == registry.sentinel("query_text")
