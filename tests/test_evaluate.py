"""Ranking metrics: hand-checked values, K respected (ours and Evidently's), bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ranker.evaluate import (
    EvaluationError,
    bootstrap_interval,
    compare_models,
    metrics_at_k,
    per_request_metrics,
)
from ranker.report import evidently_ranking_curves, evidently_ranking_metrics


def naive_metrics(labels: list[float], scores: list[float], k: int) -> dict[str, float]:
    """The textbook definitions, one request, written as plainly as possible."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    ranked = [labels[i] for i in order]
    dcg = sum((2**g - 1) / math.log2(r + 2) for r, g in enumerate(ranked[:k]) if g > 0)
    ideal = sorted(labels, reverse=True)
    idcg = sum((2**g - 1) / math.log2(r + 2) for r, g in enumerate(ideal[:k]) if g > 0)
    hits, precisions = 0, []
    for r, g in enumerate(ranked[:k]):
        if g > 0:
            hits += 1
            precisions.append(hits / (r + 1))
    n_relevant = sum(1 for g in labels if g > 0)
    first = next(r + 1 for r, g in enumerate(ranked) if g > 0)
    return {
        f"ndcg@{k}": dcg / idcg,
        f"map@{k}": sum(precisions) / min(k, n_relevant),
        f"hitrate@{k}": float(hits > 0),
        "mrr": 1 / first,
    }


def test_hand_checked_binary_example() -> None:
    # Relevant items at ranks 2 and 4.
    m = per_request_metrics([0, 1, 0, 1, 0], [5, 4, 3, 2, 1], ["a"] * 5)
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg@10"][0] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / idcg)
    assert m["map@10"][0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert m["mrr"][0] == pytest.approx(0.5)
    assert m["hitrate@10"][0] == 1.0


def test_hand_checked_graded_example() -> None:
    # A conversion (2) ranked below a click (1): gains 2^2 - 1 = 3 and 1.
    m = metrics_at_k([1, 2, 0], [3, 2, 1], ["r"] * 3, k=2)
    dcg = 1 / math.log2(2) + 3 / math.log2(3)
    idcg = 3 / math.log2(2) + 1 / math.log2(3)
    assert m["ndcg@2"][0] == pytest.approx(dcg / idcg)
    assert m["map@2"][0] == pytest.approx((1 / 1 + 2 / 2) / 2)


def test_items_beyond_k_do_not_count() -> None:
    labels = [0, 0, 0, 1, 0, 0]  # the only relevant item is at rank 4
    scores = [6, 5, 4, 3, 2, 1]
    at_3 = metrics_at_k(labels, scores, ["a"] * 6, k=3)
    assert at_3["ndcg@3"][0] == 0 and at_3["map@3"][0] == 0 and at_3["hitrate@3"][0] == 0
    assert at_3["mrr"][0] == pytest.approx(1 / 4)  # MRR looks at the whole list
    at_4 = metrics_at_k(labels, scores, ["a"] * 6, k=4)
    assert at_4["hitrate@4"][0] == 1 and at_4["ndcg@4"][0] > 0


def test_requests_without_a_positive_are_excluded_and_ties_are_deterministic() -> None:
    m = per_request_metrics([0, 0, 1, 0], [1, 1, 1, 1], ["empty", "empty", "b", "b"])
    assert list(m["request"]) == ["b"]
    assert m["mrr"][0] == 1.0  # tie: the first row of the request wins


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(EvaluationError, match="length"):
        per_request_metrics([1, 0], [0.5], ["a", "a"])
    with pytest.raises(EvaluationError, match="NaN"):
        per_request_metrics([1, 0], [0.5, float("nan")], ["a", "a"])
    with pytest.raises(EvaluationError, match="k must be"):
        metrics_at_k([1], [1], ["a"], k=0)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5)), min_size=1, max_size=15),
        min_size=1,
        max_size=6,
    ),
    k=st.integers(1, 12),
)
def test_vectorised_metrics_match_the_textbook(data: list[list[tuple[int, int]]], k: int) -> None:
    labels, scores, groups = [], [], []
    for g, rows in enumerate(data):
        for label, score in rows:
            labels.append(label)
            scores.append(score)
            groups.append(f"r{g:02d}")
    m = metrics_at_k(labels, scores, groups, k)
    expected = [
        naive_metrics([lb for lb, _ in rows], [sc for _, sc in rows], k)
        for g, rows in enumerate(data)
        if any(lb > 0 for lb, _ in rows)
    ]
    assert len(m["request"]) == len(expected)
    for i, naive in enumerate(expected):
        for name, value in naive.items():
            assert m[name][i] == pytest.approx(value), name


