"""Batch scoring: the current model over ``serving_candidates`` -> the recommendations cache.

The cache is its own DuckDB file, one per generation, under ``<warehouse dir>/cache/``:

1. open ``recommendations-<stamp>-<pid>.duckdb.partial`` with the warehouse attached read-only
   and a ``:memory:`` scratch database, all in ONE DuckDB instance with a ``memory_limit`` and a
   thread count, so DuckDB's memory is bounded whatever the number of candidates;
2. number the contexts and the candidate items (two small tables), then stream the candidates in
   Arrow record batches of fixed-width columns only: context and item numbers, categorical
   features as codes into their few distinct values, numeric features as float32 (what CatBoost
   reads anyway). Each batch becomes a pandas frame without copies (categoricals from codes)
   and a CatBoost Pool in a reader thread while the previous batch is predicted;
   :class:`TopK` keeps every context's exact top K in a buffer proportional to the cache, not
   to the candidates;
3. write the top K with one Arrow insert, number the ranks in SQL, fill cold contexts from the
   canvas's fallback chain, copy the fallback tables in;
4. checkpoint, close, rename it to ``recommendations-<stamp>.duckdb`` and point
   ``current.duckdb`` at it by replacing a symlink (``os.replace``: atomic).

Readers open ``current.duckdb`` read-only and get either the previous complete generation or the
new one, never a partial one; the warehouse is only read, so ``dbt build`` and ``train`` never
block them. A failed or killed run leaves the previous cache current; its partial file (and
DuckDB's spill folder next to it) is removed by the next run. Old generations beyond ``keep``
are deleted (open readers keep their file).
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from catboost import CatBoostError, CatBoostRanker, Pool

from ranker import artifacts, beyond_accuracy
from ranker.cache_reader import CURRENT_LINK, CURRENT_PARQUET_LINK, cache_dir
from ranker.config import Settings
from ranker.dataset import DatasetError
from ranker.errors import UnirankError
from ranker.online_tables import ONLINE_TABLES
from ranker.processes import alive
from ranker.serve import fallback_key_kind
from ranker.warehouse import attach, engine, relation_exists
from ranker.warehouse_publish import check_build_complete, published_at

logger = logging.getLogger(__name__)

CANDIDATES = "serving_candidates"
WAREHOUSE = "warehouse"  # the warehouse, attached read-only to the scoring instance
SCRATCH = "scratch"  # an in-memory database of the scoring instance: numbering, kept scores
CACHE_STORAGE_VERSION = "v1.4.0"  # the oldest DuckDB that must open a cache: the 1.4 LTS release
DEFAULT_MEMORY_LIMIT = "512MB"
ScoreProgress = Callable[[int, int], None]  # (rows scored, total rows)
_Batch = TypeVar("_Batch")


class ScoringError(UnirankError, RuntimeError):
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
    stage_seconds: Mapping[str, float] = field(default_factory=dict)
    # CPU seconds of the whole process (every thread) during each stage: the background read
    # overlaps the other stages, so these add up to more than the process used.
    stage_cpu_seconds: Mapping[str, float] = field(default_factory=dict)
    # None when this cache became current; otherwise why not (the current cache was scored from
    # a newer build by a run that finished first: the newer data never loses to an older run).
    not_published: str | None = None
    # Beyond accuracy per canvas on the published cache: (canvas, metric, value).
    cache_metrics: list[tuple[str, str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_model(model: artifacts.ModelVersion) -> CatBoostRanker:
    ranker = CatBoostRanker()
    try:
        ranker.load_model(str(model.model_file))
    except CatBoostError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise artifacts.ArtifactError(
            f"model version {model.version}: {model.model_file} cannot be loaded ({detail}); "
            "train again, or point CURRENT at another version"
        ) from None
    return ranker


class _Stages:
    """Wall seconds per scoring stage, in the order first seen, and the process's CPU seconds
    (all threads) during each; logged and returned."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    def add(self, stage: str, seconds: float, cpu_seconds: float = 0.0) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self.cpu_seconds[stage] = self.cpu_seconds.get(stage, 0.0) + cpu_seconds

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started, time.process_time() - cpu_started)


