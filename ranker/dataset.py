"""Reading the ranking mart and its companions from the warehouse.

The mart is read through Arrow (no row-by-row Python), ordered by request so every request's rows
are contiguous, which CatBoost's ranking pools require.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import pandas as pd

from ranker import warehouse
from ranker.config import Settings
from ranker.errors import UnirankError
from ranker.registry import Registry
from ranker.warehouse import WarehouseError

logger = logging.getLogger(__name__)

MART = "ranking_examples"
KEY_COLUMNS: tuple[str, ...] = ("request_id", "item_id", "task_type", "split", "label")
SPLITS: tuple[str, ...] = ("train", "valid", "test")


class DatasetError(UnirankError, ValueError):
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


def location(settings: Settings) -> str:
    """Where the warehouse is, for messages: the DuckDB file or the Spark target."""
    if warehouse.engine(settings) == "spark":
        return f"the Spark target {settings.target or 'spark'}"
    return str(settings.duckdb_path)


def _require_relation(settings: Settings, name: str) -> list[str]:
    columns = warehouse.relation_columns(settings, name)
    if columns is None:
        target = f" --target {settings.target}" if settings.target else ""
        raise DatasetError(
            f"table {name} is not in {location(settings)}; run `unirank-cli build{target}` first"
        )
    return columns


def mart_summary(settings: Settings) -> list[SplitCount]:
    """Requests, rows and share of positive rows per canvas and split of the ranking mart."""
    _require_relation(settings, MART)
    rows = warehouse.fetchall(
        settings,
        f"""
        select task_type, split, count(distinct request_id), count(*), avg(case when label > 0 then 1.0 else 0.0 end)
        from {MART}
        group by task_type, split
        order by task_type, case split when 'train' then 0 when 'valid' then 1 else 2 end
        """,
    )
    return [SplitCount(str(t), str(s), int(r), int(n), float(p)) for t, s, r, n, p in rows]


def quarantine_summary(settings: Settings) -> list[QuarantineCount]:
    """Rows quarantined per source table (empty when the project has no quarantine summary)."""
    try:
        _require_relation(settings, "quarantine_summary")
    except DatasetError:
        return []
    rows = warehouse.fetchall(
        settings,
        "select source_table, total_rows, quarantined_rows, quarantined_share "
        "from quarantine_summary order by source_table",
    )
    return [QuarantineCount(str(t), int(n), int(q), float(s)) for t, n, q, s in rows]


@dataclass(frozen=True)
class RankingData:
    """The ranking mart in memory: one frame, rows grouped by request, and its feature lists."""

    frame: pd.DataFrame
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    fingerprint: str

    @property
    def features(self) -> tuple[str, ...]:
        return self.categorical + self.numeric

    def split(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == name]

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(sorted(self.frame["task_type"].unique()))


def load_ranking_data(settings: Settings, relation: str = MART) -> RankingData:
    """Load the mart's keys, label and registry features; check what training relies on.

    On either engine the rows arrive as Arrow (on Spark: record batches shipped to the driver),
    ordered by request, and become one pandas frame: training is single-node, so the mart (or
    the stratified sample of it the registry's budget keeps) must fit in this machine's memory.
    """
    registry = settings.registry
    present = _require_relation(settings, relation)
    wanted = list(dict.fromkeys([*KEY_COLUMNS, *registry.model_features.all]))
    missing = [c for c in wanted if c not in present]
    if missing:
        raise DatasetError(
            f"{relation} lacks column(s) {missing} that training needs (keys "
            f"{list(KEY_COLUMNS)}, the context columns marked `feature` and the registry's "
            "feature columns); rebuild it with `unirank-cli build`"
        )
    columns = ", ".join(warehouse.quote(settings, c) for c in wanted)
    table = warehouse.fetch_arrow(
        settings, f"select {columns} from {relation} order by request_id, item_id"
    )
    frame = table.to_pandas()
    validate_frame(frame, registry)
    logger.info(
        "loaded %s rows, %s requests from %s", len(frame), frame["request_id"].nunique(), relation
    )
    return RankingData(
        frame=frame,
        categorical=registry.model_features.categorical,
        numeric=registry.model_features.numeric,
        fingerprint=fingerprint(frame),
    )


def validate_frame(frame: pd.DataFrame, registry: Registry) -> None:
    """Refuse data that would make training or evaluation meaningless, naming the problem."""
    if frame.empty:
        raise DatasetError(
            "the ranking mart is empty; check the sources and the stratification budget"
        )
    labels = frame["label"]
    if labels.isna().any():
        bad = frame.loc[labels.isna(), ["request_id", "item_id", "task_type"]].iloc[0]
        raise DatasetError(
            f"{int(labels.isna().sum())} row(s) have a NULL/NaN label, e.g. request "
            f"{bad.request_id} item {bad.item_id} of canvas {bad.task_type}; fix that canvas's "
            "label model"
        )
    if (labels < 0).any():
        raise DatasetError("labels must be >= 0 (graded: 0 shown and not engaged, higher = better)")
    unknown_splits = set(frame["split"].unique()) - set(SPLITS)
    if unknown_splits:
        raise DatasetError(
            f"unknown split value(s) {sorted(unknown_splits)}; expected {list(SPLITS)}"
        )
    for split in SPLITS:
        if not (frame["split"] == split).any():
            raise DatasetError(
                f"the {split} split is empty; the registry cuts at valid_from="
                f"{registry.split.valid_from}, test_from={registry.split.test_from}: move them "
                "inside the data's time range"
            )
    per_request = frame.groupby("request_id", sort=False)["task_type"].nunique()
    if (per_request > 1).any():
        raise DatasetError(
            f"request {per_request[per_request > 1].index[0]} appears under several canvases; "
            "request ids must be unique across canvases"
        )
    for column in registry.model_features.numeric:
        if frame[column].isna().any():
            raise DatasetError(
                f"feature {column} has NULLs; the mart must fill its declared default instead"
            )


def fingerprint(frame: pd.DataFrame) -> str:
    """A stable hash of the rows training sees (keys, split and label), independent of engine."""
    hashed = pd.util.hash_pandas_object(
        frame[["request_id", "item_id", "split", "label"]], index=False
    ).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


__all__ = [
    "DatasetError",
    "QuarantineCount",
    "RankingData",
    "SplitCount",
    "WarehouseError",
    "load_ranking_data",
    "location",
    "mart_summary",
    "quarantine_summary",
]
