"""Train one CatBoost YetiRank ranker for every canvas, evaluate it per canvas, publish it.

``train_and_evaluate`` is what ``unirank-cli train`` runs:

1. load the ranking mart (Arrow) and check it;
2. train the unified model: CatBoostRanker(loss_function="YetiRank"), groups = requests,
   ``task_type`` and the other categorical context columns as categorical features, early stopping
   on the ``valid`` split;
3. train the comparisons with the same features and budget: one "bespoke" model per canvas (only
   that canvas's rows), the unified model without ``task_type`` (ablation), and a popularity
   baseline per canvas (no training);
4. evaluate every model on exactly the same test requests, per canvas and overall;
5. write ``artifacts/models/<version>/`` (model + metadata.json), the ``model_metrics`` table and the
   reports, and only then move the ``CURRENT`` pointer to the new version.

CatBoost is confined to this module (and scoring).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from catboost import CatBoostError, CatBoostRanker, Pool
from pydantic import ValidationError

from ranker import artifacts, drift, evaluate, promotion, representations, warehouse
from ranker.config import Settings
from ranker.dataset import MART, RankingData, load_ranking_data
from ranker.errors import UnirankError
from ranker.registry import Registry, Training
from ranker.warehouse import engine
from ranker.warehouse_publish import (
    check_build_complete,
    published_at,
    replace_rows,
)

logger = logging.getLogger(__name__)

MODEL_DESCRIPTIONS: dict[str, str] = {
    "unified": "one CatBoost YetiRank model for all canvases, task_type as a categorical feature",
    "bespoke": "one CatBoost YetiRank model per canvas, trained on that canvas only (same features and budget)",
    "no_task": "the unified model without the task_type feature (ablation)",
    "popularity": "popularity within the canvas as of the request (item_canvas_engagements), no model",
    "current": "the CURRENT model before this run, scored on the same test requests (the promotion gate)",
}

# Progress callback: (stage, iteration, total iterations) - stage names which model is training.
ProgressCallback = Callable[[str, int, int], None]


class TrainingError(UnirankError, RuntimeError):
    """Training could not produce a model; the message says which model and why."""


# canvas_weights: the exponent of a canvas's share of the requests in its requests' weight.
CANVAS_WEIGHTS: dict[str, float] = {"none": 0.0, "sqrt": 0.5, "balanced": 1.0}


_DEFAULTS = Training()


@dataclass(frozen=True)
class TrainParams:
    """CatBoost YetiRank hyper-parameters and the levers that make it fast, plus how a run is
    done (threads, bootstrap resamples, whether to train the comparison models).

    The model settings and their defaults are the registry's `training` block
    (:class:`ranker.registry.Training`, validated there); the CLI overrides single values.
    """

    iterations: int = _DEFAULTS.iterations
    learning_rate: float = _DEFAULTS.learning_rate
    depth: int = _DEFAULTS.depth
    l2_leaf_reg: float = _DEFAULTS.l2_leaf_reg
    border_count: int = _DEFAULTS.border_count
    boosting_type: str = _DEFAULTS.boosting_type
    # YetiRank samples this many noisy permutations of each request per iteration to build its
    # pairs (CatBoost's default 10); the loss computation dominates an iteration's cost.
    yetirank_permutations: int = _DEFAULTS.yetirank_permutations
    # Categorical features with at most this many values are one-hot encoded instead of target
    # statistics (CTRs); None keeps CatBoost's own default.
    one_hot_max_size: int | None = _DEFAULTS.one_hot_max_size
    early_stopping_rounds: int = _DEFAULTS.early_stopping_rounds
    metric_period: int = _DEFAULTS.metric_period
    max_negatives_per_request: int | None = _DEFAULTS.max_negatives_per_request
    # How much each canvas's requests count in the loss and in the early-stopping metric:
    # "none" (every request 1: canvases count by their number of requests), "sqrt" (a canvas's
    # requests weigh 1/sqrt(its share)), "balanced" (every canvas counts the same in total).
    canvas_weights: str = _DEFAULTS.canvas_weights
    random_seed: int = _DEFAULTS.random_seed
    thread_count: int = -1
    bootstrap_resamples: int = 1000
    compare: bool = True

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TrainParams:
        """The registry's training settings with ``overrides`` (None = keep) applied."""
        values = settings.registry.training.model_dump()
        values.update({k: v for k, v in overrides.items() if v is not None})
        params = cls(**values)
        params.validate()
        return params

    def validate(self) -> None:
        """The registry schema's rules for the model settings, with a message naming the key."""
        model_settings = {
            k: v for k, v in dataclasses.asdict(self).items() if k in Training.model_fields
        }
        try:
            Training.model_validate(model_settings)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])} is {e.get('input')!r}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise TrainingError(f"training settings: {problems}") from None

    def catboost_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "loss_function": f"YetiRank:permutations={self.yetirank_permutations}",
            "eval_metric": "NDCG:top=10",
            "iterations": self.iterations,
            "learning_rate": self.learning_rate,
            "depth": self.depth,
            "l2_leaf_reg": self.l2_leaf_reg,
            "border_count": self.border_count,
            "boosting_type": self.boosting_type,
            "thread_count": self.thread_count,
            "random_seed": self.random_seed,
            "metric_period": self.metric_period,
            "allow_writing_files": False,
            "verbose": False,
        }
        if self.one_hot_max_size is not None:
            params["one_hot_max_size"] = self.one_hot_max_size
        return params