def score_candidates(
    settings: Settings,
    batch_rows: int = 250_000,
    threads: int = -1,
    keep: int = 3,
    on_progress: ScoreProgress | None = None,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
) -> ScoreResult:
    """Score every serving candidate with the current model and publish a new cache generation.

    Memory: DuckDB stays within ``memory_limit`` (it spills to a folder next to the partial file
    beyond it); Python holds at most three batches of ``batch_rows`` (about 100 bytes a row in
    Arrow, pandas and CatBoost), the top-K buffer (at most 3 x contexts x K rows of 16 bytes
    plus one batch) and, at the end, the cache rows being written; plus the interpreter,
    libraries and model. None of it grows with the number of candidates per context; the top-K
    buffer and the final rows grow with the cache itself (contexts x K). ``threads`` is used by
    CatBoost and DuckDB alike (-1 = all cores). A Spark target is scored by
    ``ranker.score_spark.score_candidates_spark`` instead: this function refuses it.
    """
    if engine(settings) == "spark":
        raise ScoringError(
            "the settings' target is a Spark target: score it with "
            "ranker.score_spark.score_candidates_spark (`unirank-cli score --target spark`)"
        )
    check_build_complete(settings.duckdb_path)
    # The build scored, read before its data: a build published meanwhile is newer than this cache.
    built_at = published_at(settings.duckdb_path)
    started = time.perf_counter()
    stages = _Stages()
    with stages("load model"):
        model_version = artifacts.current_version(artifacts.models_dir(settings.artifacts_dir))
        model = load_model(model_version)
    features: list[str] = list(model_version.metadata["features"])
    categorical = set(model_version.metadata["categorical_features"])
    canvases = [c for c in settings.registry.canvases if c.serving is not None]
    if not canvases:
        raise ScoringError("no canvas in the registry has a `serving` entry; nothing to cache")
    k_of = {c.name: c.serving.k for c in canvases if c.serving is not None}
    # canvases looked up by their source item whose rules keep it from being its own candidate
    source_keyed = [
        c.name
        for c in canvases
        if c.serving and c.serving.key == "source_item_id" and c.exclude_source_item
    ]
    instance_threads = threads if threads > 0 else (os.cpu_count() or 1)

    directory = cache_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(directory)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    partial = directory / f"recommendations-{stamp}-{os.getpid()}.duckdb.partial"
    final = directory / f"recommendations-{stamp}.duckdb"
    generated_at = datetime.now(timezone.utc).isoformat(timespec="seconds")

    try:
        with _open_cache(partial, memory_limit, instance_threads) as cache:
            cache.execute("set enable_progress_bar = false")
            with stages("open and check"):
                attach(cache, settings.duckdb_path, WAREHOUSE)
                cache.execute(f"attach ':memory:' as {SCRATCH}")
                _check_inputs(cache, settings, features, model_version.version)
            with stages("number contexts and items"):
                numbering = _number_candidates(cache, features, categorical, k_of, source_keyed)
            logger.info(
                "%s candidates, %s contexts, %s items",
                f"{numbering.total:,}",
                f"{numbering.contexts:,}",
                f"{numbering.items:,}",
            )
            # The fallback tables do not depend on the scores: copy them on another connection
            # of the instance (DuckDB's own threads) while the candidates are predicted. Leaving
            # the block waits for the copy, also on an error, before the connection closes.
            with ThreadPoolExecutor(1, thread_name_prefix="unirank-score-copy") as copier:
                copied = copier.submit(_copy_fallback_tables, cache, stages)
                ranked = _score(
                    cache, model, numbering, features, batch_rows, threads, stages, on_progress
                )
                with stages("write recommendations"):
                    cache_rows, fallback_rows, contexts = _write_recommendations(
                        cache, canvases, numbering, ranked, model_version.version, generated_at
                    )
                with stages("wait for fallback tables"):
                    copied.result()
            with stages("beyond accuracy"):
                served_metrics = beyond_accuracy.cache_metrics(cache)
                beyond_accuracy.store_in_cache(cache, served_metrics)
            with stages("cache info"):
                cache.execute(
                    "create table cache_info as select ?::varchar as model_version, ?::varchar as dbt_invocation_id, "
                    "?::timestamp as served_as_of, ?::timestamptz as generated_at, ?::bigint as candidate_rows, "
                    "?::bigint as contexts, ?::bigint as cache_rows, "
                    "?::timestamp as warehouse_published_at",
                    [
                        model_version.version,
                        numbering.invocation_id,
                        numbering.served_as_of,
                        generated_at,
                        numbering.total,
                        contexts,
                        cache_rows,
                        built_at,
                    ],
                )
            with stages("parquet export"):
                # The same rows for engines that are not DuckDB, published beside the cache.
                target = str(_parquet_of(partial)).replace("'", "''")
                cache.execute(f"copy recommendations to '{target}' (format parquet)")
            with stages("checkpoint"):
                cache.execute(f"detach {SCRATCH}")
                cache.execute(f"detach {WAREHOUSE}")
                cache.execute("checkpoint")
        with stages("publish"):
            not_published = _publish(directory, partial, final, built_at)
    except BaseException:
        _remove_partial(partial)
        raise
    notes: list[str] = []
    if not_published is None:
        try:
            beyond_accuracy.write_to_warehouse(
                settings, model_version.version, final, served_metrics
            )
        except Exception as exc:  # e.g. a session holds the warehouse: the cache is published
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            notes.append(
                f"cache_metrics not written to the warehouse (they are in the cache's own "
                f"cache_metrics table): {first}"
            )
    _remove_old_generations(directory, keep)
    seconds = time.perf_counter() - started
    logger.info(
        "scored %s candidates in %.2fs: %s",
        f"{numbering.total:,}",
        seconds,
        ", ".join(f"{stage} {s:.2f}s" for stage, s in stages.seconds.items()),
    )
    return ScoreResult(
        cache_path=directory / CURRENT_LINK,
        generation=final,
        model_version=model_version.version,
        dbt_invocation_id=numbering.invocation_id,
        generated_at=generated_at,
        candidate_rows=numbering.total,
        contexts=contexts,
        cache_rows=cache_rows,
        fallback_rows=fallback_rows,
        seconds=seconds,
        predict_seconds=stages.seconds.get("predict", 0.0),
        stage_seconds=dict(stages.seconds),
        stage_cpu_seconds=dict(stages.cpu_seconds),
        not_published=not_published,
        cache_metrics=served_metrics,
        notes=notes,
    )


