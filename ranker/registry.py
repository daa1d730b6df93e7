"""The registry schema: what a project declares under ``vars: unirank:`` in its dbt_project.yml.

One schema (pydantic models, unknown keys forbidden) serves three readers:

* Python (:func:`parse_registry`): a typed, validated :class:`Registry`;
* dbt: the macro ``unirank_registry`` validates the same block against :func:`compact_spec`,
  written into ``macros/unirank_registry_spec.sql`` by :func:`write_generated_files`;
* editors: the JSON Schema (:func:`json_schema`), published as ``docs/registry.schema.json``.

The built-in feature models are declared here too (:data:`BUILTIN_FEATURES`): a project lists
them in ``features`` by name, next to its own feature models, which it declares in full.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ranker.errors import UnirankError

REGISTRY_VAR = "unirank"

CandidateSource = Literal[
    "popular_in_canvas", "popular_in_category", "coengagement", "title_match", "user_categories"
]
# Sources a lookup can answer from at request time (user_categories needs a known user's history).
LookupFallback = Literal["popular_in_canvas", "popular_in_category", "coengagement", "title_match"]
# The context columns a candidate source is keyed by (any one of them suffices).
SOURCE_NEEDS: dict[str, tuple[str, ...]] = {
    "popular_in_canvas": (),
    "popular_in_category": ("category", "source_item_id"),
    "coengagement": ("source_item_id",),
    "title_match": ("query_text",),
    "user_categories": ("user_id",),
}
# How a canvas may fill a context column it lacks, instead of the sentinel (registry `impute`),
# and the context column each rule reads: the source item's title or category, the browsed
# category's own value, the user's most engaged category strictly before the request.
ImputeRule = Literal[
    "source_item_title", "source_item_category", "category_name", "user_top_category"
]
IMPUTE_NEEDS: dict[str, str] = {
    "source_item_title": "source_item_id",
    "source_item_category": "source_item_id",
    "category_name": "category",
    "user_top_category": "user_id",
}
ServingMode = Literal["cache_only", "cache_then_online", "online"]
ValueType = Literal["string", "int", "float"]
SQL_TYPES = {"string": "string", "int": "bigint", "float": "double"}


class RegistryError(UnirankError, ValueError):
    """The registry (or a --vars override) is wrong; the message says where and what to do."""


def _no_timezone(value: Any) -> Any:
    """Dates and timestamps are naive (UTC), as in the warehouse: a date means its midnight."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError("write a naive timestamp (UTC, no time zone), e.g. 2026-02-02 12:00")
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is not a date or timestamp; write YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS]"
            ) from None
        return _no_timezone(parsed)
    return value


Timestamp = Annotated[datetime, BeforeValidator(_no_timezone)]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Scalar = Union[str, int, float]  # noqa: UP007 (pydantic reads the union at runtime)


class Strict(BaseModel):
    """Every registry block: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Inputs(Strict):
    """The project's models unirank reads besides the label models."""

    items: str = Field(
        description="One row per item: item_id, title ('' if none), category, "
        "available_countries ('|'-separated; '' or NULL = available everywhere)."
    )
    engagements: str = Field(
        description="One row per engagement, every canvas: request_id, item_id, task_type "
        "(NULL = not tied to a canvas), user_id (NULL = anonymous), grade (1, 2, ...), engaged_at."
    )
    source_rows: str | None = Field(
        default=None,
        description="Optional: one row per raw source row with source_table, row_key and "
        "quarantine_reason (NULL when the row is used); feeds quarantined_rows.",
    )


class ContextColumn(Strict):
    name: Identifier
    type: ValueType = "string"
    sentinel: Scalar = Field(description="The value a canvas without this context gets.")
    feature: bool = Field(
        default=False, description="Whether the model uses this column as a feature."
    )


class CanvasServing(Strict):
    key: str = Field(description="The context column a cache entry is looked up by.")
    carry: tuple[str, ...] = Field(
        default=(), description="Context columns taken from the key's latest request."
    )
    min_requests: int = Field(default=1, ge=1)
    k: int = Field(default=10, ge=1, le=1000)
    max_k: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="The largest K a lookup of this canvas may ask (null = 1000); beyond the "
        "cache's k, the fallback chain fills the list.",
    )
    sources: tuple[CandidateSource, ...] = Field(min_length=1)
    fallbacks: tuple[LookupFallback, ...] = ()
    mode: ServingMode | None = Field(
        default=None,
        description="How a lookup is answered: cache_only (the cache, then the fallbacks), "
        "cache_then_online (a context the cache does not hold is scored by the current model at "
        "request time), online (every lookup is scored at request time). null = "
        "cache_then_online when every feature the canvas uses can be computed online, else "
        "cache_only.",
    )
    online_timeout_ms: int = Field(
        default=100,
        ge=1,
        le=60_000,
        description="The budget of one online scoring, in milliseconds; over it, the fallback "
        "chain answers and the answer says so.",
    )


