"""Drift monitoring: how what is served changed since the current model was trained.

For each canvas, the canvas's ``serving_candidates`` rows now (the features the next ``score``
will rank) are compared column by column (Evidently, through :mod:`ranker.drift`) with the
serving candidates of the build the CURRENT model was trained on (its
``serving_reference.parquet``, written by ``train``). A canvas where at least ``threshold``
(registry ``monitoring.drift_share``) of the compared columns drifted is *exceeding*: the signal
for a nightly job to retrain. A retrain keeps the serving candidates of its build, so it resets
the comparison.

Two more comparisons are shown, never gated on, both against the model's training rows (its
``reference.parquet``):

- the train/serve difference: the serving candidates now against the training rows. The
  candidates come from the candidate sources' pools, the training rows from logged impressions,
  so they differ by design, and a retrain does not remove the difference;
- the served items: where the HTTP service sampled its answers (``serve --sample-rate``, read
  back by ``build`` into ``served_answers``), the served items joined to their candidate rows
  (canvas, context and item); the answers are counted by the path that answered (cache, online,
  a fallback step). The served items are what the model ranked on top, so they differ from all
  candidates by design.

Each run writes ``<reports>/monitor/<UTC time>/index.html`` (verdict first, then the drift
tables) and ``drift.json`` (the same numbers, for machines).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ranker import artifacts, drift, pages, warehouse
from ranker.config import Settings
from ranker.errors import UnirankError
from ranker.registry import ModelFeatures

log = logging.getLogger(__name__)

CANDIDATES = "serving_candidates"
SERVED = "served_answers"
REPORT_FILE = "index.html"
JSON_FILE = "drift.json"
TEMPLATE = "monitor/index.html.j2"
TRAINING_LABEL = "training rows"
AT_TRAINING_LABEL = "serving candidates at training"
CANDIDATES_LABEL = "serving candidates now"
SERVED_LABEL = "served items"
# The order serving candidates are sampled in: the one `train` samples serving_reference.parquet
# in (ranker.train._serving_candidates), so an unchanged warehouse gives the very same rows.
SAMPLE_ORDER = drift.SAMPLE_ORDER
PATHS = ("cache", "online", "fallback")  # how an answer was served; a fallback step is its name


class MonitorError(UnirankError, ValueError):
    """Monitoring cannot run: no model to compare with, no reference rows, no candidates."""


@dataclass(frozen=True)
class Reference:
    """What the CURRENT model keeps to compare with: its build's serving candidates (the gate)
    and its training rows (shown only), each with ``task_type`` and the drift columns."""

    serving: pd.DataFrame  # serving_reference.parquet
    training: pd.DataFrame  # reference.parquet


@dataclass(frozen=True)
class ServedAnswers:
    """What the service sampled for one canvas (``served_answers``)."""

    answers: dict[str, int]  # answered_by -> sampled answers
    items: int  # served item rows
    matched: int  # of which found among the canvas's serving candidates (same context and item)
    first_at: str | None = None  # UTC, ISO
    last_at: str | None = None

    @property
    def total(self) -> int:
        return sum(self.answers.values())

    @property
    def paths(self) -> dict[str, float]:
        """Share of the answers served by the cache, online scoring and a fallback step."""
        total = self.total
        counts = dict.fromkeys(PATHS, 0)
        for answered_by, count in self.answers.items():
            counts[answered_by if answered_by in ("cache", "online") else "fallback"] += count
        return {path: (count / total if total else 0.0) for path, count in counts.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "answers": self.total,
            "answered_by": dict(self.answers),
            "path_shares": self.paths,
            "items": self.items,
            "items_among_candidates": self.matched,
            "first_served_at": self.first_at,
            "last_served_at": self.last_at,
        }


@dataclass(frozen=True)
class CanvasDrift:
    """One canvas: its serving candidates now against those at training (the gate); the
    train/serve difference and the served items against its training rows (shown only)."""

    canvas: str
    threshold: float
    candidates: drift.DriftResult | None  # the gate; None: not compared, see why_not
    why_not: str | None = None
    train_serve: drift.DriftResult | None = None
    train_serve_why_not: str | None = None
    served: drift.DriftResult | None = None
    served_why_not: str | None = None
    answers: ServedAnswers | None = None  # None: nothing sampled for the canvas

    @property
    def share(self) -> float | None:
        return None if self.candidates is None else self.candidates.share

    @property
    def exceeds(self) -> bool:
        return self.candidates is not None and self.candidates.share >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        result = self.candidates
        return {
            "compared": result is not None,
            "not_compared": self.why_not,
            "drift_share": self.share,
            "compared_columns": 0 if result is None else len(result.columns),
            "drifted_columns": [] if result is None else list(result.drifted),
            "exceeds": self.exceeds,
            "candidates": None if result is None else result.to_dict(),
            "train_serve": None if self.train_serve is None else self.train_serve.to_dict(),
            "train_serve_not_compared": self.train_serve_why_not,
            "served": None if self.served is None else self.served.to_dict(),
            "served_not_compared": self.served_why_not,
            "answers": None if self.answers is None else self.answers.to_dict(),
        }


@dataclass(frozen=True)
class MonitorResult:
    model_version: str
    threshold: float
    threshold_source: str  # where the threshold came from (registry key or --threshold)
    canvases: tuple[CanvasDrift, ...]
    created_at: str  # UTC, ISO
    report_dir: Path
    seconds: float

    @property
    def exceeding(self) -> tuple[str, ...]:
        """The canvases at or above the threshold."""
        return tuple(c.canvas for c in self.canvases if c.exceeds)

    @property
    def compared(self) -> tuple[str, ...]:
        return tuple(c.canvas for c in self.canvases if c.candidates is not None)

    @property
    def report_index(self) -> Path:
        return self.report_dir / REPORT_FILE

    @property
    def report_json(self) -> Path:
        return self.report_dir / JSON_FILE

    def to_dict(self) -> dict[str, Any]:
        return {
            "created_at": self.created_at,
            "model_version": self.model_version,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "exceeding": list(self.exceeding),
            "canvases": {c.canvas: c.to_dict() for c in self.canvases},
        }


def monitor(
    settings: Settings,
    canvases: Sequence[str] | None = None,
    threshold: float | None = None,
    now: datetime | None = None,
    on_canvas: Callable[[int, int], None] | None = None,
) -> MonitorResult:
    """Compare each canvas's (``canvases``, default all) serving candidates with those the
    CURRENT model was trained beside (and, shown only, with its training rows), write the report
    under ``<reports>/monitor/<UTC time>/`` and return the outcome. ``threshold`` overrides the
    registry's ``monitoring.drift_share``. ``on_canvas(done, total)`` reports progress."""
    started = time.perf_counter()
    registry = settings.registry
    source = "--threshold" if threshold is not None else "registry monitoring.drift_share"
    limit = registry.monitoring.drift_share if threshold is None else threshold
    if not 0.0 < limit <= 1.0:
        raise MonitorError(f"the drift threshold must be above 0 and at most 1, got {limit}")
    names = _canvases(settings, canvases)
    model = artifacts.current_version(artifacts.models_dir(settings.artifacts_dir))
    reference = read_reference(model)
    at_training, training = reference.serving, reference.training
    features = registry.drift_features
    candidates = read_candidates(settings, names, features.all)
    served, answers = read_served(settings, names, features.all)
    results: list[CanvasDrift] = []
    for done, name in enumerate(names):
        results.append(
            compare_canvas(
                name,
                candidates[candidates["task_type"] == name],
                at_training[at_training["task_type"] == name],
                training[training["task_type"] == name],
                features,
                limit,
                served=None if served is None else served[served["task_type"] == name],
                answers=answers.get(name),
            )
        )
        if on_canvas is not None:
            on_canvas(done + 1, len(names))
    stamp = now or datetime.now(timezone.utc)
    out_dir = settings.reports_dir / "monitor" / stamp.strftime("%Y%m%dT%H%M%S%fZ")
    result = MonitorResult(
        model.version,
        limit,
        source,
        tuple(results),
        stamp.isoformat(timespec="seconds"),
        out_dir,
        time.perf_counter() - started,
    )
    write_report(result)
    log.info("monitor: %s in %.1fs", result.report_index, result.seconds)
    return result