def _open_cache(partial: Path, memory_limit: str, threads: int) -> duckdb.DuckDBPyConnection:
    """The scoring instance: the partial cache file, with DuckDB's memory and threads bounded
    and its spill folder beside the file (removed with it if the run fails)."""
    try:
        return duckdb.connect(
            str(partial),
            config={
                "memory_limit": memory_limit,
                "threads": threads,
                "temp_directory": str(partial) + ".tmp",
                # A file every DuckDB from the 1.4 LTS release on can open (2.0's own format
                # is refused by 1.4 with "version number 999").
                "storage_compatibility_version": CACHE_STORAGE_VERSION,
            },
        )
    except duckdb.Error as exc:
        raise ScoringError(
            f"cannot start scoring with memory_limit={memory_limit!r}, threads={threads}: {exc}"
        ) from exc


def _score(
    cache: duckdb.DuckDBPyConnection,
    model: CatBoostRanker,
    numbering: _Numbering,
    features: list[str],
    batch_rows: int,
    threads: int,
    stages: _Stages,
    on_progress: ScoreProgress | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Predict every candidate, batch by batch; every context's top K, ranked."""
    top = TopK(numbering.k_per_context)
    done = 0
    frames = _candidate_frames(cache, numbering, features, batch_rows)
    # CatBoost's Pool is built in the reader thread too, while the previous batch is predicted.
    pools = (
        (context, item, Pool(frame, cat_features=numbering.cat_indices, thread_count=threads))
        for context, item, frame in frames
    )
    batches = _prefetched(pools, stages)
    with closing(batches):  # the reader thread ends before the connection closes
        for context, item, pool in batches:
            with stages("predict"):
                scores = np.asarray(model.predict(pool, thread_count=threads))
            done += len(scores)
            with stages("top k"):
                own = numbering.own_item[context] == item  # never its own source item
                if own.any():
                    context, item, scores = context[~own], item[~own], scores[~own]
                top.add(context, item, scores)
            if on_progress is not None:
                on_progress(done, numbering.total)
    with stages("top k"):
        ranked = top.result()
    return ranked


def _copy_fallback_tables(cache: duckdb.DuckDBPyConnection, stages: _Stages) -> None:
    """What lookups of unseen contexts need, copied into the cache (on its own connection)."""
    started, cpu_started = time.perf_counter(), time.thread_time()
    copying = cache.cursor()
    try:
        for relation in ("serving_fallbacks", "item_catalogue"):
            copying.execute(f"create table {relation} as select * from {WAREHOUSE}.{relation}")
        # What online scoring of contexts the cache does not hold reads (ranker.online); a
        # warehouse built before they existed gives a cache that answers misses by fallbacks.
        for relation in ONLINE_TABLES:
            if relation_exists(copying, relation, WAREHOUSE):
                copying.execute(f"create table {relation} as select * from {WAREHOUSE}.{relation}")
    finally:
        copying.close()
        stages.add(
            "copy fallback tables (background)",
            time.perf_counter() - started,
            time.thread_time() - cpu_started,
        )


def _check_inputs(
    cache: duckdb.DuckDBPyConnection, settings: Settings, features: list[str], version: str
) -> None:
    for relation in (CANDIDATES, "serving_fallbacks", "item_catalogue"):
        if not relation_exists(cache, relation, catalog=WAREHOUSE):
            raise DatasetError(
                f"table {relation} is not in {settings.duckdb_path}; run `unirank-cli build` first"
            )
    present = {
        r[0]
        for r in cache.execute(
            "select column_name from information_schema.columns where table_catalog = ? and table_name = ?",
            [WAREHOUSE, CANDIDATES],
        ).fetchall()
    }
    missing = [f for f in features if f not in present]
    if missing:
        raise ScoringError(
            f"{CANDIDATES} lacks feature(s) {missing} that model {version} uses; "
            "rebuild with `unirank-cli build` or retrain"
        )


# ---------------------------------------------------------------------------------------------
# Reading: contexts and items numbered once, then fixed-width Arrow batches
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Numbering:
    total: int
    contexts: int
    items: int
    invocation_id: str | None
    served_as_of: str | None
    k_per_context: np.ndarray  # K of each context's canvas, indexed by context number
    own_item: np.ndarray  # a source-keyed context's own item number (never a candidate), or -1
    categories: dict[str, list[str]]  # each categorical feature's distinct values
    cat_indices: list[int]
    # DuckDB's hash() of every request_id / item_id, in number order; None if two collide
    # (then the numbers are looked up by a join, slower).
    context_hashes: pd.Index | None
    item_hashes: pd.Index | None
    task_types: pa.Array  # of each context, in number order
    context_keys: pa.Array
    item_ids: pa.Array  # of each item, in number order


def _number_candidates(
    cache: duckdb.DuckDBPyConnection,
    features: list[str],
    categorical: set[str],
    k_of: dict[str, int],
    source_keyed: list[str],
) -> _Numbering:
    """Number the candidate items in item id order and the contexts (one per ``request_id``, the
    probe id ``serve|<canvas>|<context key>``) in (canvas, context key) order, so that sorting
    numbers sorts ids; collect each categorical feature's distinct values. Four cheap scans:
    every grouping is on one dictionary-compressed column."""
    candidates = f"{WAREHOUSE}.{CANDIDATES}"
    cache.execute(
        f"create table {SCRATCH}.items as "
        "select (row_number() over (order by item_id) - 1)::integer as item_code, item_id, "
        f"hash(item_id) as item_hash from (select distinct item_id from {candidates})"
    )
    cache.execute(
        f"""
        create table {SCRATCH}.contexts as
        select (row_number() over (order by c.task_type, c.context_key) - 1)::integer as context_code,
            c.request_id, c.task_type, c.context_key, c.candidates,
            coalesce(i.item_code, -1) as own_item_code, hash(c.request_id) as context_hash
        from (
            select request_id, any_value(task_type) as task_type,
                any_value(context_key) as context_key, count(*) as candidates
            from {candidates}
            group by request_id
        ) as c
        left join {SCRATCH}.items as i
            on i.item_id = c.context_key and c.task_type in (select unnest(?::varchar[]))
        """,
        [source_keyed],
    )
    contexts = cache.execute(
        "select task_type, own_item_code, candidates, context_hash "
        f"from {SCRATCH}.contexts order by context_code"
    ).fetchnumpy()
    item_table = cache.sql(
        f"select item_id, item_hash from {SCRATCH}.items order by item_code"
    ).to_arrow_table()
    context_table = cache.sql(
        f"select task_type, context_key from {SCRATCH}.contexts order by context_code"
    ).to_arrow_table()
    item_hashes = pd.Index(item_table.column("item_hash").to_numpy())
    context_hashes = pd.Index(contexts["context_hash"])
    invocation_id, served_as_of = cache.execute(
        f"select max(dbt_invocation_id), cast(max(served_as_of) as varchar) from {candidates}"
    ).fetchall()[0]
    cat_features = [f for f in features if f in categorical]
    categories: dict[str, list[str]] = {f: [] for f in cat_features}
    if cat_features:
        quoted = [f'"{f}"' for f in cat_features]
        rows = cache.execute(
            f"select {', '.join(quoted)} from {candidates} "
            f"group by grouping sets ({', '.join(f'({q})' for q in quoted)})"
        ).fetchall()
        for row in rows:
            for feature, value in zip(cat_features, row, strict=True):
                if value is not None:
                    categories[feature].append(str(value))
    return _Numbering(
        total=int(contexts["candidates"].sum()),
        contexts=len(contexts["task_type"]),
        items=len(item_hashes),
        invocation_id=invocation_id,
        served_as_of=served_as_of,
        k_per_context=np.array(
            [k_of.get(str(t), 0) for t in contexts["task_type"]], dtype=np.int64
        ),
        own_item=np.asarray(contexts["own_item_code"], dtype=np.int32),
        categories={f: sorted(v) for f, v in categories.items()},
        cat_indices=[i for i, f in enumerate(features) if f in categorical],
        context_hashes=context_hashes if _collision_free(context_hashes) else None,
        item_hashes=item_hashes if _collision_free(item_hashes) else None,
        task_types=context_table.column("task_type").combine_chunks(),
        context_keys=context_table.column("context_key").combine_chunks(),
        item_ids=item_table.column("item_id").combine_chunks(),
    )


def _collision_free(hashes: pd.Index) -> bool:
    return bool(hashes.is_unique)


def _unused_category(values: list[str]) -> str:
    """A category that is none of ``values``: the placeholder at code 0 of a categorical, since
    ``list_position`` numbers from 1."""
    placeholder = "\x00unused"
    while placeholder in values:
        placeholder += "\x00"
    return placeholder


def _candidate_frames(
    cache: duckdb.DuckDBPyConnection,
    numbering: _Numbering,
    features: list[str],
    batch_rows: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, pd.DataFrame]]:
    """(context numbers, item numbers, feature frame) per Arrow batch of the candidates.

    Context and item numbers are found from DuckDB's 64-bit hash of the id (no collision among
    the ids present: checked when numbering, else a join does it), cheaper than joining.

    Only fixed-width columns leave DuckDB: a categorical feature is the 1-based position of its
    value in the feature's distinct values (``list_position``, which DuckDB evaluates once per
    distinct string of a dictionary-compressed column), a numeric one float32, which is what
    CatBoost converts every numeric column to (same values, so the same predictions; tested).
    The frame wraps the Arrow buffers without copies: categoricals via
    ``Categorical.from_codes`` with the string values as categories (CatBoost hashes those
    strings, exactly as it hashes string columns)."""
    by_hash = numbering.context_hashes is not None and numbering.item_hashes is not None
    params: list[Any] = []
    selected = (
        ["hash(c.request_id)", "hash(c.item_id)"] if by_hash else ["x.context_code", "i.item_code"]
    )
    dtypes: dict[str, pd.CategoricalDtype] = {}
    for feature in features:
        if feature in numbering.categories:
            values = numbering.categories[feature]
            selected.append(f'list_position(?::varchar[], c."{feature}") as "{feature}"')
            params.append(values)
            dtypes[feature] = pd.CategoricalDtype([_unused_category(values), *values])
        else:
            selected.append(f'cast(c."{feature}" as float) as "{feature}"')
    sql = f"select {', '.join(selected)} from {WAREHOUSE}.{CANDIDATES} as c"
    if not by_hash:
        sql += (
            f" inner join {SCRATCH}.contexts as x on x.request_id = c.request_id"
            f" inner join {SCRATCH}.items as i on i.item_id = c.item_id"
        )
    reading = cache.cursor()  # the open reader owns its connection until it is drained
    try:
        for batch in reading.sql(sql, params=params).to_arrow_reader(batch_rows):
            columns: dict[str, Any] = {}
            for position, feature in enumerate(features, start=2):
                values = batch.column(position)
                if feature in dtypes:
                    if values.null_count:  # NULL: a missing category, as CatBoost reports it
                        values = pc.fill_null(values, -1)
                    columns[feature] = pd.Categorical.from_codes(
                        values.to_numpy(), dtype=dtypes[feature], validate=False
                    )
                else:
                    columns[feature] = values.to_numpy(zero_copy_only=False)
            context, item = batch.column(0).to_numpy(), batch.column(1).to_numpy()
            if by_hash:
                assert numbering.context_hashes is not None and numbering.item_hashes is not None
                context = _lookup_runs(numbering.context_hashes, context)
                item = numbering.item_hashes.get_indexer(item).astype(np.int32)
                if (context < 0).any() or (item < 0).any():
                    raise ScoringError(f"{CANDIDATES} changed while it was being scored")
            yield context, item, pd.DataFrame(columns, copy=False)
    finally:
        reading.close()


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, length) of every run of equal consecutive values."""
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]][: len(values)])
    return starts, np.diff(np.r_[starts, len(values)])


def _lookup_runs(index: pd.Index, keys: np.ndarray) -> np.ndarray:
    """``index.get_indexer(keys)`` as int32, looking each run of equal keys up once: candidates
    stored context by context (serving_candidates is) come in runs as long as a context."""
    if not len(keys):
        return np.empty(0, dtype=np.int32)
    starts, lengths = _runs(keys)
    return np.repeat(index.get_indexer(keys[starts]).astype(np.int32), lengths)


def _prefetched(batches: Iterator[_Batch], stages: _Stages) -> Generator[_Batch, None, None]:
    """Read and convert the next batch in a background thread while the current one is predicted
    (DuckDB and the Arrow conversion release the GIL). At most two batches are in flight, so
    memory stays bounded by the batch size."""
    handoff: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            while not stop.is_set():
                started, cpu_started = time.perf_counter(), time.thread_time()
                item = next(batches, done)
                stages.add(  # CPU: this thread's own, not DuckDB's workers'
                    "read, convert, pool (background)",
                    time.perf_counter() - started,
                    time.thread_time() - cpu_started,
                )
                if item is done:
                    break
                while not stop.is_set():
                    try:
                        handoff.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
            handoff.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            handoff.put(exc)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=produce, name="unirank-score-reader", daemon=True)
    reader.start()
    try:
        while True:
            with stages("wait for batch"):
                item = handoff.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while reader.is_alive():
            with suppress(queue.Empty):
                handoff.get(timeout=0.1)
        reader.join()


# ---------------------------------------------------------------------------------------------
# Top K per context, bounded
# ---------------------------------------------------------------------------------------------


def _order_key(scores: np.ndarray) -> np.ndarray:
    """uint32 keys that order like the scores rounded to float32: a higher score never gets a
    lower key, scores equal in float32 get equal keys (-0.0 and 0.0 too), every key is > 0."""
    bits = (scores.astype(np.float32) + np.float32(0)).view(np.uint32)
    # negative: flip every bit; positive: set the sign bit
    return bits ^ (np.negative(bits >> np.uint32(31)) | np.uint32(0x8000_0000))


def _run_tops(
    context: np.ndarray, item: np.ndarray, scores: np.ndarray, k: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of a batch that can still be in their context's top K: in every run of rows of
    one context longer than the batch's largest K (``kmax``), only those scoring at least the
    run's ``kmax``-th best. A superset of the exact top K of every context (ties and the
    larger K kept; TopK orders them exactly), in any row order; it only removes rows when
    contexts come in long runs, as serving_candidates stores them. One partition of the runs
    padded to one width, no sort."""
    rows = len(context)
    if not rows:
        return context, item, scores
    starts, lengths = _runs(context)
    kmax = int(k[context[starts]].max())
    width = int(lengths.max())
    # Short runs (rows in any order) gain nothing; very uneven ones would pad more than they cut.
    if kmax == 0 or width <= kmax or len(starts) * width > 2 * rows:
        return context, item, scores
    # Run r's rows go to row r of a (runs x width) matrix padded with -inf.
    padded = np.full(len(starts) * width, -np.inf)
    padded[np.arange(rows) + np.repeat(np.arange(len(starts)) * width - starts, lengths)] = scores
    kth = np.partition(padded.reshape(len(starts), width), width - kmax, axis=1)[:, width - kmax]
    kth[lengths <= kmax] = -np.inf  # a run of at most kmax rows keeps them all
    kept = np.flatnonzero(scores >= np.repeat(kth, lengths))
    return context.take(kept), item.take(kept), scores.take(kept)


