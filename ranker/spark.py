"""The one place that talks to PySpark: the Spark session of a ``spark`` target, and reading and
writing its tables.

PySpark is an optional extra (``pip install -e '.[spark]'``) and is imported only inside these
functions, so the DuckDB path never needs it. The session is started with the target's own
``server_side_parameters`` from profiles.yml (ranker.profiles), the ones dbt-spark's session
method uses, so Python sees the same metastore and tables the dbt build wrote.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from ranker.config import Settings
from ranker.errors import UnirankError
from ranker.profiles import Target, settings_target

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install -e '.[spark]'  (or: make spark)"


class SparkError(UnirankError, RuntimeError):
    """Spark is not installed, not reachable with this target, or a relation is missing."""


def require_pyspark() -> None:
    """Fail with how to install the extra when PySpark (or dbt-spark) is missing."""
    try:
        import dbt.adapters.spark  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise SparkError(
            f"the spark target needs PySpark and dbt-spark, which are not installed ({exc.name} "
            f"is missing); install the extra: {INSTALL_HINT}"
        ) from exc


def _session_target(settings: Settings) -> Target:
    target = settings_target(settings)
    if target.engine != "spark":
        raise SparkError(f"target {target.name!r} is a {target.engine} target, not spark")
    method = target.output.get("method")
    if method != "session":
        raise SparkError(
            f"target {target.name!r} connects through {method}; unirank-cli starts its own Spark "
            "session, so train/score need a `method: session` target whose server_side_parameters "
            "reach the same metastore (spark.master pointing at the cluster, "
            "spark.hadoop.hive.metastore.uris at its metastore; docs/spark.md)"
        )
    return target


def _prepare_local_dirs(parameters: Mapping[str, str]) -> None:
    """Create the folders the local metastore and spill need (Derby writes derby.log there)."""
    local_dir = parameters.get("spark.local.dir")
    if local_dir and "://" not in local_dir:
        Path(local_dir).mkdir(parents=True, exist_ok=True)
    for option in parameters.get("spark.driver.extraJavaOptions", "").split():
        if option.startswith("-Dderby.system.home="):
            Path(option.split("=", 1)[1]).mkdir(parents=True, exist_ok=True)


def session(settings: Settings) -> Any:
    """The Spark session of the settings' target (started once per process, like dbt-spark's
    session method: Hive support, the target's server_side_parameters, its schema current)."""
    require_pyspark()
    from pyspark.sql import SparkSession

    target = _session_target(settings)
    parameters = {
        str(k): str(v) for k, v in (target.output.get("server_side_parameters") or {}).items()
    }
    # dbt-spark forces ANSI mode off for every session it opens; so do we, for the same results.
    parameters["spark.sql.ansi.enabled"] = "false"
    # Python workers (scoring's mapInPandas) run this interpreter, with CatBoost and pandas,
    # unless the target or PYSPARK_PYTHON names another (a cluster's executors need their own).
    # PySpark reads the worker's interpreter from the environment when the context starts.
    python = parameters.get("spark.pyspark.python") or os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = python or sys.executable
    _prepare_local_dirs(parameters)
    logger.info(
        "Spark session for target %s (master %s)", target.name, parameters.get("spark.master")
    )
    builder = SparkSession.builder.enableHiveSupport()
    for key, value in parameters.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # PySpark's own error types, e.g. [JAVA_GATEWAY_EXITED]
        raise SparkError(
            f"could not start Spark: {exc}; local mode needs Java 17 or 21 (JAVA_HOME or java on "
            "PATH)"
        ) from exc
    wanted = parameters.get("spark.sql.warehouse.dir")
    actual = spark.conf.get("spark.sql.warehouse.dir", None)
    if (
        wanted
        and actual
        and Path(actual.removeprefix("file:")).resolve()
        != Path(wanted.removeprefix("file:")).resolve()
    ):
        raise SparkError(
            f"this process already runs a Spark session on {actual}, not the target's {wanted}; "
            "one process can hold one Spark session: run the command in a new process"
        )
    spark.sparkContext.setLogLevel("ERROR")
    schema = str(target.output.get("schema"))
    try:
        spark.sql(f"create database if not exists {schema}")
    except Exception as exc:
        if "Another instance of Derby" in str(exc) or "Failed to start database" in str(exc):
            raise SparkError(
                "the local Spark metastore (Derby, under UNIRANK_SPARK_DIR) is open in another "
                "process - a running `dbt build --target spark` or unirank-cli; it allows one "
                "process at a time: wait for it to finish"
            ) from exc
        raise
    spark.catalog.setCurrentDatabase(schema)
    return spark


def schema(settings: Settings) -> str:
    return str(settings_target(settings).output.get("schema"))


def relation_columns(spark: Any, name: str) -> list[str] | None:
    """Column names of a table or view in the current database, or None if there is none."""
    if not spark.catalog.tableExists(name):
        return None
    return [field.name for field in spark.table(name).schema.fields]


def fetch_arrow(spark: Any, sql: str) -> pa.Table:
    """The result of ``sql`` as one Arrow table. Spark ships it to the driver as Arrow record
    batches (spark.sql.execution.arrow.maxRecordsPerBatch rows each), no Python rows."""
    return spark.sql(sql).toArrow()


def fetchall(spark: Any, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in spark.sql(sql).collect()]


def broadcast(spark: Any, value: Any) -> Any:
    return spark.sparkContext.broadcast(value)


def write_model_metrics(settings: Settings, version: str, rows: list[tuple[Any, ...]]) -> int:
    """Replace ``version``'s rows of the Spark table ``model_metrics`` (partitioned by version,
    so a rerun of one version overwrites only its own partition)."""
    import pandas as pd

    spark = session(settings)
    spark.sql(
        """
        create table if not exists model_metrics (
            task_type string, model_kind string, metric string, value double, ci_low double,
            ci_high double, n_requests bigint, recorded_at timestamp, model_version string
        ) using parquet partitioned by (model_version)
        """
    )
    frame = pd.DataFrame(
        [(t, k, m, float(v), float(lo), float(hi), int(n)) for _, t, k, m, v, lo, hi, n in rows],
        columns=["task_type", "model_kind", "metric", "value", "ci_low", "ci_high", "n_requests"],
    )
    view = "unirank_model_metrics_rows"
    spark.createDataFrame(
        frame,
        "task_type string, model_kind string, metric string, value double, ci_low double, "
        "ci_high double, n_requests bigint",
    ).createOrReplaceTempView(view)
    literal = "'" + version.replace("\\", "\\\\").replace("'", "\\'") + "'"
    spark.sql(
        f"insert overwrite table model_metrics partition (model_version = {literal}) "
        f"select task_type, model_kind, metric, value, ci_low, ci_high, n_requests, "
        f"current_timestamp() as recorded_at from {view}"
    )
    spark.catalog.dropTempView(view)
    return len(rows)