def _canvases(settings: Settings, asked: Sequence[str] | None) -> list[str]:
    known = list(settings.registry.canvas_names)
    if not asked:
        return known
    unknown = [c for c in asked if c not in known]
    if unknown:
        raise MonitorError(
            f"unknown canvas {', '.join(map(repr, unknown))}; the registry has {', '.join(known)}"
        )
    return list(dict.fromkeys(asked))


def read_reference(model: artifacts.ModelVersion) -> Reference:
    """The serving candidates and training rows the model keeps for drift checks."""
    return Reference(
        _read_kept(
            model,
            artifacts.SERVING_REFERENCE_FILE,
            "the serving candidates of its build",
            "it was trained before models kept them, or when the warehouse had no "
            "serving_candidates",
        ),
        _read_kept(
            model,
            artifacts.REFERENCE_FILE,
            "training rows",
            "it was trained before models kept them",
        ),
    )


def _read_kept(model: artifacts.ModelVersion, file: str, what: str, why: str) -> pd.DataFrame:
    path = model.path / file
    if not path.is_file():
        raise MonitorError(
            f"model {model.version} has no {what} to compare with ({path} is missing: {why}); "
            "run `unirank-cli train` to train a model that does, then `unirank-cli monitor` again"
        )
    frame = pd.read_parquet(path)
    if "task_type" not in frame.columns:
        raise MonitorError(
            f"{path} has no task_type column; run `unirank-cli train` to write it again"
        )
    return frame