class TopK:
    """Every context's top K rows (by score descending, then item number ascending: the cache's
    order, as item numbers order like item ids), fed batch by batch in any row order; a
    context's rows may be spread over every batch.

    Rows are admitted into one buffer only if they beat their context's current K-th best row
    (exactly: a higher score, or the same score and a smaller item); until a context has K rows
    everything is admitted. When the buffer outgrows ``3 x sum(K)`` rows it is cut to the exact
    top K of every context, which also moves the thresholds up. So the buffer never holds more
    than ``3 x sum(K)`` rows plus one batch: memory is proportional to the cache being built
    (16 bytes a row), not to the number of candidates.

    Each batch is first cut run by run (``_run_tops``), which admits few rows when contexts
    come in runs, as serving_candidates stores them.

    A cut needs no argsort of the buffer: one value sort of 64-bit keys (context, score as
    float32) finds every context's float32 K-th best; rows below it go (K rows beat them), rows
    above it stay, and only the rows tied with it in float32 are ordered exactly (score, item),
    by a value sort of packed keys again, or a lexicographic sort if those do not fit 64 bits.
    Scores are kept as they came, bit for bit.
    """

    def __init__(self, k_per_context: np.ndarray) -> None:
        self.k = np.asarray(k_per_context, dtype=np.int64)
        self.capacity = max(3 * int(self.k.sum()), 1)
        # The K-th best row so far of every context (none yet: every row beats it; no row beats
        # +inf, the threshold of a context whose canvas keeps nothing).
        self.threshold_score = np.where(self.k > 0, -np.inf, np.inf)
        self._any_threshold = not (self.k > 0).all()
        self.threshold_item = np.full(len(self.k), np.iinfo(np.int32).max, dtype=np.int32)
        self._context_bits = max(len(self.k) - 1, 1).bit_length()
        self._context: list[np.ndarray] = []
        self._item: list[np.ndarray] = []
        self._score: list[np.ndarray] = []
        self._rows = 0
        self.cuts = 0

    @property
    def rows(self) -> int:
        """Rows held now."""
        return self._rows

    def add(self, context: np.ndarray, item: np.ndarray, scores: np.ndarray) -> None:
        context = np.asarray(context, dtype=np.int32)
        item = np.asarray(item, dtype=np.int32)
        scores = np.asarray(scores, dtype=np.float64)
        if np.isnan(scores).any():
            raise ScoringError("the model returned NaN scores; check the model and the features")
        context, item, scores = _run_tops(context, item, scores, self.k)
        if self._any_threshold:  # until the first cut every row is admitted
            best = self.threshold_score[context]
            admitted = scores > best
            tied = scores == best
            if tied.any():
                admitted |= tied & (item < self.threshold_item[context])
            if not admitted.all():
                context, item, scores = context[admitted], item[admitted], scores[admitted]
        if len(context):
            self._context.append(context)
            self._item.append(item)
            self._score.append(scores)
            self._rows += len(context)
        if self._rows > self.capacity:
            self._cut()

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(context, item, score, rank) of every context's top K (all its rows if it has fewer),
        ordered by context, then rank (1 = best: highest score, then smallest item)."""
        self._cut()
        context, item, scores = self._exact_order(self._context[0], self._item[0], self._score[0])
        starts, lengths = _runs(context)
        rank = np.arange(1, len(context) + 1) - np.repeat(starts, lengths)
        return context, item, scores, rank.astype(np.int32)

    def _cut(self) -> None:
        if len(self._context) != 1:
            self._context = [np.concatenate(self._context or [np.empty(0, np.int32)])]
            self._item = [np.concatenate(self._item or [np.empty(0, np.int32)])]
            self._score = [np.concatenate(self._score or [np.empty(0, np.float64)])]
        context, item, scores = self._context[0], self._item[0], self._score[0]
        self.cuts += 1
        if len(context):
            key = _order_key(scores)
            packed = np.sort((context.astype(np.uint64) << np.uint64(32)) | key)
            packed_context = (packed >> np.uint64(32)).astype(np.int64)
            starts, lengths = _runs(packed_context)
            ends = starts + lengths
            ids = packed_context[starts]
            k = self.k[ids]
            full = lengths >= k
            kth = np.zeros(len(self.k), dtype=np.uint32)  # 0: fewer than K rows, keep all
            kth[ids[full]] = (packed[(ends - k)[full]] & np.uint64(0xFFFF_FFFF)).astype(np.uint32)
            local_kth = kth[context]
            # Above the float32 K-th best: kept. Tied with it (only in full contexts, as keys are
            # never 0): ordered exactly below. Under it: K rows beat it, dropped.
            tied = key == local_kth
            above = key > local_kth
            tied_context, tied_item, tied_score = context[tied], item[tied], scores[tied]
            context, item, scores = context[above], item[above], scores[above]
            if len(tied_context):
                certain = np.bincount(context, minlength=len(self.k))
                tied_context, tied_item, tied_score = self._exact_order(
                    tied_context, tied_item, tied_score
                )
                starts, lengths = _runs(tied_context)
                rank = np.arange(len(tied_context)) - np.repeat(starts, lengths)
                need = self.k[tied_context] - certain[tied_context]
                chosen = rank < need
                kth_row = rank == need - 1  # the exact K-th best of its context
                self.threshold_score[tied_context[kth_row]] = tied_score[kth_row]
                self.threshold_item[tied_context[kth_row]] = tied_item[kth_row]
                self._any_threshold = True
                context = np.concatenate([context, tied_context[chosen]])
                item = np.concatenate([item, tied_item[chosen]])
                scores = np.concatenate([scores, tied_score[chosen]])
        self._context, self._item, self._score = [context], [item], [scores]
        self._rows = len(context)

    def _exact_order(
        self, context: np.ndarray, item: np.ndarray, scores: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows ordered by context, score descending, item ascending: packed into 64-bit
        keys (context, descending rank among the distinct scores, item, sign of a zero score)
        and value-sorted when they fit, else a lexicographic sort."""
        if not len(context):
            return context, item, scores
        by_score = np.argsort(scores)
        ascending = scores[by_score]
        new_value = np.r_[True, ascending[1:] != ascending[:-1]]  # -0.0 == 0.0, as in SQL
        distinct = ascending[new_value]
        rank_bits = max(len(distinct) - 1, 1).bit_length()
        item_bits = max(int(item.max()), 1).bit_length()
        if self._context_bits + rank_bits + item_bits + 1 > 64:
            order = np.lexsort((item, -scores, context))
            return context[order], item[order], scores[order]
        descending = np.empty(len(scores), dtype=np.int64)
        descending[by_score] = len(distinct) - np.cumsum(new_value)
        rank_shift = 1 + item_bits
        context_shift = rank_shift + rank_bits
        packed = np.sort(
            (context.astype(np.uint64) << np.uint64(context_shift))
            | (descending.astype(np.uint64) << np.uint64(rank_shift))
            | (item.astype(np.uint64) << np.uint64(1))
            | ((scores == 0) & np.signbit(scores)).astype(np.uint64)
        )
        rank = (packed >> np.uint64(rank_shift)) & np.uint64((1 << rank_bits) - 1)
        unpacked = distinct[len(distinct) - 1 - rank.astype(np.int64)]
        zero = unpacked == 0
        unpacked[zero] = 0.0
        unpacked[zero & (packed & np.uint64(1)).astype(bool)] = -0.0
        return (
            (packed >> np.uint64(context_shift)).astype(np.int32),
            ((packed >> np.uint64(1)) & np.uint64((1 << item_bits) - 1)).astype(np.int32),
            unpacked,
        )


