"""HTML reports of one evaluated model version: an index page plus one Evidently report per task.

``index.html`` is the page a person reads first. It is self-contained (inline CSS, inline SVG, no
JavaScript, no network) and shows the metrics of ``ranker.evaluate`` with their bootstrap
intervals, the paired deltas between the unified model and the others, the skipped tasks and the
feature importance of the unified model per task.

``<task>.html`` is an Evidently report per evaluated task: ranking quality at K of the unified
model on the test rows, the distribution of its scores, and the drift of the features between the
train and the test rows. Every Evidently import of the project lives in this module, and only
inside functions: importing Evidently takes seconds and must not slow down every CLI command.

Evidently 0.7 notes (checked against 0.7.23):

- A report runs on one current and one optional reference dataset, and its metrics all see both.
  The recsys metrics need the target and prediction columns in the reference too, which our train
  sample does not have, so each part of a task report is its own Evidently ``Report``; the parts'
  widgets are then rendered together into one standalone page.
- With ``recommendations_type="score"`` Evidently ranks with pandas' ``rank(method="average")``
  cast to int, so tied scores share a rank and ``NDCG@k`` fails (``KeyError``) when no rank reaches
  k. We pass our own ranks instead (``recommendations_type="rank"``), ties broken by row order as
  in ``ranker.evaluate``. Every top-k metric also fails when the longest list is shorter than k, so
  k is capped at the longest list.
- Evidently's definitions differ from ``ranker.evaluate``: NDCG uses the graded label as a linear
  gain (ours: 2^label - 1); MAP, MRR and HitRate binarise the label themselves (label > 0, no
  ``min_rel_score``), MAP divides by all relevant items and MRR is cut at k. Requests without a
  positive label are excluded, as in ours. So the task report's numbers are a cross-check, not the
  reference; the index carries the reference numbers.
- ``Snapshot.save_html`` silently writes nothing when given a ``Path``; we render to a string
  and write the file ourselves (atomically).
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import importlib.metadata
import logging
import math
import os
import re
import tempfile
import urllib.parse
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ranker.errors import UnirankError
from ranker.evaluate import ALL_TASKS, HEADLINE_METRIC, METRICS, Interval, TaskEvaluation

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
    """

    reference: pd.DataFrame
    current: pd.DataFrame


@dataclass(frozen=True)
class ReportPaths:
    """Where the reports were written: the index and one page per evaluated task."""

    index: Path
    tasks: dict[str, Path]


class ReportError(UnirankError, RuntimeError):
    """The reports could not be written (inconsistent inputs or an unwritable folder)."""


@dataclass(frozen=True)
class _Part:
    """One part of a task report: its Evidently widgets, or why it could not be built."""

    title: str
    widgets: list[Any] = field(default_factory=list)
    error: str | None = None


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
) -> ReportPaths:
    """Write ``index.html`` and one Evidently report per evaluated task into ``out_dir``.

    A task whose Evidently report fails (partly or wholly) still gets a page saying which part
    failed and why; the failure is logged as a warning and noted in the index. Raises
    ``ReportError`` for inconsistent inputs or when a file cannot be written.
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
    task_paths: dict[str, Path] = {}
    failures: dict[str, list[str]] = {}
    for evaluation in evaluations:
        task = evaluation.task
        if task not in file_names:
            continue
        path = out_dir / file_names[task]
        failures[task] = _write_task_report(
            path,
            version,
            evaluation,
            task_frames[task],
            numeric_features,
            categorical_features,
            k,
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
    """Write ``text`` to a temporary file beside ``path``, then move it into place."""
    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except OSError as exc:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
        raise ReportError(f"cannot write {what} to {path}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Task reports (Evidently)
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the pandas/numpy/Evidently warnings Evidently's computations emit."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _write_task_report(
    path: Path,
    version: str,
    evaluation: TaskEvaluation,
    frames: TaskFrames,
    numeric_features: Sequence[str],
    categorical_features: Sequence[str],
    k: int,
) -> list[str]:
    """Write one task's report; return the parts that failed ("part: reason")."""
    task = evaluation.task
    with _quiet():
        parts = [
            _ranking_part(frames.current, k),
            _score_part(frames.current, k),
            _drift_part(frames.reference, frames.current, numeric_features, categorical_features),
        ]
    failures = [f"{p.title}: {p.error}" for p in parts if p.error is not None]
    for failure in failures:
        logger.warning("task %s: Evidently report part failed: %s", task, failure)

    page: str | None = None
    if any(p.error is None for p in parts):
        try:
            with _quiet():
                page = _render_evidently(_task_summary(version, evaluation, k), parts)
            page = _titled(page, f"unirank {version}: canvas {task}")
        except Exception as exc:  # Evidently is third-party: any failure falls back to a page.
            reason = _describe(exc)
            logger.warning("task %s: rendering the Evidently report failed: %s", task, reason)
            failures.append(f"rendering the Evidently report: {reason}")
    if page is None:
        page = _fallback_page(task, version, failures)
    _write_text(path, page, what=f"the report of task {task!r}")
    return failures