@dataclass
class FittedModel:
    model: CatBoostRanker
    features: tuple[str, ...]
    categorical: tuple[str, ...]
    best_iteration: int
    seconds: float
    train_rows: int

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if frame.empty:
            return np.array([])
        return np.asarray(self.model.predict(_pool(frame, self.features, self.categorical)))


@dataclass
class TrainingResult:
    version: str
    model_dir: Path
    report_index: Path | None
    evaluations: list[evaluate.TaskEvaluation]
    timings: dict[str, float]
    promoted: bool
    notes: list[str] = field(default_factory=list)


def _pool(
    frame: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    with_label: bool = False,
    canvas_weights: str = "none",
) -> Pool:
    data = frame[list(features)].copy()
    for column in categorical:
        data[column] = data[column].astype(str)
    return Pool(
        data=data,
        label=frame["label"].to_numpy(dtype=float) if with_label else None,
        group_id=frame["request_id"].to_numpy() if with_label else None,
        group_weight=request_weights(frame, canvas_weights) if with_label else None,
        cat_features=[c for c in features if c in categorical],
    )


def request_weights(frame: pd.DataFrame, canvas_weights: str) -> np.ndarray | None:
    """Per row, the weight of its request: ``(1 / share of its canvas) ** exponent``, scaled so
    the requests' mean weight is 1 (the learning rate keeps its meaning). None when every
    weight would be 1 (``none``, or a single canvas)."""
    exponent = CANVAS_WEIGHTS[canvas_weights]
    requests = frame.drop_duplicates("request_id")["task_type"].value_counts()
    if exponent == 0 or len(requests) < 2:
        return None
    share = requests / requests.sum()
    weight = share.pow(-exponent)
    weight /= (weight * share).sum()
    return frame["task_type"].map(weight).to_numpy(dtype=float)


def prepare_for_fit(frame: pd.DataFrame, max_negatives: int | None, seed: int) -> pd.DataFrame:
    """Rows YetiRank can learn from: requests with at least one positive and one negative,
    optionally with at most ``max_negatives`` negatives per request (kept deterministically by a
    hash of item and seed; a request's positives are always kept). Rows stay grouped by request."""
    labels = frame.groupby("request_id", sort=False)["label"]
    informative = (labels.transform("max") > 0) & (labels.transform("min") == 0)
    kept = frame[informative]
    if max_negatives is not None:
        noise = pd.util.hash_pandas_object(kept["item_id"] + f"|{seed}", index=False).to_numpy()
        kept = kept.assign(_noise=noise)
        negative_rank = (
            kept[kept["label"] == 0]
            .groupby("request_id", sort=False)["_noise"]
            .rank(method="first")
        )
        keep = (kept["label"] > 0) | (negative_rank.reindex(kept.index) <= max_negatives)
        kept = kept[keep].drop(columns="_noise")
    return kept