def read_candidates(
    settings: Settings, canvases: Sequence[str], columns: Sequence[str], rows: int = drift.MAX_ROWS
) -> pd.DataFrame:
    """At most ``rows`` serving candidates per canvas (a deterministic pseudo-random sample, in
    the warehouse, drawn as ``train`` draws the serving reference), with ``task_type`` and those
    of ``columns`` the mart has."""
    present = warehouse.relation_columns(settings, CANDIDATES)
    if present is None:
        raise MonitorError(
            f"the warehouse has no {CANDIDATES}; run `unirank-cli build` (and "
            "`unirank-cli score`) first"
        )
    kept = [c for c in columns if c in present]
    q = [warehouse.quote(settings, c) for c in ("task_type", *kept)]
    sql = (
        f"select {', '.join(q)} from (select {', '.join(q)}, row_number() over (partition by "
        f"task_type order by {SAMPLE_ORDER}) as sample_rank "
        f"from {CANDIDATES} where task_type in ({_literals(canvases)})) as sampled "
        f"where sample_rank <= {int(rows)}"
    )
    return warehouse.fetch_arrow(settings, sql).to_pandas()


def read_served(
    settings: Settings, canvases: Sequence[str], columns: Sequence[str], rows: int = drift.MAX_ROWS
) -> tuple[pd.DataFrame | None, dict[str, ServedAnswers]]:
    """The served items' candidate rows (at most ``rows`` per canvas) and the answers counted
    per canvas; (None, {}) when the warehouse has no ``served_answers`` yet."""
    if warehouse.relation_columns(settings, SERVED) is None:
        return None, {}
    present = warehouse.relation_columns(settings, CANDIDATES) or []
    kept = [c for c in columns if c in present]
    join = (
        f"from {SERVED} as s left join {CANDIDATES} as c on c.task_type = s.task_type "
        "and c.context_key = s.context_key and c.item_id = s.item_id "
        f"where s.task_type in ({_literals(canvases)})"
    )
    counts = warehouse.fetch_arrow(
        settings,
        "select s.task_type, s.answered_by, count(distinct s.answer_id) as answers, "
        "count(*) as items, count(c.item_id) as matched, min(s.served_at) as first_at, "
        f"max(s.served_at) as last_at {join} group by s.task_type, s.answered_by",
    ).to_pylist()
    answers: dict[str, ServedAnswers] = {}
    for canvas in canvases:
        mine = [r for r in counts if r["task_type"] == canvas]
        if not mine:
            continue
        firsts = [r["first_at"] for r in mine if r["first_at"] is not None]
        lasts = [r["last_at"] for r in mine if r["last_at"] is not None]
        answers[canvas] = ServedAnswers(
            {str(r["answered_by"]): int(r["answers"]) for r in mine},
            sum(int(r["items"]) for r in mine),
            sum(int(r["matched"]) for r in mine),
            _iso(min(firsts)) if firsts else None,
            _iso(max(lasts)) if lasts else None,
        )
    if not answers or not kept:
        return None, answers
    q = [f"c.{warehouse.quote(settings, c)}" for c in kept]
    sql = (
        f"select task_type, {', '.join(warehouse.quote(settings, c) for c in kept)} from ("
        f"select s.task_type, {', '.join(q)}, row_number() over (partition by s.task_type "
        f"order by hash(s.answer_id, s.item_id)) as sample_rank {join} "
        "and c.item_id is not null) as sampled "
        f"where sample_rank <= {int(rows)}"
    )
    return warehouse.fetch_arrow(settings, sql).to_pandas(), answers


