"""Batch scoring on Spark: the current model over the Spark target's ``serving_candidates`` -> a
recommendations cache table in Spark, with the same columns and fallbacks as the DuckDB cache.

1. The model file (bytes) is broadcast once; every Spark task scores its partition of the
   candidates with ``mapInPandas`` (Arrow batches to pandas, CatBoost loaded once per Python
   worker, one predict thread per task: Spark supplies the parallelism) and keeps each batch's
   top K per context, ordered by (score desc, item_id) - the global top K of a context is within
   the union of its per-batch top Ks, so only about K rows per context and batch are shuffled.
2. Spark SQL ranks the rest: top K per context, contexts with fewer than K scored items filled
   from the canvas's fallback chain (keys resolved as for lookups, ranker.serve), one row per
   (task_type, context_key, rank) with item_id, score, source, model_version, generated_at.
3. Publication: each run writes new tables ``<schema>_cache.recommendations_<stamp>`` and
   ``cache_info_<stamp>``; only when both are complete do the views ``recommendations`` and
   ``cache_info`` switch to them (``create or replace view``, one metastore update each). A
   failed run leaves the views on the previous generation; old generations beyond ``keep`` are
   dropped.

PySpark itself is touched only through ranker.spark and the DataFrame objects it returns.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from ranker import artifacts, spark
from ranker.config import Settings
from ranker.registry import Canvas
from ranker.score import CANDIDATES, ScoringError
from ranker.serve import fallback_key_kind

logger = logging.getLogger(__name__)

CACHE_SCHEMA_SUFFIX = "_cache"
SCORES_VIEW = "unirank_scores"
SCORED_SCHEMA = "task_type string, context_key string, item_id string, score double"
_MODELS: dict[str, Any] = {}  # per Python worker process: digest -> deserialized model


@dataclass(frozen=True)
class SparkScoreResult:
    cache_table: str
    generation: str
    model_version: str
    dbt_invocation_id: str | None
    generated_at: str
    candidate_rows: int
    contexts: int
    cache_rows: int
    fallback_rows: int
    seconds: float


def cache_schema(settings: Settings) -> str:
    return spark.schema(settings) + CACHE_SCHEMA_SUFFIX


def _literal(value: str) -> str:
    """A Spark SQL string literal (Spark escapes with backslashes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _model_from(blob: Any, digest: str) -> Any:
    """The CatBoost model of a broadcast, deserialized once per Python worker process (Spark
    reuses workers across tasks)."""
    model = _MODELS.get(digest)
    if model is None:
        from catboost import CatBoostRanker

        model = CatBoostRanker()
        model.load_model(blob=bytes(blob.value))
        _MODELS.clear()
        _MODELS[digest] = model
    return model


def batch_top_k(frame: pd.DataFrame, scores: np.ndarray, k_of: dict[str, int]) -> pd.DataFrame:
    """The rows of ``frame`` within the top K of their context (task_type, context_key), ordered
    by score descending then item_id, with their scores. K comes from the row's canvas."""
    scored = pd.DataFrame(
        {
            "task_type": frame["task_type"].astype(str).to_numpy(),
            "context_key": frame["context_key"].astype(str).to_numpy(),
            "item_id": frame["item_id"].astype(str).to_numpy(),
            "score": scores.astype(np.float64),
        }
    )
    scored = scored.sort_values(
        ["task_type", "context_key", "score", "item_id"],
        ascending=[True, True, False, True],
        kind="mergesort",
    )
    rank = scored.groupby(["task_type", "context_key"], sort=False).cumcount().to_numpy()
    k = scored["task_type"].map(k_of).fillna(0).to_numpy()
    return scored[rank < k].reset_index(drop=True)


def predict_partition(
    batches: Iterator[pd.DataFrame],
    model_blob: Any,
    model_digest: str,
    features: Sequence[str],
    categorical: Sequence[str],
    k_of: dict[str, int],
    threads: int,
) -> Iterator[pd.DataFrame]:
    """mapInPandas body: score each Arrow batch of candidates, keep its top K per context."""
    from catboost import Pool

    model = _model_from(model_blob, model_digest)
    cat_indices = [i for i, f in enumerate(features) if f in categorical]
    for frame in batches:
        if frame.empty:
            continue
        x = frame[list(features)].copy()
        for column in categorical:
            if column in x.columns:
                x[column] = x[column].astype("category")
        scores = np.asarray(model.predict(Pool(x, cat_features=cat_indices), thread_count=threads))
        yield batch_top_k(frame, scores, k_of)


def recommendations_sql(
    canvases: Sequence[Canvas], model_version: str, generated_at: str, scores: str = SCORES_VIEW
) -> str:
    """Spark SQL for the cache rows: the model's top K per context, cold contexts filled from
    the canvas's fallbacks in order; the same rules as ranker.score on DuckDB."""
    k_values = " union all ".join(
        f"select {_literal(c.name)} as task_type, {c.serving.k} as k"
        for c in canvases
        if c.serving is not None
    )
    fallback_parts: list[str] = []
    for canvas in canvases:
        if canvas.serving is None:
            continue
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
                "select cold.task_type, cold.context_key, f.item_id, cast(null as double) as score, "
                f"{_literal(source)} as source, {tier} as tier, f.source_rank as r "
                "from cold left join item_catalogue as catalogue on catalogue.item_id = cold.context_key "
                f"inner join serving_fallbacks as f on f.source = {_literal(source)} "
                f"and f.retrieval_key = {key_expr} and f.source_rank <= cold.k * 2 + 1 "
                f"where cold.task_type = {_literal(canvas.name)}"
            )
    fallbacks = " union all ".join(fallback_parts) or (
        "select cast(null as string) as task_type, cast(null as string) as context_key, "
        "cast(null as string) as item_id, cast(null as double) as score, "
        "cast(null as string) as source, 0 as tier, cast(0 as bigint) as r where false"
    )
    self_excluded = (
        ", ".join(
            _literal(c.name)
            for c in canvases
            if c.serving is not None and c.serving.key == "source_item_id" and c.exclude_source_item
        )
        or "''"
    )
    return f"""
        with k_per_canvas as ({k_values}),
        model_ranked as (
            select s.task_type, s.context_key, s.item_id, s.score, 'model' as source, 0 as tier,
                cast(row_number() over (partition by s.task_type, s.context_key
                    order by s.score desc, s.item_id) as bigint) as r
            from {scores} as s
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
            where copy = 1 and not (item_id = context_key and task_type in ({self_excluded}))
        )
        select ranked.task_type, ranked.context_key, cast(ranked.rank as int) as rank, ranked.item_id,
            ranked.score, ranked.source, {_literal(model_version)} as model_version,
            cast({_literal(generated_at)} as timestamp) as generated_at
        from ranked inner join k_per_canvas on ranked.task_type = k_per_canvas.task_type
        where ranked.rank <= k_per_canvas.k
    """