# ---------------------------------------------------------------------------------------------
# The cache tables
# ---------------------------------------------------------------------------------------------


def _write_recommendations(
    cache: duckdb.DuckDBPyConnection,
    canvases: list[Any],
    numbering: _Numbering,
    ranked: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    model_version: str,
    generated_at: str,
) -> tuple[int, int, int]:
    """One row per (task, context, rank), written in that order with one Arrow insert: the
    model's top K (``ranked``: context, item, score, rank, already in cache order); a context
    with fewer than K is filled after its model rows from the canvas's fallback chain (keys
    resolved as for lookups, ranker.serve; an item already recommended, or the context's own
    source item, is skipped). Returns (rows, fallback rows, contexts)."""
    context, item, score, rank = ranked
    model_rows = np.bincount(context, minlength=numbering.contexts)
    cold = np.flatnonzero((model_rows > 0) & (model_rows < numbering.k_per_context))
    rows = pa.table(
        {
            "context_code": pa.array(context, pa.int32()),
            "rank": pa.array(rank, pa.int32()),
            "item_id": numbering.item_ids.take(pa.array(item)),
            "score": pa.array(score, pa.float64()),
            "source": pa.array(["model"]).take(pa.array(np.zeros(len(context), np.int32))),
        }
    )
    fallback_rows = 0
    if len(cold):
        in_cold = np.isin(context, cold)
        cache.register(
            "cold_contexts",
            pa.table(
                {
                    "context_code": pa.array(cold, pa.int32()),
                    "model_rows": pa.array(model_rows[cold], pa.int32()),
                }
            ),
        )
        cache.register("cold_model_rows", rows.filter(pa.array(in_cold)))
        fallbacks = _fallback_rows(cache, canvases)
        cache.unregister("cold_contexts")
        cache.unregister("cold_model_rows")
        fallback_rows = fallbacks.num_rows
        rows = pa.concat_tables([rows, fallbacks]).sort_by(
            [("context_code", "ascending"), ("rank", "ascending")]
        )
    codes = rows.column("context_code")
    cache.register(
        "recommendation_rows",
        rows.append_column("task_type", numbering.task_types.take(codes)).append_column(
            "context_key", numbering.context_keys.take(codes)
        ),
    )
    # Arrow rows keep their order: the table is stored sorted by (task_type, context_key, rank),
    # as context numbers order like (task_type, context_key).
    cache.execute(
        "create table recommendations as select task_type, context_key, rank, item_id, score, "
        "source, ?::varchar as model_version, "
        "?::timestamptz as generated_at from recommendation_rows",
        [model_version, generated_at],
    )
    cache.unregister("recommendation_rows")
    return rows.num_rows, fallback_rows, int(np.count_nonzero(model_rows))


