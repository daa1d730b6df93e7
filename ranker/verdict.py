"""The verdict: per canvas, is the one model better than, tied with or worse than each comparison
model, and does the pooled result tell the same story as the canvases?

A paired difference (unified - other, on the same requests) with its 95% interval is ``better``
when the whole interval is above zero, ``worse`` when it is below, ``tie`` otherwise. The pooled
row (every canvas together) can disagree with the canvases - better overall while worse on one
canvas, or the reverse (Simpson's paradox across canvases: the canvases weigh differently in the
pool) - and that is said in words, because a pooled number alone would hide a regression.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ranker.evaluate import ALL_TASKS, Interval, TaskEvaluation


def word(delta: Interval) -> str:
    """better / tie / worse: whether the paired 95% interval excludes zero, and on which side."""
    if delta.low > 0:
        return "better"
    if delta.high < 0:
        return "worse"
    return "tie"


def sentence(canvas: str, kind: str, delta: Interval, metric: str) -> str:
    """One plain sentence: on ``canvas``, unified against ``kind``."""
    interval = f"95% interval {delta.low:+.3f} to {delta.high:+.3f}"
    where = "all canvases pooled" if canvas == ALL_TASKS else canvas
    verdict = word(delta)
    if verdict == "tie":
        return (
            f"{where}: the unified model ties with {kind} ({metric} {delta.value:+.3f}, "
            f"{interval})."
        )
    return (
        f"{where}: the unified model is {verdict} than {kind} by {abs(delta.value):.3f} "
        f"{metric} ({interval})."
    )


@dataclass(frozen=True)
class Disagreement:
    kind: str
    pooled: str  # the pooled verdict
    canvases: tuple[tuple[str, str], ...]  # (canvas, verdict) that contradict it

    def __str__(self) -> str:
        listed = ", ".join(f"{verdict} on {canvas}" for canvas, verdict in self.canvases)
        return (
            f"against {self.kind}, the pooled result is {self.pooled} but the canvases disagree "
            f"({listed}): read the canvases, not the pool (the canvases weigh differently in it)"
        )


def disagreements(
    evaluations: Sequence[TaskEvaluation], metric: str, kinds: Sequence[str] | None = None
) -> list[Disagreement]:
    """Per comparison kind, the canvases whose verdict contradicts the pooled one: pooled
    better (or tie) while a canvas is worse, or pooled worse (or tie) while a canvas is better.
    A tie against a better or worse pool is no contradiction."""
    pooled = next((e for e in evaluations if e.task == ALL_TASKS and not e.skipped), None)
    if pooled is None:
        return []
    found = []
    for kind in kinds if kinds is not None else list(pooled.deltas):
        pooled_delta = pooled.deltas.get(kind, {}).get(metric)
        if pooled_delta is None:
            continue
        overall = word(pooled_delta)
        contrary = {"better": "worse", "worse": "better", "tie": None}[overall]
        against = tuple(
            (e.task, verdict)
            for e in evaluations
            if e.task != ALL_TASKS and not e.skipped
            and (delta := e.deltas.get(kind, {}).get(metric)) is not None
            and (verdict := word(delta)) != "tie"
            and (contrary is None or verdict == contrary)
        )  # fmt: skip
        if overall == "tie":
            verdicts = {verdict for _, verdict in against}
            if len(verdicts) < 2:  # a tie pooled over canvases that all lean one way is no paradox
                continue
        if against:
            found.append(Disagreement(kind, overall, against))
    return found