class Imputation(Strict):
    column: Identifier = Field(description="The context column the canvas does not fill.")
    rule: ImputeRule = Field(
        description="Where its value comes from: source_item_title, source_item_category (the "
        "source item's title or category), category_name (the browsed category itself), "
        "user_top_category (the user's most engaged category strictly before the request; "
        "ties: the smallest name). No value: the sentinel."
    )


class Canvas(Strict):
    name: Identifier
    label_model: str
    context_columns: tuple[str, ...] = Field(min_length=1)
    required_context: tuple[str, ...] = ()
    weight: float = Field(default=1.0, gt=0)
    exclude_source_item: bool = Field(
        default=True,
        description="Drop the source item as its own candidate, in training rows and in serving.",
    )
    exclude_engaged: bool = Field(
        default=False,
        description="Drop items the user engaged with before the request, in training rows and "
        "in serving.",
    )
    impute: tuple[Imputation, ...] = Field(
        default=(),
        description="Context columns the canvas does not fill, filled from a related value "
        "instead of the sentinel, point-in-time, the same way in training, batch serving and "
        "online serving.",
    )
    serving: CanvasServing | None = None


class FeatureColumn(Strict):
    name: Identifier
    type: ValueType
    default: Scalar = Field(description="The value where the feature does not apply or is unknown.")
    description: str = ""
    drift: bool = Field(
        default=True,
        description="Whether the column's distribution should stay stable, so the report and "
        "`monitor` test it for drift (training rows against test rows and serving candidates): "
        "true for rates, shares, normalised values and categories; false for counts that grow "
        "by construction (a cumulative count drifts by design).",
    )


def _feature_shorthand(value: Any) -> Any:
    """``- int_features__item_popularity`` is short for ``- {model: int_features__item_popularity}``."""
    return {"model": value} if isinstance(value, str) else value


class FeatureModel(Strict):
    model: str
    columns: tuple[FeatureColumn, ...] | None = Field(
        default=None,
        description="The model's feature columns; omit for a built-in feature model.",
    )
    canvases: tuple[str, ...] | None = Field(
        default=None,
        description="The canvases the feature is meant for; others get the default. "
        "Omit for every canvas.",
    )
    grain: Literal["item", "request"] | None = Field(
        default=None,
        description="What a project feature's values depend on: `item` (only the candidate "
        "item, its canvas and the time: online scoring reads them as of the serving clock) or "
        "`request` (the request's own context too: the canvases it is for are served from the "
        "cache and the fallbacks, not scored online). Default request; omit for a built-in "
        "feature model.",
    )


class Stratification(Strict):
    strategy: Literal["traffic", "equal", "weights"] = "traffic"
    budget: int = Field(default=1_000_000, gt=0)
    seed: int = 0

    def target_requests(
        self, requests_per_canvas: Mapping[str, int], weights: Mapping[str, float]
    ) -> dict[str, int]:
        """How many requests each canvas keeps: the formula the `stratified_union` macro applies."""
        total = sum(requests_per_canvas.values())
        targets: dict[str, int] = {}
        for canvas, n in requests_per_canvas.items():
            if self.strategy == "traffic":
                # ceil(n * budget / total) in exact integer arithmetic
                targets[canvas] = (
                    n if self.budget >= total else (n * self.budget + total - 1) // total
                )
            elif self.strategy == "equal":
                targets[canvas] = math.floor(self.budget / len(weights))
            else:
                targets[canvas] = math.floor(self.budget * weights[canvas] / sum(weights.values()))
            targets[canvas] = min(targets[canvas], n)
        return targets


class Split(Strict):
    valid_from: Timestamp
    test_from: Timestamp

    @model_validator(mode="after")
    def _ordered(self) -> Split:
        if self.valid_from >= self.test_from:
            raise ValueError(
                f"valid_from < test_from is needed, got {self.valid_from} and {self.test_from}"
            )
        return self