def score_candidates_spark(
    settings: Settings, keep: int = 3, threads: int = 1, batch_rows: int | None = None
) -> SparkScoreResult:
    """Score every serving candidate of the Spark target with the current model, in parallel
    Spark tasks, and publish a new cache generation in ``<schema>_cache``."""
    started = time.perf_counter()
    spark.require_pyspark()
    model_version = artifacts.current_version(artifacts.models_dir(settings.artifacts_dir))
    features: list[str] = list(model_version.metadata["features"])
    categorical = [f for f in features if f in set(model_version.metadata["categorical_features"])]
    canvases = [c for c in settings.registry.canvases if c.serving is not None]
    if not canvases:
        raise ScoringError("no canvas in the registry has a `serving` entry; nothing to cache")

    session = spark.session(settings)
    for relation in (CANDIDATES, "serving_fallbacks", "item_catalogue"):
        if spark.relation_columns(session, relation) is None:
            raise ScoringError(
                f"table {relation} is not in the Spark target's schema {spark.schema(settings)}; "
                f"run `unirank-cli build --target {settings.target or 'spark'}` first"
            )
    present = spark.relation_columns(session, CANDIDATES) or []
    missing = [f for f in features if f not in present]
    if missing:
        raise ScoringError(
            f"{CANDIDATES} lacks feature(s) {missing} that model {model_version.version} uses; "
            "rebuild with `unirank-cli build --target spark` or retrain"
        )
    total, invocation_id, _ = spark.fetchall(
        session,
        f"select count(*), max(dbt_invocation_id), cast(max(served_as_of) as string) from {CANDIDATES}",
    )[0]
    if batch_rows is not None:
        session.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows))

    model_bytes = model_version.model_file.read_bytes()
    blob = spark.broadcast(session, model_bytes)
    wanted = list(dict.fromkeys(["task_type", "context_key", "item_id", *features]))
    predict = functools.partial(
        predict_partition,
        model_blob=blob,
        model_digest=hashlib.sha256(model_bytes).hexdigest(),
        features=features,
        categorical=categorical,
        k_of={c.name: c.serving.k for c in canvases if c.serving is not None},
        threads=threads,
    )
    scored = session.table(CANDIDATES).select(*wanted).mapInPandas(predict, SCORED_SCHEMA)
    scored.createOrReplaceTempView(SCORES_VIEW)

    database = cache_schema(settings)
    session.sql(f"create database if not exists {database}")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dt%H%M%S%f")
    generated_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    generation = f"{database}.recommendations_{stamp}"
    info = f"{database}.cache_info_{stamp}"
    try:
        session.sql(
            f"create table {generation} using parquet as "
            + recommendations_sql(canvases, model_version.version, generated_at)
        )
        cache_rows, fallback_rows, contexts = spark.fetchall(
            session,
            f"select count(*), count(case when source <> 'model' then 1 end), "
            f"count(distinct task_type, context_key) from {generation}",
        )[0]
        logger.info("scored and ranked in %.2fs", time.perf_counter() - started)
        invocation = "null" if invocation_id is None else _literal(str(invocation_id))
        session.sql(
            f"create table {info} using parquet as select "
            f"{_literal(model_version.version)} as model_version, "
            f"cast({invocation} as string) as dbt_invocation_id, "
            f"(select max(served_as_of) from {CANDIDATES}) as served_as_of, "
            f"cast({_literal(generated_at)} as timestamp) as generated_at, "
            f"cast({int(total)} as bigint) as candidate_rows, cast({int(contexts)} as bigint) as contexts, "
            f"cast({int(cache_rows)} as bigint) as cache_rows"
        )
    except BaseException:
        session.sql(f"drop table if exists {generation}")
        session.sql(f"drop table if exists {info}")
        raise
    finally:
        session.catalog.dropTempView(SCORES_VIEW)
        blob.unpersist()
    session.sql(f"create or replace view {database}.recommendations as select * from {generation}")
    session.sql(f"create or replace view {database}.cache_info as select * from {info}")
    _drop_old_generations(session, database, keep, stamp)
    return SparkScoreResult(
        cache_table=f"{database}.recommendations",
        generation=generation,
        model_version=model_version.version,
        dbt_invocation_id=None if invocation_id is None else str(invocation_id),
        generated_at=generated_at,
        candidate_rows=int(total),
        contexts=int(contexts),
        cache_rows=int(cache_rows),
        fallback_rows=int(fallback_rows),
        seconds=time.perf_counter() - started,
    )


