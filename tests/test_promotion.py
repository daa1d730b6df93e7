"""The model lifecycle: the promotion gate, CURRENT's history, promote and rollback, and
artifacts a service running as another user can read."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from ranker import artifacts, train
from ranker.config import Settings
from ranker.evaluate import Interval, TaskEvaluation
from ranker.promotion import CURRENT_KIND, decide
from ranker.registry import Promotion
from ranker.train import FittedModel, TrainParams, train_and_evaluate
from tests.conftest import PROJECT_DIR

FAST = TrainParams(
    iterations=30,
    learning_rate=0.3,
    depth=4,
    early_stopping_rounds=10,
    compare=False,
    bootstrap_resamples=200,
    thread_count=2,
)


def _evaluation(task: str, low: float, high: float) -> TaskEvaluation:
    delta = Interval((low + high) / 2, low, high)
    return TaskEvaluation(task, 100, 1000, {}, {CURRENT_KIND: {"ndcg@10": delta}})


@pytest.mark.parametrize(
    ("intervals", "tolerance", "force", "promoted", "blocked"),
    [
        ({"home": (-0.02, 0.01), "search": (-0.001, 0.003)}, 0.0, False, True, []),  # ties
        ({"home": (0.01, 0.04), "search": (0.0, 0.02)}, 0.0, False, True, []),  # better
        ({"home": (-0.05, -0.02), "search": (0.01, 0.03)}, 0.0, False, False, ["home"]),
        (
            {"home": (-0.05, -0.02), "search": (-0.04, -0.001)},
            0.0,
            False,
            False,
            ["home", "search"],
        ),
        ({"home": (-0.05, -0.02)}, 0.03, False, True, []),  # within the tolerance: high > -0.03
        ({"home": (-0.09, -0.04)}, 0.03, False, False, ["home"]),
        ({"home": (-0.05, -0.02)}, 0.0, True, True, ["home"]),  # forced past it, recorded
    ],
)
def test_the_gate_blocks_a_canvas_surely_worse_beyond_the_tolerance(
    intervals: dict[str, tuple[float, float]],
    tolerance: float,
    force: bool,
    promoted: bool,
    blocked: list[str],
) -> None:
    evaluations = [_evaluation(task, low, high) for task, (low, high) in intervals.items()]
    evaluations.append(_evaluation("all", -0.5, -0.4))  # the pooled row never blocks
    decision = decide(evaluations, "v-current", Promotion(tolerance=tolerance), force)
    assert decision.promote is promoted
    assert [b.canvas for b in decision.blocked_by] == blocked
    assert decision.forced is (force and bool(blocked))
    if blocked and not force:
        assert (
            "kept as a candidate" in decision.reason and f"canvas '{blocked[0]}'" in decision.reason
        )
    assert json.loads(json.dumps(decision.to_dict()))["promoted"] is promoted


def test_without_a_current_model_the_first_one_is_promoted() -> None:
    assert decide([], None, Promotion()).promote
    not_compared = decide([], None, Promotion(), not_compared="it uses features the mart lacks")
    assert not_compared.promote and "features the mart lacks" in not_compared.reason


def _fake_model(path: Path) -> None:
    path.write_text("m")


def _store(tmp_path: Path, *names: str) -> Path:
    root = tmp_path / "models"
    for name in names:
        artifacts.write_version(root, name, {"version": name}, _fake_model)
    return root


def test_promote_records_history_and_rollback_walks_it_back(tmp_path: Path) -> None:
    root = _store(tmp_path, "a", "b", "c")
    artifacts.promote(root, "a")
    artifacts.promote(root, "b", "promoted by hand")
    assert artifacts.current_name(root) == "b"
    assert [(v, why) for _, v, why in artifacts.history(root)] == [
        ("a", "trained"),
        ("b", "promoted by hand"),
    ]
    assert artifacts.rollback(root) == "a" and artifacts.current_name(root) == "a"
    assert artifacts.history(root)[-1][1:] == ("a", "rollback from b")
    assert artifacts.rollback(root) == "b"  # back to what was current before the rollback
    artifacts.discard(root, "a")
    artifacts.promote(root, "c")
    assert artifacts.rollback(root) == "b"  # "a" no longer exists: skipped
    fresh = _store(tmp_path / "other", "x")
    artifacts.promote(fresh, "x")
    with pytest.raises(artifacts.ArtifactError, match="no earlier CURRENT model"):
        artifacts.rollback(fresh)


def test_a_store_from_before_history_can_roll_back_its_first_promotion(tmp_path: Path) -> None:
    root = _store(tmp_path, "old", "new")
    (root / artifacts.POINTER_FILE).write_text("old\n")  # CURRENT without a HISTORY file
    artifacts.promote(root, "new")
    assert artifacts.rollback(root) == "old"


def test_artifacts_are_readable_by_the_group(tmp_path: Path) -> None:
    """Version folders, metadata and CURRENT follow the umask (0022: group and others may
    read), not the private 0700 / 0600 of temporary files."""
    previous = os.umask(0o022)
    try:
        root = _store(tmp_path, "v1")
        artifacts.promote(root, "v1")
        artifacts.update_metadata(artifacts.load_version(root, "v1"), {"extra": 1})
    finally:
        os.umask(previous)
    for path in (root / "v1", root / "v1" / "metadata.json", root / "CURRENT", root / "HISTORY"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & stat.S_IRGRP and mode & stat.S_IROTH, (path, oct(mode))
    assert stat.S_IMODE((root / "v1").stat().st_mode) & stat.S_IXGRP


@dataclasses.dataclass
class _WorstOnHome(FittedModel):
    """A model that ranks every engaged item last on the home canvas (NDCG 0 there: surely
    worse than any model that learned something) and is itself elsewhere."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        scores = super().predict(frame).copy()
        home = (frame["task_type"] == "home").to_numpy()
        scores[home] = -frame["label"].to_numpy()[home]
        return scores