def _fallback_rows(cache: duckdb.DuckDBPyConnection, canvases: list[Any]) -> pa.Table:
    """(context_code, rank, item_id, score, source) filling the registered ``cold_contexts``
    after their ``cold_model_rows``, from each canvas's fallback chain in order."""
    k_values = " union all ".join(
        f"select '{c.name}' as task_type, {c.serving.k} as k" for c in canvases
    )
    source_keyed = (
        ", ".join(
            f"'{c.name}'"
            for c in canvases
            if c.serving.key == "source_item_id" and c.exclude_source_item
        )
        or "''"
    )
    parts: list[str] = []
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
            parts.append(
                "select cold.context_code, cold.task_type, cold.context_key, f.item_id, "
                f"?::varchar as source, {tier} as tier, f.source_rank as r "
                f"from cold left join {WAREHOUSE}.item_catalogue as catalogue on catalogue.item_id = cold.context_key "
                f"inner join {WAREHOUSE}.serving_fallbacks as f on f.source = ?::varchar "
                f"and f.retrieval_key = {key_expr} and f.source_rank <= cold.k * 2 + 1 "
                "where cold.task_type = ?::varchar"
            )
            params += [source, source, canvas.name]
    if not parts:
        return pa.table(
            {
                "context_code": pa.array([], pa.int32()),
                "rank": pa.array([], pa.int32()),
                "item_id": pa.array([], pa.string()),
                "score": pa.array([], pa.float64()),
                "source": pa.array([], pa.string()),
            }
        )
    return cache.sql(
        f"""
        with k_per_canvas as ({k_values}),
        cold as (
            select c.context_code, x.task_type, x.context_key, k.k, c.model_rows
            from cold_contexts as c
            inner join {SCRATCH}.contexts as x on x.context_code = c.context_code
            inner join k_per_canvas as k on k.task_type = x.task_type
        ),
        fallback_rows as ({" union all ".join(parts)}),
        fallback_new as (
            select f.*, row_number() over (
                partition by f.context_code, f.item_id order by f.tier, f.r
            ) as copy
            from fallback_rows as f
            where not (f.item_id = f.context_key and f.task_type in ({source_keyed}))
                and not exists (
                    select 1 from cold_model_rows as m
                    where m.context_code = f.context_code and m.item_id = f.item_id
                )
        ),
        ranked as (
            select f.context_code, f.item_id, f.source, cold.k,
                cold.model_rows + row_number() over (
                    partition by f.context_code order by f.tier, f.r, f.item_id
                ) as rank
            from fallback_new as f
            inner join cold on cold.context_code = f.context_code
            where f.copy = 1
        )
        select context_code::integer as context_code, rank::integer as rank, item_id,
            null::double as score, source
        from ranked
        where rank <= k
        """,
        params=params,
    ).to_arrow_table()