class Training(Strict):
    """CatBoost YetiRank settings (the comparison models use the same: same budget). The defaults
    are the fast configuration measured in docs/benchmarks.md."""

    iterations: int = Field(default=800, ge=1)
    learning_rate: float = Field(default=0.1, gt=0, le=1)
    depth: int = Field(default=6, ge=1, le=16)
    l2_leaf_reg: float = Field(default=3.0, gt=0)
    border_count: int = Field(default=64, ge=1, le=65535)
    boosting_type: Literal["Plain", "Ordered"] = "Plain"
    yetirank_permutations: int = Field(default=1, ge=1)
    one_hot_max_size: int | None = Field(default=16, ge=1, le=255)
    early_stopping_rounds: int = Field(default=20, ge=1)
    metric_period: int = Field(default=10, ge=1)
    max_negatives_per_request: int | None = Field(default=10, ge=1)
    # sqrt: fewest canvases worse than a model of their own on the valid split of three
    # projects, with all data and with the smallest canvas at 5% (benchmarks/weighting.py)
    canvas_weights: Literal["none", "sqrt", "balanced"] = "sqrt"
    random_seed: int = 0


class Promotion(Strict):
    """When `train` makes a new model CURRENT."""

    metric: Literal["ndcg@5", "ndcg@10", "map@10", "mrr", "hitrate@10"] = Field(
        default="ndcg@10", description="The metric the gate compares per canvas."
    )
    tolerance: float = Field(
        default=0.0,
        ge=0,
        description="A new model is kept as a candidate (not CURRENT) when, on some canvas, the "
        "upper end of the paired 95% interval of (new - current) on the same test requests is "
        "below -tolerance: it is surely worse there by more than this.",
    )


class Monitoring(Strict):
    """Drift checks: the report's drift section and `unirank-cli monitor`."""

    drift_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="`monitor` exits 1 when, on some canvas, at least this share of the compared "
        "columns drifted (Evidently's test per column) between the serving candidates the "
        "current model was trained beside and today's: the signal for a nightly job to retrain.",
    )
    reference_rows: int = Field(
        default=5000,
        ge=100,
        description="Rows per canvas each model keeps for `monitor`: of its training rows "
        "(reference.parquet) and of the build's serving candidates (serving_reference.parquet).",
    )


class Serving(Strict):
    as_of: Timestamp | None = Field(
        default=None, description="Serve as of this time; null = just after the last event."
    )
    lookback_days: int = Field(default=28, ge=1)
    candidates_per_context: int = Field(default=100, ge=1)
    items_per_source: int = Field(default=200, ge=1)
    fallback_items_per_key: int = Field(default=100, ge=1)


class NegativeSampling(Strict):
    negatives_per_request: int = Field(default=20, ge=1)
    seed: int = 7


class FeatureChecks(Strict):
    every_nth_request: int = Field(
        default=32,
        ge=0,
        description="One training request in N gets twin probes for the leakage and skew tests "
        "(0 = no twins, no checks).",
    )


class Representations(Strict):
    """Item representations learned from every canvas's engagements, for the built-in feature
    model ``int_features__representation`` (docs/training.md#representations): implicit's ALS,
    one version per cut, each learned only from engagements strictly before its cut."""

    dimensions: int = Field(
        default=32, ge=2, le=256, description="Length of each item vector (ALS factors)."
    )
    train_versions: int = Field(
        default=4,
        ge=1,
        le=100,
        description="Versions learned over the training span: cuts evenly spaced from the first "
        "engagement to split.valid_from (the last at valid_from), each at the start of its day; "
        "split.test_from and the serving clock are cuts too. A probe uses the latest version "
        "whose cut is at or before its time.",
    )
    refresh_days: int | None = Field(
        default=None,
        ge=1,
        description="Also cut at the start of every Nth day (counted from the first cut) on "
        "which a request or serving probe falls: a refresh every N days, as a nightly job would "
        "do (1 = daily), so a probe reads vectors at most N days old. null = only the cuts "
        "above.",
    )
    iterations: int = Field(default=15, ge=1, le=1000, description="ALS iterations.")
    regularization: float = Field(default=0.05, gt=0, description="ALS L2 regularization.")
    alpha: float = Field(
        default=1.0,
        gt=0,
        description="ALS confidence per engagement: a (user, item) pair engaged n times weighs "
        "1 + alpha * n.",
    )
    seed: int = Field(default=0, ge=0, description="ALS random_state (one thread: reproducible).")


@dataclass(frozen=True)
class BuiltinColumn:
    name: str
    type: str
    default: str | int | float
    description: str
    needs: tuple[str, ...] = ()
    drift: bool = True  # False: a count that grows by construction (see FeatureColumn.drift)


