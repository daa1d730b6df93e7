"""The one place that opens DuckDB connections to the warehouse file, and engine-neutral reads
that run the same SQL on DuckDB or on a Spark target (ranker.spark)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ranker import profiles
from ranker.config import Settings
from ranker.errors import UnirankError


class WarehouseError(UnirankError, RuntimeError):
    """The warehouse or a relation in it is missing or unreadable."""


def connect(
    path: Path,
    read_only: bool = True,
    config: Mapping[str, str | int | bool] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse. Read-only connections can coexist with other readers. ``config``
    holds DuckDB settings for the new instance (for example ``memory_limit``, ``threads``)."""
    if read_only and not Path(path).exists():
        raise WarehouseError(
            f"no warehouse at {path}; run `unirank-cli build` (or `make demo`) first"
        )
    try:
        return duckdb.connect(str(path), read_only=read_only, config=dict(config or {}))
    except duckdb.IOException as exc:
        raise WarehouseError(f"cannot open the warehouse {path}: {exc}") from exc


def attach(connection: duckdb.DuckDBPyConnection, path: Path, alias: str = "warehouse") -> None:
    """Attach the warehouse read-only to another DuckDB connection under ``alias``, so that one
    DuckDB instance (one memory limit, one thread pool) reads the warehouse and writes its own
    file. Other readers of the warehouse are not blocked."""
    if not Path(path).exists():
        raise WarehouseError(
            f"no warehouse at {path}; run `unirank-cli build` (or `make demo`) first"
        )
    if not alias.isidentifier():
        raise ValueError(f"alias must be a plain identifier, got {alias!r}")
    quoted = str(path).replace("'", "''")
    try:
        connection.execute(f"attach '{quoted}' as {alias} (read_only)")
    except duckdb.IOException as exc:
        raise WarehouseError(f"cannot open the warehouse {path}: {exc}") from exc


def relation_exists(
    connection: duckdb.DuckDBPyConnection, name: str, catalog: str | None = None
) -> bool:
    """Whether a table or view ``name`` exists (in the attached database ``catalog`` if given)."""
    sql = "select count(*) from information_schema.tables where table_name = ?"
    params: list[str] = [name]
    if catalog is not None:
        sql += " and table_catalog = ?"
        params.append(catalog)
    row = connection.execute(sql, params).fetchall()[0]
    return bool(row and row[0])


# Engine-neutral reads: the same SQL text on the settings' target, DuckDB (the warehouse file) or
# Spark (the target's session, its schema current). Used for the mart and its summaries.


def engine(settings: Settings) -> str:
    """``duckdb`` or ``spark``: where the settings' warehouse lives (profiles.yml target)."""
    return profiles.engine(settings)


def quote(settings: Settings, identifier: str) -> str:
    """A quoted column name in the settings' engine (Spark quotes with backticks)."""
    if engine(settings) == "spark":
        return "`" + identifier.replace("`", "``") + "`"
    return '"' + identifier.replace('"', '""') + '"'


def relation_columns(settings: Settings, name: str) -> list[str] | None:
    """Column names of table or view ``name``, or None if the warehouse has no such relation."""
    if engine(settings) == "spark":
        from ranker import spark

        return spark.relation_columns(spark.session(settings), name)
    with connect(settings.duckdb_path) as con:
        if not relation_exists(con, name):
            return None
        return [
            str(row[0])
            for row in con.execute(
                "select column_name from information_schema.columns where table_name = ? "
                "order by ordinal_position",
                [name],
            ).fetchall()
        ]


def fetchall(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    if engine(settings) == "spark":
        from ranker import spark

        return spark.fetchall(spark.session(settings), sql)
    with connect(settings.duckdb_path) as con:
        return con.execute(sql).fetchall()


def fetch_arrow(settings: Settings, sql: str) -> pa.Table:
    """The result of ``sql`` as one Arrow table, without Python rows on either engine."""
    if engine(settings) == "spark":
        from ranker import spark

        return spark.fetch_arrow(spark.session(settings), sql)
    with connect(settings.duckdb_path) as con:
        return con.sql(sql).to_arrow_table()
