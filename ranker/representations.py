"""Item representations learned from every canvas's engagements, versioned in time.

The built-in feature model ``int_features__representation`` compares a candidate with the
user's, the source item's and the query's vectors. The item vectors come from here: implicit's
ALS (collaborative filtering for implicit feedback) on the (user x item) matrix of the
engagements of every canvas. One version is learned per cut (``int_representation_versions``),
each only from the engagements strictly before its cut, so a probe that reads the latest version
at or before its time sees nothing of its own time or later (docs/training.md#representations).

The dbt Python model ``int_item_representations`` calls :func:`learn_versions` during ``dbt
build``; ``train`` records :func:`versions_fingerprint` in the model's metadata, so a model says
which representations it was trained with.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ranker.registry import REPRESENTATION_MODEL

if TYPE_CHECKING:
    from ranker.config import Settings

log = logging.getLogger(__name__)

FEATURE_MODEL = REPRESENTATION_MODEL

# Anonymous engagements (user_id NULL) are grouped by their request: the items engaged with in
# one request (a session, a visit) are co-engagements, as a user's are.
ANONYMOUS_PREFIX = "request|"


@dataclass(frozen=True)
class AlsSettings:
    """The registry's ``representations`` block, as the learner needs it."""

    dimensions: int = 32
    iterations: int = 15
    regularization: float = 0.05
    alpha: float = 1.0
    seed: int = 0


def vector_columns(dimensions: int) -> list[str]:
    """``rep_0 .. rep_{D-1}``: one double column per dimension (portable SQL, no arrays)."""
    return [f"rep_{d}" for d in range(dimensions)]


def learn_versions(
    engagements: pd.DataFrame, cuts: Sequence[pd.Timestamp], settings: AlsSettings
) -> pd.DataFrame:
    """One row per (cut, item with engagements strictly before the cut): ``cut_at``,
    ``item_id`` and the item's unit vector ``rep_0 .. rep_{D-1}`` (cosine = dot product).

    ``engagements`` has ``user_id`` (None = anonymous: its ``request_id`` stands for the user),
    ``request_id``, ``item_id`` and ``engaged_at``. A version with fewer than two users or items
    before its cut has no rows (its probes get the features' default).
    """
    columns = ["cut_at", "item_id", *vector_columns(settings.dimensions)]
    users = engagements["user_id"].where(
        engagements["user_id"].notna(), ANONYMOUS_PREFIX + engagements["request_id"].astype(str)
    )
    events = pd.DataFrame(
        {
            "user": users.astype(str),
            "item_id": engagements["item_id"].astype(str),
            "engaged_at": pd.to_datetime(engagements["engaged_at"]),
        }
    )
    frames = []
    for cut in sorted({pd.Timestamp(c) for c in cuts}):
        vectors = learn_items(events[events["engaged_at"] < cut], settings)
        vectors.insert(0, "cut_at", cut)
        frames.append(vectors)
        log.info("representations as of %s: %d items", cut, len(vectors))
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def learn_items(events: pd.DataFrame, settings: AlsSettings) -> pd.DataFrame:
    """ALS on the (user x item) engagement counts of ``events`` (``user``, ``item_id``): each
    item's factor vector, unit-normalised; items whose vector is zero are left out."""
    from implicit.cpu.als import AlternatingLeastSquares
    from scipy.sparse import csr_matrix
    from threadpoolctl import threadpool_limits

    names = vector_columns(settings.dimensions)
    counts = events.groupby(["user", "item_id"], sort=True).size().rename("n").reset_index()
    users = pd.Index(sorted(counts["user"].unique()))
    items = pd.Index(sorted(counts["item_id"].unique()))
    if len(users) < 2 or len(items) < 2:
        return pd.DataFrame(columns=["item_id", *names])
    matrix = csr_matrix(
        (
            1.0 + settings.alpha * counts["n"].to_numpy(dtype=np.float64),
            (users.get_indexer(counts["user"]), items.get_indexer(counts["item_id"])),
        ),
        shape=(len(users), len(items)),
        dtype=np.float32,
    )
    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(
            factors=settings.dimensions,
            regularization=settings.regularization,
            iterations=settings.iterations,
            random_state=settings.seed,
            num_threads=1,
            calculate_training_loss=False,
        )
        model.fit(matrix, show_progress=False)
    factors = np.asarray(model.item_factors, dtype=np.float64)[:, : settings.dimensions]
    norms = np.linalg.norm(factors, axis=1)
    kept = norms > 1e-12
    unit = factors[kept] / norms[kept, None]
    frame = pd.DataFrame(unit, columns=names)
    frame.insert(0, "item_id", items[kept].to_numpy())
    return frame


def versions_fingerprint(settings: Settings) -> dict[str, Any] | None:
    """The representations a model trains with, for its metadata: the cuts, the settings and a
    hash of every version's vectors (engine-independent); None when the registry does not list
    the feature model."""
    import hashlib

    from ranker import warehouse

    if FEATURE_MODEL not in {f.model for f in settings.registry.feature_models}:
        return None
    names = vector_columns(settings.registry.representations.dimensions)
    frame = warehouse.fetch_arrow(
        settings,
        f"select cut_at, item_id, {', '.join(names)} from int_item_representations "
        "order by cut_at, item_id",
    ).to_pandas()
    frame[names] = frame[names].round(9)  # the last bits of a float differ between BLAS builds
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    cuts = frame.groupby("cut_at").size()
    return {
        "fingerprint": hashlib.sha256(hashed.tobytes()).hexdigest()[:16],
        "versions": [
            {"cut_at": pd.Timestamp(cut).isoformat(sep=" "), "items": int(n)}
            for cut, n in cuts.items()
        ],
        "settings": settings.registry.representations.model_dump(),
    }