@pytest.mark.dbt
def test_train_keeps_a_model_worse_on_one_canvas_as_a_candidate(
    tiny_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first model becomes CURRENT; the same training again ties and is promoted; one that
    ranks home's engaged items last is kept as a candidate naming home, CURRENT unchanged; `models
    promote` and `models rollback` then move CURRENT; `train --force` promotes past the gate and
    says so in the metadata."""
    root = artifacts.models_dir(tiny_settings.artifacts_dir)
    first = train_and_evaluate(tiny_settings, FAST, write_reports=False)
    tie = train_and_evaluate(tiny_settings, FAST, write_reports=False)
    assert tie.promoted and artifacts.current_name(root) == tie.version
    tie_home = next(e for e in tie.evaluations if e.task == "home").deltas[CURRENT_KIND]
    assert tie_home["ndcg@10"].value == 0.0  # the same model again

    fit = train.fit_ranker

    def worst_on_home(*args: Any, **kwargs: Any) -> FittedModel:
        fitted = fit(*args, **kwargs)
        return _WorstOnHome(**{f.name: getattr(fitted, f.name) for f in dataclasses.fields(fitted)})

    monkeypatch.setattr(train, "fit_ranker", worst_on_home)
    worse = train_and_evaluate(tiny_settings, FAST, write_reports=False)
    assert not worse.promoted and artifacts.current_name(root) == tie.version
    decision = artifacts.load_version(root, worse.version).metadata["promotion"]
    assert decision["promoted"] is False and decision["compared_with"] == tie.version
    assert [b["canvas"] for b in decision["blocked_by"]] == ["home"]
    assert any("canvas 'home'" in note for note in worse.notes)
    assert worse.version in artifacts.list_versions(root)  # kept, listed

    env = {"UNIRANK_DUCKDB_PATH": str(tiny_settings.duckdb_path),
           "UNIRANK_ARTIFACTS_DIR": str(tiny_settings.artifacts_dir)}  # fmt: skip
    runner = CliRunner()
    project = ["--project-dir", str(PROJECT_DIR)]
    listed = runner.invoke(app, ["models", "list", "--json", *project], env=env)
    assert listed.exit_code == 0, listed.output
    status = {m["version"]: m["status"] for m in json.loads(listed.output)}
    assert status == {
        first.version: "earlier",
        tie.version: "CURRENT",
        worse.version: "candidate (blocked by home)",
    }
    table = runner.invoke(app, ["models", "list", *project], env=env)
    assert table.exit_code == 0 and "CURRENT" in table.output and "candidate" in table.output
    shown = runner.invoke(app, ["models", "show", worse.version, *project], env=env)
    assert shown.exit_code == 0 and "kept as a candidate" in " ".join(shown.output.split())
    promoted = runner.invoke(app, ["models", "promote", worse.version, *project], env=env)
    assert promoted.exit_code == 0 and artifacts.current_name(root) == worse.version
    rolled = runner.invoke(app, ["models", "rollback", *project], env=env)
    assert rolled.exit_code == 0 and artifacts.current_name(root) == tie.version
    unknown = runner.invoke(app, ["models", "promote", "no-such-version", *project], env=env)
    assert unknown.exit_code == 1 and "no-such-version" in unknown.output

    forced = train_and_evaluate(tiny_settings, FAST, write_reports=False, force=True)
    assert forced.promoted and artifacts.current_name(root) == forced.version
    assert artifacts.load_version(root, forced.version).metadata["promotion"]["forced"] is True
    assert first.version in artifacts.list_versions(root)


@pytest.mark.dbt
def test_a_lookup_says_when_the_cache_is_not_from_the_current_model(
    served_copy: Settings,
) -> None:
    import duckdb

    from ranker.cache_reader import current_cache_path

    with duckdb.connect(str(current_cache_path(served_copy)), read_only=True) as con:
        user = con.execute(
            "select min(context_key) from recommendations where task_type = 'home'"
        ).fetchall()[0][0]
    env = {"UNIRANK_DUCKDB_PATH": str(served_copy.duckdb_path),
           "UNIRANK_ARTIFACTS_DIR": str(served_copy.artifacts_dir)}  # fmt: skip
    command = ["recommend", "home", "--user", str(user), "--project-dir", str(PROJECT_DIR)]
    before = CliRunner().invoke(app, command, env=env)
    assert before.exit_code == 0 and "CURRENT is" not in before.output
    root = artifacts.models_dir(served_copy.artifacts_dir)
    scored_by = artifacts.current_version(root).version
    artifacts.write_version(root, "newer", {"version": "newer"}, _fake_model)
    artifacts.promote(root, "newer")
    after = CliRunner().invoke(app, command, env=env)
    assert after.exit_code == 0
    said = " ".join(after.output.split())
    assert f"scored by model {scored_by}, but CURRENT is newer" in said
