"""HTML reports of one evaluated model version: an index page plus one page per canvas.

``index.html`` is the page a person reads first. It opens with the verdict (unified minus every
comparison model per canvas, as sentences and a forest plot of paired intervals), then how the
model was trained (rows per canvas and split, split dates, parameters, best iteration, timings,
the learning curve per canvas, feature importance that can reorder a list), then every metric
with its bootstrap interval.

``<canvas>.html`` is one page per evaluated canvas: the unified model's NDCG, MAP and HitRate at
every cut-off 1..K with the index's definitions next to Evidently's own, the score distribution,
and Evidently's drift test of every feature that should stay stable, training rows against the
test rows and against the serving candidates (``ranker.drift``).

Every page is rendered from the Jinja2 templates in ``ranker/templates/report/``: inline CSS and
SVG, no script, no network. Evidently computes (its recsys metrics and drift tests); its own
HTML is not written: its UI bundle alone is 3.5 MB a page (four canvases made 18 MB a run).
Evidently is imported only inside functions: importing it takes seconds.

Evidently 0.7 notes (checked against 0.7.23):

- With ``recommendations_type="score"`` Evidently ranks with pandas' ``rank(method="average")``
  cast to int, so tied scores share a rank and ``NDCG@k`` fails (``KeyError``) when no rank reaches
  k. We pass our own ranks instead (``recommendations_type="rank"``), ties broken by row order as
  in ``ranker.evaluate``. Every top-k metric also fails when the longest list is shorter than k, so
  k is capped at the longest list.
- Its curves are keyed from 1 for MAP and HitRate and from 2 for NDCG and MRR
  (``_EVIDENTLY_RANK_OFFSET``).
- Evidently's definitions differ from ``ranker.evaluate``: NDCG uses the graded label as a linear
  gain (ours: 2^label - 1); MAP, MRR and HitRate binarise the label themselves (label > 0), MAP
  divides by all relevant items and MRR is cut at k. The canvas page shows both and says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import math
import re
import urllib.parse
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ranker.errors import UnirankError
from ranker.evaluate import (
    ALL_TASKS,
    HEADLINE_METRIC,
    METRICS,
    Interval,
    TaskEvaluation,
    metrics_at_k,
)

logger = logging.getLogger(__name__)

REFERENCE_KIND = "unified"
REQUIRED_CURRENT_COLUMNS: tuple[str, ...] = ("request_id", "item_id", "label", "score")
_RANK_COLUMN = "rank"
_SAFE_FILE_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")
_PALETTE: tuple[str, ...] = (
    "#2563eb",
    "#f59e0b",
    "#10b981",
    "#8b5cf6",
    "#ef4444",
    "#0ea5e9",
    "#64748b",
    "#d946ef",
)


@dataclass(frozen=True)
class TaskFrames:
    """Rows of one task for its report.

    ``reference`` holds train-split rows of the task, feature columns only (may be a sample).
    ``current`` holds the test-split rows: the feature columns plus ``request_id`` (str),
    ``item_id`` (str), ``label`` (int, graded 0/1/2) and ``score`` (float, the unified model's).
    ``serving`` holds the canvas's serving candidates (feature columns), or None with
    ``serving_note`` saying why there are none.
    """

    reference: pd.DataFrame
    current: pd.DataFrame
    serving: pd.DataFrame | None = None
    serving_note: str = "no serving candidates were given"


@dataclass(frozen=True)
class ReportPaths:
    """Where the reports were written: the index and one page per evaluated task."""

    index: Path
    tasks: dict[str, Path]


class ReportError(UnirankError, RuntimeError):
    """The reports could not be written (inconsistent inputs or an unwritable folder)."""


@dataclass(frozen=True)
class ModelInfo:
    """How the model was trained, for the index's second screen.

    ``rows``: one dict per canvas and split (canvas, split, requests, rows, positives, first,
    last); ``learning_curves``: canvas -> (iteration, valid NDCG@10) pairs; ``request_constant``:
    features constant within every test request of a canvas."""

    fingerprint: str
    valid_from: str
    test_from: str
    params: Mapping[str, Any]
    best_iteration: int | None
    timings: Sequence[tuple[str, float]]
    rows: Sequence[Mapping[str, Any]]
    learning_curves: Mapping[str, Sequence[tuple[int, float]]]
    request_constant: Sequence[str] = ()


def write_reports(
    out_dir: Path,
    version: str,
    evaluations: Sequence[TaskEvaluation],
    task_frames: Mapping[str, TaskFrames],
    numeric_features: Sequence[str],
    categorical_features: Sequence[str],
    feature_importance: Mapping[str, Mapping[str, float]],
    model_descriptions: Mapping[str, str],
    k: int = 10,
    model: ModelInfo | None = None,
    jobs: Mapping[str, CanvasJobs] | None = None,
) -> ReportPaths:
    """Write ``index.html`` and one page per evaluated canvas into ``out_dir``.

    ``numeric_features`` and ``categorical_features`` are the columns tested for drift. ``jobs``
    are the Evidently computations ``submit_evidently`` started earlier (in a worker process);
    without them they run here. A part of
    a canvas page that Evidently cannot compute is named on the page and in the index (and
    logged as a warning); the rest is kept. Raises ``ReportError`` for inconsistent inputs or
    when a file cannot be written.
    """
    if k < 1:
        raise ReportError(f"k must be at least 1, got {k}")
    _check_inputs(evaluations, task_frames)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create the report folder {out_dir}: {exc}") from exc

    file_names = _report_file_names(
        [e.task for e in evaluations if e.skipped is None and e.task != ALL_TASKS]
    )
    if jobs is None:
        wanted = {task: task_frames[task] for task in file_names}
        jobs = submit_evidently(_Inline(), wanted, numeric_features, categorical_features, k)
    task_paths: dict[str, Path] = {}
    failures: dict[str, list[str]] = {}
    for evaluation in evaluations:
        task = evaluation.task
        if task not in file_names:
            continue
        path = out_dir / file_names[task]
        if task not in jobs:
            raise ReportError(f"no Evidently jobs were started for canvas {task!r}")
        failures[task] = _write_task_report(
            path, version, evaluation, task_frames[task], jobs[task], k
        )
        task_paths[task] = path

    index = out_dir / "index.html"
    page = _index_page(
        version,
        evaluations,
        file_names,
        failures,
        feature_importance,
        model_descriptions,
        model,
    )
    _write_text(index, page, what="the index page")
    logger.info("wrote %s and %d task reports", index, len(task_paths))
    return ReportPaths(index=index, tasks=task_paths)


def _check_inputs(
    evaluations: Sequence[TaskEvaluation], task_frames: Mapping[str, TaskFrames]
) -> None:
    seen: set[str] = set()
    for evaluation in evaluations:
        task = evaluation.task
        if task in seen:
            raise ReportError(f"task {task!r} is evaluated twice: pass one evaluation per task")
        seen.add(task)
        if evaluation.skipped is not None or task == ALL_TASKS:
            continue
        frames = task_frames.get(task)
        if frames is None:
            raise ReportError(
                f"no TaskFrames for evaluated task {task!r}: pass its train and test rows, "
                "or mark the task skipped"
            )
        missing = [c for c in REQUIRED_CURRENT_COLUMNS if c not in frames.current.columns]
        if missing:
            raise ReportError(
                f"test rows of task {task!r} lack the columns {missing}: they need "
                f"{list(REQUIRED_CURRENT_COLUMNS)} besides the features"
            )


def _report_file_names(tasks: Sequence[str]) -> dict[str, str]:
    """A file name per task: ``<task>.html`` when the name is safe on disk and in a URL.

    Other names (path separators, markup, a clash with ``index.html`` or, on case-insensitive
    file systems, with another task) get a slug plus a short hash, so no name can escape
    ``out_dir`` or overwrite another page.
    """
    names: dict[str, str] = {}
    used = {"index"}
    for task in tasks:
        stem = task
        if not _SAFE_FILE_STEM.match(task) or task.lower() in used:
            slug = re.sub(r"[^A-Za-z0-9]+", "-", task).strip("-")[:40] or "task"
            digest = hashlib.sha1(task.encode("utf-8")).hexdigest()[:8]
            stem = f"{slug}-{digest}"
        used.add(stem.lower())
        names[task] = f"{stem}.html"
    return names


def _write_text(path: Path, text: str, what: str) -> None:
    """Write ``text`` to ``path`` atomically (artifacts.write_text_atomic)."""
    from ranker import artifacts

    try:
        artifacts.write_text_atomic(path, text)
    except OSError as exc:
        raise ReportError(f"cannot write {what} to {path}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Canvas pages (Evidently's tests, our templates)
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the pandas/numpy/Evidently warnings Evidently's computations emit."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


@dataclass(frozen=True)
class CanvasJobs:
    """Evidently's computations for one canvas page, running or done: its ranking curves, and a
    drift result per comparison (or why that comparison is not made)."""

    ranking: Future[dict[str, list[float]]]
    drift: dict[str, Future[Any] | str]


class _Inline(Executor):
    """An executor that runs each call at once, in this thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # handed to whoever reads the result, as a pool would
            future.set_exception(exc)
        return future


def evidently_worker() -> Executor:
    """A worker process (ranker.worker) at the idle CPU priority for Evidently's computations:
    started when training starts, it imports Evidently (about 3 s) and then runs the jobs of
    ``submit_evidently`` on the CPU the model fits leave idle, instead of after them."""
    from ranker.worker import Worker

    return Worker(
        preload=(
            "ranker.report",
            "ranker.drift",
            "evidently",
            "evidently.metrics",
            "evidently.legacy.calculations.stattests",
        )
    )


def submit_evidently(
    executor: Executor,
    frames: Mapping[str, TaskFrames],
    numeric_features: Sequence[str],
    categorical_features: Sequence[str],
    k: int = 10,
) -> dict[str, CanvasJobs]:
    """Start the Evidently part of every canvas page on ``executor``; ``write_reports`` collects
    it. ``frames`` as for ``write_reports``."""
    from ranker import drift

    jobs: dict[str, CanvasJobs] = {}
    for canvas, frame in frames.items():
        ranked = frame.current[list(REQUIRED_CURRENT_COLUMNS)]
        comparisons: dict[str, Future[Any] | str] = {}
        for label, other in (("test rows", frame.current), ("serving candidates", frame.serving)):
            if other is None:
                comparisons[label] = frame.serving_note
                continue
            columns = [c for c in (*numeric_features, *categorical_features) if c in other]
            comparisons[label] = executor.submit(
                drift.compare,
                frame.reference,
                other[columns],
                list(numeric_features),
                list(categorical_features),
                "training rows",
                label,
            )
        jobs[canvas] = CanvasJobs(executor.submit(evidently_ranking_curves, ranked, k), comparisons)
    return jobs


def _write_task_report(
    path: Path,
    version: str,
    evaluation: TaskEvaluation,
    frames: TaskFrames,
    jobs: CanvasJobs,
    k: int,
) -> list[str]:
    """Write one canvas's page; return the parts that failed ("part: reason")."""
    from ranker import pages
    from ranker.worker import gather

    task = evaluation.task
    failures: list[str] = []
    current = frames.current
    curves = _metric_curves(current, k)
    try:
        theirs = gather(jobs.ranking)
    except Exception as exc:  # Evidently is third-party: report the failure, keep going.
        theirs = {}
        failures.append(f"Evidently's ranking metrics: {_describe(exc)}")
    comparisons: list[dict[str, Any]] = []
    for label, job in jobs.drift.items():
        title = f"training rows → {label}"
        if isinstance(job, str):
            comparisons.append({"title": title, "result": None, "error": job})
            continue
        try:
            result = gather(job)
            comparisons.append({"title": title, "result": result, "error": None})
        except Exception as exc:  # Evidently is third-party: report the failure, keep going.
            failures.append(f"drift {title}: {_describe(exc)}")
            comparisons.append({"title": title, "result": None, "error": _describe(exc)})
    for failure in failures:
        logger.warning("canvas %s: %s", task, failure)
    unified = evaluation.models.get(REFERENCE_KIND)
    page = pages.render(
        "report/canvas.html.j2",
        title=f"unirank {version}: canvas {task}",
        back={"href": "index.html", "text": "the verdict and every canvas (index.html)"},
        version=version,
        canvas=task,
        evaluation=evaluation,
        k=k,
        curves=curves,
        theirs=theirs,
        plot=_curve_plot(curves, k),
        index_metrics=[
            (m, _format_interval(unified.metrics[m])) for m in METRICS if m in unified.metrics
        ]
        if unified is not None
        else [],
        scores=_score_bins(current),
        comparisons=comparisons,
        failures=failures,
        evidently=_evidently_version(),
    )
    _write_text(path, page, what=f"the report of canvas {task!r}")
    return failures


def _describe(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _metric_curves(current: pd.DataFrame, k: int) -> list[dict[str, float]]:
    """The index's definitions (ranker.evaluate) at every cut-off 1..k: mean over the test
    requests with a positive label."""
    labels = current["label"].to_numpy(dtype=float)
    scores = pd.to_numeric(current["score"], errors="raise").to_numpy(dtype=float)
    groups = current["request_id"].astype(str).to_numpy()
    rows = []
    for cut in range(1, k + 1):
        values = metrics_at_k(labels, scores, groups, cut)
        if len(values["request"]) == 0:
            return []
        rows.append(
            {
                "k": cut,
                "ndcg": float(values[f"ndcg@{cut}"].mean()),
                "map": float(values[f"map@{cut}"].mean()),
                "hitrate": float(values[f"hitrate@{cut}"].mean()),
                "mrr": float(values["mrr"].mean()),
            }
        )
    return rows


def _curve_plot(curves: Sequence[Mapping[str, float]], k: int) -> dict[str, Any]:
    """Polylines of NDCG@k, MAP@k and HitRate@k over k = 1..K on a 0-1 axis."""
    width, height, left, bottom, top, right = 420, 200, 36, 24, 10, 90
    if not curves:
        return {"lines": [], "width": width, "height": height}

    def x(cut: float) -> float:
        return round(left + (cut - 1) / max(k - 1, 1) * (width - left - right), 1)

    def y(value: float) -> float:
        return round(top + (1 - value) * (height - top - bottom), 1)

    lines = []
    for name, colour in (("ndcg", "#2563eb"), ("map", "#f59e0b"), ("hitrate", "#10b981")):
        points = " ".join(f"{x(r['k'])},{y(r[name])}" for r in curves)
        last = curves[-1]
        lines.append(
            {
                "name": f"{name}@k",
                "colour": colour,
                "points": points,
                "x": x(last["k"]) + 6,
                "y": y(last[name]) + 4,
            }
        )
    return {
        "width": width,
        "height": height,
        "lines": lines,
        "x_ticks": [{"x": x(c), "label": c} for c in range(1, k + 1)],
        "y_ticks": [{"y": y(v), "label": f"{v:.1f}"} for v in (0.0, 0.25, 0.5, 0.75, 1.0)],
        "left": left,
        "right": width - right,
        "axis_y": height - bottom,
    }


def _score_bins(current: pd.DataFrame, bins: int = 12) -> list[Any]:
    """The unified model's scores on the test rows: the share of the positive rows and of the
    others in each score bin (drawn with the drift bars: grey others, blue positives)."""
    from ranker.drift import Bin

    scores = pd.to_numeric(current["score"], errors="raise").to_numpy(dtype=float)
    if len(scores) == 0:
        return []
    positive = current["label"].to_numpy(dtype=float) > 0
    low, high = float(scores.min()), float(scores.max())
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    pos = np.histogram(scores[positive], edges)[0] / max(int(positive.sum()), 1)
    neg = np.histogram(scores[~positive], edges)[0] / max(int((~positive).sum()), 1)
    return [
        Bin(f"{edges[i]:.2f} to {edges[i + 1]:.2f}", float(neg[i]), float(pos[i]))
        for i in range(bins)
    ]


def _ranks(current: pd.DataFrame) -> pd.Series:
    """1-based rank of each row in its request by descending score, ties broken by row order."""
    scores = pd.to_numeric(current["score"], errors="raise").astype(float)
    ranks = scores.groupby(current["request_id"].astype(str).to_numpy(), sort=False).rank(
        method="first", ascending=False
    )
    return ranks.astype(int)


def _ranked_recsys_dataset(current: pd.DataFrame, k: int) -> tuple[Any, int]:
    """Evidently's recsys dataset of the scored rows as ranks (ties broken by row order, as in
    ranker.evaluate), on requests with a positive label only. Only the top k rows and the
    relevant ones are passed: every metric at k reads nothing else, and the lists are ten times
    shorter. Also returns the longest list. Raises ReportError if no request has a positive
    label."""
    from evidently import DataDefinition, Dataset, Recsys

    frame = pd.DataFrame(
        {
            "request_id": current["request_id"].astype(str).to_numpy(),
            "item_id": current["item_id"].astype(str).to_numpy(),
            "label": current["label"].astype(int).to_numpy(),
            _RANK_COLUMN: _ranks(current).to_numpy(),
        }
    )
    frame = frame[frame.groupby("request_id")["label"].transform("max") > 0]
    if frame.empty:
        raise ReportError("no test request has a positive label")
    longest = int(frame.groupby("request_id").size().max())
    frame = frame[(frame[_RANK_COLUMN] <= k) | (frame["label"] > 0)]
    definition = DataDefinition(
        numerical_columns=["label", _RANK_COLUMN],
        categorical_columns=["request_id", "item_id"],
        ranking=[
            Recsys(
                user_id="request_id",
                item_id="item_id",
                target="label",
                prediction=_RANK_COLUMN,
                recommendations_type="rank",
            )
        ],
    )
    return Dataset.from_pandas(frame, data_definition=definition), longest


# Evidently 0.7 returns each recsys metric as a curve over ranks, keyed from 1 for MAP and
# HitRate but from 2 for NDCG and MRR (the last rank is past k). This is where "the value at k" is
# read; a test checks every metric at every k against ranker.evaluate on hand-made lists.
_EVIDENTLY_RANK_OFFSET = {"NDCG": 1, "MAP": 0, "MRR": 1, "HitRate": 0}


def evidently_ranking_curves(current: pd.DataFrame, k: int) -> dict[str, list[float]]:
    """Evidently's NDCG, MAP, MRR and HitRate at every cut-off 1..k of the scored rows (columns
    request_id, item_id, label, score), on requests with at least one positive label; lists are
    indexed by k - 1. Evidently fails when every list is shorter than k, so the curves stop at
    the longest list."""
    from evidently import Report
    from evidently.metrics import MAP, MRR, NDCG, HitRate

    if k < 1:
        raise ReportError(f"k must be >= 1, got {k}")
    dataset, longest = _ranked_recsys_dataset(current, k)
    k = min(k, longest)
    with _quiet():
        snapshot = Report([NDCG(k=k), MAP(k=k), MRR(k=k), HitRate(k=k)]).run(dataset, None)
    curves: dict[str, list[float]] = {}
    for metric in snapshot.dict()["metrics"]:
        name = str(metric.get("metric_name") or metric.get("metric_id", "")).split("(")[0]
        if name not in _EVIDENTLY_RANK_OFFSET:
            continue
        curve = metric["value"]
        by_rank = {int(r): float(curve["value"][i]) for i, r in curve["rank"].items()}
        values = []
        for cut in range(1, k + 1):
            wanted = cut + _EVIDENTLY_RANK_OFFSET[name]
            if wanted not in by_rank:
                raise ReportError(f"Evidently's {name} has no value at k = {cut}")
            values.append(by_rank[wanted])
        curves[name.lower()] = values
    return curves


def evidently_ranking_metrics(current: pd.DataFrame, k: int) -> dict[str, float]:
    """Evidently's NDCG, MAP, MRR and HitRate at ``k`` (see evidently_ranking_curves)."""
    return {name: values[-1] for name, values in evidently_ranking_curves(current, k).items()}


def _evidently_version() -> str:
    try:
        return importlib.metadata.version("evidently")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------------------------
# Index page (templates/report/index.html.j2: plain HTML + inline SVG)
# --------------------------------------------------------------------------------------------


def _href(file_name: str) -> str:
    return urllib.parse.quote(file_name)


def _anchor(task: str) -> str:
    return "task-" + hashlib.sha1(task.encode("utf-8")).hexdigest()[:10]


def _finite(interval: Interval) -> bool:
    return all(math.isfinite(v) for v in (interval.value, interval.low, interval.high))


def _format_interval(interval: Interval) -> str:
    """``value [low, high]`` with 3 decimals, or ``n/a`` for an undefined mean."""
    if not math.isfinite(interval.value):
        return "n/a"
    if not (math.isfinite(interval.low) and math.isfinite(interval.high)):
        return f"{interval.value:.3f}"
    return f"{interval.value:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def _delta_class(interval: Interval) -> str:
    if _finite(interval) and interval.low > 0:
        return "pos"
    if _finite(interval) and interval.high < 0:
        return "neg"
    return "zero"


def _model_kinds(
    evaluations: Sequence[TaskEvaluation], model_descriptions: Mapping[str, str]
) -> list[str]:
    """Kinds present in any evaluation: unified first, then described ones, then the rest."""
    present: list[str] = []
    for evaluation in evaluations:
        present.extend(kind for kind in evaluation.models if kind not in present)
    ordered = [kind for kind in (REFERENCE_KIND, *model_descriptions) if kind in present]
    ordered = list(dict.fromkeys(ordered))
    return ordered + [kind for kind in present if kind not in ordered]


def _ordered_evaluations(evaluations: Sequence[TaskEvaluation]) -> list[TaskEvaluation]:
    """The pooled ``all`` evaluation first, then the canvases in the given order."""
    pooled = [e for e in evaluations if e.task == ALL_TASKS]
    return pooled + [e for e in evaluations if e.task != ALL_TASKS]


def _task_label(task: str) -> str:
    return "all canvases (pooled)" if task == ALL_TASKS else task


def _index_page(
    version: str,
    evaluations: Sequence[TaskEvaluation],
    file_names: Mapping[str, str],
    failures: Mapping[str, Sequence[str]],
    feature_importance: Mapping[str, Mapping[str, float]],
    model_descriptions: Mapping[str, str],
    model: ModelInfo | None = None,
) -> str:
    from ranker import pages

    ordered = _ordered_evaluations(evaluations)
    kinds = _model_kinds(ordered, model_descriptions)
    colours = {kind: _PALETTE[i % len(_PALETTE)] for i, kind in enumerate(kinds)}
    evaluated = [e for e in ordered if e.skipped is None and e.models]
    canvases = [e.task for e in ordered if e.task != ALL_TASKS]
    return pages.render(
        "report/index.html.j2",
        title=f"unirank report {version}",
        back=None,
        version=version,
        **(_verdict(evaluated, kinds, colours) if evaluated else {"verdict": False}),
        model=model,
        learning=_learning_plot(model, canvases) if model is not None else None,
        importance=_importance(
            feature_importance,
            [e.task for e in ordered],
            model.request_constant if model is not None else (),
        )
        if feature_importance
        else None,
        kinds=kinds,
        descriptions=model_descriptions,
        sections=[_section(e, kinds, file_names, failures) for e in ordered],
        metrics=METRICS,
        metric=HEADLINE_METRIC,
        evidently=_evidently_version(),
    )


def _verdict(
    evaluated: Sequence[TaskEvaluation], kinds: Sequence[str], colours: Mapping[str, str]
) -> dict[str, Any]:
    """The first screen (templates/report/verdict.html.j2): one sentence per canvas against a
    model of its own (or the first comparison there is), the pooled-vs-canvases flags, and a
    forest plot of every paired difference."""
    from ranker import verdict

    metric = HEADLINE_METRIC
    others = [k for k in kinds if k != "unified"]
    main = "bespoke" if "bespoke" in others else (others[0] if others else None)
    # the canvases first, the pooled row last
    evaluated = sorted(evaluated, key=lambda e: e.task == ALL_TASKS)
    sentences = []
    for evaluation in evaluated:
        delta = evaluation.deltas.get(main, {}).get(metric) if main else None
        if delta is not None and _finite(delta):
            sentences.append(
                {
                    "word": verdict.word(delta),
                    "text": verdict.sentence(evaluation.task, main or "", delta, metric),
                }
            )
    return {
        "verdict": True,
        "sentences": sentences,
        "disagreements": [str(d) for d in verdict.disagreements(evaluated, metric, others)],
        "plot": _forest_plot(evaluated, others, colours, metric),
    }


def _forest_plot(
    evaluated: Sequence[TaskEvaluation],
    kinds: Sequence[str],
    colours: Mapping[str, str],
    metric: str,
) -> dict[str, Any]:
    """Coordinates of the forest plot: per canvas, one row per comparison kind (point = unified
    minus it, whisker = its paired 95% interval), on an axis symmetric around zero."""
    width, left, right, top, row_height, gap = 760, 150, 24, 36, 14, 12
    spans = [
        abs(bound)
        for e in evaluated
        for k in kinds
        if (d := e.deltas.get(k, {}).get(metric)) is not None and _finite(d)
        for bound in (d.low, d.high, d.value)
    ]
    reach = max([0.01, *spans]) * 1.1

    def x(value: float) -> float:
        return round(left + (value + reach) / (2 * reach) * (width - left - right), 1)

    rows: list[dict[str, Any]] = []
    y = top
    for evaluation in evaluated:
        first = True
        for kind in kinds:
            delta = evaluation.deltas.get(kind, {}).get(metric)
            if delta is None or not _finite(delta):
                continue
            rows.append(
                {
                    "label": _task_label(evaluation.task) if first else "",
                    "y": y,
                    "x": x(delta.value),
                    "x_low": x(delta.low),
                    "x_high": x(delta.high),
                    "colour": colours.get(kind, "#333"),
                    "title": f"{_task_label(evaluation.task)}, unified - {kind}: "
                    f"{delta.value:+.3f} [{delta.low:+.3f}, {delta.high:+.3f}]",
                }
            )
            first = False
            y += row_height
        y += gap
    legend = [
        {"name": kind, "colour": colours.get(kind, "#333"), "x": left + 110 * i}
        for i, kind in enumerate(kinds)
    ]
    ticks = [
        {"x": x(v), "label": f"{v:+.3f}" if v else "0"}
        for v in (-reach, -reach / 2, 0.0, reach / 2, reach)
    ]
    bottom = y
    return {
        "width": width,
        "height": bottom + 24,
        "top": top - 8,
        "bottom": bottom,
        "zero": x(0.0),
        "rows": rows,
        "legend": legend,
        "ticks": ticks,
    }


def _section(
    evaluation: TaskEvaluation,
    kinds: Sequence[str],
    file_names: Mapping[str, str],
    failures: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    """One canvas's metrics table: a row per model kind, a cell per metric, and the paired
    difference unified - kind on the headline metric."""
    task = evaluation.task
    present = [kind for kind in kinds if kind in evaluation.models]
    with_delta = REFERENCE_KIND in evaluation.models and len(present) > 1
    rows = []
    for kind in present:
        metrics = evaluation.models[kind].metrics
        rows.append(
            {
                "kind": kind,
                "cells": [_format_interval(metrics[m]) if m in metrics else "n/a" for m in METRICS],
                "delta": _delta_cell(evaluation, kind) if with_delta else None,
            }
        )
    return {
        "anchor": _anchor(task),
        "label": _task_label(task),
        "skipped": evaluation.skipped,
        "file": _href(file_names[task]) if task in file_names else None,
        "failures": list(failures.get(task, ())),
        "n_requests": evaluation.n_requests,
        "n_rows": evaluation.n_rows,
        "rows": rows,
        "with_delta": with_delta,
    }


def _delta_cell(evaluation: TaskEvaluation, kind: str) -> dict[str, str]:
    if kind == REFERENCE_KIND:
        return {"css": "zero", "title": "", "text": "reference"}
    delta = evaluation.deltas.get(kind, {}).get(HEADLINE_METRIC)
    if delta is None:
        return {"css": "zero", "title": "", "text": "n/a"}
    css = _delta_class(delta)
    title = {"pos": "unified is better", "neg": "unified is worse", "zero": "no clear difference"}
    return {"css": css, "title": title[css], "text": _format_interval(delta)}


def _learning_plot(model: ModelInfo, canvases: Sequence[str]) -> dict[str, Any] | None:
    """Polylines of valid NDCG@10 over iterations, one per canvas, on an axis fitted to them."""
    curves = {c: model.learning_curves[c] for c in canvases if model.learning_curves.get(c)}
    curves.update({c: v for c, v in model.learning_curves.items() if c not in curves and v})
    if not curves:
        return None
    width, height, left, right, top, bottom = 760, 260, 44, 110, 10, 24
    last = max(i for points in curves.values() for i, _ in points)
    values = [v for points in curves.values() for _, v in points]
    low = math.floor(min(values) * 20) / 20
    high = math.ceil(max(values) * 20) / 20
    high = high if high > low else low + 0.05

    def x(iteration: float) -> float:
        return round(left + iteration / max(last, 1) * (width - left - right), 1)

    def y(value: float) -> float:
        return round(top + (high - value) / (high - low) * (height - top - bottom), 1)

    lines = []
    for i, (canvas, points) in enumerate(curves.items()):
        end_i, end_v = points[-1]
        lines.append(
            {
                "name": canvas,
                "colour": _PALETTE[i % len(_PALETTE)],
                "points": " ".join(f"{x(it)},{y(v)}" for it, v in points),
                "x": x(end_i) + 6,
                "y": y(end_v) + 4,
            }
        )
    steps = np.linspace(low, high, 5)
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "top": top,
        "axis_y": height - bottom,
        "lines": lines,
        "best": x(model.best_iteration) if model.best_iteration is not None else None,
        "x_ticks": [{"x": x(v), "label": int(v)} for v in np.linspace(0, last, 6).round()],
        "y_ticks": [{"y": y(float(v)), "label": f"{v:.2f}"} for v in steps],
    }


def _importance(
    feature_importance: Mapping[str, Mapping[str, float]],
    task_order: Sequence[str],
    request_constant: Sequence[str],
) -> dict[str, Any]:
    """Features x canvases, each canvas normalised to sum to 100, sorted by the mean."""
    tasks = [t for t in task_order if t in feature_importance]
    tasks += [t for t in feature_importance if t not in tasks]
    normalised: dict[str, dict[str, float]] = {}
    for task in tasks:
        values = {
            f: float(v) for f, v in feature_importance[task].items() if math.isfinite(float(v))
        }
        total = sum(abs(v) for v in values.values())
        normalised[task] = {f: 100.0 * v / total for f, v in values.items()} if total > 0 else {}
    features = list(dict.fromkeys(f for t in tasks for f in feature_importance[t]))
    means = {f: sum(normalised[t].get(f, 0.0) for t in tasks) / len(tasks) for f in features}
    features.sort(key=lambda f: (-means[f], f))
    top = max((abs(v) for n in normalised.values() for v in n.values()), default=0.0)
    rows = []
    for feature in features:
        cells = []
        for task in tasks:
            value = normalised[task].get(feature)
            cells.append(
                None
                if value is None
                else {"value": value, "alpha": 0.55 * abs(value) / top if top > 0 else 0.0}
            )
        rows.append({"feature": feature, "cells": cells, "mean": means[feature]})
    return {
        "canvases": [_task_label(t) for t in tasks],
        "rows": rows,
        "constant": [f for f in request_constant if f in means],
    }