# A cosine lies in [-1, 1]: the representation features' default (no vector, no history, no
# context) lies outside it, so the model can tell "unknown" from "orthogonal".
REPRESENTATION_DEFAULT = -2.0
REPRESENTATION_MODEL = "int_features__representation"
# The feature models unirank ships (models/intermediate/features/). A column whose `needs` names
# context columns the project does not declare is left out of that project's features.
BUILTIN_FEATURES: dict[str, tuple[BuiltinColumn, ...]] = {
    "int_features__item_popularity": (
        BuiltinColumn(
            "item_engagements",
            "int",
            0,
            "Engagements with the item strictly before the request, every canvas.",
            drift=False,
        ),
        BuiltinColumn("item_engagements_7d", "int", 0, "The same over the 7 days before."),
        BuiltinColumn(
            "item_canvas_engagements",
            "int",
            0,
            "The same within the request's canvas (an engagement without a canvas counts for all).",
            drift=False,
        ),
    ),
    "int_features__item_category": (
        BuiltinColumn("item_category", "string", "__none__", "The candidate's own category."),
        BuiltinColumn(
            "item_category_rank_pct",
            "float",
            1.0,
            "Popularity rank within its category / category size, as of the period start "
            "(category_rank_grain); small = popular.",
        ),
    ),
    "int_features__user_history": (
        BuiltinColumn(
            "user_engagements",
            "int",
            0,
            "The user's engagements before the request.",
            ("user_id",),
            drift=False,
        ),
        BuiltinColumn(
            "user_category_engagements",
            "int",
            0,
            "The user's engagements with the candidate's category.",
            ("user_id",),
            drift=False,
        ),
        BuiltinColumn(
            "user_category_affinity",
            "float",
            0.0,
            "user_category_engagements / user_engagements.",
            ("user_id",),
        ),
        BuiltinColumn(
            "user_item_engagements",
            "int",
            0,
            "The user's engagements with this item.",
            ("user_id",),
            drift=False,
        ),
    ),
    "int_features__coengagement": (
        BuiltinColumn(
            "source_coengagement",
            "int",
            -1,
            "Prior co-engagements of the source item and the candidate (coengagement_lags).",
            ("source_item_id",),
            drift=False,
        ),
    ),
    "int_features__context_match": (
        BuiltinColumn(
            "query_title_match",
            "float",
            -1.0,
            "Share of the query's words found in the candidate's title.",
            ("query_text",),
        ),
        BuiltinColumn(
            "category_match",
            "int",
            -1,
            "1 if the candidate is in the browsed category, else 0.",
            ("category",),
        ),
        BuiltinColumn(
            "source_category_match",
            "int",
            -1,
            "1 if the candidate shares the source item's category, else 0.",
            ("source_item_id",),
        ),
        BuiltinColumn(
            "is_available_in_country",
            "int",
            -1,
            "1 if available in the request's country (unknown availability = everywhere), else 0.",
            ("country",),
        ),
    ),
    REPRESENTATION_MODEL: (
        BuiltinColumn(
            "user_item_similarity",
            "float",
            REPRESENTATION_DEFAULT,
            "Cosine of the candidate's vector and the user's (the sum of the vectors of the items "
            "the user engaged with strictly before the request), both of the probe's version.",
            ("user_id",),
        ),
        BuiltinColumn(
            "source_item_similarity",
            "float",
            REPRESENTATION_DEFAULT,
            "Cosine of the source item's vector and the candidate's.",
            ("source_item_id",),
        ),
        BuiltinColumn(
            "query_item_similarity",
            "float",
            REPRESENTATION_DEFAULT,
            "Cosine of the query's vector (the vectors of the items whose titles hold the "
            "query's words, weighted by the share matched) and the candidate's.",
            ("query_text",),
        ),
    ),
}
# Built-in feature models a project adds by name; the others are the default `features`. The
# representations learn with ALS at build time (int_item_representations, a Python model).
OPT_IN_FEATURES: tuple[str, ...] = (REPRESENTATION_MODEL,)
DEFAULT_FEATURES: tuple[str, ...] = tuple(m for m in BUILTIN_FEATURES if m not in OPT_IN_FEATURES)
# What each built-in feature model's values depend on, for online scoring (ranker.online):
# `item` ones are read from the latest probes (the same SQL at the serving clock), `context`
# ones are evaluated at request time from per-entity latest tables (skew-checked against SQL).
BUILTIN_GRAIN: dict[str, str] = {
    "int_features__item_popularity": "item",
    "int_features__item_category": "item",
    "int_features__user_history": "context",
    "int_features__coengagement": "context",
    "int_features__context_match": "context",
    # a user's, source item's or query's vector at the request: served from the cache
    REPRESENTATION_MODEL: "request",
}
# Columns every probe and mart row has; a feature column may not reuse these names.
RESERVED_COLUMNS = (
    "request_id",
    "item_id",
    "task_type",
    "split",
    "label",
    "requested_at",
    "requested_at_us",
    "is_serving",
    "context_key",
    "candidate_source",
    "candidate_rank",
    "served_as_of",
    "dbt_invocation_id",
)


