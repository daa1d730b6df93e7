"""Train/serve skew, online edition: the online path against the batch one on served contexts.

For cached contexts of every canvas, :func:`skew` computes what online scoring computes for a
context the cache does not hold (candidates, every feature, the current model's scores) and
compares it with the warehouse's ``serving_candidates``, which dbt computed with the SQL the model
was trained on. ``unirank-cli check-online`` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ranker.config import Settings
from ranker.errors import UnirankError
from ranker.online import OnlineScorer


@dataclass(frozen=True)
class Mismatch:
    canvas: str
    context_key: str
    item_id: str | None  # None: the candidate lists differ
    column: str  # a feature, `score`, or `candidates`
    batch: Any
    online: Any

    def __str__(self) -> str:
        where = f"canvas {self.canvas!r}, context {self.context_key!r}"
        if self.item_id is not None:
            where += f", item {self.item_id!r}"
        return f"{where}: {self.column} is {self.batch!r} in batch, {self.online!r} online"


@dataclass(frozen=True)
class SkewReport:
    contexts: int
    candidates: int
    mismatches: tuple[Mismatch, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches


def skew(
    settings: Settings, contexts_per_canvas: int = 20, seed: int = 0, tolerance: float = 1e-9
) -> SkewReport:
    """Score ``contexts_per_canvas`` served contexts of every canvas both ways - the batch
    features in the warehouse's serving_candidates, and the online path (candidates, features,
    scores with the current model) - and list every difference. The cache must have been
    scored from the same build (``unirank-cli score`` after the last build)."""
    import duckdb
    import numpy as np

    from ranker.cache_reader import current_reader

    scorer = OnlineScorer(settings)
    _, model, features, cat_indices = scorer.model()
    reader = current_reader(settings)
    tables = scorer.tables(reader, features)
    registry = settings.registry
    mismatches: list[Mismatch] = []
    contexts = candidates = 0
    warehouse = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        with reader.lock:
            scored_build = reader.connection.execute(
                "select dbt_invocation_id from cache_info"
            ).fetchall()[0][0]
        built = warehouse.execute(
            "select max(dbt_invocation_id) from serving_candidates"
        ).fetchall()[0][0]
        if scored_build != built:
            raise UnirankError(
                f"the current cache {reader.path.name} was scored from another build of the "
                "warehouse than the one there now: run `unirank-cli score`, then check again"
            )
        for canvas in registry.canvases:
            if canvas.serving is None:
                continue
            keys = [
                str(r[0])
                for r in warehouse.execute(
                    "select context_key from (select distinct context_key from serving_candidates "
                    "where task_type = ?) order by hash(context_key || ?::varchar) limit ?",
                    [canvas.name, str(seed), contexts_per_canvas],
                ).fetchall()
            ]
            for key in keys:
                frame = warehouse.execute(
                    "select * from serving_candidates where task_type = ? and context_key = ? "
                    "order by candidate_rank",
                    [canvas.name, key],
                ).df()
                contexts += 1
                candidates += len(frame)
                context = {c: str(frame.iloc[0][c]) for c in canvas.context_columns}
                full = scorer.full_context(tables, canvas, context)
                online_found = scorer.candidates(tables, canvas, full)
                batch_found = list(zip(frame["item_id"], frame["candidate_source"], strict=True))
                if online_found != batch_found:
                    mismatches.append(
                        Mismatch(canvas.name, key, None, "candidates", batch_found, online_found)
                    )
                items = [str(i) for i in frame["item_id"]]
                rows = scorer.features(tables, canvas, full, items, features)
                for position, name in enumerate(features):
                    if name not in frame.columns:
                        continue
                    for item, batch_value, row in zip(items, frame[name], rows, strict=True):
                        online_value = row[position]
                        if not _same(batch_value, online_value, tolerance):
                            mismatches.append(
                                Mismatch(canvas.name, key, item, name, batch_value, online_value)
                            )
                import pandas as pd
                from catboost import Pool

                online_frame = pd.DataFrame(rows, columns=features)
                batch_frame = frame[features].copy()
                for position, name in enumerate(features):
                    if position not in cat_indices:
                        online_frame[name] = online_frame[name].astype("float32")
                        batch_frame[name] = batch_frame[name].astype("float32")
                online_scores = model.predict(Pool(online_frame, cat_features=cat_indices))
                batch_scores = model.predict(Pool(batch_frame, cat_features=cat_indices))
                for item, b, o in zip(items, batch_scores, online_scores, strict=True):
                    if not np.isclose(b, o, rtol=0, atol=1e-9):
                        mismatches.append(
                            Mismatch(canvas.name, key, item, "score", float(b), float(o))
                        )
    finally:
        warehouse.close()
    return SkewReport(contexts, candidates, tuple(mismatches))


def _same(batch: Any, online: Any, tolerance: float) -> bool:
    if isinstance(batch, float) or isinstance(online, float):
        try:
            return abs(float(batch) - float(online)) <= tolerance
        except (TypeError, ValueError):
            return False
    if hasattr(batch, "item"):
        batch = batch.item()
    return bool(batch == online) or (str(batch) == str(online))