def _publish(directory: Path, partial: Path, final: Path, built_at: str | None) -> str | None:
    """Make ``final`` the current cache, unless the current one was scored from a newer build
    (a score that started later on newer data and finished first). One publisher at a time
    (``.publish.lock``), so the check and the switch are one step. Returns why not, or None."""
    with open(directory / ".publish.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        theirs = _current_build(directory)
        if built_at is not None and theirs is not None and theirs > built_at:
            _remove_partial(partial)
            return (
                f"not published: this cache was scored from the build published {built_at}, "
                f"the current one from a newer build ({theirs}); the current cache is kept"
            )
        _parquet_of(partial).rename(final.with_suffix(".parquet"))
        partial.rename(final)
        _point_current_at(directory, final)
        _point_current_at(directory, final.with_suffix(".parquet"), CURRENT_PARQUET_LINK)
        return None


def _current_build(directory: Path) -> str | None:
    """The build the current cache was scored from (None: no cache, or one from before this was
    recorded)."""
    current = directory / CURRENT_LINK
    if not current.exists():
        return None
    try:
        with duckdb.connect(str(current), read_only=True) as con:
            row = con.execute(
                "select cast(warehouse_published_at as varchar) from cache_info"
            ).fetchone()
    except duckdb.Error:
        return None
    return None if row is None or row[0] is None else str(row[0])


def _parquet_of(partial: Path) -> Path:
    """Where a run writes the Parquet export of its partial cache (cleaned up with it)."""
    return Path(str(partial) + ".parquet")


def _point_current_at(directory: Path, generation: Path, name: str = CURRENT_LINK) -> None:
    link = directory / name
    temporary = directory / f".{name}.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(generation.name)
    os.replace(temporary, link)


def _remove_partial(partial: Path) -> None:
    """The partial file, its WAL and DuckDB's spill folder."""
    partial.unlink(missing_ok=True)
    _parquet_of(partial).unlink(missing_ok=True)
    Path(str(partial) + ".wal").unlink(missing_ok=True)
    shutil.rmtree(str(partial) + ".tmp", ignore_errors=True)


def _remove_stale_partials(directory: Path) -> None:
    """Partial files (and spill folders) of runs that are no longer alive (killed or crashed)."""
    for partial in directory.glob("recommendations-*.duckdb.partial*"):
        pid_text = partial.name.split(".duckdb")[0].rsplit("-", 1)[-1]
        if pid_text.isdigit() and alive(int(pid_text)) and int(pid_text) != os.getpid():
            continue
        if partial.is_dir() and not partial.is_symlink():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)


def _remove_old_generations(directory: Path, keep: int) -> None:
    current = (directory / CURRENT_LINK).resolve()
    generations = sorted(directory.glob("recommendations-*.duckdb"))
    for old in generations[: max(0, len(generations) - keep)]:
        if old.resolve() != current:
            old.unlink(missing_ok=True)
            old.with_suffix(".parquet").unlink(missing_ok=True)
