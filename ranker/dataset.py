"""Reading the ranking mart and its companions from the warehouse."""

from __future__ import annotations

from dataclasses import dataclass

from ranker.config import Settings
from ranker.warehouse import WarehouseError, connect, relation_exists

MART = "ranking_examples"


class DatasetError(ValueError):
    """The ranking mart is missing or does not hold what training needs."""


@dataclass(frozen=True)
class SplitCount:
    task_type: str
    split: str
    requests: int
    rows: int
    positive_share: float


@dataclass(frozen=True)
class QuarantineCount:
    source_table: str
    total_rows: int
    quarantined_rows: int
    quarantined_share: float


def _require_relation(settings: Settings, name: str) -> None:
    with connect(settings.duckdb_path) as con:
        if not relation_exists(con, name):
            raise DatasetError(
                f"table {name} is not in {settings.duckdb_path}; run `unirank-cli build` first"
            )


def mart_summary(settings: Settings) -> list[SplitCount]:
    """Requests, rows and share of positive rows per canvas and split of the ranking mart."""
    _require_relation(settings, MART)
    with connect(settings.duckdb_path) as con:
        rows = con.execute(
            f"""
            select task_type, split, count(distinct request_id), count(*), avg(case when label > 0 then 1.0 else 0.0 end)
            from {MART}
            group by task_type, split
            order by task_type, case split when 'train' then 0 when 'valid' then 1 else 2 end
            """
        ).fetchall()
    return [SplitCount(str(t), str(s), int(r), int(n), float(p)) for t, s, r, n, p in rows]


def quarantine_summary(settings: Settings) -> list[QuarantineCount]:
    """Rows quarantined per source table (empty when the project has no quarantine summary)."""
    try:
        _require_relation(settings, "quarantine_summary")
    except DatasetError:
        return []
    with connect(settings.duckdb_path) as con:
        rows = con.execute(
            "select source_table, total_rows, quarantined_rows, quarantined_share "
            "from quarantine_summary order by source_table"
        ).fetchall()
    return [QuarantineCount(str(t), int(n), int(q), float(s)) for t, n, q, s in rows]


__all__ = [
    "DatasetError",
    "QuarantineCount",
    "SplitCount",
    "WarehouseError",
    "mart_summary",
    "quarantine_summary",
]
