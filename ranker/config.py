"""The registry: the `vars:` block of dbt_project.yml, read into one typed, validated object.

dbt reads the same block (macro ``unirank_registry``), so ``dbt build`` alone and ``unirank-cli``
see the same canvases, sentinels, stratification and split. Overrides are applied the way dbt
applies ``--vars``: a given top-level key replaces the project's value whole.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

CONTEXT_TYPES = ("string", "int", "float")
CANDIDATE_SOURCES = (
    "popular_in_canvas",
    "popular_in_category",
    "coengagement",
    "title_match",
    "user_categories",
)
# Sources a lookup can answer from at request time (user_categories needs a known user's history).
LOOKUP_FALLBACKS = ("popular_in_canvas", "popular_in_category", "coengagement", "title_match")
STRATEGIES = ("traffic", "equal", "weights")
# Registry keys a dataset block (vars.datasets.<name>) may set for itself.
DATASET_KEYS = ("canvases", "split", "stratification", "serving", "training", "negative_sampling")
# The models every dataset provides besides its label models (the `dataset_ref` macro's entities).
DATASET_CONTRACT = ("items", "engagement_history", "source_rows")
DEFAULT_DUCKDB_PATH = Path("warehouse") / "unirank.duckdb"


class RegistryError(ValueError):
    """The registry in dbt_project.yml (or a --vars override) is wrong; the message says where."""


@dataclass(frozen=True)
class ContextColumn:
    name: str
    type: str
    sentinel: str | int | float


@dataclass(frozen=True)
class CanvasServing:
    """How a canvas is served: the cache key, K, first-stage sources and the fallback chain."""

    key: str
    carry: tuple[str, ...]
    min_requests: int
    k: int
    sources: tuple[str, ...]
    fallbacks: tuple[str, ...]
    exclude_engaged: bool


@dataclass(frozen=True)
class Canvas:
    name: str
    label_model: str
    context_columns: tuple[str, ...]
    required_context: tuple[str, ...]
    weight: float
    serving: CanvasServing | None = None


@dataclass(frozen=True)
class ServingSettings:
    as_of: str | None
    lookback_days: int
    candidates_per_context: int
    items_per_source: int
    fallback_items_per_key: int


@dataclass(frozen=True)
class Stratification:
    strategy: str
    budget: int
    seed: int

    def target_requests(
        self, requests_per_canvas: Mapping[str, int], weights: Mapping[str, float]
    ) -> dict[str, int]:
        """How many requests each canvas keeps: the formula the `stratified_union` macro applies."""
        total = sum(requests_per_canvas.values())
        targets: dict[str, int] = {}
        for canvas, n in requests_per_canvas.items():
            if self.strategy == "traffic":
                # ceil(n * budget / total) in exact integer arithmetic (floats round 113 * 15/113 up to 16)
                targets[canvas] = (
                    n if self.budget >= total else (n * self.budget + total - 1) // total
                )
            elif self.strategy == "equal":
                targets[canvas] = math.floor(self.budget / len(weights))
            else:
                targets[canvas] = math.floor(self.budget * weights[canvas] / sum(weights.values()))
            targets[canvas] = min(targets[canvas], n)
        return targets


@dataclass(frozen=True)
class Split:
    valid_from: date
    test_from: date


@dataclass(frozen=True)
class ModelFeatures:
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return self.categorical + self.numeric


@dataclass(frozen=True)
class Registry:
    dataset: str
    context_columns: tuple[ContextColumn, ...]
    canvases: tuple[Canvas, ...]
    stratification: Stratification
    split: Split
    features: ModelFeatures
    quarantine_max_share: float
    serving: ServingSettings

    @property
    def canvas_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.canvases)

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


@dataclass(frozen=True)
class Settings:
    """Everything a command needs: where the project and warehouse are, and the registry."""

    project_dir: Path
    duckdb_path: Path
    artifacts_dir: Path
    reports_dir: Path
    registry: Registry
    vars: dict[str, Any]
    var_overrides: dict[str, Any]
    # The dbt target (profiles.yml) the warehouse lives in; None = the profile's default.
    target: str | None = None


def _require(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in mapping or mapping[key] is None:
        raise RegistryError(f"{where} is missing `{key}`")
    return mapping[key]


def _parse_date(value: Any, where: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise RegistryError(f"{where} is {value!r}; write a date as YYYY-MM-DD") from exc


def _label_models(project_dir: Path) -> set[str]:
    return {p.stem for p in (project_dir / "models").rglob("*.sql")}


def resolve_dataset_vars(
    project_vars: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The vars as the selected dataset sees them, in the order the `registry_var` macro applies:
    a ``--vars`` override, then the dataset's block (vars.datasets.<dataset>), then the project's
    top-level key."""
    overrides = dict(overrides or {})
    merged = {**project_vars, **overrides}
    name = merged.get("dataset", "demo")
    datasets = merged.get("datasets") or {"demo": {}}
    if not isinstance(datasets, Mapping) or name not in datasets:
        known = sorted(datasets) if isinstance(datasets, Mapping) else []
        raise RegistryError(
            f"registry: vars.dataset is {name!r}; declare it under vars.datasets or use one of {known}"
        )
    block = datasets[name] or {}
    if not isinstance(block, Mapping):
        raise RegistryError(f"registry: vars.datasets.{name} must be a mapping of registry keys")
    unknown = sorted(set(block) - set(DATASET_KEYS))
    if unknown:
        raise RegistryError(
            f"registry: vars.datasets.{name} sets {unknown}; a dataset block may set only "
            f"{list(DATASET_KEYS)}"
        )
    return {**project_vars, **block, **overrides, "dataset": name}


