"""The same dbt project on DuckDB and on Spark (local mode), proven equivalent, and Spark's side of
training (the mart through Arrow) and scoring (mapInPandas, top-K and fallbacks in Spark SQL).

Both engines build the same deterministic generated logs (the session's `tiny_logs`, 20k
impressions) with a stratification budget that drops about 40% of the requests, so sampling is
exercised, and few items per candidate source, so the cache's fallbacks are; `dbt build` runs
every model and every dbt test on both. The demo seeds are loaded by both builds too and compared
row for row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from cli.main import app
from ranker import score_spark, warehouse
from ranker.build import run_dbt
from ranker.config import Settings, load_settings
from ranker.dataset import load_ranking_data
from ranker.score import score_candidates
from ranker.train import TrainParams, train_and_evaluate
from ranker.warehouse_publish import BUILD_TABLE, STATE_TABLE

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.dbt]

BUDGET = 600  # of about 1,000 requests in tiny_logs: traffic sampling keeps 60% per canvas
SEEDS = ("demo_users", "demo_items", "demo_requests", "demo_impressions", "demo_engagements")


@pytest.fixture(scope="module")
def engines(
    project_dir: Path, tiny_logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, Settings]:
    """The same project and vars built on DuckDB and on Spark (each `dbt build` fails on any
    failing dbt test), sharing one artifacts folder."""
    base = tmp_path_factory.mktemp("engines")
    overrides = {
        "demo_source": "parquet",
        "demo_path": str(tiny_logs),
        "stratification": {"strategy": "traffic", "budget": BUDGET, "seed": 42},
        # Few items per candidate source: some contexts get fewer than K candidates, so the
        # cache's fallback chain is exercised on both engines.
        "serving": {
            "as_of": None,
            "lookback_days": 28,
            "candidates_per_context": 100,
            "items_per_source": 8,
            "fallback_items_per_key": 100,
        },
    }
    common: dict[str, Any] = {
        "artifacts_dir": base / "artifacts",
        "reports_dir": base / "reports",
    }
    duck = load_settings(project_dir, overrides, duckdb_path=base / "duck.duckdb", **common)
    spark = load_settings(
        project_dir, overrides, duckdb_path=base / "unused.duckdb", target="spark", **common
    )
    run_dbt(duck, ["build"], echo=False)
    run_dbt(spark, ["build"], echo=False)
    return duck, spark


def _frame(settings: Settings, sql: str) -> pd.DataFrame:
    """A query's result as pandas, timestamps as naive UTC (Spark's carry the session zone)."""
    table = warehouse.fetch_arrow(settings, sql)
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            column = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))
        columns.append(column)
    return pa.table(columns, names=table.column_names).to_pandas()


def _both(
    engines: tuple[Settings, Settings], sql: str, keys: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    duck, spark = engines
    return tuple(  # type: ignore[return-value]
        _frame(s, sql).sort_values(keys, kind="mergesort").reset_index(drop=True)
        for s in (duck, spark)
    )


def test_every_model_and_seed_has_the_same_rows_on_both_engines(
    engines: tuple[Settings, Settings],
) -> None:
    duck, spark = engines
    duck_relations = {
        str(name)
        for (name,) in warehouse.fetchall(
            duck, "select table_name from information_schema.tables where table_schema = 'main'"
        )
    } - {BUILD_TABLE, STATE_TABLE}  # DuckDB's publish and build-state records, not dbt models
    spark_relations = {
        str(row[1]) for row in warehouse.fetchall(spark, "show tables") if not row[2]
    }
    assert duck_relations == spark_relations
    assert {"ranking_examples", "serving_candidates", *SEEDS} <= duck_relations
    assert len(duck_relations) >= 35  # every seed, staging view, intermediate and mart
    for relation in sorted(duck_relations):
        sql = f"select count(*) as n from {relation}"
        assert warehouse.fetchall(duck, sql) == warehouse.fetchall(spark, sql), relation


def test_seeds_load_identically_including_nulls(engines: tuple[Settings, Settings]) -> None:
    for seed in SEEDS:
        columns = [str(c) for c in _frame(engines[0], f"select * from {seed} limit 0").columns]
        duck_rows, spark_rows = _both(engines, f"select * from {seed}", columns)
        pd.testing.assert_frame_equal(duck_rows, spark_rows, check_dtype=False, obj=seed)
    duck_nulls, spark_nulls = _both(
        engines,
        "select count(*) - count(user_id) as anonymous, count(*) - count(requested_at) as no_time "
        "from demo_requests",
        ["anonymous"],
    )
    assert duck_nulls.equals(spark_nulls) and duck_nulls.iloc[0]["anonymous"] > 0


def test_stratification_keeps_the_same_requests_per_canvas(
    engines: tuple[Settings, Settings],
) -> None:
    duck_kept, spark_kept = _both(
        engines,
        "select distinct task_type, request_id from int_labels_unioned",
        ["task_type", "request_id"],
    )
    pd.testing.assert_frame_equal(duck_kept, spark_kept)
    available = sum(
        warehouse.fetchall(engines[0], f"select count(distinct request_id) from {model}")[0][0]
        for model in (
            "int_home__labels",
            "int_search__labels",
            "int_related__labels",
            "int_category__labels",
        )
    )
    assert len(duck_kept) < available, "the budget must drop requests for this test to mean much"
    assert set(duck_kept["task_type"]) == {"home", "search", "related", "category"}


def test_rows_per_canvas_and_split_are_identical(engines: tuple[Settings, Settings]) -> None:
    duck_counts, spark_counts = _both(
        engines,
        "select task_type, split, count(*) as n_rows, count(distinct request_id) as n_requests "
        "from ranking_examples group by task_type, split",
        ["task_type", "split"],
    )
    pd.testing.assert_frame_equal(duck_counts, spark_counts, check_dtype=False)
    assert set(duck_counts["split"]) == {"train", "valid", "test"}


def test_labels_context_and_sentinels_are_identical(
    engines: tuple[Settings, Settings],
) -> None:
    context = [c.name for c in engines[0].registry.context_columns]
    columns = [
        "request_id",
        "item_id",
        "task_type",
        *context,
        "item_category",
        "split",
        "label",
        "requested_at",
    ]
    duck_rows, spark_rows = _both(
        engines, f"select {', '.join(columns)} from ranking_examples", ["request_id", "item_id"]
    )
    pd.testing.assert_frame_equal(duck_rows, spark_rows, check_dtype=False)
    registry = engines[0].registry
    for column in registry.context_columns:
        if any(column.name not in canvas.context_columns for canvas in registry.canvases):
            assert (duck_rows[column.name] == column.sentinel).any(), column.name


@pytest.mark.parametrize(
    ("mart", "keys", "exact"),
    [
        ("ranking_examples", ["request_id", "item_id"], ["task_type", "item_category"]),
        (
            "serving_candidates",
            ["request_id", "item_id"],
            ["task_type", "context_key", "item_category", "candidate_source", "candidate_rank"],
        ),
    ],
)
def test_features_agree_within_1e_9(
    engines: tuple[Settings, Settings], mart: str, keys: list[str], exact: list[str]
) -> None:
    numeric = list(engines[0].registry.model_features.numeric)
    duck_rows, spark_rows = _both(
        engines, f"select {', '.join([*keys, *exact, *numeric])} from {mart}", keys
    )
    assert len(duck_rows) > 1000
    pd.testing.assert_frame_equal(
        duck_rows[[*keys, *exact]], spark_rows[[*keys, *exact]], check_dtype=False
    )
    for feature in numeric:
        np.testing.assert_allclose(
            duck_rows[feature].to_numpy(float),
            spark_rows[feature].to_numpy(float),
            rtol=0,
            atol=1e-9,
            err_msg=f"{mart}.{feature}",
        )


def test_training_reads_the_same_mart_from_spark(engines: tuple[Settings, Settings]) -> None:
    duck, spark = engines
    duck_data, spark_data = load_ranking_data(duck), load_ranking_data(spark)
    assert duck_data.fingerprint == spark_data.fingerprint
    pd.testing.assert_frame_equal(duck_data.frame, spark_data.frame, check_dtype=False)


@pytest.fixture(scope="module")
def model_version(engines: tuple[Settings, Settings]) -> str:
    """A small unified model trained from the Spark mart (model_metrics go to Spark)."""
    params = TrainParams(
        iterations=30,
        learning_rate=0.3,
        depth=4,
        early_stopping_rounds=10,
        compare=False,
        bootstrap_resamples=50,
        thread_count=2,
    )
    return train_and_evaluate(engines[1], params, write_reports=False).version


def test_training_on_spark_records_metrics_in_spark(
    engines: tuple[Settings, Settings], model_version: str
) -> None:
    rows = warehouse.fetchall(
        engines[1],
        f"select task_type, count(*) from model_metrics where model_version = '{model_version}' "
        "group by task_type",
    )
    assert {task for task, n in rows if n > 0} >= {"home", "search", "related", "category"}
    assert not engines[1].duckdb_path.exists()  # nothing of a Spark run lands in DuckDB


def test_spark_scoring_matches_duckdb_scoring(
    engines: tuple[Settings, Settings], model_version: str
) -> None:
    duck, spark = engines
    duck_result = score_candidates(duck, batch_rows=2_000)
    spark_result = score_spark.score_candidates_spark(spark, batch_rows=2_000)
    assert spark_result.model_version == duck_result.model_version == model_version
    assert (spark_result.contexts, spark_result.cache_rows, spark_result.fallback_rows) == (
        duck_result.contexts,
        duck_result.cache_rows,
        duck_result.fallback_rows,
    )
    assert spark_result.fallback_rows > 0 and spark_result.cache_rows > spark_result.fallback_rows

    import duckdb

    columns = "task_type, context_key, rank, item_id, score, source, model_version"
    with duckdb.connect(str(duck_result.cache_path), read_only=True) as con:
        duck_cache = con.sql(f"select {columns} from recommendations").to_df()
    spark_cache = _frame(spark, f"select {columns} from {spark_result.cache_table}")
    keys = ["task_type", "context_key", "rank"]
    duck_cache, spark_cache = (
        f.sort_values(keys).reset_index(drop=True) for f in (duck_cache, spark_cache)
    )
    pd.testing.assert_frame_equal(
        duck_cache.drop(columns="score"), spark_cache.drop(columns="score"), check_dtype=False
    )
    np.testing.assert_allclose(
        duck_cache["score"].to_numpy(float),
        spark_cache["score"].to_numpy(float),
        rtol=0,
        atol=1e-9,
    )


def test_cli_scores_on_spark_and_switches_the_cache_view(
    engines: tuple[Settings, Settings], model_version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spark = engines[1]
    monkeypatch.setenv("UNIRANK_ARTIFACTS_DIR", str(spark.artifacts_dir))
    args = ["score", "--target", "spark", "--samples", "1", "--keep", "1"]
    args += ["--project-dir", str(spark.project_dir), "--vars", _vars(spark)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "unirank_cache.recommendations" in result.output
    for canvas in ("home", "search", "related", "category"):
        assert f"{canvas} |" in result.output
    tables = {
        str(row[1])
        for row in warehouse.fetchall(spark, f"show tables in {score_spark.cache_schema(spark)}")
    }
    assert {"recommendations", "cache_info"} <= tables
    generations = sorted(t for t in tables if t.startswith("recommendations_"))
    assert len(generations) == 1  # --keep 1: older generations dropped, the current one kept
    current = warehouse.fetchall(
        spark, f"select count(*) from {score_spark.cache_schema(spark)}.{generations[0]}"
    )
    view = warehouse.fetchall(
        spark, f"select count(*) from {score_spark.cache_schema(spark)}.recommendations"
    )
    assert current == view


def _vars(settings: Settings) -> str:
    import json

    return json.dumps(settings.var_overrides)
