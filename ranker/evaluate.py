"""Ranking metrics per request, bootstrap intervals, and the per-canvas comparison of models.

Metrics are computed per request (the ranking group) on the test split and averaged over
requests; only requests with at least one positive label count (NDCG, MAP and MRR are undefined
without one). Every metric respects K: only the top K positions by score count, and ties in score
are broken by item order so results are deterministic.

- ``ndcg@k``: DCG of the top k (gain 2^label - 1, discount log2(rank + 1)) / ideal DCG of the top k.
- ``map@k``: mean over relevant items in the top k of precision at their rank, divided by
  min(k, number of relevant items) (so a perfect top k scores 1).
- ``mrr``: 1 / rank of the first relevant item (whole list).
- ``hitrate@k``: 1 if any relevant item is in the top k.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ranker.errors import UnirankError

logger = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("ndcg@5", "ndcg@10", "map@10", "mrr", "hitrate@10")
HEADLINE_METRIC = "ndcg@10"
ALL_TASKS = "all"


class EvaluationError(UnirankError, ValueError):
    """Evaluation inputs are inconsistent (lengths, labels, groups)."""


@dataclass(frozen=True)
class Interval:
    """A mean over requests with its 95% bootstrap confidence interval."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class ModelScores:
    """One model's metrics on one task: metric name -> interval, plus per-request values."""

    metrics: dict[str, Interval]
    per_request: dict[str, np.ndarray] = field(repr=False)


@dataclass(frozen=True)
class TaskEvaluation:
    """Every model compared on exactly the same test requests of one task.

    ``models`` maps a model kind (``unified``, ``bespoke``, ``no_task``, ``popularity``, ...) to
    its scores; ``deltas`` maps a kind to the paired difference unified - kind per metric.
    ``skipped`` says why a task was not evaluated (then ``models`` is empty).
    """

    task: str
    n_requests: int
    n_rows: int
    models: dict[str, ModelScores]
    deltas: dict[str, dict[str, Interval]]
    skipped: str | None = None


def _check(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> None:
    if not (len(labels) == len(scores) == len(groups)):
        raise EvaluationError(
            f"labels, scores and groups differ in length: {len(labels)}, {len(scores)}, {len(groups)}"
        )
    if np.isnan(scores).any():
        raise EvaluationError("scores contain NaN")
    if np.isnan(labels.astype(float)).any():
        raise EvaluationError("labels contain NaN")


def metrics_at_k(
    labels: Sequence[float] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    groups: Sequence[object] | np.ndarray,
    k: int,
) -> dict[str, np.ndarray]:
    """``ndcg@k``, ``map@k``, ``hitrate@k`` and ``mrr`` (uncut) for every request with a positive
    label, aligned with ``result["request"]`` (sorted request ids). Rows of a request need not be
    contiguous; equal scores keep the rows' original order."""
    if k < 1:
        raise EvaluationError(f"k must be >= 1, got {k}")
    labels = np.asarray(labels, dtype=float)
    scores = np.asarray(scores, dtype=float)
    groups = np.asarray(groups)
    _check(labels, scores, groups)
    names = (f"ndcg@{k}", f"map@{k}", f"hitrate@{k}", "mrr")
    if len(labels) == 0:
        return {"request": np.array([], dtype=object), **{m: np.array([]) for m in names}}
    # Sort by request, then score descending, then original order (deterministic tie-break);
    # on integer codes of the requests (sorting Python strings is ten times slower).
    codes, uniques = pd.factorize(groups, sort=True)
    order = np.lexsort((np.arange(len(scores)), -scores, codes))
    g, y = codes[order], labels[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, len(g)])
    rank = np.arange(len(g)) - np.repeat(starts, sizes) + 1  # 1-based rank within request
    relevant = y > 0
    in_top = rank <= k
    n_relevant = np.add.reduceat(relevant.astype(float), starts)
    has_positive = n_relevant > 0

    discount = 1.0 / np.log2(rank + 1.0)
    gains = np.where(relevant, 2.0**y - 1.0, 0.0)
    # The ideal order sorts labels descending within the same request blocks, so ranks align.
    ideal = y[np.lexsort((-y, g))]
    ideal_gains = np.where(ideal > 0, 2.0**ideal - 1.0, 0.0)
    dcg = np.add.reduceat(gains * discount * in_top, starts)
    idcg = np.add.reduceat(ideal_gains * discount * in_top, starts)

    hits_so_far = _cumsum_within(relevant & in_top, starts, sizes)
    precision_at_hit = np.where(relevant & in_top, hits_so_far / rank, 0.0)
    ap_sum = np.add.reduceat(precision_at_hit, starts)
    first_rank = np.minimum.reduceat(np.where(relevant, rank, np.inf), starts)
    hits = np.add.reduceat((relevant & in_top).astype(float), starts)
    result = {
        f"ndcg@{k}": np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0),
        f"map@{k}": np.divide(
            ap_sum, np.minimum(n_relevant, k), out=np.zeros_like(ap_sum), where=n_relevant > 0
        ),
        f"hitrate@{k}": (hits > 0).astype(float),
        "mrr": np.where(np.isfinite(first_rank), 1.0 / first_rank, 0.0),
    }
    requests = np.asarray(uniques)[g[starts][has_positive]]
    return {"request": requests, **{m: v[has_positive] for m, v in result.items()}}


