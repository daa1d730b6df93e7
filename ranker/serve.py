"""Look up recommendations: the published cache, online scoring of misses, a fallback chain.

The cache is a DuckDB file published by ``ranker.score`` at ``<warehouse dir>/cache/current.duckdb``
(a symlink swapped atomically to each new generation). Readers open it read-only and never see a
half-written cache. Each canvas's registry ``serving.mode`` says how a lookup is answered:
``cache_only`` (the cache; a context it does not hold - a new user, an unseen query, an unknown
item - gets the canvas's fallback chain, computed from tables shipped inside the same cache
file), ``cache_then_online`` (a context the cache does not hold is scored by the current model at
request time, ``ranker.online``, within ``online_timeout_ms``; over it, the fallback chain
answers) or ``online`` (every lookup is scored at request time; over budget, the cache, then the
fallbacks). Every answer says which path produced it. User input is always a bound parameter,
never spliced into SQL.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranker.cache_reader import (
    CacheReader,
    _reader,
)
from ranker.config import Settings
from ranker.errors import CacheMissingError, RecommendError
from ranker.registry import Canvas, Registry

if TYPE_CHECKING:
    from ranker.online import OnlineScorer, Scored

logger = logging.getLogger(__name__)

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
    cache_generation: str | None = None  # the cache file that answered
    over_budget: bool = False  # online scoring ran over the canvas's budget; see answered_by

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "context_key": self.context_key,
            "answered_by": self.answered_by,
            "model_version": self.model_version,
            "generated_at": self.generated_at,
            "cache_generation": self.cache_generation,
            "over_budget": self.over_budget,
            "items": [r.__dict__ for r in self.items],
        }


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


def warm(settings: Settings) -> bool:
    """Open the current cache and load what lookups need (the cached lists, and the model and
    online tables when a canvas scores online), so the first lookup does not pay for it (a
    long-running service calls this at start). False when there is no cache yet."""
    try:
        reader = _reader(settings)
        reader.cached_rows()
    except CacheMissingError:
        return False
    registry = settings.registry
    if any(
        c.serving is not None and registry.serving_mode(c.name) != "cache_only"
        for c in registry.canvases
    ):
        problem = online_scorer(settings).warm(reader)
        if problem is not None:
            logger.warning("online scoring unavailable: %s", problem)
    return True


_SETTINGS_INPUTS = ("UNIRANK_DUCKDB_PATH", "UNIRANK_ARTIFACTS_DIR", "UNIRANK_REPORTS_DIR")
_default: tuple[tuple[object, ...], Settings] | None = None
_default_lock = threading.Lock()


def _default_settings() -> Settings:
    """``load_settings()`` of the current folder, read once per process and again only when
    what it reads changes (dbt_project.yml, profiles.yml, the UNIRANK_* paths): reading the
    registry asks dbt, about 18 ms, which a lookup must not pay on every call."""
    from ranker.config import load_settings

    global _default
    project = Path.cwd()
    stamps = tuple(
        (project / name).stat().st_mtime_ns if (project / name).exists() else 0
        for name in ("dbt_project.yml", "profiles.yml")
    )
    key = (str(project), stamps, tuple(os.environ.get(name) for name in _SETTINGS_INPUTS))
    with _default_lock:
        if _default is None or _default[0] != key:
            _default = (key, load_settings())
        return _default[1]


def _validate(registry: Registry, task: str, k: int | None) -> tuple[Canvas, int]:
    if task not in registry.canvas_names:
        raise RecommendError(
            f"unknown canvas {task!r}; the registry declares {list(registry.canvas_names)}",
            field="canvas",
        )
    canvas = registry.canvas(task)
    if canvas.serving is None:
        raise RecommendError(
            f"canvas {task!r} has no `serving` entry in the registry, so nothing is cached for it",
            field="canvas",
        )
    k = canvas.serving.k if k is None else k
    largest = canvas.serving.max_k or MAX_K  # the canvas's knob (registry serving.max_k)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= largest:
        raise RecommendError(
            f"k must be an integer from 1 to {largest} for canvas {task!r}, got {k!r}", field="k"
        )
    return canvas, k


def context_values(canvas: Canvas, context: str | Mapping[str, str | None]) -> dict[str, str]:
    """The request's context: {column: value} for the canvas's context columns given (a plain
    string is the serving key's value), trimmed, a query lower-cased as staging stores it. The
    serving key is required; a column the canvas does not fill is refused."""
    assert canvas.serving is not None
    key = canvas.serving.key
    given = context if isinstance(context, Mapping) else {key: context}
    values: dict[str, str] = {}
    for column, value in given.items():
        if value is None:
            continue  # not given
        if column not in canvas.context_columns:
            raise RecommendError(
                f"canvas {canvas.name!r} has no context column {column!r}; it takes "
                f"{sorted(canvas.context_columns)}",
                field=column,
            )
        if not str(value).strip():
            continue
        text = _utf8(str(value).strip(), column)
        values[column] = text.lower() if column == "query_text" else text
    if key not in values:
        raise RecommendError(
            f"canvas {canvas.name!r} is looked up by {key}; give a value for it", field=key
        )
    return values


def _utf8(text: str, what: str) -> str:
    """The text, or a RecommendError if it is not valid UTF-8 (undecodable command-line bytes
    reach Python as lone surrogates, which DuckDB would refuse with a traceback)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RecommendError(f"{what} is not valid UTF-8: {text!r}", field=what) from None
    return text


def _check_country(reader: CacheReader, country: str | None) -> None:
    """A country must be one the catalogue lists (countries are compared exactly, as the
    feature is_available_in_country compares them): a typo or another case would otherwise
    silently filter every item out."""
    if country is None:
        return
    if not _utf8(country, "country").strip():
        raise RecommendError(
            "country is empty; give a country code or leave it out", field="country"
        )
    known = reader.countries()
    if known and country not in known:  # with none listed, every item is available everywhere
        near = [c for c in known if c.lower() == country.strip().lower()]
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        listed = ", ".join(sorted(known)[:20])
        raise RecommendError(
            f"unknown country {country!r}{hint}; the catalogue has: {listed}", field="country"
        )


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
    answer = begin(task, context, k, country, settings)
    if isinstance(answer, Recommendations):
        return answer
    assert answer.future is not None
    try:
        return answer.finish(answer.future.result(timeout=answer.seconds_left()))
    except FutureTimeout:
        return answer.finish(None, over_budget=True)
    except Exception as exc:  # see Pending.failed: the cache and the fallbacks still answer
        answer.failed(exc)
        return answer.finish(None)


@dataclass
class Pending:
    """A lookup waiting for online scoring in a worker (a model or tables being loaded):
    ``future`` gives the context's scored candidates; :meth:`finish` makes the answer from them
    (``None``: over budget or failed, so the cache or the fallback chain answers). The HTTP
    service awaits the future without blocking."""

    settings: Settings
    reader: CacheReader
    canvas: Canvas
    values: dict[str, str]
    key: str
    k: int
    country: str | None
    mode: str
    future: Future[Scored] | None
    deadline: float  # time.monotonic() when the canvas's online budget runs out

    def seconds_left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def start(self) -> Recommendations | Pending:
        """Score in this thread when the model and tables are loaded, within the budget (the
        answer); else start a worker that loads them and scores (this, with its future)."""
        from ranker.online import OverBudget

        scorer = online_scorer(self.settings)
        try:
            scored = scorer.score_now(self.reader, self.canvas, self.values, self.deadline)
            if scored is None:
                self.future = scorer.submit(self.reader, self.canvas, self.values)
                return self
        except OverBudget:
            return self.finish(None, over_budget=True)
        except Exception as exc:  # reported by failed(): the cache and the fallbacks answer
            self.failed(exc)
            return self.finish(None)
        return self.finish(scored)

    def failed(self, exc: BaseException) -> None:
        """Online scoring that cannot run (no online tables, a model whose features they lack)
        is logged once, anything else every time; the lookup goes on without it (/readyz says
        why)."""
        from ranker.online_tables import OnlineUnavailable

        if isinstance(exc, OnlineUnavailable):
            if str(exc) not in _unavailable_logged:
                _unavailable_logged.add(str(exc))
                logger.warning("online scoring unavailable: %s", exc)
        else:
            logger.error(
                "online scoring of %s %s failed", self.canvas.name, self.values, exc_info=exc
            )

    def finish(self, scored: Scored | None, over_budget: bool = False) -> Recommendations:
        while True:
            reader = self.reader
            with reader.lock:
                if not reader.closed:
                    cached = None
                    if scored is None and self.mode == "online":  # the cache, if it holds it
                        cached = reader.cached_list(self.canvas.name, self.key)
                    return _lookup(
                        reader, self.canvas, self.key, self.k, self.country, cached, scored,
                        over_budget,
                    )  # fmt: skip
            # A new generation was published meanwhile: answer with its reader (what was scored
            # stays valid: the same model, the features of the build before).
            self.reader = _reader(self.settings)


def begin(
    task: str,
    context: str | Mapping[str, str | None],
    k: int | None = None,
    country: str | None = None,
    settings: Settings | None = None,
) -> Recommendations | Pending:
    """The answer when the cache or the fallback chain gives it at once, else the online scoring
    started for it (:class:`Pending`). :func:`recommend` waits for it; the HTTP service awaits."""
    if settings is None:
        settings = _default_settings()
    canvas, k = _validate(settings.registry, task, k)
    values = context_values(canvas, context)
    assert canvas.serving is not None
    key = values[canvas.serving.key]
    mode = settings.registry.serving_mode(canvas.name)
    while True:
        reader = _reader(settings)
        with reader.lock:
            if reader.closed:  # replaced by a newer generation meanwhile: ask again
                continue
            _check_country(reader, country)
            cached = None if mode == "online" else reader.cached_list(canvas.name, key)
            if mode == "cache_only" or cached is not None:
                return _lookup(reader, canvas, key, k, country, cached)
        deadline = time.monotonic() + canvas.serving.online_timeout_ms / 1000
        pending = Pending(settings, reader, canvas, values, key, k, country, mode, None, deadline)
        return pending.start()


_scorers: dict[int, tuple[Settings, OnlineScorer]] = {}
_scorers_lock = threading.Lock()
_unavailable_logged: set[str] = set()


def online_scorer(settings: Settings) -> OnlineScorer:
    """The process's online scorer for ``settings`` (it keeps the model and scored contexts)."""
    from ranker.online import OnlineScorer

    with _scorers_lock:
        found = _scorers.get(id(settings))
        if found is None or found[0] is not settings:
            found = (settings, OnlineScorer(settings))
            _scorers[id(settings)] = found
        return found[1]


def _lookup(
    reader: CacheReader,
    canvas: Canvas,
    key: str,
    k: int,
    country: str | None,
    cached: list[tuple[str, Any, str]] | None,
    scored: Scored | None = None,
    over_budget: bool = False,
) -> Recommendations:
    """The answer: the context scored online (``scored``) or its ``cached`` list, then the
    canvas's fallback chain for what is missing; items not available in ``country`` are
    skipped."""
    assert canvas.serving is not None
    rows: list[tuple[str, Any, str]] = []
    model_version, answered_by = reader.model_version, ""
    if scored is not None:
        model_version, answered_by = scored.model_version, "online" if scored.items else ""
        for item_id, score, source in scored.items:
            if reader.available(item_id, country):
                rows.append((item_id, score, source))
                if len(rows) == k:
                    break
    else:
        for item_id, score, source in cached or ():
            if reader.available(item_id, country):
                rows.append((item_id, score, source))
                if len(rows) == k:
                    break
        answered_by = "cache" if rows else ""
    items = [
        Recommendation(i + 1, item_id, None if score is None else float(score), source)
        for i, (item_id, score, source) in enumerate(rows)
    ]
    if len(items) < k:
        seen = {r.item_id for r in items}
        if canvas.serving.key == "source_item_id" and canvas.exclude_source_item:
            seen.add(key)
        for source in canvas.serving.fallbacks:
            extra = _fallback(reader, canvas, source, key, k - len(items), seen, country)
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
        model_version=model_version,
        generated_at=reader.generated_at,
        cache_generation=reader.path.name,
        over_budget=over_budget,
    )