def parse_registry(variables: Mapping[str, Any], project_dir: Path | None = None) -> Registry:
    """Validate the registry vars (already resolved for the dataset, see
    :func:`resolve_dataset_vars`). With ``project_dir``, also check that every model the registry
    names exists: each canvas's label model and the dataset's contract models."""
    raw_columns = variables.get("context_columns") or []
    if not raw_columns:
        raise RegistryError(
            "registry: vars.context_columns is empty; declare at least one context column"
        )
    columns: list[ContextColumn] = []
    for i, raw in enumerate(raw_columns, start=1):
        where = f"registry: context column #{i}"
        name = _require(raw, "name", where)
        where = f"registry: context column '{name}'"
        if "sentinel" not in raw:
            raise RegistryError(f"{where} is missing `sentinel`")
        col_type = raw.get("type", "string")
        if col_type not in CONTEXT_TYPES:
            raise RegistryError(f"{where} has type '{col_type}'; use one of {list(CONTEXT_TYPES)}")
        if any(c.name == name for c in columns):
            raise RegistryError(f"{where} is declared twice")
        columns.append(ContextColumn(name=name, type=col_type, sentinel=raw["sentinel"]))
    column_names = [c.name for c in columns]

    raw_canvases = variables.get("canvases") or []
    if not raw_canvases:
        raise RegistryError("registry: vars.canvases is empty; declare at least one canvas")
    known_models = _label_models(project_dir) if project_dir is not None else None
    if known_models is not None:
        dataset = variables.get("dataset", "demo")
        for entity in DATASET_CONTRACT:
            model = f"int_{dataset}__{entity}"
            if model not in known_models:
                raise RegistryError(
                    f"registry: dataset '{dataset}' has no model '{model}'; a dataset provides "
                    f"int_<dataset>__{{{', '.join(DATASET_CONTRACT)}}} and its label models"
                )
    canvases: list[Canvas] = []
    for i, raw in enumerate(raw_canvases, start=1):
        where = f"registry: canvas '{raw.get('name', f'#{i}')}'"
        name = _require(raw, "name", where)
        label_model = _require(raw, "label_model", where)
        context = tuple(_require(raw, "context_columns", where))
        required = tuple(raw.get("required_context", ()))
        if any(c.name == name for c in canvases):
            raise RegistryError(f"{where} is declared twice; canvas names must be unique")
        for col in context + required:
            if col not in column_names:
                raise RegistryError(
                    f"{where} names unknown context column '{col}'; declare it under "
                    f"vars.context_columns or use one of {column_names}"
                )
        for col in required:
            if col not in context:
                raise RegistryError(
                    f"{where} requires context column '{col}' but does not list it in its context_columns"
                )
        weight = raw.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
            raise RegistryError(f"{where} has weight {weight!r}; weights must be positive numbers")
        if project_dir is not None and known_models is not None and label_model not in known_models:
            raise RegistryError(
                f"{where} names label model '{label_model}', which is not a model under "
                f"{project_dir / 'models'}; add models/.../{label_model}.sql or fix the name"
            )
        serving = _parse_canvas_serving(raw.get("serving"), where, context)
        canvases.append(Canvas(name, label_model, context, required, float(weight), serving))

    raw_strat = variables.get("stratification") or {}
    strategy = raw_strat.get("strategy", "traffic")
    if strategy not in STRATEGIES:
        raise RegistryError(
            f"registry: stratification.strategy is '{strategy}'; use one of {list(STRATEGIES)}"
        )
    budget = raw_strat.get("budget", 1_000_000)
    if isinstance(budget, bool) or not isinstance(budget, int | float) or budget <= 0:
        raise RegistryError(
            f"registry: stratification.budget is {budget!r}; it must be a positive number of requests"
        )
    stratification = Stratification(strategy, int(budget), int(raw_strat.get("seed", 0)))

    raw_split = variables.get("split") or {}
    valid_from = _parse_date(
        _require(raw_split, "valid_from", "registry: split"), "registry: split.valid_from"
    )
    test_from = _parse_date(
        _require(raw_split, "test_from", "registry: split"), "registry: split.test_from"
    )
    if valid_from >= test_from:
        raise RegistryError(
            f"registry: split needs valid_from < test_from, got {valid_from} and {test_from}"
        )

    raw_features = variables.get("model_features") or {}
    features = ModelFeatures(
        categorical=tuple(raw_features.get("categorical", ())),
        numeric=tuple(raw_features.get("numeric", ())),
    )
    if not features.all:
        raise RegistryError("registry: vars.model_features lists no features")
    duplicated = {f for f in features.all if features.all.count(f) > 1}
    if duplicated:
        raise RegistryError(f"registry: model_features lists {sorted(duplicated)} more than once")

    raw_serving = variables.get("serving") or {}
    serving_settings = ServingSettings(
        as_of=str(raw_serving["as_of"]) if raw_serving.get("as_of") else None,
        lookback_days=int(raw_serving.get("lookback_days", 28)),
        candidates_per_context=int(raw_serving.get("candidates_per_context", 100)),
        items_per_source=int(raw_serving.get("items_per_source", 200)),
        fallback_items_per_key=int(raw_serving.get("fallback_items_per_key", 100)),
    )
    if serving_settings.lookback_days < 1 or serving_settings.candidates_per_context < 1:
        raise RegistryError(
            "registry: serving.lookback_days and candidates_per_context must be >= 1"
        )
    for canvas in canvases:
        if canvas.serving and canvas.serving.k > serving_settings.candidates_per_context:
            raise RegistryError(
                f"registry: canvas '{canvas.name}' serves k={canvas.serving.k} but only "
                f"{serving_settings.candidates_per_context} candidates per context are generated; "
                "lower k or raise serving.candidates_per_context"
            )

    share = variables.get("quarantine_max_share", 0.01)
    if not isinstance(share, int | float) or not 0 <= share <= 1:
        raise RegistryError(f"registry: quarantine_max_share is {share!r}; use a share in [0, 1]")
    return Registry(
        dataset=str(variables.get("dataset", "demo")),
        context_columns=tuple(columns),
        canvases=tuple(canvases),
        stratification=stratification,
        split=Split(valid_from, test_from),
        features=features,
        quarantine_max_share=float(share),
        serving=serving_settings,
    )