def compare_canvas(
    canvas: str,
    candidates: pd.DataFrame,
    at_training: pd.DataFrame,
    training: pd.DataFrame,
    features: ModelFeatures,
    threshold: float,
    served: pd.DataFrame | None = None,
    answers: ServedAnswers | None = None,
) -> CanvasDrift:
    """One canvas's comparisons on its rows: the serving candidates now against those at
    training (the gate) and against the training rows, the served items (when given) against
    the training rows. Nothing to compare is a reason, not an error."""
    no_candidates = (
        f"no {CANDIDATES} rows now (a canvas without `serving` in the registry is not scored; "
        "otherwise run `unirank-cli build`)"
    )
    no_training = (
        "the current model has no training rows of this canvas (added since it was trained? "
        "run `unirank-cli train`)"
    )
    if candidates.empty:
        why_not: str | None = no_candidates
    elif at_training.empty:
        why_not = (
            f"not in the current model's {artifacts.SERVING_REFERENCE_FILE} (the canvas had no "
            f"{CANDIDATES} when the model was trained, or was added since): run "
            "`unirank-cli train`"
        )
    else:
        why_not = None
    result, why_not = _compare(
        at_training, candidates, features, AT_TRAINING_LABEL, CANDIDATES_LABEL, why_not
    )
    train_serve_why_not: str | None = None
    if candidates.empty:
        train_serve_why_not = no_candidates
    elif training.empty:
        train_serve_why_not = no_training
    train_serve, train_serve_why_not = _compare(
        training, candidates, features, TRAINING_LABEL, CANDIDATES_LABEL, train_serve_why_not
    )
    served_why_not: str | None = None
    if answers is None:
        served_why_not = (
            "no sampled answers (run `unirank-cli serve --sample-rate 0.05`, "
            "then `unirank-cli build`)"
        )
    elif served is None or served.empty:
        served_why_not = f"none of the {answers.items:,} served items is among the {CANDIDATES}"
    elif training.empty:
        served_why_not = no_training
    served_result, served_why_not = _compare(
        training, served, features, TRAINING_LABEL, SERVED_LABEL, served_why_not
    )
    return CanvasDrift(
        canvas,
        threshold,
        result,
        why_not,
        train_serve,
        train_serve_why_not,
        served_result,
        served_why_not,
        answers,
    )


def _compare(
    reference: pd.DataFrame,
    current: pd.DataFrame | None,
    features: ModelFeatures,
    reference_label: str,
    current_label: str,
    why_not: str | None,
) -> tuple[drift.DriftResult | None, str | None]:
    """``current`` against ``reference`` unless there is already a reason not to (``why_not``);
    (the result, None) or (None, why not)."""
    if why_not is not None or current is None:
        return None, why_not
    try:
        result = drift.compare(
            reference,
            current,
            features.numeric,
            features.categorical,
            reference_label,
            current_label,
        )
    except drift.DriftError as exc:
        return None, str(exc)
    return result, None


def write_report(result: MonitorResult) -> None:
    """``drift.json`` then ``index.html`` in the run's folder, each written atomically."""
    result.report_dir.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(_finite(result.to_dict()), indent=2, allow_nan=False) + "\n"
    artifacts.write_text_atomic(result.report_json, payload)
    page = pages.render(
        TEMPLATE,
        title=f"unirank drift monitor {result.created_at}",
        back=None,
        result=result,
        json_file=JSON_FILE,
    )
    artifacts.write_text_atomic(result.report_index, page)


def _literals(values: Sequence[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
