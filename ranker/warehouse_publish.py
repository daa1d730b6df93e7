"""Publish a DuckDB warehouse atomically: dbt writes a copy aside, and only a build that passed
replaces the warehouse file, in one rename.

A failed or killed build leaves the previous warehouse whole (a failed build's copy is kept
beside it for inspection, a killed one's is swept by the next build); readers that hold the old
file open keep reading it; the next reader opens the new one. Two writers never interleave: one build at a time (an exclusive lock on
``<warehouse>.lock``; a second build refuses in one line), and Python's own small writes to the
warehouse (``model_metrics``) take the same lock for the moment they write, so a build never
publishes over a write it did not see.

    with publishing(settings.duckdb_path, keep_all=bool(select)) as aside:
        run dbt with the warehouse path set to ``aside``
    # returning normally published it; after an exception the copy is kept in failed_path()
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from ranker.errors import UnirankError

logger = logging.getLogger(__name__)

# Folders beside the warehouse, one pair per warehouse file: .<file>.build, .<file>.failed
ASIDE_SUFFIX = ".build"
FAILED_SUFFIX = ".failed"
BUILD_TABLE = "unirank_build"


class WarehouseBusyError(UnirankError, RuntimeError):
    """Another process writes the warehouse (a build, or a DuckDB session opened read-write)."""


def lock_path(warehouse: Path) -> Path:
    return warehouse.with_name(warehouse.name + ".lock")


@contextmanager
def writer_lock(warehouse: Path, what: str, wait: bool) -> Iterator[None]:
    """Hold the warehouse's writer lock. ``wait=False`` refuses at once if another holds it."""
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path(warehouse), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise WarehouseBusyError(
                f"{what} refused: {warehouse} is being written by {holder}; wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{what} (pid {os.getpid()})")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def failed_path(warehouse: Path) -> Path:
    """Where the last failed build's copy is kept for inspection (its quarantined_rows and
    stored test failures), until the next failure replaces it."""
    return warehouse.parent / f".{warehouse.name}{FAILED_SUFFIX}" / warehouse.name


def aside_path(warehouse: Path) -> Path:
    """Where a build writes: a folder beside the warehouse, the same file name (DuckDB names the
    catalog after the file's stem, and views keep that name)."""
    return warehouse.parent / f".{warehouse.name}{ASIDE_SUFFIX}" / warehouse.name


def _check_not_held(warehouse: Path) -> None:
    """Refuse up front, in one line naming the holder, if a DuckDB session holds the warehouse
    read-write (readers that opened it read-only are fine: the build does not touch the file)."""
    if not warehouse.exists():
        return
    try:
        duckdb.connect(str(warehouse), read_only=True).close()
    except duckdb.IOException as exc:
        detail = str(exc).split("\n")[0]
        raise WarehouseBusyError(
            f"cannot build: the warehouse {warehouse} is held by another process ({detail})"
        ) from None


def _finish(previous: Path, aside: Path) -> list[str]:
    """Copy the tables of the previous warehouse that the build did not create (model_metrics,
    tables of one's own) into the new one, and checkpoint it (the file alone is the database
    once published: no write-ahead log left beside it). Returns the tables carried over."""
    with duckdb.connect(str(aside)) as con:
        # When this build was published: a model records the build it trained on, and one
        # trained on an older build is never promoted over one trained on a newer (ranker.train).
        con.execute(
            f"create or replace table {BUILD_TABLE} as "
            "select cast(current_timestamp as timestamp) as published_at"
        )
        rows: list[tuple[str, str]] = []
        if previous.exists():
            quoted = str(previous).replace("'", "''")
            con.execute(f"attach '{quoted}' as previous (read_only)")
            rows = con.execute(
                "select table_schema, table_name from information_schema.tables "
                "where table_catalog = 'previous' and table_type = 'BASE TABLE' "
                "except "
                "select table_schema, table_name from information_schema.tables "
                "where table_catalog = current_database()"
            ).fetchall()
            for schema, name in rows:
                con.execute(f'create schema if not exists "{schema}"')
                con.execute(
                    f'create table "{schema}"."{name}" as '
                    f'select * from previous."{schema}"."{name}"'
                )
            con.execute("detach previous")
        con.execute("checkpoint")
    return [f"{schema}.{name}" for schema, name in rows]


