"""Beyond accuracy, per canvas, on what is actually served: the published recommendations cache.

Computed by ``score`` on each new cache generation (its ``recommendations`` and ``item_catalogue``
tables), stored in the generation as ``cache_metrics`` and appended to the warehouse table
``cache_metrics`` users query next to ``model_metrics``:

- ``coverage``: the share of the catalogue's items recommended to at least one context;
- ``distinct_categories``: intra-list diversity, the mean number of distinct item categories in
  a context's list;
- ``popularity_percentile``: popularity bias, the mean popularity rank of the recommended items
  as a share of the catalogue (items ranked by engagements over the serving lookback, most
  engaged first; small = popular, about 0.5 = no bias);
- ``fallback_share``: the share of cached items filled by a fallback source, not the model;
- ``contexts``: the contexts cached.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from ranker.config import Settings
from ranker.warehouse_publish import replace_rows

METRICS = ("coverage", "distinct_categories", "popularity_percentile", "fallback_share", "contexts")

_SQL = """
with
catalogue as (
    select
        item_id,
        category,
        rank() over (order by recent_engagements desc) / count(*) over () as popularity_percentile
    from item_catalogue
),
served as (
    select r.task_type, r.context_key, r.item_id, r.source, c.category, c.popularity_percentile
    from recommendations as r
    left join catalogue as c on c.item_id = r.item_id
),
lists as (
    select task_type, context_key, count(distinct category) as categories
    from served
    group by task_type, context_key
),
per_canvas as (
    select
        task_type,
        count(distinct item_id) / (select count(*) from item_catalogue) as coverage,
        avg(popularity_percentile) as popularity_percentile,
        avg(case when source = 'model' then 0.0 else 1.0 end) as fallback_share,
        count(distinct context_key) as contexts
    from served
    group by task_type
)
select
    per_canvas.task_type,
    per_canvas.coverage,
    diversity.distinct_categories,
    per_canvas.popularity_percentile,
    per_canvas.fallback_share,
    per_canvas.contexts
from per_canvas
inner join (
    select task_type, avg(categories) as distinct_categories from lists group by task_type
) as diversity
    on diversity.task_type = per_canvas.task_type
order by per_canvas.task_type
"""


def cache_metrics(cache: duckdb.DuckDBPyConnection) -> list[tuple[str, str, float]]:
    """(canvas, metric, value) for every canvas of the cache ``cache`` is connected to."""
    rows = []
    for task, *values in cache.execute(_SQL).fetchall():
        for metric, value in zip(METRICS, values, strict=True):
            rows.append((str(task), metric, float(value) if value is not None else float("nan")))
    return rows


def store_in_cache(cache: duckdb.DuckDBPyConnection, rows: list[tuple[str, str, float]]) -> None:
    cache.execute("create table cache_metrics (task_type varchar, metric varchar, value double)")
    if rows:
        cache.executemany("insert into cache_metrics values (?, ?, ?)", rows)


def write_to_warehouse(
    settings: Settings, model_version: str, generation: Path, rows: list[tuple[str, str, float]]
) -> None:
    """Append a generation's metrics to the warehouse table ``cache_metrics`` (one transaction,
    under the warehouse's writer lock, as train writes ``model_metrics``)."""
    replace_rows(
        settings.duckdb_path,
        "unirank-cli score",
        "cache_metrics",
        "model_version varchar, cache_generation varchar, task_type varchar, metric varchar, "
        "value double",
        ("cache_generation", generation.name),
        [(model_version, generation.name, task, metric, value) for task, metric, value in rows],
    )
