"""Look up recommendations in the published cache, with a per-canvas fallback chain.

The cache is a DuckDB file published by ``ranker.score`` at ``<warehouse dir>/cache/current.duckdb``
(a symlink swapped atomically to each new generation). Readers open it read-only and never see a
half-written cache. A context that is in the cache is answered from it; one that is not (a new
user, an unseen query, an unknown item) is answered by the canvas's fallback chain from the
registry, computed from tables shipped inside the same cache file. Every answer says which step
produced it. User input is always a bound parameter, never spliced into SQL.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from ranker.config import Canvas, Registry, Settings

logger = logging.getLogger(__name__)

CACHE_DIR_NAME = "cache"
CURRENT_LINK = "current.duckdb"
MAX_K = 1000

# How each fallback source finds its key from a canvas's serving key; None = not applicable.
# The same SQL fills cold contexts inside the cache (ranker.score) and answers lookups here.
_FALLBACK_KEY = {
    "popular_in_canvas": lambda key: "task",
    "popular_in_category": lambda key: {
        "category": "context",
        "source_item_id": "item_category",
    }.get(key),
    "coengagement": lambda key: "context" if key == "source_item_id" else None,
    "title_match": lambda key: "context" if key == "query_text" else None,
}


class RecommendError(ValueError):
    """The lookup was asked something it cannot answer (unknown canvas, missing context, bad K)."""


class CacheMissingError(RecommendError):
    """No recommendations cache has been published yet."""


@dataclass(frozen=True)
class Recommendation:
    rank: int
    item_id: str
    score: float | None
    source: str


@dataclass(frozen=True)
class Recommendations:
    task: str
    context_key: str
    items: tuple[Recommendation, ...]
    answered_by: str
    model_version: str | None
    generated_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "context_key": self.context_key,
            "answered_by": self.answered_by,
            "model_version": self.model_version,
            "generated_at": self.generated_at,
            "items": [r.__dict__ for r in self.items],
        }


def cache_dir(settings: Settings) -> Path:
    return settings.duckdb_path.parent / CACHE_DIR_NAME


def current_cache_path(settings: Settings) -> Path:
    return cache_dir(settings) / CURRENT_LINK


# ---------------------------------------------------------------------------------------------
# Fallback SQL, shared with ranker.score. Tables: serving_fallbacks(source, retrieval_key,
# source_rank, item_id), item_catalogue(item_id, title, category, available_countries,
# recent_engagements).
# ---------------------------------------------------------------------------------------------


def fallback_key_kind(source: str, serving_key: str) -> str | None:
    """Where ``source`` gets its key for a canvas keyed by ``serving_key`` (None: not usable)."""
    resolve = _FALLBACK_KEY.get(source)
    return resolve(serving_key) if resolve else None


def fallback_items_sql(key_kind: str) -> str:
    """SQL with parameters (source, key) returning (item_id, source_rank) of a fallback source;
    for ``item_category`` the key is an item id whose category is looked up."""
    if key_kind in ("task", "context"):
        key = "?::varchar"
    elif key_kind == "item_category":
        key = "(select category from item_catalogue where item_id = ?::varchar)"
    else:
        raise ValueError(f"unknown key kind {key_kind!r}")
    return (
        "select item_id, source_rank from serving_fallbacks "
        f"where source = ?::varchar and retrieval_key = {key} order by source_rank"
    )


# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------


class CacheReader:
    """A read-only connection to one published cache generation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.connection = duckdb.connect(str(path), read_only=True)
        except duckdb.Error as exc:
            raise CacheMissingError(f"cannot open the recommendations cache {path}: {exc}") from exc
        info = self.connection.execute(
            "select model_version, cast(generated_at as varchar) from cache_info"
        ).fetchall()[0]
        self.model_version, self.generated_at = info if info else (None, None)
        self.lock = threading.Lock()

    def close(self) -> None:
        self.connection.close()


_readers: dict[Path, CacheReader] = {}
_readers_lock = threading.Lock()


def _reader(settings: Settings) -> CacheReader:
    """The reader of the current generation; reopened when a new cache has been published."""
    link = current_cache_path(settings)
    if not link.exists():
        raise CacheMissingError(
            f"no recommendations cache at {link}; run `unirank-cli score` (after `train`) first"
        )
    target = Path(os.path.realpath(link))
    with _readers_lock:
        reader = _readers.get(link)
        if reader is None or reader.path != target:
            if reader is not None:
                reader.close()
            reader = CacheReader(target)
            _readers[link] = reader
        return reader