def _describe(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _ranks(current: pd.DataFrame) -> pd.Series:
    """1-based rank of each row in its request by descending score, ties broken by row order."""
    scores = pd.to_numeric(current["score"], errors="raise").astype(float)
    ranks = scores.groupby(current["request_id"].astype(str).to_numpy(), sort=False).rank(
        method="first", ascending=False
    )
    return ranks.astype(int)


def _ranked_recsys_dataset(current: pd.DataFrame) -> tuple[Any, int]:
    """Evidently's recsys dataset of the scored rows, as ranks (ties broken by row order), on
    requests with a positive label only; and the longest list. Raises ReportError if no request
    has a positive label."""
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
    longest = int(frame.groupby("request_id").size().max())
    return Dataset.from_pandas(frame, data_definition=definition), longest


def _ranking_part(current: pd.DataFrame, k: int) -> _Part:
    title = "Ranking quality of the unified model"
    try:
        from evidently import Report
        from evidently.legacy.renderers.html_widgets import text_widget
        from evidently.metrics import MAP, MRR, NDCG, HitRate

        try:
            dataset, longest = _ranked_recsys_dataset(current)
        except ReportError as exc:
            return _Part(title, error=str(exc))
        k_used = min(k, longest)
        report = Report([NDCG(k=k_used), MAP(k=k_used), MRR(k=k_used), HitRate(k=k_used)])
        snapshot = report.run(dataset, None)
        note = (
            f"Evidently's recsys metrics at k = {k_used} on the test rows; a request is Evidently's "
            "*user*. NDCG uses the graded label (0/1/2) as a linear gain; MAP, MRR and HitRate "
            "count label > 0 as relevant. Requests without a positive label are excluded. These "
            "definitions differ slightly from the index page, whose numbers are the reference."
        )
        if k_used < k:
            note += f" k is capped at {k_used}, the longest list of a request (asked: {k})."
        return _Part(title, widgets=[text_widget(text=note), *_snapshot_widgets(snapshot)])
    except Exception as exc:  # Evidently is third-party: report the failure, keep going.
        return _Part(title, error=_describe(exc))


# Evidently 0.7 returns each recsys metric as a curve over ranks, past k too, keyed from 1 for MAP
# and HitRate but from 2 for NDCG and MRR. This is where "the value at k" is read; a test checks
# it against ranker.evaluate on a hand-made example with relevant items beyond k.
_EVIDENTLY_RANK_OFFSET = {"NDCG": 1, "MAP": 0, "MRR": 1, "HitRate": 0}


def evidently_ranking_metrics(current: pd.DataFrame, k: int) -> dict[str, float]:
    """Evidently's NDCG, MAP, MRR and HitRate at position ``k`` of the scored rows (columns
    request_id, item_id, label, score), on requests with at least one positive label."""
    from evidently import Report
    from evidently.metrics import MAP, MRR, NDCG, HitRate

    if k < 1:
        raise ReportError(f"k must be >= 1, got {k}")
    dataset, _ = _ranked_recsys_dataset(current)
    with _quiet():
        snapshot = Report([NDCG(k=k), MAP(k=k), MRR(k=k), HitRate(k=k)]).run(dataset, None)
    values: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        name = str(metric.get("metric_name") or metric.get("metric_id", "")).split("(")[0]
        if name not in _EVIDENTLY_RANK_OFFSET:
            continue
        curve = metric["value"]
        wanted = k + _EVIDENTLY_RANK_OFFSET[name]
        positions = [i for i, r in curve["rank"].items() if int(r) == wanted]
        if not positions:
            raise ReportError(f"Evidently's {name} has no value at rank {k} (list shorter than k?)")
        values[name.lower()] = float(curve["value"][positions[0]])
    return values


def _score_part(current: pd.DataFrame, k: int) -> _Part:
    title = "Score distribution of the unified model on test"
    try:
        from evidently import DataDefinition, Dataset, Recsys, Report
        from evidently.metrics import ScoreDistribution
        from evidently.presets import ValueStats

        frame = pd.DataFrame(
            {
                "request_id": current["request_id"].astype(str).to_numpy(),
                "item_id": current["item_id"].astype(str).to_numpy(),
                "label": current["label"].astype(int).to_numpy(),
                "score": pd.to_numeric(current["score"], errors="raise").astype(float).to_numpy(),
            }
        )
        if frame.empty:
            return _Part(title, error="the task has no test rows")
        definition = DataDefinition(
            numerical_columns=["label", "score"],
            categorical_columns=["request_id", "item_id"],
            ranking=[
                Recsys(
                    user_id="request_id",
                    item_id="item_id",
                    target="label",
                    prediction="score",
                    recommendations_type="score",
                )
            ],
        )
        dataset = Dataset.from_pandas(frame, data_definition=definition)
        snapshot = Report([ScoreDistribution(k=k), ValueStats(column="score")]).run(dataset, None)
        return _Part(title, widgets=_snapshot_widgets(snapshot))
    except Exception as exc:  # Evidently is third-party: report the failure, keep going.
        return _Part(title, error=_describe(exc))


def _drift_part(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric_features: Sequence[str],
    categorical_features: Sequence[str],
) -> _Part:
    title = "Feature drift between train (reference) and test (current)"
    try:
        from evidently import DataDefinition, Dataset, Report
        from evidently.legacy.renderers.html_widgets import text_widget
        from evidently.presets import DataDriftPreset

        if reference.empty:
            return _Part(title, error="the reference (train) rows are empty")
        if current.empty:
            return _Part(title, error="the current (test) rows are empty")
        declared = list(dict.fromkeys([*numeric_features, *categorical_features]))
        absent = [c for c in declared if c not in reference.columns or c not in current.columns]
        empty = [
            c
            for c in declared
            if c not in absent and (reference[c].isna().all() or current[c].isna().all())
        ]
        skipped = set(absent) | set(empty)
        numeric = [c for c in dict.fromkeys(numeric_features) if c not in skipped]
        categorical = [
            c for c in dict.fromkeys(categorical_features) if c not in skipped and c not in numeric
        ]
        columns = [*numeric, *categorical]
        if not columns:
            return _Part(title, error="no feature column is present and non-empty in both splits")

        def dataset(frame: pd.DataFrame) -> Any:
            definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
            return Dataset.from_pandas(frame[columns].copy(), data_definition=definition)

        snapshot = Report([DataDriftPreset(columns=columns)]).run(
            dataset(current), dataset(reference)
        )
        widgets = _snapshot_widgets(snapshot)
        notes = []
        if absent:
            notes.append("missing from one split: " + ", ".join(_md(c) for c in absent))
        if empty:
            notes.append("empty in one split: " + ", ".join(_md(c) for c in empty))
        if notes:
            widgets.insert(0, text_widget(text="Not compared: " + "; ".join(notes) + "."))
        return _Part(title, widgets=widgets)
    except Exception as exc:  # Evidently is third-party: report the failure, keep going.
        return _Part(title, error=_describe(exc))


def _snapshot_widgets(snapshot: Any) -> list[Any]:
    model = snapshot.to_snapshot_model()
    return [*model.widgets, *model.tests_widgets]


def _md(text: str) -> str:
    """Escape text for Evidently's markdown text widget."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _task_summary(version: str, evaluation: TaskEvaluation, k: int) -> str:
    lines = [
        f"**Task {_md(evaluation.task)}**, model version {_md(version)}: "
        f"{evaluation.n_requests} test requests with a positive label, "
        f"{evaluation.n_rows} test rows. K = {k}.",
    ]
    unified = evaluation.models.get(REFERENCE_KIND)
    if unified is not None:
        cells = ", ".join(
            f"{_md(m)} {_md(_format_interval(unified.metrics[m]))}"
            for m in METRICS
            if m in unified.metrics
        )
        lines.append(f"Reference metrics of the unified model (index page): {cells}.")
    return "\n\n".join(lines)


def _render_evidently(summary: str, parts: Sequence[_Part]) -> str:
    from evidently.core.metric_types import render_widgets
    from evidently.legacy.renderers.html_widgets import group_widget, text_widget

    widgets: list[Any] = [text_widget(text=summary)]
    for part in parts:
        if part.error is None:
            widgets.append(group_widget(title=part.title, widgets=part.widgets))
        else:
            text = f"**{_md(part.title)}** could not be computed: {_md(part.error)}"
            widgets.append(text_widget(text=text))
    return _harden_data_block(render_widgets(widgets, as_iframe=False))


def _titled(page: str, title: str) -> str:
    """Evidently's page with a ``<title>`` and, first in its body, a link back to the index."""
    back = (
        '<p style="font-family: sans-serif; margin: .5rem 1rem">'
        '<a href="index.html">&larr; the verdict and every canvas (index.html)</a></p>'
    )
    head, sep, rest = page.partition("<head>")
    if sep:
        page = f"{head}<head><title>{_esc(title)}</title>{rest}"
    start = page.find("<body")
    if start >= 0:
        end = page.find(">", start) + 1
        page = page[:end] + back + page[end:]
    return page


def _harden_data_block(page: str) -> str:
    """Escape ``<`` in the JSON data that Evidently inlines in a ``<script>`` of the head.

    Evidently writes the widgets' JSON (column names, titles) raw into a script element, so a
    name containing ``</script>`` would end it early. In JSON ``<`` only occurs inside strings,
    where ``\\u003c`` means the same character.
    """
    head, sep, body = page.partition("</head>")
    start = head.find("<script>")
    end = head.rfind("</script>")
    if not sep or start < 0 or end <= start:
        logger.debug("Evidently page layout not recognised; data block left as is")
        return page
    start += len("<script>")
    data = head[start:end].replace("<", "\\u003c")
    return head[:start] + data + head[end:] + sep + body


def _fallback_page(task: str, version: str, failures: Sequence[str]) -> str:
    items = "\n".join(f"<li>{html.escape(f)}</li>" for f in failures) or "<li>unknown</li>"
    title = f"Task {task}: report not available"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>Model version {html.escape(version)}. Evidently could not build this task's report:</p>
<ul>
{items}
</ul>
<p>The metrics on the <a href="index.html">index page</a> do not depend on Evidently and are
unaffected.</p>
</body>
</html>
"""


# --------------------------------------------------------------------------------------------
# Index page (plain HTML + inline SVG)
# --------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1e293b;
  margin: 2rem auto; max-width: 1100px; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #e2e8f0; }
h3 { font-size: 1.05rem; margin-top: 1.5rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .88rem; }
th, td { border: 1px solid #e2e8f0; padding: .3rem .55rem; text-align: right;
  font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #f8fafc; }
td.name, th.name { text-align: left; }
.pos { background: #dcfce7; color: #166534; }
.neg { background: #fee2e2; color: #991b1b; }
.zero { background: #f1f5f9; color: #475569; }
.muted { color: #64748b; font-size: .9rem; }
.skipped { color: #92400e; }
.warn { color: #b45309; font-size: .9rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; }
svg text { font-family: inherit; }
ul.verdict { padding-left: 1.2rem; }
ul.verdict li.better { color: #166534; }
ul.verdict li.worse { color: #991b1b; }
p.flag { background: #fef3c7; color: #92400e; padding: .4rem .6rem; }
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _href(file_name: str) -> str:
    return _esc(urllib.parse.quote(file_name))


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
    """The pooled ``all`` evaluation first, then the tasks in the given order."""
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
) -> str:
    ordered = _ordered_evaluations(evaluations)
    kinds = _model_kinds(ordered, model_descriptions)
    colours = {kind: _PALETTE[i % len(_PALETTE)] for i, kind in enumerate(kinds)}
    evaluated = [e for e in ordered if e.skipped is None and e.models]

    body: list[str] = [f"<h1>unirank report — model version {_esc(version)}</h1>"]
    if evaluated:
        body.append(_verdict_section(evaluated, kinds, colours))
    body += [_intro(kinds, model_descriptions), _contents(ordered, file_names)]
    if evaluated:
        body.append(f"<h2>{_esc(HEADLINE_METRIC)} per canvas and model</h2>")
        body.append(_headline_svg(evaluated, kinds, colours))
    body.append("<h2>Metrics per canvas</h2>")
    body.append(
        '<p class="muted">Cells: mean over test requests [95% bootstrap interval]. '
        f"Δ columns: paired difference unified &minus; model on {_esc(HEADLINE_METRIC)}, "
        '<span class="pos">green</span>: interval above 0 (unified better), '
        '<span class="neg">red</span>: below 0 (unified worse), '
        '<span class="zero">grey</span>: contains 0 (no clear difference).</p>'
    )
    for evaluation in ordered:
        body.append(_task_section(evaluation, kinds, file_names, failures))
    if feature_importance:
        body.append(_importance_section(feature_importance, [e.task for e in ordered]))
    body.append(_footer())
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>unirank report {_esc(version)}</title>\n<style>{_CSS}</style>\n</head>\n"
        "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def _verdict_section(
    evaluated: Sequence[TaskEvaluation], kinds: Sequence[str], colours: Mapping[str, str]
) -> str:
    """The first screen: one sentence per canvas against a model of its own (or the first
    comparison there is), the pooled-vs-canvases flags, and a forest plot of every paired
    difference (templates/report/verdict.html.j2)."""
    import jinja2

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
    flags = [str(d) for d in verdict.disagreements(evaluated, metric, others)]
    template = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates" / "report"),
        autoescape=True,
        keep_trailing_newline=True,
    ).get_template("verdict.html.j2")
    return template.render(
        metric=metric,
        sentences=sentences,
        disagreements=flags,
        plot=_forest_plot(evaluated, others, colours, metric),
    )


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


def _intro(kinds: Sequence[str], model_descriptions: Mapping[str, str]) -> str:
    rows = "\n".join(
        f"<dt>{_esc(kind)}</dt><dd>{_esc(model_descriptions.get(kind, 'no description given'))}</dd>"
        for kind in kinds
    )
    return (
        "<p>Every model is scored on the <strong>test split</strong>. Metrics are computed "
        "<strong>per request</strong> (one ranked list) and <strong>averaged over requests</strong>, "
        "with <strong>95% bootstrap intervals</strong> (requests resampled); requests without a "
        "positive label are excluded, since NDCG, MAP and MRR are undefined for them. All models "
        "of a task are compared on exactly the same requests.</p>\n"
        f"<h2>Model kinds</h2>\n<dl>\n{rows}\n</dl>"
    )


def _contents(ordered: Sequence[TaskEvaluation], file_names: Mapping[str, str]) -> str:
    items = []
    for evaluation in ordered:
        task = evaluation.task
        entry = f'<a href="#{_anchor(task)}">{_esc(_task_label(task))}</a>'
        if task in file_names:
            entry += f' — <a href="{_href(file_names[task])}">Evidently report</a>'
        if evaluation.skipped is not None:
            entry += f' — <span class="skipped">not evaluated: {_esc(evaluation.skipped)}</span>'
        items.append(f"<li>{entry}</li>")
    return "<h2>Tasks</h2>\n<ul>\n" + "\n".join(items) + "\n</ul>"


def _task_section(
    evaluation: TaskEvaluation,
    kinds: Sequence[str],
    file_names: Mapping[str, str],
    failures: Mapping[str, Sequence[str]],
) -> str:
    task = evaluation.task
    out = [f'<section id="{_anchor(task)}">', f"<h3>{_esc(_task_label(task))}</h3>"]
    if evaluation.skipped is not None:
        out.append(f'<p class="skipped">not evaluated: {_esc(evaluation.skipped)}</p>')
        out.append("</section>")
        return "\n".join(out)
    meta = (
        f"n_requests = {evaluation.n_requests} test requests with a positive label "
        f"(of {evaluation.n_rows} test rows)"
    )
    if task in file_names:
        meta += f' · <a href="{_href(file_names[task])}">Evidently report for {_esc(task)}</a>'
    out.append(f'<p class="muted">{meta}</p>')
    for failure in failures.get(task, ()):
        out.append(f'<p class="warn">Evidently report incomplete — {_esc(failure)}</p>')
    present = [kind for kind in kinds if kind in evaluation.models]
    if not present:
        out.append('<p class="muted">no model scores</p></section>')
        return "\n".join(out)
    others = [kind for kind in present if kind != REFERENCE_KIND]
    has_reference = REFERENCE_KIND in evaluation.models
    header = ['<th class="name">model</th>', *(f"<th>{_esc(m)}</th>" for m in METRICS)]
    if has_reference and others:
        header.append(f"<th>Δ {_esc(HEADLINE_METRIC)} (unified &minus; model)</th>")
    rows = ["<tr>" + "".join(header) + "</tr>"]
    for kind in present:
        scores = evaluation.models[kind]
        cells = [f'<td class="name">{_esc(kind)}</td>']
        for metric in METRICS:
            interval = scores.metrics.get(metric)
            text = _format_interval(interval) if interval is not None else "n/a"
            cells.append(f"<td>{_esc(text)}</td>")
        if has_reference and others:
            cells.append(_delta_cell(evaluation, kind))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    out.append("<table>\n" + "\n".join(rows) + "\n</table>")
    out.append("</section>")
    return "\n".join(out)


def _delta_cell(evaluation: TaskEvaluation, kind: str) -> str:
    if kind == REFERENCE_KIND:
        return '<td class="zero">reference</td>'
    delta = evaluation.deltas.get(kind, {}).get(HEADLINE_METRIC)
    if delta is None:
        return '<td class="zero">n/a</td>'
    css = _delta_class(delta)
    verdict = {
        "pos": "unified is better",
        "neg": "unified is worse",
        "zero": "no clear difference",
    }[css]
    text = _format_interval(delta)
    return f'<td class="{css}" title="{_esc(verdict)}">{_esc(text)}</td>'


def _headline_svg(
    evaluated: Sequence[TaskEvaluation], kinds: Sequence[str], colours: Mapping[str, str]
) -> str:
    """Grouped horizontal bars of the headline metric with interval whiskers, as inline SVG."""
    label_w, plot_w, value_w = 170, 520, 70
    bar_h, bar_gap, group_gap, top, axis_h = 13, 3, 14, 34, 28
    width = label_w + plot_w + value_w
    highs = [
        iv.high
        for e in evaluated
        for ms in e.models.values()
        if (iv := ms.metrics.get(HEADLINE_METRIC)) is not None and _finite(iv)
    ]
    x_max = max(1.0, math.ceil(max(highs, default=1.0) * 10) / 10)

    def x(value: float) -> float:
        return label_w + plot_w * min(max(value, 0.0), x_max) / x_max

    parts: list[str] = []
    # Legend.
    lx = label_w
    for kind in kinds:
        parts.append(
            f'<rect x="{lx}" y="8" width="12" height="12" fill="{colours[kind]}"/>'
            f'<text x="{lx + 16}" y="18" font-size="12">{_esc(_short(kind, 18))}</text>'
        )
        lx += 24 + 7 * min(len(kind), 18)
    y = top
    for evaluation in evaluated:
        present = [kind for kind in kinds if kind in evaluation.models]
        group_h = len(present) * (bar_h + bar_gap) - bar_gap
        label = _task_label(evaluation.task)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + group_h / 2 + 4:.1f}" font-size="12" '
            f'text-anchor="end"><title>{_esc(label)}</title>{_esc(_short(label, 24))}</text>'
        )
        for kind in present:
            interval = evaluation.models[kind].metrics.get(HEADLINE_METRIC)
            cy = y + bar_h / 2
            if interval is None or not math.isfinite(interval.value):
                parts.append(
                    f'<text x="{label_w + 4}" y="{cy + 4:.1f}" font-size="11" '
                    f'fill="#64748b">{_esc(kind)}: n/a</text>'
                )
            else:
                tip = f"{label} / {kind}: {HEADLINE_METRIC} {_format_interval(interval)}"
                parts.append(
                    f'<rect x="{label_w}" y="{y}" width="{x(interval.value) - label_w:.1f}" '
                    f'height="{bar_h}" fill="{colours[kind]}" fill-opacity="0.85">'
                    f"<title>{_esc(tip)}</title></rect>"
                )
                end = interval.value
                if _finite(interval):
                    x0, x1 = x(interval.low), x(interval.high)
                    parts.append(
                        f'<path d="M{x0:.1f},{cy:.1f}H{x1:.1f}M{x0:.1f},{cy - 4:.1f}V{cy + 4:.1f}'
                        f'M{x1:.1f},{cy - 4:.1f}V{cy + 4:.1f}" stroke="#0f172a" '
                        'stroke-width="1.2" fill="none"/>'
                    )
                    end = interval.high
                parts.append(
                    f'<text x="{x(end) + 5:.1f}" y="{cy + 4:.1f}" font-size="11" '
                    f'fill="#334155">{interval.value:.3f}</text>'
                )
            y += bar_h + bar_gap
        y += group_gap - bar_gap
    # Axis with grid lines.
    axis_y = y
    ticks = np.linspace(0.0, x_max, round(x_max / 0.2) + 1)
    for tick in ticks:
        tx = x(float(tick))
        parts.append(
            f'<line x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{axis_y}" stroke="#e2e8f0"/>'
            f'<text x="{tx:.1f}" y="{axis_y + 14}" font-size="11" text-anchor="middle" '
            f'fill="#475569">{tick:.1f}</text>'
        )
    parts.append(
        f'<line x1="{label_w}" y1="{top - 4}" x2="{label_w}" y2="{axis_y}" stroke="#94a3b8"/>'
    )
    height = axis_y + axis_h
    title = f"{HEADLINE_METRIC} per canvas and model kind, with 95% bootstrap intervals"
    # Grid lines go first so bars draw over them.
    grid = [p for p in parts if p.startswith("<line")]
    rest = [p for p in parts if not p.startswith("<line")]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}">'
        f"<title>{_esc(title)}</title>" + "".join(grid) + "".join(rest) + "</svg>"
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _importance_section(
    feature_importance: Mapping[str, Mapping[str, float]], task_order: Sequence[str]
) -> str:
    """Features x tasks, each task normalised to sum to 100, sorted by the mean across tasks."""
    tasks = [t for t in task_order if t in feature_importance]
    tasks += [t for t in feature_importance if t not in tasks]
    normalised: dict[str, dict[str, float]] = {}
    for task in tasks:
        values = {
            f: float(v) for f, v in feature_importance[task].items() if math.isfinite(float(v))
        }
        # CatBoost's default importances are non-negative; the absolute sum keeps a negative
        # importance (LossFunctionChange) from inflating the others.
        total = sum(abs(v) for v in values.values())
        normalised[task] = {f: 100.0 * v / total for f, v in values.items()} if total > 0 else {}
    features = list(dict.fromkeys(f for t in tasks for f in feature_importance[t]))
    means = {f: sum(normalised[t].get(f, 0.0) for t in tasks) / len(tasks) for f in features}
    features.sort(key=lambda f: (-means[f], f))
    top = max((abs(v) for n in normalised.values() for v in n.values()), default=0.0)

    def cell(value: float | None) -> str:
        if value is None:
            return '<td class="muted">—</td>'
        alpha = 0.55 * abs(value) / top if top > 0 else 0.0
        return f'<td style="background: rgba(37, 99, 235, {alpha:.2f})">{value:.1f}</td>'

    header = (
        '<tr><th class="name">feature</th>'
        + "".join(f"<th>{_esc(_task_label(t))}</th>" for t in tasks)
        + "<th>mean</th></tr>"
    )
    rows = [header]
    for feature in features:
        cells = [f'<td class="name">{_esc(feature)}</td>']
        cells += [cell(normalised[t].get(feature)) for t in tasks]
        cells.append(f"<td>{means[feature]:.1f}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        "<h2>Feature importance of the unified model per canvas</h2>\n"
        '<p class="muted">Importance of each feature when the unified model ranks the test rows '
        "of a canvas, normalised per canvas to sum to 100; rows sorted by the mean across canvases. "
        "Differences between columns show how the one model uses features differently per "
        "canvas.</p>\n<table>\n" + "\n".join(rows) + "\n</table>"
    )


def _footer() -> str:
    try:
        evidently_version = importlib.metadata.version("evidently")
    except importlib.metadata.PackageNotFoundError:
        evidently_version = "unknown"
    return (
        f'<p class="muted">Task reports made with Evidently {_esc(evidently_version)}. '
        "This page needs no network access.</p>"
    )