def per_request_metrics(
    labels: Sequence[float] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    groups: Sequence[object] | np.ndarray,
) -> dict[str, np.ndarray]:
    """Every metric in METRICS for every request that has a positive label (plus ``request``)."""
    at_5 = metrics_at_k(labels, scores, groups, 5)
    at_10 = metrics_at_k(labels, scores, groups, 10)
    return {
        "request": at_10["request"],
        "ndcg@5": at_5["ndcg@5"],
        **{m: at_10[m] for m in METRICS if m != "ndcg@5"},
    }


def _cumsum_within(values: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    total = np.cumsum(values.astype(float))
    before = np.r_[0.0, total][starts]
    return total - np.repeat(before, sizes)


def bootstrap_interval(
    values: np.ndarray, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Mean of ``values`` with a percentile bootstrap interval (resampling requests)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, 100):  # bounded memory for large request counts
        stop = min(start + 100, n_resamples)
        idx = rng.integers(0, len(values), (stop - start, len(values)))
        means[start:stop] = values[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return Interval(
        float(values.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
    )


def score_model(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
) -> ModelScores:
    per_request = per_request_metrics(labels, scores, groups)
    metrics = {m: bootstrap_interval(per_request[m], n_resamples, seed) for m in METRICS}
    return ModelScores(metrics=metrics, per_request=per_request)


def compare_models(
    task: str,
    labels: np.ndarray,
    groups: np.ndarray,
    scores_by_model: Mapping[str, np.ndarray],
    reference: str = "unified",
    n_resamples: int = 1000,
    seed: int = 0,
) -> TaskEvaluation:
    """Score every model on the same rows; paired bootstrap deltas reference - other."""
    scored = {
        kind: score_model(labels, scores, groups, n_resamples, seed)
        for kind, scores in scores_by_model.items()
    }
    n_requests = len(next(iter(scored.values())).per_request["request"]) if scored else 0
    deltas: dict[str, dict[str, Interval]] = {}
    if reference in scored:
        ref = scored[reference].per_request
        for kind, model in scored.items():
            if kind == reference:
                continue
            deltas[kind] = {
                m: bootstrap_interval(ref[m] - model.per_request[m], n_resamples, seed)
                for m in METRICS
            }
    return TaskEvaluation(
        task=task, n_requests=n_requests, n_rows=len(labels), models=scored, deltas=deltas
    )


def skipped_task(task: str, reason: str) -> TaskEvaluation:
    logger.warning("task %s not evaluated: %s", task, reason)
    return TaskEvaluation(task=task, n_requests=0, n_rows=0, models={}, deltas={}, skipped=reason)