def _validate(registry: Registry, task: str, k: int | None) -> tuple[Canvas, int]:
    if task not in registry.canvas_names:
        raise RecommendError(
            f"unknown canvas {task!r}; the registry declares {list(registry.canvas_names)}"
        )
    canvas = registry.canvas(task)
    if canvas.serving is None:
        raise RecommendError(
            f"canvas {task!r} has no `serving` entry in the registry, so nothing is cached for it"
        )
    k = canvas.serving.k if k is None else k
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise RecommendError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return canvas, k


def context_value(canvas: Canvas, context: str | Mapping[str, str | None]) -> str:
    """The canvas's serving-key value from a plain string or a {column: value} mapping."""
    assert canvas.serving is not None
    key = canvas.serving.key
    value = context.get(key) if isinstance(context, Mapping) else context
    if value is None or not str(value).strip():
        raise RecommendError(f"canvas {canvas.name!r} is looked up by {key}; give a value for it")
    text = str(value).strip()
    return text.lower() if key == "query_text" else text


def recommend(
    task: str,
    context: str | Mapping[str, str | None],
    k: int | None = None,
    country: str | None = None,
    settings: Settings | None = None,
) -> Recommendations:
    """Top ``k`` items for ``context`` on canvas ``task`` (k defaults to the canvas's cache K).

    ``context`` is the value of the canvas's serving key (user id for home, query text for
    search, source item id for related, category for category) or a mapping holding it.
    ``country`` keeps only items available there. Raises :class:`RecommendError` on bad input.
    """
    if settings is None:
        from ranker.config import load_settings

        settings = load_settings()
    canvas, k = _validate(settings.registry, task, k)
    key = context_value(canvas, context)
    reader = _reader(settings)
    with reader.lock:
        return _lookup(reader, canvas, key, k, country)


def _lookup(
    reader: CacheReader, canvas: Canvas, key: str, k: int, country: str | None
) -> Recommendations:
    assert canvas.serving is not None
    con = reader.connection
    country_filter = (
        ""
        if country is None
        else " and item_id in (select item_id from item_catalogue where position('|' || ?::varchar || '|' in '|' || available_countries || '|') > 0)"
    )
    params: list[Any] = [canvas.name, key] + ([country] if country is not None else []) + [k]
    rows = con.execute(
        "select rank, item_id, score, source from recommendations "
        f"where task_type = ?::varchar and context_key = ?::varchar{country_filter} order by rank limit ?",
        params,
    ).fetchall()
    items = [
        Recommendation(i + 1, str(r[1]), None if r[2] is None else float(r[2]), str(r[3]))
        for i, r in enumerate(rows)
    ]
    answered_by = "cache" if items else ""
    if len(items) < k:
        seen = {r.item_id for r in items}
        if canvas.serving.key == "source_item_id":
            seen.add(key)
        for source in canvas.serving.fallbacks:
            extra = _fallback(con, canvas, source, key, k - len(items), seen, country)
            for item_id in extra:
                items.append(Recommendation(len(items) + 1, item_id, None, source))
                seen.add(item_id)
            if extra and not answered_by:
                answered_by = source
            if len(items) >= k:
                break
    return Recommendations(
        task=canvas.name,
        context_key=key,
        items=tuple(items),
        answered_by=answered_by or "none",
        model_version=reader.model_version,
        generated_at=reader.generated_at,
    )


def _fallback(
    con: duckdb.DuckDBPyConnection,
    canvas: Canvas,
    source: str,
    key: str,
    needed: int,
    exclude: set[str],
    country: str | None,
) -> list[str]:
    assert canvas.serving is not None
    kind = fallback_key_kind(source, canvas.serving.key)
    if kind is None:
        return []
    country_filter = (
        ""
        if country is None
        else " where item_id in (select item_id from item_catalogue where position('|' || ?::varchar || '|' in '|' || available_countries || '|') > 0)"
    )
    key_param = canvas.name if kind == "task" else key
    limit = needed + len(exclude)
    if source == "title_match":
        # A known query was precomputed; an unseen one is matched word by word against titles.
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
        params: list[Any] = (
            [source, key_param, key] + ([country] if country is not None else []) + [limit]
        )
    else:
        sql = f"select item_id from ({fallback_items_sql(kind)}) as f{country_filter} limit ?"
        params = [source, key_param] + ([country] if country is not None else []) + [limit]
    found = [str(row[0]) for row in con.execute(sql, params).fetchall()]
    return [item for item in found if item not in exclude][:needed]