def _parse_canvas_serving(
    raw: Mapping[str, Any] | None, where: str, context: tuple[str, ...]
) -> CanvasServing | None:
    if raw is None:
        return None
    key = _require(raw, "key", f"{where} serving")
    if key not in context:
        raise RegistryError(
            f"{where} serving key '{key}' is not one of its context_columns {list(context)}"
        )
    carry = tuple(raw.get("carry", ()))
    for column in carry:
        if column not in context:
            raise RegistryError(f"{where} serving carries '{column}', which it does not fill")
    sources = tuple(_require(raw, "sources", f"{where} serving"))
    fallbacks = tuple(raw.get("fallbacks", ()))
    for source in sources:
        if source not in CANDIDATE_SOURCES:
            raise RegistryError(
                f"{where} serving names unknown candidate source '{source}'; use one of {list(CANDIDATE_SOURCES)}"
            )
    for source in fallbacks:
        if source not in LOOKUP_FALLBACKS:
            raise RegistryError(
                f"{where} serving names unknown fallback '{source}'; use one of {list(LOOKUP_FALLBACKS)}"
            )
    k = raw.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
        raise RegistryError(f"{where} serving k is {k!r}; use an integer from 1 to 1000")
    min_requests = raw.get("min_requests", 1)
    if not isinstance(min_requests, int) or min_requests < 1:
        raise RegistryError(
            f"{where} serving min_requests is {min_requests!r}; use an integer >= 1"
        )
    return CanvasServing(
        key=key,
        carry=carry,
        min_requests=min_requests,
        k=k,
        sources=sources,
        fallbacks=fallbacks,
        exclude_engaged=bool(raw.get("exclude_engaged", False)),
    )