def test_library_metrics_are_read_at_the_right_k() -> None:
    """Evidently's recsys metrics, read at every k = 1..6, equal ours on hand-made lists where
    relevant items sit beyond k (recsys libraries have a history of counting those, and
    Evidently keys its curves from 1 for some metrics and from 2 for others)."""
    rows = [
        ("a", [0, 1, 0, 1, 0, 0]),  # relevant at 2 and 4
        ("b", [0, 0, 0, 0, 1, 0]),  # relevant only at 5
        ("c", [1, 0, 0, 0, 0, 1]),  # relevant at 1 and 6
        ("d", [0, 0, 0, 0, 0, 0]),  # no positive: excluded by both
    ]
    frame = pd.DataFrame(
        [
            {"request_id": r, "item_id": f"{r}{i}", "label": lb, "score": float(10 - i)}
            for r, labels in rows
            for i, lb in enumerate(labels)
        ]
    )
    theirs = evidently_ranking_curves(frame, 6)
    assert {name: len(values) for name, values in theirs.items()} == {
        "ndcg": 6,
        "map": 6,
        "mrr": 6,
        "hitrate": 6,
    }
    first_relevant = {"a": 2, "b": 5, "c": 1}
    relevant_ranks = {"a": [2, 4], "b": [5], "c": [1, 6]}
    for k in range(1, 7):
        ours = metrics_at_k(frame["label"], frame["score"], frame["request_id"], k)
        # binary labels: Evidently's linear gain equals our 2^label - 1, and HitRate is the same
        assert theirs["ndcg"][k - 1] == pytest.approx(ours[f"ndcg@{k}"].mean()), k
        assert theirs["hitrate"][k - 1] == pytest.approx(ours[f"hitrate@{k}"].mean()), k
        # Evidently's MAP divides by every relevant item, its MRR is cut at k: by hand
        ap = []
        for ranks in relevant_ranks.values():
            hits = [r for r in ranks if r <= k]
            ap.append(sum((i + 1) / r for i, r in enumerate(hits)) / len(ranks))
        assert theirs["map"][k - 1] == pytest.approx(np.mean(ap)), k
        mrr = [1 / r if r <= k else 0.0 for r in first_relevant.values()]
        assert theirs["mrr"][k - 1] == pytest.approx(np.mean(mrr)), k
    assert evidently_ranking_metrics(frame, 3)["ndcg"] == pytest.approx(theirs["ndcg"][2])


def test_bootstrap_interval_brackets_the_mean_and_is_reproducible() -> None:
    values = np.random.default_rng(3).random(400)
    interval = bootstrap_interval(values, n_resamples=500, seed=1)
    assert interval.low < interval.value < interval.high
    assert interval.value == pytest.approx(values.mean())
    assert interval.high - interval.low == pytest.approx(2 * 1.96 * values.std() / 20, rel=0.25)
    assert bootstrap_interval(values, n_resamples=500, seed=1) == interval
    constant = bootstrap_interval(np.full(50, 0.3), n_resamples=200)
    assert constant.low == constant.high == pytest.approx(0.3)
    assert math.isnan(bootstrap_interval(np.array([])).value)


def test_compare_models_pairs_requests() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat([f"r{i}" for i in range(200)], 10)
    labels = (rng.random(2000) < 0.2).astype(float)
    good = labels + rng.normal(0, 0.5, 2000)
    noise = rng.normal(0, 1, 2000)
    result = compare_models(
        "home",
        labels,
        groups,
        {"unified": good, "same": good.copy(), "noise": noise},
        n_resamples=300,
    )
    assert result.deltas["same"]["ndcg@10"].low == result.deltas["same"]["ndcg@10"].high == 0
    assert result.deltas["noise"]["ndcg@10"].low > 0
    assert result.n_requests == len(result.models["unified"].per_request["request"])