class Registry(Strict):
    """The whole registry: one project's canvases, context, features and settings."""

    inputs: Inputs
    context_columns: tuple[ContextColumn, ...] = Field(min_length=1)
    canvases: tuple[Canvas, ...] = Field(min_length=1)
    features: tuple[Annotated[FeatureModel, BeforeValidator(_feature_shorthand)], ...] = Field(
        default=tuple(FeatureModel(model=m) for m in DEFAULT_FEATURES),
        description="Feature models: a built-in one by name, or a project's own with its columns.",
    )
    split: Split
    stratification: Stratification = Stratification()
    training: Training = Training()
    serving: Serving = Serving()
    promotion: Promotion = Promotion()
    monitoring: Monitoring = Monitoring()
    negative_sampling: NegativeSampling = NegativeSampling()
    feature_checks: FeatureChecks = FeatureChecks()
    representations: Representations = Representations()
    coengagement_lags: int = Field(default=3, ge=1)
    category_rank_grain: Literal["day", "week", "month"] = "day"
    quarantine_max_share: float = Field(default=0.01, ge=0, le=1)

    @field_validator("features", mode="before")
    @classmethod
    def _features_list(cls, value: Any) -> Any:
        return value if value is not None else []

    @model_validator(mode="after")
    def _consistent(self) -> Registry:
        _check_consistency(self)
        _check_online(self)
        return self

    # --- derived views -------------------------------------------------------------------------

    @property
    def canvas_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.canvases)

    @property
    def context_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.context_columns)

    def canvas(self, name: str) -> Canvas:
        for canvas in self.canvases:
            if canvas.name == name:
                return canvas
        raise RegistryError(
            f"unknown canvas {name!r}; the registry declares {list(self.canvas_names)}"
        )

    def sentinel(self, column: str) -> str | int | float:
        for col in self.context_columns:
            if col.name == column:
                return col.sentinel
        raise RegistryError(f"unknown context column {column!r}")

    @cached_property
    def feature_models(self) -> tuple[ResolvedFeature, ...]:
        """Every feature model with its columns (a built-in's, cut to the declared context);
        computed once (a lookup asks for it on every call)."""
        return tuple(_resolve(f, self.context_names) for f in self.features)

    def offline_features(self, canvas: str) -> tuple[str, ...]:
        """The feature models meant for ``canvas`` that online scoring cannot compute (a
        project's own of `request` grain)."""
        return tuple(
            f.model for f in self.feature_models if f.grain == "request" and f.applies_to(canvas)
        )

    def serving_mode(self, canvas: str) -> ServingMode:
        """The canvas's serving mode (its registry `mode`, or the default it resolves to)."""
        serving = self.canvas(canvas).serving
        if serving is not None and serving.mode is not None:
            return serving.mode
        return "cache_only" if self.offline_features(canvas) else "cache_then_online"

    @property
    def feature_columns(self) -> tuple[FeatureColumn, ...]:
        return tuple(c for f in self.feature_models for c in f.columns)

    @property
    def model_features(self) -> ModelFeatures:
        """The columns the ranker trains on: task_type, context columns marked `feature`, and
        every registered feature column; strings are categorical, numbers numeric."""
        categorical = ["task_type"]
        numeric: list[str] = []
        columns: tuple[ContextColumn | FeatureColumn, ...] = (
            *self.context_columns,
            *self.feature_columns,
        )
        for column in columns:
            if isinstance(column, ContextColumn) and not column.feature:
                continue
            (categorical if column.type == "string" else numeric).append(column.name)
        return ModelFeatures(tuple(categorical), tuple(numeric))

    @property
    def drift_features(self) -> ModelFeatures:
        """The model's features whose distribution should stay stable (a column's `drift`):
        context columns used as features, and feature columns not marked `drift: false`.
        ``task_type`` is left out: it is constant within a canvas."""
        stable = {c.name for c in self.feature_columns if c.drift} | {
            c.name for c in self.context_columns if c.feature
        }
        features = self.model_features
        return ModelFeatures(
            tuple(c for c in features.categorical if c in stable),
            tuple(c for c in features.numeric if c in stable),
        )


@dataclass(frozen=True)
class ResolvedFeature:
    model: str
    columns: tuple[FeatureColumn, ...]
    canvases: tuple[str, ...] | None
    builtin: bool
    grain: str = "request"  # item | context (built-in, computed online) | request

    def applies_to(self, canvas: str) -> bool:
        return self.canvases is None or canvas in self.canvases


@dataclass(frozen=True)
class ModelFeatures:
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return self.categorical + self.numeric


