"""The one place that opens DuckDB connections to the warehouse file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import duckdb


class WarehouseError(RuntimeError):
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
