"""Online scoring: a context the cache does not hold, scored by the current model at request time.

The candidates come from the canvas's declared sources and the features are the registry's,
evaluated as of the serving clock of the build the cache was scored from, from tables dbt
materializes and ``unirank-cli score`` copies into every cache generation:

- ``online_item_features``: the features that depend only on the candidate item, its canvas and
  the time (built-in item_popularity and item_category, a project's own of ``grain: item``),
  computed by the feature models themselves on one `latest` probe per (canvas, item);
- ``online_user_items`` and ``online_item_pairs``: per-entity history at the serving clock, from
  which the built-in context features (user_history, coengagement, context_match), the
  user_categories source and the exclude_engaged rule are evaluated here, as the SQL defines
  them (ranker.online_skew checks both paths agree on every served context).

A context is scored once per (cache generation, model, canvas, context): the result is kept, so a
retry of a lookup that ran over its budget is answered from it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ranker import artifacts
from ranker.cache_reader import POINTER_MAX_AGE
from ranker.config import Settings
from ranker.online_tables import ItemValues, OnlineTables, OnlineUnavailable, Plan
from ranker.registry import Canvas, Registry

if TYPE_CHECKING:
    from catboost import CatBoostRanker

    from ranker.cache_reader import CacheReader

SCORED_CONTEXTS = 4096  # scored contexts kept per process, least recently used dropped first


class OverBudget(Exception):
    """Online scoring passed its deadline: the cache or the fallback chain answers instead."""


@dataclass(frozen=True)
class Scored:
    """Every candidate of one context, best first: (item, score, source)."""

    items: tuple[tuple[str, float, str], ...]
    model_version: str


class OnlineScorer:
    """Candidates, features and scores for contexts of one registry, with the CURRENT model."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry: Registry = settings.registry
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._tables_lock = threading.Lock()
        self._model: tuple[str, CatBoostRanker, list[str], list[int]] | None = None
        self._tables: dict[str, OnlineTables | OnlineUnavailable] = {}
        self._scored: OrderedDict[tuple[Any, ...], Scored] = OrderedDict()
        self._running: dict[tuple[Any, ...], Future[Scored]] = {}
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="unirank-online")

    # --- what a request uses -------------------------------------------------------------------

    def score_now(
        self, reader: CacheReader, canvas: Canvas, context: Mapping[str, str], deadline: float
    ) -> Scored | None:
        """The context scored in the calling thread when the current model and ``reader``'s
        online tables are loaded (about 2 ms for 100 candidates on the demo: cheaper than any
        hand-off to a thread, which under load would fight this one for the GIL); None when
        something must be loaded first (:meth:`submit` does that in a worker). Raises
        :class:`OverBudget` once ``deadline`` (``time.monotonic()``) has passed between steps."""
        key = self._key(reader, canvas, context)
        with self._lock:
            scored = self._scored.get(key)
            if scored is not None:
                self._scored.move_to_end(key)
                return scored
        loaded = self._model
        if loaded is None or loaded[0] != key[1]:
            return None
        tables = self._tables.get(f"{reader.path}|{','.join(loaded[2])}")
        if tables is None:
            return None
        if isinstance(tables, OnlineUnavailable):
            raise tables
        scored = self._score(loaded, tables, canvas, context, deadline)
        self._keep(key, scored)
        return scored

    def submit(
        self, reader: CacheReader, canvas: Canvas, context: Mapping[str, str]
    ) -> Future[Scored]:
        """A future of the context's scored candidates, computed in a worker thread that first
        loads what is missing (a new CURRENT model, a new generation's tables); one computation
        per context however many requests ask for it meanwhile."""
        key = self._key(reader, canvas, context)
        with self._lock:
            scored = self._scored.get(key)
            if scored is not None:
                done: Future[Scored] = Future()
                done.set_result(scored)
                return done
            running = self._running.get(key)
            if running is None:
                running = self._pool.submit(self._score_and_keep, key, reader, canvas, context)
                self._running[key] = running
            return running

    def _key(
        self, reader: CacheReader, canvas: Canvas, context: Mapping[str, str]
    ) -> tuple[Any, ...]:
        model_version = artifacts.current_name(
            artifacts.models_dir(self.settings.artifacts_dir), POINTER_MAX_AGE
        )
        return (reader.path, model_version, canvas.name, tuple(sorted(context.items())))

    def _keep(self, key: tuple[Any, ...], scored: Scored) -> None:
        with self._lock:
            self._scored[key] = scored
            if len(self._scored) > SCORED_CONTEXTS:
                self._scored.popitem(last=False)

    def _score_and_keep(
        self, key: tuple[Any, ...], reader: CacheReader, canvas: Canvas, context: Mapping[str, str]
    ) -> Scored:
        try:
            scored = self.score(reader, canvas, context)
            self._keep(key, scored)
            return scored
        finally:
            with self._lock:
                self._running.pop(key, None)

    def score(self, reader: CacheReader, canvas: Canvas, context: Mapping[str, str]) -> Scored:
        """Every candidate of ``context`` on ``canvas``, scored by the current model, best first
        (loading the model and the tables first when needed)."""
        loaded = self.model()
        return self._score(loaded, self.tables(reader, loaded[2]), canvas, context, None)

    def _score(
        self,
        loaded: tuple[str, CatBoostRanker, list[str], list[int]],
        tables: OnlineTables,
        canvas: Canvas,
        context: Mapping[str, str],
        deadline: float | None,
    ) -> Scored:
        from catboost import Pool

        def check() -> None:
            if deadline is not None and time.monotonic() > deadline:
                raise OverBudget

        version, model, features, cat_indices = loaded
        full = self.full_context(tables, canvas, context)
        found = self.candidates(tables, canvas, full)
        if not found:
            return Scored((), version)
        check()
        rows = self.features(tables, canvas, full, [item for item, _ in found], features)
        check()
        # Rows as Python lists: CatBoost converts the numbers to float32 as batch scoring passes
        # them (the same predictions, tested), several times faster than a DataFrame here.
        scores = model.predict(Pool(rows, cat_features=cat_indices), thread_count=1)
        ranked = sorted(
            zip(found, (float(s) for s in scores), strict=True),
            key=lambda pair: (-pair[1], pair[0][0]),
        )
        return Scored(tuple((item, s, source) for (item, source), s in ranked), version)

    # --- model and tables ----------------------------------------------------------------------

    def model(self) -> tuple[str, CatBoostRanker, list[str], list[int]]:
        """The CURRENT model, its features and categorical ones. When CURRENT moves, one request
        loads the new model while the others go on with the old one (their answers name it)."""
        from ranker.score import load_model

        root = artifacts.models_dir(self.settings.artifacts_dir)
        name = artifacts.current_name(root, POINTER_MAX_AGE)
        loaded = self._model
        if loaded is not None and loaded[0] == name:
            return loaded
        if not self._model_lock.acquire(blocking=loaded is None):
            assert loaded is not None
            return loaded  # another request is loading the new CURRENT
        try:
            loaded = self._model
            if loaded is not None and loaded[0] == name:
                return loaded
            version = artifacts.current_version(root)
            features = list(version.metadata["features"])
            categorical = set(version.metadata["categorical_features"])
            loaded = (
                version.version,
                load_model(version),
                features,
                [i for i, f in enumerate(features) if f in categorical],
            )
            self._model = loaded
            return loaded
        finally:
            self._model_lock.release()

    def tables(self, reader: CacheReader, features: Sequence[str]) -> OnlineTables:
        """The online tables of ``reader``'s generation, read once (one request reads them; the
        others wait)."""
        key = f"{reader.path}|{','.join(features)}"
        found = self._tables.get(key)
        if found is None:
            with self._tables_lock:
                found = self._tables.get(key)
                if found is None:
                    with reader.lock:
                        if reader.closed:
                            raise OnlineUnavailable("the cache generation was replaced; ask again")
                        try:
                            found = OnlineTables(reader, features)
                        except OnlineUnavailable as exc:
                            found = exc
                    if not isinstance(found, OnlineUnavailable):
                        try:
                            self._check_features(found, features)
                        except OnlineUnavailable as exc:
                            found = exc
                    self._tables = {key: found}  # one generation at a time
        if isinstance(found, OnlineUnavailable):
            raise found
        return found

    def warm(self, reader: CacheReader) -> str | None:
        """Load the model and ``reader``'s online tables before the first request; None when
        online scoring can answer, else why not."""
        try:
            _, _, features, _ = self.model()
            self.tables(reader, features)
        except (OnlineUnavailable, artifacts.ArtifactError) as exc:
            return str(exc)
        return None

    def _check_features(
        self, tables: OnlineTables | OnlineUnavailable, features: Sequence[str]
    ) -> None:
        if isinstance(tables, OnlineUnavailable):
            return
        computed = set(tables.feature_columns) | {"task_type"} | set(self.registry.context_names)
        missing = [f for f in features if f not in computed]
        if missing:
            raise OnlineUnavailable(
                f"the current model uses features the cache's online tables lack: {missing}; "
                "run `unirank-cli build` and `unirank-cli score` with the model's registry"
            )

    # --- candidates ----------------------------------------------------------------------------

    def full_context(
        self, tables: OnlineTables, canvas: Canvas, context: Mapping[str, str]
    ) -> dict[str, Any]:
        """Every registry context column: the request's value, the value the canvas's `impute`
        rules give a column it lacks (macro impute_context, as of the serving clock), or the
        column's sentinel."""
        full: dict[str, Any] = {}
        for column in self.registry.context_columns:
            value = context.get(column.name) if column.name in canvas.context_columns else None
            full[column.name] = column.sentinel if value is None else value
        for imputation in canvas.impute:
            imputed = self._imputed(tables, imputation.rule, full)
            # sentinel_coalesce: the value trimmed of spaces; blank or none keeps the sentinel
            text = None if imputed is None else str(imputed).strip(" ")
            if text:
                full[imputation.column] = text
        return full

    def _imputed(self, tables: OnlineTables, rule: str, context: Mapping[str, Any]) -> Any:
        """One `impute` rule's value for a request (None: no value), as macro impute_context."""
        registry = self.registry
        if rule in ("source_item_title", "source_item_category"):
            item = tables.catalogue.get(str(context["source_item_id"]))
            if item is None:
                return None
            return item.title if rule == "source_item_title" else item.category
        if rule == "category_name":
            category = context["category"]
            return None if category == registry.sentinel("category") else category
        if rule == "user_top_category":
            user = str(context["user_id"])
            if user == str(registry.sentinel("user_id")):
                return None
            counts = [
                (c, n) for c, n in tables.user_categories.get(user, {}).items() if c is not None
            ]
            return min(counts, key=lambda pair: (-pair[1], pair[0]))[0] if counts else None
        raise ValueError(f"unknown impute rule {rule!r}")

    def candidates(
        self, tables: OnlineTables, canvas: Canvas, context: Mapping[str, Any]
    ) -> list[tuple[str, str]]:
        """(item, source) as macro serving_candidates finds them: the canvas's sources in declared
        order, an item kept at its first (source, rank), the candidate rules, the cap."""
        assert canvas.serving is not None
        registry = self.registry
        per_source = registry.serving.items_per_source
        found: dict[str, tuple[int, int, str]] = {}
        for priority, source in enumerate(canvas.serving.sources, start=1):
            for rank, item in enumerate(
                self.source_items(tables, canvas, source, context)[:per_source], start=1
            ):
                if item not in found:
                    found[item] = (priority, rank, source)
        names = registry.context_names
        if "source_item_id" in names and canvas.exclude_source_item:
            found.pop(str(context["source_item_id"]), None)
        if "user_id" in names and canvas.exclude_engaged:
            for item in tables.user_items.get(str(context["user_id"]), {}):
                found.pop(item, None)
        ordered = sorted(found.items(), key=lambda pair: (pair[1][0], pair[1][1], pair[0]))
        cap = registry.serving.candidates_per_context
        return [(item, where[2]) for item, where in ordered[:cap]]

    def source_items(
        self, tables: OnlineTables, canvas: Canvas, source: str, context: Mapping[str, Any]
    ) -> list[str]:
        """One source's items for the context, in source-rank order (int_retrieval_sources)."""
        reader = tables.reader
        names = self.registry.context_names
        if source == "popular_in_canvas":
            return self._fallback(reader, source, canvas.name)
        if source == "popular_in_category":
            category = self._category_key(tables, context)
            return [] if category is None else self._fallback(reader, source, category)
        if source == "coengagement":
            return self._fallback(reader, source, str(context["source_item_id"]))
        if source == "title_match":
            query = str(context["query_text"])
            known = self._fallback(reader, source, query)
            return known or self._title_matches(tables, query)
        if source == "user_categories" and "user_id" in names:
            return self._user_categories(tables, str(context["user_id"]))
        return []

    def _fallback(self, reader: CacheReader, source: str, key: str) -> list[str]:
        with reader.lock:
            if reader.closed:
                raise OnlineUnavailable("the cache generation was replaced; ask again")
            return reader.fallback_items(source, key)

    def _category_key(self, tables: OnlineTables, context: Mapping[str, Any]) -> str | None:
        names = self.registry.context_names
        if "category" in names and context["category"] != self.registry.sentinel("category"):
            return str(context["category"])
        if "source_item_id" in names:
            item = tables.catalogue.get(str(context["source_item_id"]))
            return None if item is None or item.category is None else str(item.category)
        return None

    def _title_matches(self, tables: OnlineTables, query: str) -> list[str]:
        """Items whose title shares words with an unseen query: match share, then engagements
        over the lookback, then item id (int_retrieval_sources' title_match)."""
        words = tables.query_tokens(query)
        matched: dict[str, int] = {}
        for word in words:
            for item in tables.token_items.get(word, ()):
                matched[item] = matched.get(item, 0) + 1

        def order(item: str) -> tuple[int, int, str]:
            engagements = tables.catalogue[item].recent_engagements or 0
            return (-matched[item], -int(engagements), item)

        return sorted(matched, key=order)

    def _user_categories(self, tables: OnlineTables, user: str) -> list[str]:
        """Popular items of the user's 3 most engaged categories, interleaved by rank."""
        categories = sorted(
            ((c, n) for c, n in tables.user_categories.get(user, {}).items() if c is not None),
            key=lambda pair: (-pair[1], pair[0]),
        )[:3]
        per_source = self.registry.serving.items_per_source
        ranked: list[tuple[int, int, str]] = []
        for category_rank, (category, _) in enumerate(categories, start=1):
            popular = self._fallback(tables.reader, "popular_in_category", str(category))
            for rank, item in enumerate(popular[:per_source], start=1):
                ranked.append((rank, category_rank, item))
        return [item for _, _, item in sorted(ranked)]

    # --- features ------------------------------------------------------------------------------

    def features(
        self,
        tables: OnlineTables,
        canvas: Canvas,
        context: Mapping[str, Any],
        items: Sequence[str],
        features: Sequence[str],
    ) -> list[list[Any]]:
        """One row per item, the model's feature columns in order, as int_probe_features has them."""
        plan = self._plan(tables, canvas.name, features)
        filled = [(position, context[name]) for position, name in plan.context_columns]
        per_item = [values for evaluate in plan.evaluated if (values := evaluate(tables, context))]
        rows: list[list[Any]] = []
        for item in items:
            row = list(plan.rows.get(item, plan.default))
            for position, value in filled:
                row[position] = value
            for values in per_item:
                for name, value in values(item).items():
                    at = plan.positions.get(name)
                    if at is not None:
                        row[at] = value
            rows.append(row)
        return rows

    def _plan(self, tables: OnlineTables, canvas: str, features: Sequence[str]) -> Plan:
        """Per canvas and model, once per generation: each item's row of the features read from
        the latest probes (declared defaults where a feature is not for the canvas), where the
        context columns go, and the context features to evaluate per request."""
        key = (canvas, tuple(features))
        plan = tables.plans.get(key)
        if plan is not None:
            return plan
        registry = self.registry
        defaults = {c.name: c.default for c in registry.feature_columns}
        applies = {c.name: f.applies_to(canvas) for f in registry.feature_models for c in f.columns}

        def row_of(values: Mapping[str, Any]) -> list[Any]:
            return [
                canvas
                if name == "task_type"
                else (values.get(name, defaults[name]) if applies[name] else defaults[name])
                if name in defaults
                else None  # a context column used as a feature: filled per request
                for name in features
            ]

        evaluate = {
            "int_features__user_history": self._user_history,
            "int_features__coengagement": self._coengagement,
            "int_features__context_match": self._context_match,
        }
        models = [
            f for f in registry.feature_models if f.model in evaluate and f.applies_to(canvas)
        ]
        evaluated_columns = {c.name for f in models for c in f.columns}
        plan = Plan(
            rows={
                item: row_of(values)
                for (task, item), values in tables.item_features.items()
                if task == canvas
            },
            default=row_of({}),
            context_columns=[
                (i, name)
                for i, name in enumerate(features)
                if name != "task_type" and name not in defaults
            ],
            positions={name: i for i, name in enumerate(features) if name in evaluated_columns},
            evaluated=[evaluate[f.model] for f in models],
        )
        tables.plans[key] = plan
        return plan

    # Each built-in context feature model, evaluated here as its SQL defines it: given the
    # request's context, the function of a candidate item giving its columns (None: the model
    # does not apply to this context, its declared defaults stay).

    def _user_history(self, tables: OnlineTables, context: Mapping[str, Any]) -> ItemValues:
        """int_features__user_history: the user's engagements before the serving clock."""
        user = str(context["user_id"])
        if user == str(self.registry.sentinel("user_id")):
            return None  # anonymous: the declared defaults
        engaged = tables.user_items.get(user, {})
        by_category = tables.user_categories.get(user, {})
        total = sum(engaged.values())

        def values(item: str) -> dict[str, Any]:
            catalogued = tables.catalogue.get(item)
            in_category = by_category.get(None if catalogued is None else catalogued.category, 0)
            return {
                "user_engagements": total,
                "user_category_engagements": in_category,
                "user_category_affinity": 0.0 if total == 0 else in_category / total,
                "user_item_engagements": engaged.get(item, 0),
            }

        return values

    def _coengagement(self, tables: OnlineTables, context: Mapping[str, Any]) -> ItemValues:
        """int_features__coengagement: co-engagements with the source item before the clock."""
        source = str(context["source_item_id"])
        if source == str(self.registry.sentinel("source_item_id")):
            return None
        pairs = tables.pairs.get(source, {})
        return lambda item: {"source_coengagement": pairs.get(item, 0)}

    def _context_match(self, tables: OnlineTables, context: Mapping[str, Any]) -> ItemValues:
        """int_features__context_match: the candidate against the request's own context."""
        registry = self.registry
        names = registry.context_names

        def given(column: str) -> str | None:
            value = str(context[column]) if column in names else None
            return None if value == str(registry.sentinel(column)) else value

        query, browsed = given("query_text"), given("category")
        source, country = given("source_item_id"), given("country")
        words = tables.query_tokens(query) if query is not None else []
        source_item = tables.catalogue.get(source) if source is not None else None
        source_category = None if source_item is None else source_item.category

        def values(item: str) -> dict[str, Any]:
            catalogued = tables.catalogue.get(item)
            category = None if catalogued is None else catalogued.category
            found: dict[str, Any] = {}
            if "query_text" in names:
                if query is None:
                    found["query_title_match"] = -1.0
                else:
                    title = tables.title_tokens.get(item, ())
                    matched = sum(1 for w in words if w in title)
                    found["query_title_match"] = matched / len(words) if matched else 0.0
            if "category" in names:
                found["category_match"] = (
                    -1 if browsed is None else int(category is not None and category == browsed)
                )
            if "source_item_id" in names:
                found["source_category_match"] = (
                    -1
                    if source is None
                    else int(category is not None and source_category == category)
                )
            if "country" in names:
                available = None if catalogued is None else catalogued.available_countries
                if country is None or catalogued is None:
                    found["is_available_in_country"] = -1
                elif available is None:  # NULL availability: neither test holds in SQL
                    found["is_available_in_country"] = 0
                else:
                    listed = available == "" or f"|{country}|" in f"|{available}|"
                    found["is_available_in_country"] = int(listed)
            return found

        return values