def _resolve(feature: FeatureModel, context: Sequence[str]) -> ResolvedFeature:
    builtin = BUILTIN_FEATURES.get(feature.model)
    if builtin is None:
        assert feature.columns is not None  # checked in _check_consistency
        return ResolvedFeature(
            feature.model, feature.columns, feature.canvases, False, feature.grain or "request"
        )
    columns = tuple(
        FeatureColumn(
            name=c.name,
            type=c.type,  # type: ignore[arg-type]
            default=c.default,
            description=c.description,
            drift=c.drift,
        )
        for c in builtin
        if all(n in context for n in c.needs)
    )
    return ResolvedFeature(
        feature.model, columns, feature.canvases, True, BUILTIN_GRAIN[feature.model]
    )


def _check_consistency(registry: Registry) -> None:
    """Cross-key rules a field-by-field schema cannot express; each error names the entry."""
    names = registry.context_names
    _unique(names, "context column")
    _unique(registry.canvas_names, "canvas")
    for canvas in registry.canvases:
        where = f"canvas '{canvas.name}'"
        for column in (*canvas.context_columns, *canvas.required_context):
            if column not in names:
                raise ValueError(
                    f"{where} names unknown context column '{column}'; declare it under "
                    f"context_columns or use one of {list(names)}"
                )
        for column in canvas.required_context:
            if column not in canvas.context_columns:
                raise ValueError(
                    f"{where} requires context column '{column}' but does not list it in its "
                    "context_columns"
                )
        _check_imputations(registry, canvas)
        serving = canvas.serving
        if serving is None:
            continue
        if serving.key not in canvas.context_columns:
            raise ValueError(
                f"{where} serving key '{serving.key}' is not one of its context_columns "
                f"{list(canvas.context_columns)}"
            )
        for column in serving.carry:
            if column not in canvas.context_columns:
                raise ValueError(f"{where} serving carries '{column}', which it does not fill")
        for source in (*serving.sources, *serving.fallbacks):
            needs = SOURCE_NEEDS[source]
            if needs and not any(n in canvas.context_columns for n in needs):
                raise ValueError(
                    f"{where} serving uses source '{source}', which is keyed by "
                    f"{' or '.join(needs)}; the canvas fills none of them"
                )
        if serving.max_k is not None and serving.max_k < serving.k:
            raise ValueError(
                f"{where} serving max_k={serving.max_k} is below its k={serving.k}; a lookup "
                "must be able to ask for what the cache holds"
            )
        if serving.k > registry.serving.candidates_per_context:
            raise ValueError(
                f"{where} serves k={serving.k} but only "
                f"{registry.serving.candidates_per_context} candidates per context are generated; "
                "lower k or raise serving.candidates_per_context"
            )
    _unique([f.model for f in registry.features], "feature model")
    taken = {*RESERVED_COLUMNS, *names}
    for feature in registry.features:
        where = f"feature model '{feature.model}'"
        builtin = BUILTIN_FEATURES.get(feature.model)
        if builtin is not None and feature.columns is not None:
            raise ValueError(
                f"{where} is built in: its columns are fixed ({[c.name for c in builtin]}); "
                "omit `columns`"
            )
        if builtin is not None and feature.grain is not None:
            raise ValueError(f"{where} is built in: its grain is fixed; omit `grain`")
        if builtin is None and not feature.columns:
            raise ValueError(
                f"{where} declares no columns; list them (name, type, default), or use a "
                f"built-in feature model: {list(BUILTIN_FEATURES)}"
            )
        for canvas_name in feature.canvases or ():
            if canvas_name not in registry.canvas_names:
                raise ValueError(
                    f"{where} is meant for unknown canvas '{canvas_name}'; canvases are "
                    f"{list(registry.canvas_names)}"
                )
        resolved = _resolve(feature, names)
        if builtin is not None and not resolved.columns:
            missing = sorted({n for c in builtin for n in c.needs})
            raise ValueError(
                f"{where} needs the context column(s) {missing}, which the registry does not "
                "declare; declare one or drop the feature"
            )
        for feature_column in resolved.columns:
            if feature_column.name in taken:
                raise ValueError(
                    f"{where} column '{feature_column.name}' clashes with a key, context or "
                    "other feature column; rename it"
                )
            taken.add(feature_column.name)
            _check_default(feature_column, where)


