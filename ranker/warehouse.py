"""The one place that opens DuckDB connections to the warehouse file."""

from __future__ import annotations

from pathlib import Path

import duckdb


class WarehouseError(RuntimeError):
    """The warehouse or a relation in it is missing or unreadable."""


def connect(path: Path, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the warehouse. Read-only connections can coexist with other readers."""
    if read_only and not Path(path).exists():
        raise WarehouseError(
            f"no warehouse at {path}; run `unirank-cli build` (or `make demo`) first"
        )
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        raise WarehouseError(f"cannot open the warehouse {path}: {exc}") from exc


def relation_exists(connection: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = connection.execute(
        "select count(*) from information_schema.tables where table_name = ?", [name]
    ).fetchall()[0]
    return bool(row and row[0])