def _fallback(
    reader: CacheReader,
    canvas: Canvas,
    source: str,
    key: str,
    needed: int,
    exclude: set[str],
    country: str | None,
) -> list[str]:
    """Up to ``needed`` items from one fallback source, not in ``exclude``, available in
    ``country``. The same answer as the SQL in :func:`fallback_items_sql`, from the reader's
    in-memory lists and indexes."""
    assert canvas.serving is not None
    kind = fallback_key_kind(source, canvas.serving.key)
    if kind is None:
        return []
    if kind == "task":
        items = reader.fallback_items(source, canvas.name)
    elif kind == "item_category":
        item = reader.catalogue().get(key)
        items = reader.fallback_items(source, None if item is None else item.category)
    else:
        items = reader.fallback_items(source, key)
    if source == "title_match" and not items:
        # A known query was precomputed; an unseen one is matched word by word against titles:
        # by the number of its words in the title, then recent engagements, then item id.
        items = _title_matches(reader, key)
    limit = needed + len(exclude)
    found = [item for item in items if reader.available(item, country)][:limit]
    return [item for item in found if item not in exclude][:needed]


def _title_matches(reader: CacheReader, query: str) -> list[str]:
    if query.isascii():  # what lower(trim(.)) and string_split(., ' ') give, without a query
        words = set(query.strip(" ").lower().split(" ")) - {""}
    else:
        words = {
            str(r[0])
            for r in reader.connection.execute(
                "select distinct unnest(string_split(lower(trim(?::varchar)), ' '))", [query]
            ).fetchall()
            if r[0]
        }
    index = reader.title_words()
    matched: dict[str, int] = {}
    for word in words:
        for item in index.get(word, ()):
            matched[item] = matched.get(item, 0) + 1
    catalogue = reader.catalogue()

    def order(item: str) -> tuple[int, bool, Any, str]:
        engagements = catalogue[item].recent_engagements
        return (-matched[item], engagements is None, -(engagements or 0), item)

    return sorted(matched, key=order)
