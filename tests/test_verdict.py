"""The verdict per canvas and the pooled-vs-canvases (Simpson) flag, on hand-built intervals."""

from __future__ import annotations

import pytest

from ranker.evaluate import Interval, TaskEvaluation
from ranker.verdict import disagreements, sentence, word


def _evaluations(**intervals: tuple[float, float]) -> list[TaskEvaluation]:
    return [
        TaskEvaluation(
            task, 100, 1000, {}, {"bespoke": {"ndcg@10": Interval((lo + hi) / 2, lo, hi)}}
        )
        for task, (lo, hi) in intervals.items()
    ]


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(0.001, 0.02, "better"), (-0.02, -0.001, "worse"), (-0.01, 0.01, "tie"), (0.0, 0.02, "tie")],
)
def test_a_paired_interval_gives_better_tie_or_worse(
    low: float, high: float, expected: str
) -> None:
    assert word(Interval((low + high) / 2, low, high)) == expected


def test_one_plain_sentence_per_canvas() -> None:
    better = sentence("home", "bespoke", Interval(0.012, 0.003, 0.021), "ndcg@10")
    assert better == (
        "home: the unified model is better than bespoke by 0.012 ndcg@10 "
        "(95% interval +0.003 to +0.021)."
    )
    worse = sentence("search", "popularity", Interval(-0.05, -0.08, -0.02), "ndcg@10")
    assert "is worse than popularity by 0.050" in worse
    tie = sentence("all", "no_task", Interval(0.001, -0.004, 0.006), "ndcg@10")
    assert tie.startswith("all canvases pooled: the unified model ties with no_task")


def test_pooled_better_while_a_canvas_is_worse_is_flagged() -> None:
    found = disagreements(
        _evaluations(
            all=(0.002, 0.01), home=(0.01, 0.03), search=(-0.04, -0.01), related=(-0.01, 0.02)
        ),
        "ndcg@10",
    )
    assert len(found) == 1 and found[0].pooled == "better"
    assert found[0].canvases == (("search", "worse"),)
    assert "pooled result is better but the canvases disagree (worse on search)" in str(found[0])


def test_pooled_worse_while_a_canvas_is_better_is_flagged() -> None:
    found = disagreements(
        _evaluations(all=(-0.02, -0.001), home=(0.001, 0.02), search=(-0.05, -0.02)), "ndcg@10"
    )
    assert [(d.pooled, d.canvases) for d in found] == [("worse", (("home", "better"),))]


def test_agreement_and_a_lopsided_tie_are_not_flagged() -> None:
    assert not disagreements(
        _evaluations(all=(0.01, 0.02), home=(0.01, 0.03), search=(-0.01, 0.02)), "ndcg@10"
    )
    assert not disagreements(
        _evaluations(all=(-0.01, 0.01), home=(0.01, 0.03), search=(-0.01, 0.02)), "ndcg@10"
    )
    split = disagreements(
        _evaluations(all=(-0.01, 0.01), home=(0.01, 0.03), search=(-0.04, -0.01)), "ndcg@10"
    )
    assert split and split[0].pooled == "tie"  # a tie pooled over a better and a worse canvas
    assert not disagreements(_evaluations(home=(0.01, 0.03)), "ndcg@10")  # no pooled row
