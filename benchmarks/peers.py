"""Peer rankers a user would pick instead of CatBoost YetiRank, for the benchmarks only.

``lightgbm_lambdarank`` has the signature of ``ranker.train.PeerModel``: it fits on the train
frame (early stopping on valid NDCG@10), on the same features, and scores the test frame, so
``train_and_evaluate(..., peers={"lightgbm": lightgbm_lambdarank})`` compares it on exactly the
same test requests as every other model. LightGBM is a benchmark-only dependency (the `bench`
extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

# A competent user's configuration: LightGBM's own defaults for trees, a moderate learning rate,
# NDCG@10 as both objective truncation and early-stopping metric, patience 50 rounds.
LIGHTGBM_PARAMS: dict[str, Any] = {
    "objective": "lambdarank",
    "n_estimators": 2000,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 20,
    "lambdarank_truncation_level": 10,
    "importance_type": "gain",
    "verbose": -1,
}
EARLY_STOPPING_ROUNDS = 50


def _group_sizes(frame: pd.DataFrame) -> np.ndarray:
    """Run lengths of request_id: the frames are ordered by request (rows contiguous)."""
    ids = frame["request_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    return np.diff(np.r_[starts, len(ids)])


def _features(
    frame: pd.DataFrame, features: Sequence[str], categorical: Sequence[str], levels: dict[str, Any]
) -> pd.DataFrame:
    out = frame[list(features)].copy()
    for name in categorical:
        if name in out:
            out[name] = pd.Categorical(out[name].astype(str), categories=levels[name])
    return out


def lightgbm_lambdarank(
    train: pd.DataFrame,
    valid: pd.DataFrame | None,
    test: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    threads: int = 2,
) -> np.ndarray:
    import lightgbm as lgb

    levels = {
        name: sorted(train[name].astype(str).unique()) for name in categorical if name in features
    }
    model = lgb.LGBMRanker(**LIGHTGBM_PARAMS, n_jobs=threads, random_state=0)
    fit_args: dict[str, Any] = {}
    if valid is not None and len(valid):
        fit_args = {
            "eval_set": [(_features(valid, features, categorical, levels), valid["label"])],
            "eval_group": [_group_sizes(valid)],
            "eval_at": [10],
            "callbacks": [lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
        }
    model.fit(
        _features(train, features, categorical, levels),
        train["label"],
        group=_group_sizes(train),
        **fit_args,
    )
    scores: np.ndarray = np.asarray(model.predict(_features(test, features, categorical, levels)))
    return scores