def _check_imputations(registry: Registry, canvas: Canvas) -> None:
    where = f"canvas '{canvas.name}'"
    names = registry.context_names
    seen: set[str] = set()
    for imputation in canvas.impute:
        column, rule = imputation.column, imputation.rule
        if column not in names:
            raise ValueError(
                f"{where} imputes unknown context column '{column}'; declare it under "
                f"context_columns or use one of {list(names)}"
            )
        if column in canvas.context_columns:
            raise ValueError(
                f"{where} imputes '{column}', which it fills itself; impute only a column the "
                "canvas lacks"
            )
        if column in seen:
            raise ValueError(f"{where} imputes '{column}' twice; keep one rule per column")
        seen.add(column)
        needs = IMPUTE_NEEDS[rule]
        if needs not in canvas.context_columns:
            raise ValueError(
                f"{where} imputes '{column}' with {rule}, which reads '{needs}'; the canvas does "
                "not fill it"
            )
        declared = next(c for c in registry.context_columns if c.name == column)
        if declared.type != "string":
            raise ValueError(
                f"{where} imputes '{column}' with {rule}, a text value, but '{column}' is "
                f"{declared.type}; impute only string context columns"
            )


def _check_online(registry: Registry) -> None:
    """A canvas declared to score online cannot use a feature online scoring cannot compute."""
    for canvas in registry.canvases:
        mode = canvas.serving.mode if canvas.serving is not None else None
        if mode not in ("cache_then_online", "online"):
            continue
        offline = registry.offline_features(canvas.name)
        if offline:
            raise ValueError(
                f"canvas '{canvas.name}' serving mode {mode} scores at request time, but feature "
                f"model '{offline[0]}' (grain request) cannot be computed then; declare its "
                "`grain: item` if its values depend only on the candidate item, or use mode "
                "cache_only"
            )


def _check_default(column: FeatureColumn, where: str) -> None:
    ok = (
        isinstance(column.default, str)
        if column.type == "string"
        else isinstance(column.default, int | float) and not isinstance(column.default, bool)
    )
    if column.type == "int" and isinstance(column.default, float):
        ok = column.default.is_integer()
    if not ok:
        raise ValueError(
            f"{where} column '{column.name}' is {column.type} but its default is "
            f"{column.default!r}; give a default of the same type"
        )


def _unique(values: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} '{value}' is declared twice; names must be unique")
        seen.add(value)


# --- parsing with errors a user can act on ---------------------------------------------------


def parse_registry(raw: Any, where: str = f"vars.{REGISTRY_VAR}") -> Registry:
    """Validate a registry mapping; every problem becomes one :class:`RegistryError` naming the
    key, where it is and (for an unknown key) the nearest valid one."""
    if not isinstance(raw, Mapping):
        raise RegistryError(
            f"registry: {where} must be a mapping of registry keys (context_columns, canvases, "
            f"inputs, split, ...), got {type(raw).__name__}"
        )
    try:
        return Registry.model_validate(dict(raw))
    except ValidationError as exc:
        raise RegistryError(_explain(exc, raw, where)) from None


def _explain(exc: ValidationError, raw: Any, where: str) -> str:
    lines = []
    errors = exc.errors(include_url=False)
    locs = [tuple(e["loc"]) for e in errors]
    for error in errors:
        loc = tuple(error["loc"])
        if any(other[: len(loc)] == loc and len(other) > len(loc) for other in locs):
            continue  # a child's error says more
        path = _path(raw, loc, where)
        kind = error["type"]
        if kind == "extra_forbidden":
            valid = list(_keys_at(Registry, loc[:-1]))
            near = nearest(str(loc[-1]), valid)
            hint = f"did you mean `{near}`?" if near else f"valid keys: {', '.join(valid)}"
            lines.append(
                f"registry: unknown key `{loc[-1]}` in {_path(raw, loc[:-1], where)}; {hint}"
            )
        elif kind == "missing":
            lines.append(f"registry: {path} is missing")
        elif kind == "value_error":
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"registry: {message}" if not loc else f"registry: {path}: {message}")
        else:
            lines.append(f"registry: {path} is {error.get('input')!r}: {error['msg']}")
    return "\n".join(dict.fromkeys(lines))


def nearest(word: str, candidates: Sequence[str]) -> str | None:
    """The candidate closest to ``word`` by edit distance (the first of equals), or None when
    even it differs in more than a third of its letters: the "did you mean". The dbt macro
    ``unirank_nearest`` applies the same rule, so dbt and the CLI suggest the same key."""
    best, best_distance = None, 999
    for candidate in candidates:
        previous = list(range(len(candidate) + 1))
        for i, letter in enumerate(word, start=1):
            current = [i]
            for j, other in enumerate(candidate, start=1):
                current.append(
                    min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (letter != other))
                )
            previous = current
        if previous[-1] < best_distance:
            best, best_distance = candidate, previous[-1]
    if best is None or best_distance * 3 > max(len(word), len(best)):
        return None
    return best