def fit_ranker(
    name: str,
    train: pd.DataFrame,
    valid: pd.DataFrame | None,
    features: Sequence[str],
    categorical: Sequence[str],
    params: TrainParams,
    on_progress: ProgressCallback | None = None,
) -> FittedModel:
    """Train one YetiRank model; early-stop on ``valid`` when it has informative requests."""
    fit_train = prepare_for_fit(train, params.max_negatives_per_request, params.random_seed)
    if fit_train.empty:
        raise TrainingError(
            f"{name}: no training request has both a positive and a negative label; "
            "check the canvas's label model"
        )
    fit_valid = prepare_for_fit(valid, None, params.random_seed) if valid is not None else None
    features = tuple(features)
    categorical = tuple(c for c in features if c in categorical)
    catboost_params = params.catboost_params()
    kwargs: dict[str, Any] = {}
    if fit_valid is not None and not fit_valid.empty:
        # Watching for early stopping, CatBoost computes the metric every iteration anyway and
        # would warn on every fit that metric_period is ignored.
        catboost_params.pop("metric_period")
        kwargs["eval_set"] = _pool(
            fit_valid, features, categorical, with_label=True, canvas_weights=params.canvas_weights
        )
        kwargs["early_stopping_rounds"] = params.early_stopping_rounds
        kwargs["use_best_model"] = True
    if on_progress is not None:
        kwargs["callbacks"] = [_ProgressCallback(name, params.iterations, on_progress)]
    model = CatBoostRanker(**catboost_params)
    started = time.perf_counter()
    try:
        model.fit(
            _pool(
                fit_train,
                features,
                categorical,
                with_label=True,
                canvas_weights=params.canvas_weights,
            ),
            **kwargs,
        )
    except CatBoostError as exc:
        raise TrainingError(f"{name}: CatBoost could not train: {exc}") from exc
    seconds = time.perf_counter() - started
    best = model.get_best_iteration()
    best_iteration = int(best) if best is not None else model.tree_count_ - 1
    logger.info(
        "%s: %s trees, best iteration %s, %.1fs", name, model.tree_count_, best_iteration, seconds
    )
    if on_progress is not None:
        on_progress(name, model.tree_count_, model.tree_count_)
    return FittedModel(model, features, categorical, best_iteration, seconds, len(fit_train))


class _ProgressCallback:
    """CatBoost ``after_iteration`` hook forwarding progress every 10 iterations."""

    def __init__(self, name: str, total: int, on_progress: ProgressCallback) -> None:
        self.name, self.total, self.on_progress = name, total, on_progress

    def after_iteration(self, info: Any) -> bool:
        if info.iteration % 10 == 0:
            self.on_progress(self.name, info.iteration, self.total)
        return True


def popularity_scores(frame: pd.DataFrame) -> np.ndarray:
    """Popularity within the canvas as of the request; ties broken by overall popularity."""
    overall = frame["item_engagements"].to_numpy(dtype=float)
    return frame["item_canvas_engagements"].to_numpy(dtype=float) + overall / (
        overall.max() + 1.0 if len(overall) else 1.0
    )


