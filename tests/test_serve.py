"""Lookups: cached contexts, the fallback chain for unseen ones, filters and input errors."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from cli.main import app
from ranker.cache_reader import _reader, current_cache_path
from ranker.config import Settings
from ranker.errors import CacheMissingError, RecommendError
from ranker.registry import Canvas
from ranker.serve import _fallback, fallback_items_sql, fallback_key_kind, recommend

pytestmark = pytest.mark.dbt


def _cache(
    settings: Settings, sql: str, params: list[object] | None = None
) -> list[tuple[object, ...]]:
    with duckdb.connect(str(current_cache_path(settings)), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _a_context(settings: Settings, task: str) -> str:
    return str(
        _cache(
            settings, "select min(context_key) from recommendations where task_type = ?", [task]
        )[0][0]
    )


@pytest.mark.parametrize("task", ["home", "search", "related", "category"])
def test_cached_context_returns_the_cache_in_rank_order(
    served_project: Settings, task: str
) -> None:
    key = _a_context(served_project, task)
    expected = [
        r[0]
        for r in _cache(
            served_project,
            "select item_id from recommendations where task_type = ? and context_key = ? order by rank limit 5",
            [task, key],
        )
    ]
    result = recommend(task, key, k=5, settings=served_project)
    assert result.answered_by == "cache"
    assert [r.item_id for r in result.items] == expected
    assert [r.rank for r in result.items] == [1, 2, 3, 4, 5]
    assert result.model_version is not None


def test_cached_lookups_answer_what_the_sql_answers(served_project: Settings) -> None:
    """The reader's in-memory spans give, for every cached context, the rows the plain SQL over
    the cache gives (rank order, scores, sources), also with a country filter."""
    contexts = _cache(
        served_project, "select distinct task_type, context_key from recommendations order by all"
    )
    assert len(contexts) > 20
    sql = (
        "select item_id, score, source from recommendations "
        "where task_type = ? and context_key = ? {country} order by rank limit ?"
    )
    country_filter = (
        "and item_id in (select item_id from item_catalogue "
        "where coalesce(available_countries, '') = '' "
        "or position('|' || ? || '|' in '|' || available_countries || '|') > 0)"
    )
    for task, key in contexts:
        for country in (None, "DE"):
            expected = _cache(
                served_project,
                sql.format(country="" if country is None else country_filter),
                [task, key] + ([] if country is None else [country]) + [5],
            )
            cached = [tuple(r) for r in expected]
            result = recommend(task, key, k=5, country=country, settings=served_project)
            head = [(r.item_id, r.score, r.source) for r in result.items[: len(cached)]]
            assert head == cached, (task, key, country)


def test_unknown_user_is_answered_by_the_home_fallback(cache_only_project: Settings) -> None:
    result = recommend("home", "a-user-never-seen", k=7, settings=cache_only_project)
    assert result.answered_by == "popular_in_canvas"
    assert len(result.items) == 7 and {r.source for r in result.items} == {"popular_in_canvas"}
    assert all(r.score is None for r in result.items)
    expected = [
        r[0]
        for r in _cache(
            cache_only_project,
            "select item_id from serving_fallbacks where source = 'popular_in_canvas' and retrieval_key = 'home' order by source_rank limit 7",
        )
    ]
    assert [r.item_id for r in result.items] == expected


def test_related_chain_skips_what_it_cannot_answer_and_never_returns_the_source(
    cache_only_project: Settings,
) -> None:
    unknown = recommend("related", "no-such-item", k=5, settings=cache_only_project)
    assert unknown.answered_by == "popular_in_canvas"  # no co-engagement, no category for it
    cached = {
        r[0]
        for r in _cache(
            cache_only_project,
            "select distinct context_key from recommendations where task_type = 'related'",
        )
    }
    catalogued = [
        r[0]
        for r in _cache(cache_only_project, "select item_id from item_catalogue order by item_id")
    ]
    cold_item = next(i for i in catalogued if i not in cached)
    result = recommend("related", cold_item, k=10, settings=cache_only_project)
    assert result.answered_by in ("coengagement", "popular_in_category")
    assert cold_item not in [r.item_id for r in result.items]
    assert len({r.item_id for r in result.items}) == len(result.items) == 10


def test_unseen_query_is_matched_against_titles(cache_only_project: Settings) -> None:
    title = str(
        _cache(cache_only_project, "select title from item_catalogue order by item_id limit 1")[0][
            0
        ]
    )
    word = title.split()[0]
    result = recommend("search", f"qqqq {word.upper()}", k=5, settings=cache_only_project)
    assert result.answered_by == "title_match"
    titles = dict(_cache(cache_only_project, "select item_id, title from item_catalogue"))
    assert all(word in str(titles[r.item_id]).split() for r in result.items)


def test_country_filter_keeps_only_available_items(served_project: Settings) -> None:
    key = _a_context(served_project, "home")
    result = recommend("home", key, k=20, country="DE", settings=served_project)
    available = dict(
        _cache(served_project, "select item_id, available_countries from item_catalogue")
    )
    assert result.items and all("DE" in str(available[r.item_id]).split("|") for r in result.items)


def test_unknown_availability_means_available_everywhere(served_project: Settings) -> None:
    """An item whose catalogue row has no countries ('' or NULL, as MovieLens and Diginetica)
    is available in every country, the way the feature is_available_in_country reads it; an
    item with countries is available only there."""
    from ranker.cache_reader import CacheReader, _CatalogueItem, current_cache_path

    reader = CacheReader(current_cache_path(served_project))
    try:
        reader._catalogue = {
            "listed": _CatalogueItem("c", "DE|FR", 0),
            "blank": _CatalogueItem("c", "", 0),
            "null": _CatalogueItem("c", None, 0),
        }
        assert reader.available("listed", "DE") and not reader.available("listed", "US")
        assert reader.available("blank", "US") and reader.available("null", "US")
        assert reader.available("listed", None)
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("task", "context", "k", "message"),
    [
        ("promo", "x", 5, "unknown canvas 'promo'"),
        ("home", "", 5, "looked up by user_id"),
        ("home", {"query_text": "x"}, 5, "canvas 'home' has no context column 'query_text'"),
        ("home", {"country": "DE"}, 5, "looked up by user_id"),
        ("home", "u1", 0, "k must be an integer from 1 to 100 for canvas 'home'"),
        ("search", "q", 1001, "k must be an integer from 1 to 1000 for canvas 'search'"),
    ],
)
def test_bad_lookups_raise_a_specific_error(
    served_project: Settings, task: str, context: object, k: int, message: str
) -> None:
    with pytest.raises(RecommendError, match=message):
        recommend(task, context, k=k, settings=served_project)  # type: ignore[arg-type]


def test_sql_metacharacters_are_data(cache_only_project: Settings) -> None:
    rows_before = _cache(cache_only_project, "select count(*) from recommendations")
    for hostile in ("x' or '1'='1", "'; drop table recommendations; --", 'u"0', "%_\\"):
        result = recommend("home", hostile, k=3, settings=cache_only_project)
        assert result.answered_by == "popular_in_canvas"
    assert _cache(cache_only_project, "select count(*) from recommendations") == rows_before


def test_no_cache_yet_says_what_to_run(tiny_settings: Settings) -> None:
    with pytest.raises(CacheMissingError, match="unirank-cli score"):
        recommend("home", "u1", settings=tiny_settings)


def test_cli_recommend_json_and_errors(
    served_project: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIRANK_DUCKDB_PATH", str(served_project.duckdb_path))
    runner = CliRunner()
    project = str(served_project.project_dir)
    key = _a_context(served_project, "related")
    result = runner.invoke(
        app, ["recommend", "related", "--item", key, "--k", "3", "--json", "--project-dir", project]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["answered_by"] == "cache" and len(payload["items"]) == 3
    missing = runner.invoke(app, ["recommend", "related", "--user", "u1", "--project-dir", project])
    assert missing.exit_code == 1 and "pass --context source_item_id=VALUE" in missing.output
    bad_k = runner.invoke(
        app, ["recommend", "home", "--user", "u1", "--k", "0", "--project-dir", project]
    )
    assert bad_k.exit_code == 1 and "k must be" in bad_k.output
    unknown = runner.invoke(app, ["recommend", "promo", "--user", "u1", "--project-dir", project])
    assert unknown.exit_code == 1 and "unknown canvas" in unknown.output


def _sql_fallback(
    con: duckdb.DuckDBPyConnection,
    canvas: Canvas,
    source: str,
    key: str,
    needed: int,
    exclude: set[str],
    country: str | None,
) -> list[str]:
    """The fallback lookup as plain SQL over the cache (how lookups answered before the reader
    kept lists and a title index in memory): the reference the fast path must match."""
    assert canvas.serving is not None
    kind = fallback_key_kind(source, canvas.serving.key)
    if kind is None:
        return []
    country_filter = (
        ""
        if country is None
        else " where item_id in (select item_id from item_catalogue where coalesce(available_countries, '') = '' or position('|' || ?::varchar || '|' in '|' || available_countries || '|') > 0)"
    )
    key_param = canvas.name if kind == "task" else key
    limit = needed + len(exclude)
    if source == "title_match":
        sql = (
            "with known as (" + fallback_items_sql(kind) + "), "
            "words as (select distinct unnest(string_split(lower(trim(?::varchar)), ' ')) as word), "
            "matched as (select c.item_id, count(*) as n, max(c.recent_engagements) as pop "
            "from item_catalogue as c, words where words.word <> '' "
            "and list_contains(string_split(lower(c.title), ' '), words.word) group by c.item_id), "
            "ranked as (select item_id, 0 as tier, source_rank as r from known "
            "union all select item_id, 1 as tier, row_number() over (order by n desc, pop desc, item_id) as r "
            "from matched where not exists (select 1 from known)) "
            f"select item_id from ranked{country_filter} order by tier, r limit ?"
        )
        params: list[object] = (
            [source, key_param, key] + ([country] if country is not None else []) + [limit]
        )
    else:
        # (ordered again after the filter: an IN filter does not keep the subquery's order)
        sql = (
            f"select item_id from ({fallback_items_sql(kind)}) as f{country_filter} "
            "order by source_rank limit ?"
        )
        params = [source, key_param] + ([country] if country is not None else []) + [limit]
    found = [str(row[0]) for row in con.execute(sql, params).fetchall()]
    return [item for item in found if item not in exclude][:needed]


def test_fallback_lookups_answer_what_the_sql_answers(served_project: Settings) -> None:
    """Fallback lists, the title index and the country filter in memory give exactly the
    answers of the SQL over the cache: unseen and known keys, every canvas and source, with and
    without a country, with items to exclude."""
    recommend("home", "warm-up", settings=served_project)
    reader = _reader(served_project)
    con = reader.connection
    rng = random.Random(7)
    titles = [str(r[0]) for r in con.execute("select title from item_catalogue").fetchall()]
    words = sorted({w for t in titles for w in t.lower().split()})
    keys = {
        (str(s), str(k))
        for s, k in con.execute(
            "select source, retrieval_key from serving_fallbacks using sample 200 rows"
        ).fetchall()
    }
    items = [str(r[0]) for r in con.execute("select item_id from item_catalogue").fetchall()]
    contexts = [
        *(k for _, k in keys),
        *items[:20],
        *(" ".join(rng.sample(words, rng.randint(1, 3))) for _ in range(30)),
        *(f"  {rng.choice(words).upper()}  qqq {rng.choice(words)} " for _ in range(10)),
        "",
        "no-such-key",
        "x' or '1'='1",
        f"ÉCOLE {words[0].upper()} straße",  # not ASCII: lower-cased by DuckDB
        f"\t{words[1]} ",
    ]
    checked = 0
    for canvas in served_project.registry.canvases:
        assert canvas.serving is not None
        for source in canvas.serving.fallbacks:
            for key in contexts:
                country = rng.choice([None, "DE", "US", "BR", "XX", "D"])
                exclude = set(rng.sample(items, 3))
                needed = rng.randint(1, 30)
                expected = _sql_fallback(con, canvas, source, key, needed, exclude, country)
                assert _fallback(reader, canvas, source, key, needed, exclude, country) == (
                    expected
                ), (canvas.name, source, key, country)
                checked += bool(expected)
    assert checked > 50  # most cases return items: the comparison is not vacuous


def test_the_documented_call_reads_the_registry_once(
    served_project: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`recommend(task, context, k)` without settings reads the project once per process (reading
    the registry asks dbt, ~18 ms), and again only when the paths it reads change."""
    import ranker.config
    from ranker import serve

    loads: list[Path] = []
    real = ranker.config.load_settings

    def counting(*args: Any, **kwargs: Any) -> Settings:
        loads.append(Path.cwd())
        return real(*args, **kwargs)

    monkeypatch.setattr(ranker.config, "load_settings", counting)
    monkeypatch.setattr(serve, "_default", None)
    monkeypatch.chdir(served_project.project_dir)
    monkeypatch.setenv("UNIRANK_DUCKDB_PATH", str(served_project.duckdb_path))
    monkeypatch.setenv("UNIRANK_ARTIFACTS_DIR", str(served_project.artifacts_dir))
    for _ in range(3):
        assert serve.recommend("home", "nobody", k=3).items
    assert len(loads) == 1
    monkeypatch.setenv("UNIRANK_ARTIFACTS_DIR", f"{served_project.artifacts_dir}/")
    serve.recommend("home", "nobody", k=3)
    assert len(loads) == 2