def _drop_old_generations(session: Any, database: str, keep: int, current: str) -> None:
    """Drop cache generations beyond the newest ``keep`` (never the current one)."""
    pattern = re.compile(r"^(recommendations|cache_info)_(\d{8}t\d{12})$")
    stamps = sorted(
        {
            match.group(2)
            for row in spark.fetchall(session, f"show tables in {database}")
            if (match := pattern.match(str(row[1])))
        }
    )
    for stamp in stamps[: max(0, len(stamps) - keep)]:
        if stamp == current:
            continue
        for prefix in ("recommendations", "cache_info"):
            session.sql(f"drop table if exists {database}.{prefix}_{stamp}")


def sample_recommendations(
    settings: Settings, per_canvas: int, k: int = 5
) -> list[tuple[str, str, list[tuple[int, str, float | None, str]]]]:
    """A few cached contexts per canvas (by hash of the key) with their top ``k`` rows."""
    session = spark.session(settings)
    rows = spark.fetchall(
        session,
        f"""
        with contexts as (
            select task_type, context_key,
                row_number() over (partition by task_type order by md5(context_key)) as n
            from (select distinct task_type, context_key from {cache_schema(settings)}.recommendations)
        )
        select r.task_type, r.context_key, r.rank, r.item_id, r.score, r.source
        from {cache_schema(settings)}.recommendations as r
        inner join contexts as c on r.task_type = c.task_type and r.context_key = c.context_key
        where c.n <= {int(per_canvas)} and r.rank <= {int(k)}
        order by r.task_type, r.context_key, r.rank
        """,
    )
    grouped: dict[tuple[str, str], list[tuple[int, str, float | None, str]]] = {}
    for task, key, rank, item, score, source in rows:
        grouped.setdefault((str(task), str(key)), []).append(
            (int(rank), str(item), None if score is None else float(score), str(source))
        )
    return [(task, key, items) for (task, key), items in grouped.items()]
