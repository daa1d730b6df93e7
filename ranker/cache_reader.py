"""Reading the published recommendations cache: the current generation, read-only, in memory.

``ranker.score`` publishes each generation as its own DuckDB file under ``<warehouse dir>/cache/``
and swaps the symlink ``current.duckdb`` to it (and ``current.parquet`` to its Parquet twin).
:class:`CacheReader` holds one generation open and what lookups need from it; :func:`current_reader`
gives the reader of the current one, reopening when a new generation is published (the link is
resolved again at most every ``POINTER_MAX_AGE`` seconds).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from ranker.config import Settings
from ranker.errors import CacheMissingError

CACHE_DIR_NAME = "cache"
CURRENT_LINK = "current.duckdb"
CURRENT_PARQUET_LINK = (
    "current.parquet"  # the same recommendations, for engines that are not DuckDB
)


def cache_dir(settings: Settings) -> Path:
    return settings.duckdb_path.parent / CACHE_DIR_NAME


def current_cache_path(settings: Settings) -> Path:
    return cache_dir(settings) / CURRENT_LINK


@dataclass(frozen=True)
class _CatalogueItem:
    category: str | None
    available_countries: str | None
    recent_engagements: Any
    title: str | None = None


@dataclass(frozen=True)
class _CachedRows:
    spans: dict[tuple[str, str], tuple[int, int]]  # (task, context key) -> rows [start, stop)
    item_id: Any  # Arrow arrays, rank order within a span
    score: Any
    source: Any


class CacheReader:
    """A read-only connection to one published cache generation, and what fallback lookups
    need from it, loaded once on first use (the file never changes): the item catalogue, an
    index of title words, the keys each fallback source has, and recently used fallback lists.
    Callers hold ``lock`` while using it."""

    FALLBACK_LISTS = 4096  # (source, key) item lists kept, least recently used dropped first

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.connection = duckdb.connect(str(path), read_only=True)
        except duckdb.Error as exc:
            raise CacheMissingError(f"cannot open the recommendations cache {path}: {exc}") from exc
        try:
            info = self.connection.execute(
                "select model_version, cast(generated_at as varchar) from cache_info"
            ).fetchall()
        except duckdb.Error:
            info = []
        if len(info) != 1:
            self.connection.close()
            raise CacheMissingError(
                f"the recommendations cache {path} has no cache_info row (not a generation "
                "`unirank-cli score` completed); run `unirank-cli score` again"
            )
        self.model_version, self.generated_at = info[0]
        self.lock = threading.Lock()
        self.closed = False
        self._cached: _CachedRows | None = None
        self._point_lookups = 0
        self._catalogue: dict[str, _CatalogueItem] | None = None
        self._title_words: dict[str, list[str]] | None = None
        self._countries: set[str] | None = None
        self._fallback_keys: dict[str, set[str]] | None = None
        self._fallback_lists: OrderedDict[tuple[str, str], list[str]] = OrderedDict()

    def close(self) -> None:
        """Close once no thread uses it (the caller must not hold ``lock``); a thread that got
        this reader before it was replaced sees ``closed`` under the lock and asks again."""
        with self.lock:
            self.closed = True
            self.connection.close()

    def cached_rows(self) -> _CachedRows:
        """The cache's rows as Arrow columns in (task_type, context_key, rank) order, and each
        context's row span: a cached lookup is a dict get and a slice, not a scan (DuckDB's
        string statistics cannot prune a table on keys with long common prefixes)."""
        if self._cached is None:
            table = self.connection.sql(
                "select item_id, score, source from recommendations "
                "order by task_type, context_key, rank"
            ).to_arrow_table()
            contexts = self.connection.execute(
                "select task_type, context_key, count(*) from recommendations "
                "group by task_type, context_key order by task_type, context_key"
            ).fetchall()
            spans: dict[tuple[str, str], tuple[int, int]] = {}
            start = 0
            for task, key, rows in contexts:
                spans[(str(task), str(key))] = (start, start + rows)
                start += rows
            self._cached = _CachedRows(
                spans,
                table.column("item_id").combine_chunks(),
                table.column("score").combine_chunks(),
                table.column("source").combine_chunks(),
            )
        return self._cached

    POINT_LOOKUPS = 8  # lookups answered by a query each before the whole cache is loaded

    def cached_list(self, task: str, key: str) -> list[tuple[str, Any, str]] | None:
        """The cached (item, score, source) rows of (task, key) in rank order, None when the
        cache does not hold it. The first POINT_LOOKUPS lookups of a reader query the file (a
        one-shot `unirank-cli recommend` reads one context, not the whole cache); after that,
        or after :meth:`cached_rows` (``warm``), they slice the in-memory columns."""
        if self._cached is None and self._point_lookups < self.POINT_LOOKUPS:
            self._point_lookups += 1
            rows = self.connection.execute(
                "select item_id, score, source from recommendations "
                "where task_type = ?::varchar and context_key = ?::varchar order by rank",
                [task, key],
            ).fetchall()
            return [(str(i), s, str(src)) for i, s, src in rows] or None
        cached = self.cached_rows()
        span = cached.spans.get((task, key))
        if span is None:
            return None
        start, stop = span
        return [
            (str(i), s, str(src))
            for i, s, src in zip(
                cached.item_id[start:stop].to_pylist(),
                cached.score[start:stop].to_pylist(),
                cached.source[start:stop].to_pylist(),
                strict=True,
            )
        ]

    def catalogue(self) -> dict[str, _CatalogueItem]:
        if self._catalogue is None:
            rows = self.connection.execute(
                "select item_id, category, available_countries, recent_engagements, title "
                "from item_catalogue"
            ).fetchall()
            self._catalogue = {str(r[0]): _CatalogueItem(r[1], r[2], r[3], r[4]) for r in rows}
        return self._catalogue

    def title_words(self) -> dict[str, list[str]]:
        """Each lower-cased title word -> the items whose title has it (split as SQL does)."""
        if self._title_words is None:
            index: dict[str, list[str]] = {}
            for item_id, words in self.connection.execute(
                "select item_id, list_distinct(string_split(lower(title), ' ')) from item_catalogue "
                "where title is not null"
            ).fetchall():
                for word in words:
                    index.setdefault(word, []).append(str(item_id))
            self._title_words = index
        return self._title_words

    def fallback_items(self, source: str, key: str | None) -> list[str]:
        """A fallback source's items for ``key`` in source_rank order (no query for a key the
        source does not have: what an unseen context asks for)."""
        if key is None:
            return []
        if self._fallback_keys is None:
            keys: dict[str, set[str]] = {}
            for fallback_source, retrieval_key in self.connection.execute(
                "select source, retrieval_key from serving_fallbacks group by all"
            ).fetchall():
                keys.setdefault(fallback_source, set()).add(retrieval_key)
            self._fallback_keys = keys
        if key not in self._fallback_keys.get(source, ()):
            return []
        cached = self._fallback_lists.get((source, key))
        if cached is None:
            cached = [
                str(r[0])
                for r in self.connection.execute(
                    "select item_id from serving_fallbacks where source = ?::varchar "
                    "and retrieval_key = ?::varchar order by source_rank",
                    [source, key],
                ).fetchall()
            ]
            self._fallback_lists[(source, key)] = cached
            if len(self._fallback_lists) > self.FALLBACK_LISTS:
                self._fallback_lists.popitem(last=False)
        else:
            self._fallback_lists.move_to_end((source, key))
        return cached

    def countries(self) -> set[str]:
        """Every country some item of the catalogue is available in."""
        if self._countries is None:
            self._countries = {
                country
                for item in self.catalogue().values()
                for country in (item.available_countries or "").split("|")
                if country
            }
        return self._countries

    def available(self, item_id: str, country: str | None) -> bool:
        """As the feature is_available_in_country: '|country|' is in '|available_countries|',
        and an item whose availability is unknown ('' or not catalogued) is available
        everywhere."""
        if country is None:
            return True
        item = self.catalogue().get(item_id)
        if item is None or not item.available_countries:
            return True
        return f"|{country}|" in f"|{item.available_countries}|"


_readers: dict[Path, CacheReader] = {}
_readers_lock = threading.Lock()
# How stale a lookup's view of the published pointers may be: the cache link and CURRENT are
# read again at most this often (resolving them on every lookup was a fifth of a service's
# time), so a new cache generation or model is picked up within this many seconds.
POINTER_MAX_AGE = 0.1
_links_checked: dict[Path, float] = {}


def _reader(settings: Settings) -> CacheReader:
    """The reader of the current generation; reopened when a new cache has been published.
    A generation deleted between reading the link and opening it (``score --keep 1``) is
    looked up again: the link then names the newer one."""
    link = current_cache_path(settings)
    known = _readers.get(link)
    checked = _links_checked.get(link)
    recent = checked is not None and time.monotonic() - checked < POINTER_MAX_AGE
    if known is not None and recent and not known.closed:
        return known
    _links_checked[link] = time.monotonic()
    for attempt in range(5):
        if not link.exists():
            raise CacheMissingError(
                f"no recommendations cache at {link}; run `unirank-cli score` (after `train`) first"
            )
        target = Path(os.path.realpath(link))
        replaced: CacheReader | None = None
        with _readers_lock:
            reader = _readers.get(link)
            if reader is None or reader.path != target:
                try:
                    fresh = CacheReader(target)
                except CacheMissingError:
                    if attempt < 4 and Path(os.path.realpath(link)) != target:
                        continue  # published over while we opened it
                    raise
                replaced, reader = reader, fresh
                _readers[link] = reader
        if replaced is not None:
            replaced.close()
        return reader
    raise CacheMissingError(f"the recommendations cache at {link} keeps changing; try again")


def current_reader(settings: Settings) -> CacheReader:
    """The reader of the current cache generation (raises CacheMissingError when none)."""
    return _reader(settings)
