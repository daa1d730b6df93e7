"""Batch scoring: the current model over ``serving_candidates`` -> the recommendations cache.

The cache is its own DuckDB file, one per generation, under ``<warehouse dir>/cache/``:

1. write ``recommendations-<stamp>-<pid>.duckdb.partial`` (scores streamed in Arrow batches, so
   memory is bounded by the batch size; top K per context in SQL; cold contexts filled from the
   canvas's fallback chain; fallback tables and metadata copied in);
2. checkpoint, close, rename it to ``recommendations-<stamp>.duckdb``;
3. point ``current.duckdb`` at it by replacing a symlink (``os.replace``: atomic).

Readers open ``current.duckdb`` read-only and get either the previous complete generation or the
new one, never a partial one; the warehouse is only read, so ``dbt build`` and ``train`` never
block them. A failed or killed run leaves the previous cache current; its partial file is removed
by the next run. Old generations beyond ``keep`` are deleted (open readers keep their file).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from catboost import CatBoostRanker, Pool

from ranker import artifacts
from ranker.config import Settings
from ranker.dataset import DatasetError
from ranker.serve import CURRENT_LINK, cache_dir, fallback_key_kind
from ranker.warehouse import connect, engine, relation_exists

logger = logging.getLogger(__name__)

CANDIDATES = "serving_candidates"
ScoreProgress = Callable[[int, int], None]  # (rows scored, total rows)


class ScoringError(RuntimeError):
    """Scoring could not publish a cache; the previous one stays current."""


@dataclass(frozen=True)
class ScoreResult:
    cache_path: Path
    generation: Path
    model_version: str
    dbt_invocation_id: str | None
    generated_at: str
    candidate_rows: int
    contexts: int
    cache_rows: int
    fallback_rows: int
    seconds: float
    predict_seconds: float


def load_model(model: artifacts.ModelVersion) -> CatBoostRanker:
    ranker = CatBoostRanker()
    ranker.load_model(str(model.model_file))
    return ranker


def score_candidates(
    settings: Settings,
    batch_rows: int = 250_000,
    threads: int = -1,
    keep: int = 3,
    on_progress: ScoreProgress | None = None,
) -> ScoreResult:
    """Score every serving candidate with the current model and publish a new cache generation."""
    if engine(settings) == "spark":
        raise ScoringError(
            "the settings' target is a Spark target: score it with "
            "ranker.score_spark.score_candidates_spark (`unirank-cli score --target spark`)"
        )
    started = time.perf_counter()
    model_version = artifacts.current_version(artifacts.models_dir(settings.artifacts_dir))
    model = load_model(model_version)
    features: list[str] = list(model_version.metadata["features"])
    categorical = set(model_version.metadata["categorical_features"])
    canvases = [c for c in settings.registry.canvases if c.serving is not None]
    if not canvases:
        raise ScoringError("no canvas in the registry has a `serving` entry; nothing to cache")

    directory = cache_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(directory)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    partial = directory / f"recommendations-{stamp}-{os.getpid()}.duckdb.partial"
    final = directory / f"recommendations-{stamp}.duckdb"
    generated_at = datetime.now(timezone.utc).isoformat(timespec="seconds")

    try:
        with connect(settings.duckdb_path) as source:
            for relation in (CANDIDATES, "serving_fallbacks", "item_catalogue"):
                if not relation_exists(source, relation):
                    raise DatasetError(
                        f"table {relation} is not in {settings.duckdb_path}; run `unirank-cli build` first"
                    )
            present = {
                r[0]
                for r in source.execute(
                    "select column_name from information_schema.columns where table_name = ?",
                    [CANDIDATES],
                ).fetchall()
            }
            missing = [f for f in features if f not in present]
            if missing:
                raise ScoringError(
                    f"{CANDIDATES} lacks feature(s) {missing} that model {model_version.version} uses; "
                    "rebuild with `unirank-cli build` or retrain"
                )
            total, invocation_id, served_as_of = source.execute(
                "select count(*), max(dbt_invocation_id), cast(max(served_as_of) as varchar) "
                f"from {CANDIDATES}"
            ).fetchall()[0]
            logger.info("opened and checked in %.2fs", time.perf_counter() - started)
            source.execute("set enable_progress_bar = false")
            with duckdb.connect(str(partial)) as cache:
                cache.execute("set enable_progress_bar = false")
                predict_seconds = _write_scores(
                    source,
                    cache,
                    model,
                    features,
                    categorical,
                    batch_rows,
                    threads,
                    total,
                    on_progress,
                    {c.name: c.serving.k for c in canvases if c.serving is not None},
                )
                logger.info("predicted in %.2fs", time.perf_counter() - started)
                for relation in ("serving_fallbacks", "item_catalogue"):
                    cache.register(
                        "incoming", source.sql(f"select * from {relation}").to_arrow_table()
                    )
                    cache.execute(f"create table {relation} as select * from incoming")
                    cache.unregister("incoming")
                logger.info("scored in %.2fs", time.perf_counter() - started)
                cache_rows, fallback_rows, contexts = _write_recommendations(
                    cache, canvases, model_version.version, generated_at
                )
                cache.execute(
                    "create table cache_info as select ?::varchar as model_version, ?::varchar as dbt_invocation_id, "
                    "?::timestamp as served_as_of, ?::timestamptz as generated_at, ?::bigint as candidate_rows, "
                    "?::bigint as contexts, ?::bigint as cache_rows",
                    [
                        model_version.version,
                        invocation_id,
                        served_as_of,
                        generated_at,
                        total,
                        contexts,
                        cache_rows,
                    ],
                )
                logger.info("ranked and filled in %.2fs", time.perf_counter() - started)
                cache.execute("drop table scores")
                cache.execute("checkpoint")
                logger.info("checkpointed in %.2fs", time.perf_counter() - started)
        logger.info("closed in %.2fs", time.perf_counter() - started)
        partial.rename(final)
        _point_current_at(directory, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        Path(str(partial) + ".wal").unlink(missing_ok=True)
        raise
    _remove_old_generations(directory, keep)
    return ScoreResult(
        cache_path=directory / CURRENT_LINK,
        generation=final,
        model_version=model_version.version,
        dbt_invocation_id=invocation_id,
        generated_at=generated_at,
        candidate_rows=total,
        contexts=contexts,
        cache_rows=cache_rows,
        fallback_rows=fallback_rows,
        seconds=time.perf_counter() - started,
        predict_seconds=predict_seconds,
    )


def _write_scores(
    source: duckdb.DuckDBPyConnection,
    cache: duckdb.DuckDBPyConnection,
    model: CatBoostRanker,
    features: list[str],
    categorical: set[str],
    batch_rows: int,
    threads: int,
    total: int,
    on_progress: ScoreProgress | None,
    k_of: dict[str, int],
) -> float:
    """Stream candidates in Arrow batches, predict, and append each batch's top K per context
    (task, context, item, score). The global top K of a context is within the union of its
    per-batch top Ks, so the final ranking only sees about K rows per context and batch."""
    cache.execute(
        "create table scores (task_type varchar, context_key varchar, item_id varchar, score double)"
    )
    wanted = dict.fromkeys(
        ["request_id", "task_type", "context_key", "item_id", *features]
    )  # task_type is both
    columns = ", ".join(f'"{c}"' for c in wanted)
    reader = source.sql(f"select {columns} from {CANDIDATES}").to_arrow_reader(batch_rows)
    cat_indices = [i for i, f in enumerate(features) if f in categorical]
    done, predict_seconds = 0, 0.0
    for batch in reader:
        # Strings as pandas Categoricals: CatBoost hashes category values either way (identical
        # predictions), but building its Pool from Python str objects costs 3x the predict itself.
        frame = batch.select(features).to_pandas(strings_to_categorical=True)
        started = time.perf_counter()
        scores = np.asarray(
            model.predict(Pool(frame, cat_features=cat_indices), thread_count=threads)
        )
        predict_seconds += time.perf_counter() - started
        keep = _top_k_rows(batch, scores, k_of)
        scored = pa.table(
            {
                "task_type": batch.column("task_type").take(keep),
                "context_key": batch.column("context_key").take(keep),
                "item_id": batch.column("item_id").take(keep),
                "score": pa.array(scores[keep], pa.float64()),
            }
        )
        cache.register("scored_batch", scored)
        cache.execute("insert into scores select * from scored_batch")
        cache.unregister("scored_batch")
        done += batch.num_rows
        if on_progress is not None:
            on_progress(done, total)
    return predict_seconds


def _top_k_rows(batch: pa.RecordBatch, scores: np.ndarray, k_of: dict[str, int]) -> np.ndarray:
    """Indices of the rows ranked within the top K of their context in this batch. A context's
    rows share one probe id (request_id), dictionary-encoded to integers in Arrow."""
    contexts = pc.dictionary_encode(batch.column("request_id")).indices.to_numpy()
    tasks = pc.dictionary_encode(batch.column("task_type"))
    k_per_task = np.array([k_of.get(t, 0) for t in tasks.dictionary.to_pylist()])
    k = k_per_task[tasks.indices.to_numpy()]
    order = np.lexsort((-scores, contexts))
    sorted_contexts = contexts[order]
    starts = np.flatnonzero(np.r_[True, sorted_contexts[1:] != sorted_contexts[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return np.sort(order[rank < k[order]])


def _write_recommendations(
    cache: duckdb.DuckDBPyConnection, canvases: list[Any], model_version: str, generated_at: str
) -> tuple[int, int, int]:
    """Top K per context from the model; contexts with fewer than K scored items are filled
    from the canvas's fallback chain (keys resolved as for lookups, ranker.serve); one row per
    (task, context, rank)."""
    k_values = " union all ".join(
        f"select '{c.name}' as task_type, {c.serving.k} as k" for c in canvases
    )
    fallback_parts: list[str] = []
    params: list[Any] = []
    for canvas in canvases:
        for tier, source in enumerate(canvas.serving.fallbacks, start=1):
            kind = fallback_key_kind(source, canvas.serving.key)
            if kind is None:
                continue
            key_expr = {
                "task": "cold.task_type",
                "context": "cold.context_key",
                "item_category": "catalogue.category",
            }[kind]
            fallback_parts.append(
                "select cold.task_type, cold.context_key, f.item_id, null::double as score, "
                f"?::varchar as source, {tier} as tier, f.source_rank as r "
                "from cold left join item_catalogue as catalogue on catalogue.item_id = cold.context_key "
                "inner join serving_fallbacks as f on f.source = ?::varchar "
                f"and f.retrieval_key = {key_expr} and f.source_rank <= cold.k * 2 + 1 "
                "where cold.task_type = ?::varchar"
            )
            params += [source, source, canvas.name]
    fallbacks = (
        (" union all ".join(fallback_parts))
        if fallback_parts
        else (
            "select null::varchar as task_type, null::varchar as context_key, null::varchar as item_id, "
            "null::double as score, null::varchar as source, 0 as tier, 0 as r where false"
        )
    )
    cache.execute(
        f"""
        create table recommendations as
        with k_per_canvas as ({k_values}),
        model_ranked as (
            select s.task_type, s.context_key, s.item_id, s.score, 'model' as source, 0 as tier,
                row_number() over (partition by s.task_type, s.context_key order by s.score desc, s.item_id) as r
            from scores as s
        ),
        cold as (
            select m.task_type, m.context_key, k.k
            from model_ranked as m inner join k_per_canvas as k on m.task_type = k.task_type
            group by m.task_type, m.context_key, k.k
            having count(*) < k.k
        ),
        fallback_rows as ({fallbacks}),
        all_rows as (
            select * from model_ranked
            union all
            select * from fallback_rows
        ),
        deduplicated as (
            select *, row_number() over (partition by task_type, context_key, item_id order by tier, r) as copy
            from all_rows
        ),
        ranked as (
            select task_type, context_key, item_id, score, source,
                row_number() over (partition by task_type, context_key order by tier, r, item_id) as rank
            from deduplicated
            where copy = 1 and not (item_id = context_key and task_type in (
                {", ".join(f"'{c.name}'" for c in canvases if c.serving.key == "source_item_id") or "''"}))
        )
        select ranked.task_type, ranked.context_key, cast(ranked.rank as integer) as rank, ranked.item_id,
            ranked.score, ranked.source, ?::varchar as model_version, ?::timestamptz as generated_at
        from ranked inner join k_per_canvas on ranked.task_type = k_per_canvas.task_type
        where ranked.rank <= k_per_canvas.k
        order by ranked.task_type, ranked.context_key, ranked.rank
        """,
        [*params, model_version, generated_at],
    )
    rows, fallback_rows, contexts = cache.execute(
        "select count(*), count(*) filter (where source <> 'model'), count(distinct (task_type, context_key)) from recommendations"
    ).fetchall()[0]
    return int(rows), int(fallback_rows), int(contexts)


def _point_current_at(directory: Path, generation: Path) -> None:
    link = directory / CURRENT_LINK
    temporary = directory / f".{CURRENT_LINK}.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(generation.name)
    os.replace(temporary, link)


def _remove_stale_partials(directory: Path) -> None:
    """Partial files of runs that are no longer alive (killed or crashed)."""
    for partial in directory.glob("recommendations-*.duckdb.partial*"):
        pid_text = partial.name.split(".duckdb")[0].rsplit("-", 1)[-1]
        if pid_text.isdigit() and _alive(int(pid_text)) and int(pid_text) != os.getpid():
            continue
        partial.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_old_generations(directory: Path, keep: int) -> None:
    current = (directory / CURRENT_LINK).resolve()
    generations = sorted(directory.glob("recommendations-*.duckdb"))
    for old in generations[: max(0, len(generations) - keep)]:
        if old.resolve() != current:
            old.unlink(missing_ok=True)
