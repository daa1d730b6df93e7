"""Beyond-accuracy metrics of what is served: hand-checked lists, and what `score` records."""

from __future__ import annotations

import duckdb
import pytest

from ranker.beyond_accuracy import METRICS, cache_metrics
from ranker.cache_reader import current_cache_path
from ranker.config import Settings
from ranker.score import score_candidates


def test_metrics_on_hand_checked_lists() -> None:
    """Catalogue of 5 items (popularity ranks a=1 .. e=5, so percentiles 0.2 .. 1.0), categories
    x, x, y, y, z. home: u1 gets [a, b] (model), u2 gets [c, e] (one from a fallback). search:
    q1 gets [a, c, e] (model)."""
    con = duckdb.connect()
    con.execute(
        "create table item_catalogue as select * from (values "
        "('a', 'x', 50), ('b', 'x', 40), ('c', 'y', 30), ('d', 'y', 20), ('e', 'z', 10)"
        ") as t(item_id, category, recent_engagements)"
    )
    con.execute(
        "create table recommendations as select * from (values "
        "('home', 'u1', 1, 'a', 'model'), ('home', 'u1', 2, 'b', 'model'), "
        "('home', 'u2', 1, 'c', 'model'), ('home', 'u2', 2, 'e', 'popular_in_canvas'), "
        "('search', 'q1', 1, 'a', 'model'), ('search', 'q1', 2, 'c', 'model'), "
        "('search', 'q1', 3, 'e', 'model')"
        ") as t(task_type, context_key, rank, item_id, source)"
    )
    got = {(task, metric): value for task, metric, value in cache_metrics(con)}
    assert set(got) == {(t, m) for t in ("home", "search") for m in METRICS}
    assert got[("home", "coverage")] == pytest.approx(4 / 5)  # a, b, c, e
    assert got[("search", "coverage")] == pytest.approx(3 / 5)
    assert got[("home", "distinct_categories")] == pytest.approx((1 + 2) / 2)  # {x}, {y, z}
    assert got[("search", "distinct_categories")] == pytest.approx(3)
    assert got[("home", "popularity_percentile")] == pytest.approx((0.2 + 0.4 + 0.6 + 1.0) / 4)
    assert got[("search", "popularity_percentile")] == pytest.approx((0.2 + 0.6 + 1.0) / 3)
    assert got[("home", "fallback_share")] == pytest.approx(1 / 4)
    assert got[("search", "fallback_share")] == 0
    assert got[("home", "contexts")] == 2 and got[("search", "contexts")] == 1


@pytest.mark.dbt
def test_score_records_them_in_the_cache_and_the_warehouse(served_copy: Settings) -> None:
    result = score_candidates(served_copy, batch_rows=2_000)
    served = {c.name for c in served_copy.registry.canvases if c.serving is not None}
    assert {task for task, _, _ in result.cache_metrics} == served
    with duckdb.connect(str(current_cache_path(served_copy)), read_only=True) as con:
        in_cache = sorted(con.execute("select * from cache_metrics").fetchall())
    with duckdb.connect(str(served_copy.duckdb_path), read_only=True) as con:
        in_warehouse = sorted(
            con.execute(
                "select task_type, metric, value from cache_metrics where cache_generation = ?",
                [result.generation.name],
            ).fetchall()
        )
        versions = con.execute("select distinct model_version from cache_metrics").fetchall()
    assert in_cache == in_warehouse == sorted(result.cache_metrics)
    assert len(in_warehouse) == len(served) * len(METRICS)
    assert versions == [(result.model_version,)]
    coverage = [v for _, m, v in in_warehouse if m == "coverage"]
    assert all(0 < v <= 1 for v in coverage)
