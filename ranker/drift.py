"""Drift of feature distributions between two sets of rows, tested by Evidently, per column.

The report compares each canvas's training rows with its test rows and with its serving
candidates; ``unirank-cli monitor`` compares today's serving candidates with those the current
model was trained beside (its ``serving_reference.parquet``). Only the columns whose distribution should stay
stable are compared (the registry's ``drift`` per feature column: rates, shares, normalised
values and categories; a cumulative count grows by construction and is left out).

Evidently chooses the test per column from its type and the number of rows (for example
Kolmogorov-Smirnov below 1,000 rows and the normed Wasserstein distance above, chi-square or
Jensen-Shannon for categories) and says whether it drifted; this module keeps its verdict, the
method and threshold, plus small histograms for the page. Evidently is imported inside functions
only (it takes about 3 s; ``train`` imports it in a low-priority worker process while the
models fit: ranker.report.evidently_worker, ranker.worker).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ranker.errors import UnirankError

MAX_ROWS = 5_000  # rows per side: enough for a stable test, small enough to keep it fast
# The order a sample of serving candidates is drawn in (the first N per canvas), in SQL that
# DuckDB and Spark share: `train` keeps one with the model, `monitor` draws today's the same way.
SAMPLE_ORDER = "md5(concat(request_id, item_id))"
_BINS = 10
_TOP_CATEGORIES = 8


class DriftError(UnirankError, ValueError):
    """The rows to compare are unusable (no column in common, no rows)."""


@dataclass(frozen=True)
class Bin:
    label: str
    reference: float  # share of the reference rows
    current: float  # share of the current rows


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str  # numeric | categorical
    method: str
    threshold: float
    score: float
    drifted: bool
    bins: tuple[Bin, ...] = ()


@dataclass(frozen=True)
class DriftResult:
    """One comparison: ``current`` rows against ``reference`` rows, column by column."""

    reference: str
    current: str
    reference_rows: int
    current_rows: int
    columns: tuple[ColumnDrift, ...]
    not_compared: dict[str, str] = field(default_factory=dict)  # column -> why

    @property
    def drifted(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.columns if c.drifted)

    @property
    def share(self) -> float:
        """Share of the compared columns that drifted (0 when none was compared)."""
        return len(self.drifted) / len(self.columns) if self.columns else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "current": self.current,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "drift_share": self.share,
            "drifted": list(self.drifted),
            "columns": [
                {
                    "column": c.column,
                    "kind": c.kind,
                    "method": c.method,
                    "threshold": c.threshold,
                    "score": c.score,
                    "drifted": c.drifted,
                }
                for c in self.columns
            ],
            "not_compared": dict(self.not_compared),
        }


def sample(frame: pd.DataFrame, rows: int = MAX_ROWS, seed: int = 0) -> pd.DataFrame:
    """At most ``rows`` rows of ``frame``, drawn at random (deterministic by ``seed``)."""
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed)


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    reference_label: str,
    current_label: str,
    max_rows: int = MAX_ROWS,
    seed: int = 0,
) -> DriftResult:
    """Evidently's drift test on every listed column present and non-empty on both sides (the
    test Evidently picks for the column's type and size, with its default threshold)."""
    # The test Evidently's ValueDrift metric picks and runs (get_one_column_drift), without the
    # plotly figures it also draws for its own UI (nine tenths of its time).
    from evidently.legacy.calculations.stattests import get_stattest

    if reference.empty or current.empty:
        side = reference_label if reference.empty else current_label
        raise DriftError(f"no {side} rows to compare")
    reference = sample(reference, max_rows, seed)
    current = sample(current, max_rows, seed)
    not_compared: dict[str, str] = {}
    kept: dict[str, str] = {}
    wanted = [*((c, "numeric") for c in numeric), *((c, "categorical") for c in categorical)]
    for column, kind in wanted:
        if column in kept or column in not_compared:
            continue
        if column not in reference.columns or column not in current.columns:
            side = reference_label if column not in reference.columns else current_label
            not_compared[column] = f"not in the {side} rows"
        elif reference[column].isna().all() or current[column].isna().all():
            not_compared[column] = "empty on one side"
        elif reference[column].nunique() <= 1 and current[column].nunique() <= 1:
            not_compared[column] = "one value on both sides"
        else:
            kept[column] = kind
    if not kept:
        raise DriftError(
            f"no column to compare between {reference_label} and {current_label}: "
            + "; ".join(f"{c} {why}" for c, why in not_compared.items())
        )
    columns = []
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for column, kind in kept.items():
            if kind == "numeric":
                ref = pd.to_numeric(reference[column], errors="coerce").dropna().astype(float)
                cur = pd.to_numeric(current[column], errors="coerce").dropna().astype(float)
                bins = _numeric_bins(ref, cur)
            else:
                ref = reference[column].dropna().astype(str)
                cur = current[column].dropna().astype(str)
                bins = _category_bins(ref, cur)
            feature_type = "num" if kind == "numeric" else "cat"
            test = get_stattest(ref, cur, feature_type, None)
            outcome = test(ref, cur, feature_type, None)
            columns.append(
                ColumnDrift(
                    column,
                    kind,
                    str(test.display_name),
                    float(outcome.actual_threshold),
                    float(outcome.drift_score),
                    bool(outcome.drifted),
                    bins,
                )
            )
    return DriftResult(
        reference_label, current_label, len(reference), len(current), tuple(columns), not_compared
    )


def _numeric_bins(reference: pd.Series, current: pd.Series) -> tuple[Bin, ...]:
    ref = pd.to_numeric(reference, errors="coerce").dropna().to_numpy(dtype=float)
    cur = pd.to_numeric(current, errors="coerce").dropna().to_numpy(dtype=float)
    both = np.concatenate([ref, cur])
    low, high = float(both.min()), float(both.max())
    if not (math.isfinite(low) and math.isfinite(high)) or low == high:
        return (Bin(_number(low), 1.0, 1.0),)
    distinct = np.unique(both)
    if len(distinct) <= _BINS:  # few values (flags, small counts): one bar per value
        return tuple(
            Bin(
                _number(v),
                float(np.mean(ref == v)) if len(ref) else 0.0,
                float(np.mean(cur == v)) if len(cur) else 0.0,
            )
            for v in distinct
        )
    edges = np.linspace(low, high, _BINS + 1)
    ref_counts = np.histogram(ref, edges)[0] / max(len(ref), 1)
    cur_counts = np.histogram(cur, edges)[0] / max(len(cur), 1)
    return tuple(
        Bin(f"{_number(edges[i])} to {_number(edges[i + 1])}", float(r), float(c))
        for i, (r, c) in enumerate(zip(ref_counts, cur_counts, strict=True))
    )


def _category_bins(reference: pd.Series, current: pd.Series) -> tuple[Bin, ...]:
    ref = reference.astype(str).value_counts(normalize=True)
    cur = current.astype(str).value_counts(normalize=True)
    top = list(ref.add(cur, fill_value=0).sort_values(ascending=False).index[:_TOP_CATEGORIES])
    bins = [Bin(str(v), float(ref.get(v, 0.0)), float(cur.get(v, 0.0))) for v in top]
    rest_ref, rest_cur = 1.0 - sum(b.reference for b in bins), 1.0 - sum(b.current for b in bins)
    if rest_ref > 1e-9 or rest_cur > 1e-9:
        bins.append(Bin("(others)", max(rest_ref, 0.0), max(rest_cur, 0.0)))
    return tuple(bins)


def _number(value: float) -> str:
    return f"{value:.3g}"