def feature_importance_per_task(
    fitted: FittedModel, test: pd.DataFrame, max_rows: int = 3000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """How much each feature reorders each canvas's lists: the mean |SHAP value - its mean over
    the request's rows| on the canvas's test requests (whole requests, about ``max_rows`` rows).

    What a feature adds to every candidate of a request alike cannot change their order, so a
    feature constant within the request (the canvas, the user's country) is credited only for
    what it changes between items, through its interactions with their features."""
    result: dict[str, dict[str, float]] = {}
    for task, rows in test.groupby("task_type", sort=True):
        requests = rows["request_id"].unique()
        per_request = max(len(rows) / max(len(requests), 1), 1.0)
        keep = int(min(len(requests), max(1, max_rows // per_request)))
        chosen = np.random.default_rng(seed).choice(requests, size=keep, replace=False)
        sample = rows[rows["request_id"].isin(chosen)].sort_values("request_id", kind="stable")
        shap = np.asarray(
            fitted.model.get_feature_importance(
                data=_pool(sample, fitted.features, fitted.categorical), type="ShapValues"
            )
        )[:, :-1]
        within = pd.DataFrame(shap).groupby(sample["request_id"].to_numpy()).transform("mean")
        importance = np.abs(shap - within.to_numpy()).mean(axis=0)
        result[str(task)] = {f: float(v) for f, v in zip(fitted.features, importance, strict=True)}
    return result


def request_constant_features(frame: pd.DataFrame, features: Sequence[str]) -> list[str]:
    """The features that take one value within every request of ``frame``."""
    if frame.empty:
        return []
    counts = frame.groupby("request_id")[list(features)].nunique(dropna=False)
    return [f for f in features if bool((counts[f] <= 1).all())]


def learning_curves(
    fitted: FittedModel, valid: pd.DataFrame, points: int = 20
) -> dict[str, list[tuple[int, float]]]:
    """Valid NDCG@10 per canvas after every block of trees (about ``points`` per curve), from
    the model's staged predictions."""
    if valid.empty:
        return {}
    trees = int(fitted.model.tree_count_)
    period = max(1, trees // points)
    labels = valid["label"].to_numpy(dtype=float)
    groups = valid["request_id"].to_numpy()
    canvas_of = valid.groupby("request_id", sort=False)["task_type"].first()
    curves: dict[str, list[tuple[int, float]]] = {}
    staged = fitted.model.staged_predict(
        _pool(valid, fitted.features, fitted.categorical), eval_period=period
    )
    for step, prediction in enumerate(staged):
        iteration = min((step + 1) * period, trees)
        values = evaluate.metrics_at_k(labels, prediction, groups, 10)
        per_canvas = pd.Series(values["ndcg@10"]).groupby(
            canvas_of.loc[values["request"]].to_numpy()
        )
        for canvas, mean in per_canvas.mean().items():
            curves.setdefault(str(canvas), []).append((iteration, float(mean)))
    return curves


def _evaluate(
    data: RankingData,
    test: pd.DataFrame,
    scores: Mapping[str, np.ndarray],
    params: TrainParams,
    tasks: Sequence[str],
) -> list[evaluate.TaskEvaluation]:
    results: list[evaluate.TaskEvaluation] = []
    labels = test["label"].to_numpy(dtype=float)
    groups = test["request_id"].to_numpy()
    task_of_row = test["task_type"].to_numpy()
    for task in tasks:
        mask = task_of_row == task
        if not mask.any():
            results.append(evaluate.skipped_task(task, "no test requests for this canvas"))
            continue
        if not (labels[mask] > 0).any():
            results.append(
                evaluate.skipped_task(task, "no test request of this canvas has a positive label")
            )
            continue
        available = {k: v[mask] for k, v in scores.items() if not np.isnan(v[mask]).any()}
        results.append(
            evaluate.compare_models(
                task,
                labels[mask],
                groups[mask],
                available,
                n_resamples=params.bootstrap_resamples,
                seed=params.random_seed,
            )
        )
    overall = {k: v for k, v in scores.items() if not np.isnan(v).any()}
    results.append(
        evaluate.compare_models(
            evaluate.ALL_TASKS,
            labels,
            groups,
            overall,
            n_resamples=params.bootstrap_resamples,
            seed=params.random_seed,
        )
    )
    return results


# A peer model for the comparison (e.g. LightGBM in the benchmarks): given the train, valid and
# test frames, the feature and categorical names, it returns one score per test row.
PeerModel = Callable[
    [pd.DataFrame, pd.DataFrame | None, pd.DataFrame, Sequence[str], Sequence[str]], np.ndarray
]


def train_and_evaluate(
    settings: Settings,
    params: TrainParams,
    on_progress: ProgressCallback | None = None,
    write_reports: bool = True,
    peers: Mapping[str, PeerModel] | None = None,
    evaluate_on: str = "test",
    force: bool = False,
) -> TrainingResult:
    """Train, compare, publish. The new version becomes current only if every step succeeded.

    ``peers`` adds other model kinds to the comparison, evaluated on exactly the same test
    requests and recorded like the built-in kinds. ``evaluate_on="valid"`` compares on the
    valid split instead (the one early stopping watches), for choosing settings without
    looking at test (benchmarks/variations.py); the metadata records which split it was.
    The CURRENT model is scored on the same requests: the new one is promoted only when the
    gate (``ranker.promotion``) lets it, or ``force``; otherwise it stays as a candidate."""
    if evaluate_on not in ("test", "valid"):
        raise TrainingError(f"evaluate_on must be test or valid, got {evaluate_on!r}")
    timings: dict[str, float] = {}
    notes: list[str] = []
    worker = None
    if write_reports:
        from ranker import report

        # Evidently (3 s to import) loads and works in a low-priority process beside the fits
        worker = report.evidently_worker()
    try:
        return _train_and_evaluate(
            settings, params, on_progress, peers, evaluate_on, force, worker, timings, notes
        )
    finally:
        if worker is not None:  # it keeps nothing: stopped at once
            worker.shutdown(wait=False, cancel_futures=True)


def _train_and_evaluate(
    settings: Settings,
    params: TrainParams,
    on_progress: ProgressCallback | None,
    peers: Mapping[str, PeerModel] | None,
    evaluate_on: str,
    force: bool,
    worker: Executor | None,
    timings: dict[str, float],
    notes: list[str],
) -> TrainingResult:
    write_reports = worker is not None
    run_started = time.perf_counter()
    # The build this model trains on, read before its data: a build published meanwhile is newer
    # than what the model saw, never the other way round.
    trained_on = None
    if engine(settings) == "duckdb":
        check_build_complete(settings.duckdb_path)
        trained_on = published_at(settings.duckdb_path)
    data = load_ranking_data(settings)
    timings["load_seconds"] = time.perf_counter() - run_started
    train, valid, test = data.split("train"), data.split("valid"), data.split(evaluate_on)
    registry_tasks = list(settings.registry.canvas_names)
    tasks = registry_tasks + [t for t in data.tasks if t not in registry_tasks]

    unified = fit_ranker(
        "unified", train, valid, data.features, data.categorical, params, on_progress
    )
    timings["unified_fit_seconds"] = unified.seconds
    scores: dict[str, np.ndarray] = {"unified": unified.predict(test)}
    frames: dict[str, Any] = {}
    jobs: dict[str, Any] = {}
    # the build's serving candidates (a sample per canvas): kept with the model for `monitor`
    registry = settings.registry
    serving, serving_note = _serving_candidates(
        settings, registry.drift_features.all, registry.monitoring.reference_rows
    )
    if worker is not None:  # the canvas pages' Evidently part runs while the others fit
        from ranker import report

        frames = _report_frames(settings, data, test, scores["unified"], serving, serving_note)
        stable = settings.registry.drift_features
        jobs = report.submit_evidently(worker, frames, stable.numeric, stable.categorical)
    if {"item_engagements", "item_canvas_engagements"} <= set(test.columns):
        scores["popularity"] = popularity_scores(test)
    else:
        notes.append(
            "no popularity baseline: it needs the built-in feature model "
            "int_features__item_popularity in the registry's features"
        )
    fitted: dict[str, Any] = {"unified": unified}

    if params.compare:
        no_task_features = tuple(f for f in data.features if f != "task_type")
        no_task = fit_ranker(
            "no_task", train, valid, no_task_features, data.categorical, params, on_progress
        )
        timings["no_task_fit_seconds"] = no_task.seconds
        scores["no_task"] = no_task.predict(test)
        fitted["no_task"] = no_task
        bespoke_scores = np.full(len(test), np.nan)
        bespoke_seconds = 0.0
        for task in tasks:
            task_train = train[train["task_type"] == task]
            task_test_mask = (test["task_type"] == task).to_numpy()
            if not task_test_mask.any():
                continue
            try:
                model = fit_ranker(
                    f"bespoke:{task}",
                    task_train,
                    valid[valid["task_type"] == task],
                    data.features,
                    data.categorical,
                    params,
                    on_progress,
                )
            except TrainingError as exc:
                notes.append(f"bespoke model for {task} not trained: {exc}")
                logger.warning("bespoke model for %s not trained: %s", task, exc)
                continue
            bespoke_seconds += model.seconds
            fitted[f"bespoke:{task}"] = model
            bespoke_scores[task_test_mask] = model.predict(test[task_test_mask])
        timings["bespoke_fit_seconds"] = bespoke_seconds
        if np.isnan(bespoke_scores).all():
            notes.append("no bespoke model could be trained")
        scores["bespoke"] = bespoke_scores

    for kind, peer in (peers or {}).items():
        started = time.perf_counter()
        scores[kind] = np.asarray(
            peer(train, valid, test, data.features, data.categorical), dtype=float
        )
        timings[f"{kind}_fit_seconds"] = time.perf_counter() - started

    root = artifacts.models_dir(settings.artifacts_dir)
    compared_with, not_compared = _score_current(root, test, scores)
    started = time.perf_counter()
    evaluations = _evaluate(data, test, scores, params, tasks)
    timings["evaluate_seconds"] = time.perf_counter() - started
    importance = feature_importance_per_task(unified, test, seed=params.random_seed)
    curves = learning_curves(unified, valid) if write_reports else {}

    version = artifacts.new_version(data.fingerprint)
    metadata = _metadata(
        settings, data, params, unified, fitted, evaluations, importance, timings, notes, version
    )
    metadata["representations"] = representations.versions_fingerprint(settings)
    metadata["evaluated_on"] = evaluate_on
    metadata["warehouse_published_at"] = trained_on
    decision = promotion.decide(
        evaluations, compared_with, settings.registry.promotion, force, not_compared
    )
    metadata["promotion"] = decision.to_dict()
    swept = artifacts.sweep_unpromoted(root, settings.reports_dir)
    if swept:
        notes.append(f"removed what earlier runs that died left behind: {', '.join(swept)}")
    reference = drift_reference(train, settings.registry, params.random_seed)
    extras = {artifacts.REFERENCE_FILE: lambda p: reference.to_parquet(p, index=False)}
    if serving is not None:
        extras[artifacts.SERVING_REFERENCE_FILE] = lambda p: serving.to_parquet(p, index=False)
    model_version = artifacts.write_version(
        root, version, metadata, lambda p: unified.model.save_model(str(p)), extras
    )
    newer = _newer_current_build(root, metadata["warehouse_published_at"])
    if newer is not None:
        artifacts.discard(root, version, settings.reports_dir)
        notes.append(
            f"not promoted: trained on the build published {metadata['warehouse_published_at']}, "
            f"older than the current model's ({newer}); the current model stays"
        )
        timings["total_seconds"] = time.perf_counter() - run_started
        return TrainingResult(version, root / version, None, evaluations, timings, False, notes)
    report_index: Path | None = None
    try:
        if write_reports:
            started = time.perf_counter()
            report_index = _write_reports(
                settings,
                version,
                frames,
                jobs,
                evaluations,
                importance,
                _model_info(settings, data, params, unified, timings, curves, test),
            )
            timings["report_seconds"] = time.perf_counter() - started
        if decision.promote:
            artifacts.promote(root, version, "trained, forced" if decision.forced else "trained")
        else:
            artifacts.release(root, version)  # a candidate: listed, promotable later
    except BaseException:
        artifacts.discard(root, version, settings.reports_dir)  # never current: leave no trace
        raise
    if not decision.promote:
        notes.append(decision.reason)
        timings["total_seconds"] = time.perf_counter() - run_started
        artifacts.update_metadata(model_version, {"timings": timings})
        return TrainingResult(
            version, model_version.path, report_index, evaluations, timings, False, notes
        )
    if decision.forced:
        notes.append(decision.reason)
    # After promotion, so model_metrics only ever holds models that became current.
    try:
        write_model_metrics(settings, version, evaluations)
    except Exception as exc:  # e.g. a session holds the warehouse: the model is current already
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        notes.append(
            f"model_metrics not updated for {version} (the model is current; its metrics are in "
            f"its metadata.json): {first}"
        )
    timings["total_seconds"] = time.perf_counter() - run_started
    artifacts.update_metadata(model_version, {"timings": timings})
    return TrainingResult(
        version, model_version.path, report_index, evaluations, timings, True, notes
    )


def _report_frames(
    settings: Settings,
    data: RankingData,
    test: pd.DataFrame,
    unified_scores: np.ndarray,
    serving: pd.DataFrame | None,
    serving_note: str,
) -> dict[str, Any]:
    """Per canvas with test rows: a sample of its training rows, its scored test rows and its
    serving candidates, with the columns the drift tests compare (report.TaskFrames)."""
    from ranker import report

    train = data.split("train")
    stable = settings.registry.drift_features
    scored = test.assign(score=unified_scores)
    frames: dict[str, Any] = {}
    for canvas in scored["task_type"].unique():
        canvas = str(canvas)
        candidates = None
        note = serving_note
        if serving is not None:
            candidates = serving[serving["task_type"] == canvas]
            if candidates.empty:
                candidates, note = None, f"serving_candidates has no row of canvas {canvas}"
        frames[canvas] = report.TaskFrames(
            reference=drift.sample(train.loc[train["task_type"] == canvas, list(stable.all)]),
            current=scored.loc[
                scored["task_type"] == canvas,
                [*stable.all, "request_id", "item_id", "label", "score"],
            ],
            serving=candidates,
            serving_note=note,
        )
    return frames


def _write_reports(
    settings: Settings,
    version: str,
    frames: Mapping[str, Any],
    jobs: Mapping[str, Any],
    evaluations: list[evaluate.TaskEvaluation],
    importance: dict[str, dict[str, float]],
    model: Any,
) -> Path:
    from ranker import report

    evaluated = {e.task for e in evaluations if not e.skipped and e.task != evaluate.ALL_TASKS}
    stable = settings.registry.drift_features
    paths = report.write_reports(
        out_dir=settings.reports_dir / version,
        version=version,
        evaluations=evaluations,
        task_frames={canvas: f for canvas, f in frames.items() if canvas in evaluated},
        numeric_features=stable.numeric,
        categorical_features=stable.categorical,
        feature_importance=importance,
        model_descriptions=MODEL_DESCRIPTIONS,
        model=model,
        jobs=jobs,
    )
    return paths.index


def _serving_candidates(
    settings: Settings, columns: Sequence[str], per_canvas: int = drift.MAX_ROWS
) -> tuple[pd.DataFrame | None, str]:
    """A random sample of each canvas's serving candidates (``columns`` and task_type), or None
    and why not."""
    present = warehouse.relation_columns(settings, "serving_candidates")
    if present is None:
        return None, "the warehouse has no serving_candidates (run `unirank-cli build`)"
    missing = [c for c in columns if c not in present]
    if missing:
        return None, f"serving_candidates lacks {missing}: rebuild it with `unirank-cli build`"
    quoted = ", ".join(warehouse.quote(settings, c) for c in ["task_type", *columns])
    table = warehouse.fetch_arrow(
        settings,
        f"select {quoted} from (select {quoted}, row_number() over (partition by task_type "
        f"order by {drift.SAMPLE_ORDER}) as pick from serving_candidates) as picked "
        f"where pick <= {int(per_canvas)}",
    )
    return table.to_pandas(), ""


def _model_info(
    settings: Settings,
    data: RankingData,
    params: TrainParams,
    unified: FittedModel,
    timings: Mapping[str, float],
    curves: Mapping[str, list[tuple[int, float]]],
    test: pd.DataFrame,
) -> Any:
    """The index's second screen: rows per canvas and split with their dates, the split, the
    parameters, the best iteration, the timings so far and the learning curves."""
    from ranker import report

    rows = warehouse.fetchall(
        settings,
        "select task_type, split, count(distinct request_id), count(*), "
        "sum(case when label > 0 then 1 else 0 end), min(requested_at), max(requested_at) "
        f"from {MART} group by task_type, split",
    )
    order = {canvas: i for i, canvas in enumerate(settings.registry.canvas_names)}
    splits = {"train": 0, "valid": 1, "test": 2}
    table = [
        {
            "canvas": str(r[0]),
            "split": str(r[1]),
            "requests": int(r[2]),
            "rows": int(r[3]),
            "positives": int(r[4] or 0),
            "first": str(r[5])[:19],
            "last": str(r[6])[:19],
        }
        for r in sorted(rows, key=lambda r: (order.get(str(r[0]), 99), splits.get(str(r[1]), 9)))
    ]
    split = settings.registry.split
    return report.ModelInfo(
        fingerprint=data.fingerprint,
        valid_from=str(split.valid_from),
        test_from=str(split.test_from),
        params=dataclasses.asdict(params),
        best_iteration=unified.best_iteration,
        timings=[
            (name.removesuffix("_seconds").replace("_", " "), t) for name, t in timings.items()
        ],
        rows=table,
        learning_curves=curves,
        request_constant=request_constant_features(test, unified.features),
    )


def drift_reference(train: pd.DataFrame, registry: Registry, seed: int = 0) -> pd.DataFrame:
    """What the model was trained on, for drift checks: per canvas at most
    ``monitoring.reference_rows`` training rows (random, by ``seed``), with ``task_type`` and the
    columns whose distribution should stay stable (registry ``drift``)."""
    stable = registry.drift_features
    columns = ["task_type", *stable.all]
    rows = registry.monitoring.reference_rows
    parts = [
        drift.sample(group[columns], rows, seed)
        for _, group in train.groupby("task_type", sort=True)
    ]
    frame = pd.concat(parts, ignore_index=True) if parts else train[columns].head(0)
    return frame.reset_index(drop=True)


def evaluation_to_dict(evaluation: evaluate.TaskEvaluation) -> dict[str, Any]:
    return {
        "task": evaluation.task,
        "n_requests": evaluation.n_requests,
        "n_rows": evaluation.n_rows,
        "skipped": evaluation.skipped,
        "models": {
            kind: {m: iv.to_dict() for m, iv in scores.metrics.items()}
            for kind, scores in evaluation.models.items()
        },
        "deltas_vs_unified": {
            kind: {m: iv.to_dict() for m, iv in metrics.items()}
            for kind, metrics in evaluation.deltas.items()
        },
    }


def _metadata(
    settings: Settings,
    data: RankingData,
    params: TrainParams,
    unified: FittedModel,
    fitted: Mapping[str, FittedModel],
    evaluations: list[evaluate.TaskEvaluation],
    importance: Mapping[str, Mapping[str, float]],
    timings: Mapping[str, float],
    notes: list[str],
    version: str,
) -> dict[str, Any]:
    registry = settings.registry
    return {
        "version": version,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "features": list(unified.features),
        "categorical_features": list(unified.categorical),
        "project": settings.project_name,
        "registry": registry.model_dump(mode="json"),
        "data": {
            "fingerprint": data.fingerprint,
            "rows": len(data.frame),
            "requests": int(data.frame["request_id"].nunique()),
            "rows_per_split": {k: int(v) for k, v in data.frame["split"].value_counts().items()},
        },
        "params": dataclasses.asdict(params),
        "best_iteration": unified.best_iteration,
        "models": {
            name: {
                "best_iteration": m.best_iteration,
                "fit_seconds": round(m.seconds, 2),
                "train_rows": m.train_rows,
            }
            for name, m in fitted.items()
        },
        "metrics": [evaluation_to_dict(e) for e in evaluations],
        "feature_importance": importance,
        "timings": dict(timings),
        "notes": notes,
    }


def _score_current(
    root: Path, test: pd.DataFrame, scores: dict[str, np.ndarray]
) -> tuple[str | None, str | None]:
    """Score the CURRENT model on ``test`` as kind ``current`` (the promotion gate compares
    with it): (its version, None), or (None, why it was not compared)."""
    from catboost import Pool

    from ranker.score import load_model

    if artifacts.current_name(root) is None:
        return None, None
    current = artifacts.current_version(root)
    features = list(current.metadata.get("features", []))
    missing = [f for f in features if f not in test.columns]
    if missing:
        return None, (
            f"the current model {current.version} was not compared: it uses features this "
            f"mart lacks ({', '.join(missing)})"
        )
    categorical = set(current.metadata.get("categorical_features", []))
    frame = test[features]
    pool = Pool(frame, cat_features=[i for i, f in enumerate(features) if f in categorical])
    scores[promotion.CURRENT_KIND] = np.asarray(load_model(current).predict(pool), dtype=float)
    return current.version, None


def _newer_current_build(root: Path, trained_on: str | None) -> str | None:
    """The current model's build time if it is newer than ``trained_on``: a run that started on
    an older build and finished later must not replace a model of newer data."""
    try:
        current = artifacts.current_version(root)
    except artifacts.ArtifactError:
        return None
    theirs = current.metadata.get("warehouse_published_at")
    if trained_on is None or theirs is None or str(theirs) <= trained_on:
        return None
    return str(theirs)


def write_model_metrics(
    settings: Settings, version: str, evaluations: Sequence[evaluate.TaskEvaluation]
) -> int:
    """Append this version's metrics to the warehouse table ``model_metrics`` (one row per version,
    task, model kind and metric), in one transaction."""
    rows = [
        (version, e.task, kind, metric, iv.value, iv.low, iv.high, e.n_requests)
        for e in evaluations
        for kind, scores in e.models.items()
        for metric, iv in scores.metrics.items()
    ]
    if engine(settings) == "spark":
        from ranker import spark

        return spark.write_model_metrics(settings, version, rows)
    replace_rows(
        settings.duckdb_path,
        "unirank-cli train",
        "model_metrics",
        "model_version varchar, task_type varchar, model_kind varchar, metric varchar, "
        "value double, ci_low double, ci_high double, n_requests bigint",
        ("model_version", version),
        rows,
    )
    return len(rows)