def _path(raw: Any, loc: Sequence[Any], where: str) -> str:
    """``vars.unirank.canvases[search].serving.k``: list items named by their name or model."""
    text = where
    node = raw
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            named = item.get("name") or item.get("model") if isinstance(item, Mapping) else None
            label = named or part
            text += f"[{label}]"
            node = item
        else:
            text += f".{part}"
            node = node.get(part) if isinstance(node, Mapping) else None
    return text


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (through Optional, tuple[...] and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _keys_at(model: type[BaseModel], loc: Sequence[Any]) -> Iterator[str]:
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None or isinstance(part, int) or part not in current.model_fields:
            continue
        current = _model_of(current.model_fields[part].annotation)
    if current is not None:
        yield from current.model_fields


# --- the generated artifacts: compact spec for dbt, JSON Schema for editors ---------------------


def compact_spec(model: type[BaseModel] = Registry) -> dict[str, Any]:
    """The registry's shape as plain data the dbt macro ``unirank_registry`` walks: for each
    object its keys (with defaults and which are required), for each list its item, for each
    scalar its type and allowed values."""
    keys: dict[str, Any] = {}
    required: list[str] = []
    for name, field in model.model_fields.items():
        spec = _spec_of(field.annotation)
        spec.update(_bounds(field.metadata))
        if field.is_required():
            required.append(name)
        else:
            default = field.get_default(call_default_factory=True)
            spec["default"] = _plain(default)
        keys[name] = spec
    return {"type": "object", "keys": keys, "required": required}


def _bounds(metadata: Sequence[Any]) -> dict[str, Any]:
    """Numeric bounds and minimum lengths of a field (pydantic's annotated_types metadata)."""
    bounds: dict[str, Any] = {}
    for item in metadata:
        for attribute, key in (
            ("ge", "min"),
            ("gt", "above"),
            ("le", "max"),
            ("min_length", "min_items"),
        ):
            value = getattr(item, attribute, None)
            if value is not None:
                bounds[key] = value
    return bounds


def _spec_of(annotation: Any) -> dict[str, Any]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        spec = _spec_of(args[0])
        if any(getattr(m, "func", None) is _feature_shorthand for m in args[1:]):
            spec["shorthand"] = "model"
        if any(getattr(m, "func", None) is _no_timezone for m in args[1:]):
            spec = {"type": "timestamp"}
        return spec
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        nullable = len(options) < len(args)
        spec = _spec_of(options[0]) if len(options) == 1 else {"type": "scalar"}
        if nullable:
            spec["nullable"] = True
        return spec
    if origin is tuple:
        return {"type": "list", "items": _spec_of(args[0])}
    if origin is Literal:
        return {"type": "string", "enum": list(args)}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return compact_spec(annotation)
    simple = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        datetime: "timestamp",
    }
    if annotation in simple:
        return {"type": simple[annotation]}
    raise TypeError(f"no compact spec for {annotation!r}")


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return {k: _plain(v) for k, v in value.model_dump(exclude_defaults=False).items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return value


def builtin_spec() -> dict[str, list[dict[str, Any]]]:
    """The built-in feature models' columns, for the dbt macro ``unirank_registry``."""
    return {
        model: [
            {
                "name": c.name,
                "type": c.type,
                "default": c.default,
                "description": c.description,
                "needs": list(c.needs),
                "grain": BUILTIN_GRAIN[model],
            }
            for c in columns
        ]
        for model, columns in BUILTIN_FEATURES.items()
    }


def json_schema() -> dict[str, Any]:
    schema = Registry.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "unirank registry (vars: unirank: in dbt_project.yml)"
    return schema


SPEC_MACRO = "macros/unirank_registry_spec.sql"
SCHEMA_FILE = "docs/registry.schema.json"


def generated_files() -> dict[str, str]:
    """What :func:`write_generated_files` writes, by path relative to the unirank root."""
    spec = json.dumps({"registry": compact_spec(), "builtin_features": builtin_spec()})
    literal = "'" + spec.replace("\\", "\\\\").replace("'", "\\'") + "'"
    macro = (
        "{% macro unirank_registry_spec() %}\n"
        "  {#- GENERATED from ranker/registry.py by `python -m ranker.registry`; do not edit.\n"
        "      The registry's shape (keys, defaults, types) and the built-in feature models'\n"
        "      columns, for the macro unirank_registry. -#}\n"
        f"  {{{{ return(fromjson({literal})) }}}}\n"
        "{% endmacro %}\n"
    )
    return {
        SPEC_MACRO: macro,
        SCHEMA_FILE: json.dumps(json_schema(), indent=2) + "\n",
    }


def write_generated_files(root: Path) -> list[Path]:
    written = []
    for relative, text in generated_files().items():
        path = root / relative
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    return written


if __name__ == "__main__":
    for path in write_generated_files(Path(__file__).resolve().parents[1]):
        print(f"wrote {path}")