@contextmanager
def publishing(warehouse: Path, keep_all: bool = False) -> Iterator[Path]:
    """Yield the aside path to build into; publish it over ``warehouse`` if the block returns.

    ``keep_all``: start from a copy of the current warehouse (a selective build rebuilds only
    part of it); otherwise start empty and carry over only the tables the build does not make.
    """
    _check_not_held(warehouse)
    aside = aside_path(warehouse)
    with writer_lock(warehouse, "unirank-cli build", wait=False):
        shutil.rmtree(aside.parent, ignore_errors=True)  # a killed build's leftovers
        aside.parent.mkdir(parents=True)
        try:
            if keep_all and warehouse.exists():
                shutil.copyfile(warehouse, aside)
            try:
                yield aside
            except Exception:
                if aside.exists():
                    failed = failed_path(warehouse)
                    shutil.rmtree(failed.parent, ignore_errors=True)
                    failed.parent.mkdir(parents=True)
                    for part in aside.parent.iterdir():  # the file and its write-ahead log
                        os.replace(part, failed.parent / part.name)
                raise
            carried = _finish(warehouse, aside)
            if carried:
                logger.info("carried over from the previous warehouse: %s", ", ".join(carried))
            stale_wal = warehouse.with_name(warehouse.name + ".wal")
            if stale_wal.exists():
                stale_wal.unlink()
            os.replace(aside, warehouse)
        finally:
            shutil.rmtree(aside.parent, ignore_errors=True)


def published_at(warehouse: Path) -> str | None:
    """When the warehouse's build was published (ISO text), or None (built before this was
    recorded, or by plain dbt)."""
    if not warehouse.exists():
        return None
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            row = con.execute(
                f"select cast(max(published_at) as varchar) from {BUILD_TABLE}"
            ).fetchone()
    except duckdb.Error:
        return None
    return None if row is None or row[0] is None else str(row[0])


STATE_TABLE = "unirank_build_state"


class IncompleteBuildError(UnirankError, RuntimeError):
    """The warehouse's last dbt run did not complete: it may mix two runs."""


def check_build_complete(warehouse: Path) -> None:
    """Refuse, in one line, a warehouse whose last writing dbt run (recorded by the project's
    on-run-start / on-run-end hooks in ``unirank_build_state``) did not complete: a plain
    ``dbt build`` killed mid-way (state ``running``) or one that failed (``failed``). A warehouse
    built before the hooks existed has no such table and is accepted."""
    if not warehouse.exists():
        return
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            row = con.execute(
                f"select state, command, cast(recorded_at as varchar), failed_nodes "
                f"from {STATE_TABLE}"
            ).fetchone()
    except duckdb.CatalogException:
        return
    if row is None or row[0] == "complete":
        return
    state, command, recorded_at, failed_nodes = row
    how = (
        f"started at {recorded_at} and never finished (killed?)"
        if state == "running"
        else f"finished at {recorded_at} with {failed_nodes} node(s) failed or skipped"
    )
    raise IncompleteBuildError(
        f"{warehouse} is half-built: its last `dbt {command}` {how}, so its tables may mix two "
        "runs; rebuild it with `unirank-cli build` (which publishes only a build that passed)"
    )


def replace_rows(
    warehouse: Path,
    what: str,
    table: str,
    columns: str,
    key: tuple[str, Any],
    rows: Sequence[Sequence[Any]],
) -> None:
    """Replace the rows of ``table`` whose ``key`` column holds ``key``'s value with ``rows``,
    in one transaction under the writer lock (waiting for a build's publish): how ``train``
    records ``model_metrics`` and ``score`` records ``cache_metrics`` in the published
    warehouse, which a build carries over. ``columns`` declares the table when it is missing
    (a ``recorded_at`` timestamp is added); ``rows`` hold every column but that one."""
    names = [c.strip().split()[0] for c in columns.split(",")]
    column, value = key
    from ranker.warehouse import connect  # its errors name the warehouse

    with writer_lock(warehouse, what, wait=True), connect(warehouse, read_only=False) as con:
        con.execute(
            f"create table if not exists {table} "
            f"({columns}, recorded_at timestamp default current_timestamp)"
        )
        con.execute("begin transaction")
        con.execute(f"delete from {table} where {column} = ?", [value])
        if rows:
            con.executemany(
                f"insert into {table} ({', '.join(names)}) "
                f"values ({', '.join('?' for _ in names)})",
                list(rows),
            )
        con.execute("commit")
