"""The promotion gate: a new model becomes CURRENT only when no canvas is surely worse.

``train`` scores the CURRENT model on the same test requests as the new one (when the mart still
has every feature it uses), so each canvas has the paired difference new - current with its 95%
bootstrap interval. The new model is kept as a candidate, not promoted, when on some canvas the
upper end of that interval is below ``-tolerance`` (registry ``promotion``): it is worse there
by more than the tolerance, beyond what the test sample can explain. ``--force`` promotes it
anyway, and the metadata records that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ranker.evaluate import ALL_TASKS, Interval, TaskEvaluation
from ranker.registry import Promotion

CURRENT_KIND = "current"  # the comparison model kind: the CURRENT model before this run


@dataclass(frozen=True)
class Blocked:
    """A canvas on which the new model is surely worse than the current one."""

    canvas: str
    metric: str
    delta: Interval  # new - current

    def __str__(self) -> str:
        d = self.delta
        return (
            f"canvas '{self.canvas}': {self.metric} {d.value:+.3f} "
            f"[{d.low:+.3f}, {d.high:+.3f}] against the current model"
        )


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str  # one line: why it is or is not promoted
    compared_with: str | None = None  # the CURRENT version the gate compared with
    blocked_by: tuple[Blocked, ...] = ()
    forced: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "promoted": self.promote,
            "reason": self.reason,
            "compared_with": self.compared_with,
            "forced": self.forced,
            "blocked_by": [
                {"canvas": b.canvas, "metric": b.metric, **b.delta.to_dict()}
                for b in self.blocked_by
            ],
        }


def decide(
    evaluations: Sequence[TaskEvaluation],
    compared_with: str | None,
    rule: Promotion,
    force: bool = False,
    not_compared: str | None = None,
) -> Decision:
    """Whether the new model becomes CURRENT. ``compared_with`` is the CURRENT version scored as
    kind ``current`` in ``evaluations`` (None: there was none, or ``not_compared`` says why it
    could not be scored)."""
    if compared_with is None:
        reason = not_compared or "no current model yet"
        return Decision(True, f"promoted: {reason}", None)
    blocked = tuple(
        Blocked(e.task, rule.metric, delta)
        for e in evaluations
        if e.skipped is None
        and e.task != ALL_TASKS
        and (delta := e.deltas.get(CURRENT_KIND, {}).get(rule.metric)) is not None
        and delta.high < -rule.tolerance
    )
    if not blocked:
        return Decision(
            True,
            f"promoted: no canvas worse than {compared_with} beyond the tolerance "
            f"{rule.tolerance:g} ({rule.metric}, paired 95% interval)",
            compared_with,
        )
    worse = "; ".join(str(b) for b in blocked)
    if force:
        return Decision(
            True, f"promoted with --force past the gate: {worse}", compared_with, blocked, True
        )
    return Decision(
        False,
        f"kept as a candidate, not promoted: {worse} (tolerance {rule.tolerance:g}); "
        "`unirank-cli models promote VERSION` or `train --force` promotes it anyway",
        compared_with,
        blocked,
    )