def read_project_vars(project_dir: Path) -> dict[str, Any]:
    path = project_dir / "dbt_project.yml"
    if not path.is_file():
        raise RegistryError(
            f"no dbt_project.yml in {project_dir}; run from the unirank project folder or pass --project-dir"
        )
    with path.open() as handle:
        project = yaml.safe_load(handle) or {}
    return dict(project.get("vars") or {})


def parse_var_overrides(text: str | None) -> dict[str, Any]:
    """Parse a ``--vars`` string (YAML or JSON, as dbt accepts) into a dict."""
    if not text:
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError(f"--vars is not valid YAML/JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise RegistryError(
            f"--vars must be a mapping like '{{stratification: {{budget: 1000}}}}', got {text!r}"
        )
    return value


def load_settings(
    project_dir: Path | str = ".",
    var_overrides: Mapping[str, Any] | None = None,
    duckdb_path: Path | str | None = None,
    artifacts_dir: Path | str | None = None,
    reports_dir: Path | str | None = None,
    target: str | None = None,
) -> Settings:
    """Read dbt_project.yml under ``project_dir``, apply overrides, validate, locate the outputs.

    The warehouse path follows profiles.yml: ``UNIRANK_DUCKDB_PATH`` or warehouse/unirank.duckdb
    (warehouse/<dataset>/unirank.duckdb for a dataset other than the demo). Models go to
    ``artifacts/`` (``UNIRANK_ARTIFACTS_DIR``), reports to ``reports/`` (``UNIRANK_REPORTS_DIR``),
    each with a <dataset>/ sub-folder outside the demo; relative paths are relative to the
    project folder. ``target`` names the profiles.yml target (``UNIRANK_TARGET``, as dbt reads
    it; default duckdb).
    """
    project = Path(project_dir).resolve()
    overrides = dict(var_overrides or {})
    variables = resolve_dataset_vars(read_project_vars(project), overrides)
    registry = parse_registry(variables, project)
    # The demo keeps the top-level folders; another dataset gets its own sub-folder of each, so
    # switching datasets never overwrites a warehouse, a model pointer or a cache (profiles.yml
    # picks the same warehouse path).
    sub = Path() if registry.dataset == "demo" else Path(registry.dataset)
    if duckdb_path is None:
        duckdb_path = os.environ.get(
            "UNIRANK_DUCKDB_PATH", str(DEFAULT_DUCKDB_PATH.parent / sub / DEFAULT_DUCKDB_PATH.name)
        )
    return Settings(
        project_dir=project,
        duckdb_path=_under(project, duckdb_path),
        artifacts_dir=_under(
            project,
            artifacts_dir or os.environ.get("UNIRANK_ARTIFACTS_DIR", str("artifacts" / sub)),
        ),
        reports_dir=_under(
            project, reports_dir or os.environ.get("UNIRANK_REPORTS_DIR", str("reports" / sub))
        ),
        registry=registry,
        vars=variables,
        var_overrides=overrides,
        target=target or os.environ.get("UNIRANK_TARGET") or None,
    )


def _under(project: Path, path: Path | str) -> Path:
    resolved = Path(path)
    return resolved if resolved.is_absolute() else project / resolved
