"""Training on a tiny mart: artifacts, the CURRENT pointer, metrics, and bad input."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from catboost import CatBoostRanker, Pool
from typer.testing import CliRunner

from cli.main import app
from ranker import artifacts, evaluate, train
from ranker.config import RegistryError, Settings, load_settings
from ranker.dataset import DatasetError
from ranker.evaluate import METRICS
from ranker.train import TrainParams, train_and_evaluate

pytestmark = pytest.mark.dbt  # the tiny mart is built with dbt once per session

FAST = TrainParams(
    iterations=30,
    learning_rate=0.3,
    depth=4,
    early_stopping_rounds=10,
    max_negatives_per_request=None,
    bootstrap_resamples=100,
    thread_count=2,
)


def _sql(settings: Settings, statement: str) -> None:
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute(statement)


def test_training_publishes_a_complete_version(tiny_settings: Settings) -> None:
    result = train_and_evaluate(tiny_settings, FAST)
    root = artifacts.models_dir(tiny_settings.artifacts_dir)
    assert (root / artifacts.POINTER_FILE).read_text().strip() == result.version
    metadata = json.loads((result.model_dir / "metadata.json").read_text())
    for key in (
        "version",
        "created_at",
        "features",
        "categorical_features",
        "registry",
        "data",
        "params",
        "best_iteration",
        "metrics",
    ):
        assert key in metadata, key
    assert "task_type" in metadata["categorical_features"]
    assert result.version.endswith(metadata["data"]["fingerprint"][:8])
    model = CatBoostRanker()
    model.load_model(str(result.model_dir / "model.cbm"))
    assert model.tree_count_ == metadata["best_iteration"] + 1

    evaluated = [e for e in result.evaluations if not e.skipped]
    assert {e.task for e in evaluated} == {"home", "search", "related", "category", "all"}
    for evaluation in evaluated:
        assert {"unified", "bespoke", "no_task", "popularity"} <= set(evaluation.models)
    with duckdb.connect(str(tiny_settings.duckdb_path), read_only=True) as con:
        rows = con.execute(
            "select count(*), count(distinct task_type), count(distinct model_kind), count(distinct metric) from model_metrics where model_version = ?",
            [result.version],
        ).fetchone()
    assert rows == (5 * 4 * len(METRICS), 5, 4, len(METRICS))
    assert result.report_index is not None and result.report_index.is_file()
    assert (result.report_index.parent / "home.html").is_file()
    assert metadata["timings"]["report_seconds"] > 0

    # what `monitor` compares with: training rows and the build's serving candidates, the
    # columns that should stay stable (no cumulative count), every canvas
    stable = tiny_settings.registry.drift_features
    assert "item_engagements" not in stable.all and "item_category_rank_pct" in stable.all
    for name in (artifacts.REFERENCE_FILE, artifacts.SERVING_REFERENCE_FILE):
        kept = pd.read_parquet(result.model_dir / name)
        assert list(kept.columns) == ["task_type", *stable.all], name
        assert set(kept["task_type"]) == {"home", "search", "related", "category"}, name
    training = pd.read_parquet(result.model_dir / artifacts.REFERENCE_FILE)
    with duckdb.connect(str(tiny_settings.duckdb_path), read_only=True) as con:
        train_rows = con.execute(
            "select task_type, count(*) from ranking_examples where split = 'train' group by 1"
        ).fetchall()
    limit = tiny_settings.registry.monitoring.reference_rows
    assert training["task_type"].value_counts().to_dict() == {
        task: min(n, limit) for task, n in train_rows
    }


def test_a_new_run_never_overwrites_and_becomes_current(tiny_settings: Settings) -> None:
    params = TrainParams(**{**FAST.__dict__, "compare": False})
    first = train_and_evaluate(tiny_settings, params, write_reports=False)
    second = train_and_evaluate(tiny_settings, params, write_reports=False)
    root = artifacts.models_dir(tiny_settings.artifacts_dir)
    assert first.version != second.version
    assert artifacts.list_versions(root) == sorted([first.version, second.version])
    assert artifacts.current_version(root).version == second.version
    with pytest.raises(artifacts.ArtifactError, match="already exists"):
        artifacts.write_version(root, first.version, {}, lambda p: p.write_text("x"))


def test_a_failed_run_leaves_the_previous_model_current(
    tiny_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = TrainParams(**{**FAST.__dict__, "compare": False})
    good = train_and_evaluate(tiny_settings, params, write_reports=False)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk went away")

    monkeypatch.setattr(artifacts, "promote", broken)  # the last step before a model is current
    with pytest.raises(RuntimeError, match="went away"):
        train_and_evaluate(tiny_settings, params, write_reports=False)
    monkeypatch.undo()
    root = artifacts.models_dir(tiny_settings.artifacts_dir)
    current = artifacts.current_version(root)
    assert current.version == good.version
    assert artifacts.list_versions(root) == [good.version]  # the failed one is gone
    model = CatBoostRanker()
    model.load_model(str(current.model_file))  # still usable
    assert model.tree_count_ > 0


def test_an_interrupted_write_leaves_no_version(tmp_path: Path) -> None:
    def interrupted(path: Path) -> None:
        path.write_text("half a model")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        artifacts.write_version(tmp_path, "v1", {"version": "v1"}, interrupted)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(artifacts.ArtifactError, match="run `unirank-cli train` first"):
        artifacts.current_version(tmp_path)


def test_missing_column_is_named(tiny_settings: Settings) -> None:
    _sql(
        tiny_settings,
        "create or replace table ranking_examples as select * exclude (user_engagements) from ranking_examples",
    )
    with pytest.raises(DatasetError, match=r"lacks column\(s\) \['user_engagements'\]"):
        train_and_evaluate(tiny_settings, FAST)


def test_nan_labels_are_refused_with_the_canvas(tiny_settings: Settings) -> None:
    _sql(
        tiny_settings,
        "create or replace table ranking_examples as select * replace (case when request_id = (select min(request_id) from ranking_examples where task_type = 'search') then null else label end as label) from ranking_examples",
    )
    with pytest.raises(DatasetError, match=r"NULL/NaN label.*canvas search"):
        train_and_evaluate(tiny_settings, FAST)


def test_an_empty_split_is_refused(tiny_settings: Settings) -> None:
    _sql(tiny_settings, "update ranking_examples set split = 'train' where split = 'valid'")
    with pytest.raises(DatasetError, match="the valid split is empty"):
        train_and_evaluate(tiny_settings, FAST)


def test_single_canvas_and_absent_canvases_are_reported_not_crashed(
    tiny_settings: Settings,
) -> None:
    _sql(tiny_settings, "delete from ranking_examples where task_type <> 'home'")
    result = train_and_evaluate(tiny_settings, FAST, write_reports=False)
    by_task = {e.task: e for e in result.evaluations}
    assert not by_task["home"].skipped
    for canvas in ("search", "related", "category"):
        assert by_task[canvas].skipped == "no test requests for this canvas"
    assert np.isfinite(by_task["home"].models["unified"].metrics["ndcg@10"].value)


def test_a_canvas_absent_from_test_only(tiny_settings: Settings) -> None:
    _sql(
        tiny_settings,
        "delete from ranking_examples where task_type = 'category' and split = 'test'",
    )
    result = train_and_evaluate(
        tiny_settings, TrainParams(**{**FAST.__dict__, "compare": False}), write_reports=True
    )
    by_task = {e.task: e for e in result.evaluations}
    assert by_task["category"].skipped == "no test requests for this canvas"
    assert result.report_index is not None
    assert "not evaluated: no test requests for this canvas" in result.report_index.read_text()


def test_bad_training_params_are_refused(tiny_settings: Settings) -> None:
    with pytest.raises(train.TrainingError, match="learning_rate"):
        TrainParams.from_settings(tiny_settings, learning_rate=0)
    with pytest.raises(RegistryError, match=r"unknown key `iters` in vars\.unirank\.training"):
        _with_training(tiny_settings, {"iters": 5})


def _with_training(settings: Settings, training: dict[str, object]) -> Settings:
    """The same project and warehouse with the registry's training block replaced."""
    return load_settings(
        settings.project_dir,
        {**settings.var_overrides, "training": training},
        duckdb_path=settings.duckdb_path,
        artifacts_dir=settings.artifacts_dir,
        reports_dir=settings.reports_dir,
    )


def test_speed_levers_are_validated(tiny_settings: Settings) -> None:
    with pytest.raises(train.TrainingError, match="yetirank_permutations"):
        TrainParams.from_settings(tiny_settings, yetirank_permutations=0)
    with pytest.raises(train.TrainingError, match="one_hot_max_size"):
        TrainParams.from_settings(tiny_settings, one_hot_max_size=256)


def test_speed_levers_reach_the_trained_model(tiny_settings: Settings) -> None:
    """The registry's training block -> TrainParams -> CatBoost -> the published model file."""
    settings = _with_training(tiny_settings, {"yetirank_permutations": 2, "one_hot_max_size": 3})
    params = TrainParams.from_settings(
        settings, iterations=20, learning_rate=0.3, depth=4, thread_count=2
    )
    assert (params.yetirank_permutations, params.one_hot_max_size) == (2, 3)
    result = train_and_evaluate(
        tiny_settings, dataclasses.replace(params, compare=False), write_reports=False
    )
    model = CatBoostRanker()
    model.load_model(str(result.model_dir / "model.cbm"))
    trained = model.get_all_params()
    assert trained["loss_function"] == "YetiRank:permutations=2"
    assert trained["one_hot_max_size"] == 3
    metadata = json.loads((result.model_dir / "metadata.json").read_text())
    assert metadata["params"]["yetirank_permutations"] == 2
    assert metadata["params"]["one_hot_max_size"] == 3


def _requests(counts: dict[str, int]) -> pd.DataFrame:
    """Two rows per request, ``counts[canvas]`` requests per canvas."""
    tasks = [task for task, n in counts.items() for _ in range(n)]
    return pd.DataFrame(
        {
            "request_id": np.repeat([f"r{i}" for i in range(len(tasks))], 2),
            "task_type": np.repeat(tasks, 2),
        }
    )


def test_canvas_weights_balance_canvases_and_keep_the_mean_request_weight() -> None:
    frame = _requests({"home": 60, "related": 30, "search": 10})
    requests = frame.drop_duplicates("request_id")
    assert train.request_weights(frame, "none") is None
    assert train.request_weights(frame[frame["task_type"] == "home"], "balanced") is None
    for scheme, exponent in (("balanced", 1.0), ("sqrt", 0.5)):
        weights = pd.Series(train.request_weights(frame, scheme), index=frame.index)
        per_request = weights[requests.index]
        assert per_request.mean() == pytest.approx(1.0)  # the learning rate keeps its meaning
        assert (weights.groupby(frame["request_id"]).nunique() == 1).all()  # one per group
        total = per_request.groupby(requests["task_type"]).sum()
        share = requests["task_type"].value_counts(normalize=True)
        # a canvas's total weight is proportional to share ** (1 - exponent)
        ratio = total / share.pow(1 - exponent)
        assert ratio.max() == pytest.approx(ratio.min())
    balanced = pd.Series(train.request_weights(frame, "balanced"), index=frame.index)
    # search: 1 / its share 0.1, over the mean weight 0.6 / 0.6 + 0.3 / 0.3 + 0.1 / 0.1 = 3
    assert balanced[frame["task_type"] == "search"].iloc[0] == pytest.approx(10 / 3)


def test_canvas_weights_are_validated_and_change_the_model(tiny_settings: Settings) -> None:
    with pytest.raises(train.TrainingError, match="canvas_weights"):
        TrainParams.from_settings(tiny_settings, canvas_weights="equal")
    # 80 "big" requests whose positive has the highest x, 20 "small" ones whose positive has the
    # lowest: how much the small canvas counts decides the learned order.
    rng = np.random.default_rng(0)
    frame = _requests({"big": 80, "small": 20}).loc[lambda f: f.index.repeat(2)]
    frame = frame.assign(x=rng.normal(size=len(frame)), y=rng.normal(size=len(frame)))
    best = frame.groupby("request_id")["x"].transform("max")
    worst = frame.groupby("request_id")["x"].transform("min")
    positive = np.where(frame["task_type"] == "big", frame["x"] == best, frame["x"] == worst)
    frame = frame.assign(label=positive.astype(int)).reset_index(drop=True)
    params = dataclasses.replace(FAST, iterations=20, early_stopping_rounds=5)
    scores = {}
    for scheme in ("none", "balanced"):
        fitted = train.fit_ranker(
            scheme, frame, None, ["x", "y"], [], dataclasses.replace(params, canvas_weights=scheme)
        )
        scores[scheme] = fitted.predict(frame)
    assert not np.allclose(scores["none"], scores["balanced"])


def test_fitting_with_early_stopping_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    """CatBoost writes to the process's stdout/stderr directly: with a valid set it used to warn
    on every fit (training and every per-canvas model) that metric_period is ignored."""
    rng = np.random.default_rng(0)
    frame = _requests({"home": 40, "search": 20}).loc[lambda f: f.index.repeat(3)]
    frame = frame.assign(x=rng.normal(size=len(frame)), label=rng.integers(0, 2, len(frame)))
    frame = frame.reset_index(drop=True)
    params = dataclasses.replace(FAST, iterations=20, early_stopping_rounds=5)
    capfd.readouterr()
    with_valid = train.fit_ranker("unified", frame, frame, ["x"], [], params)
    without_valid = train.fit_ranker("unified", frame, None, ["x"], [], params)
    out, err = capfd.readouterr()
    assert "metric_period" not in out + err, out + err
    # metric_period still reaches CatBoost when nothing is watched for early stopping
    assert without_valid.model.get_params()["metric_period"] == params.metric_period
    assert "metric_period" not in with_valid.model.get_params()
    assert with_valid.model.tree_count_ <= params.iterations


def test_evaluate_on_valid_compares_on_the_valid_requests(tiny_settings: Settings) -> None:
    with pytest.raises(train.TrainingError, match="evaluate_on"):
        train_and_evaluate(tiny_settings, FAST, write_reports=False, evaluate_on="train")
    result = train_and_evaluate(
        tiny_settings,
        dataclasses.replace(FAST, compare=False),
        write_reports=False,
        evaluate_on="valid",
    )
    with duckdb.connect(str(tiny_settings.duckdb_path), read_only=True) as con:
        valid_requests, test_requests = con.execute(
            "select count(distinct request_id) filter (where split = 'valid'), "
            "count(distinct request_id) filter (where split = 'test') "
            "from ranking_examples where label > 0"
        ).fetchone()
    assert valid_requests != test_requests  # else this test could not tell the splits apart
    overall = next(e for e in result.evaluations if e.task == evaluate.ALL_TASKS)
    assert overall.n_requests == valid_requests
    metadata = json.loads((result.model_dir / "metadata.json").read_text())
    assert metadata["evaluated_on"] == "valid"


def test_unset_one_hot_max_size_keeps_catboost_default() -> None:
    params = TrainParams(yetirank_permutations=10, one_hot_max_size=None).catboost_params()
    assert params["loss_function"] == "YetiRank:permutations=10"
    assert "one_hot_max_size" not in params


def test_cli_train_prints_the_comparison(
    tiny_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIRANK_DUCKDB_PATH", str(tiny_settings.duckdb_path))
    monkeypatch.setenv("UNIRANK_ARTIFACTS_DIR", str(tiny_settings.artifacts_dir))
    monkeypatch.setenv("UNIRANK_REPORTS_DIR", str(tiny_settings.reports_dir))
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--project-dir",
            str(tiny_settings.project_dir),
            "--iterations",
            "20",
            "--learning-rate",
            "0.3",
            "--yetirank-permutations",
            "3",
            "--one-hot-max-size",
            "4",
            "--no-reports",
        ],
    )
    assert result.exit_code == 0, result.output
    for word in ("unified", "vs bespoke", "vs no_task", "vs popularity", "home", "now current"):
        assert word in result.output
    said = " ".join(result.output.split())
    for canvas in ("home", "search", "related", "category"):  # one verdict sentence per canvas
        assert re.search(
            rf"{canvas}: the unified model (is (better|worse) than|ties with) bespoke", said
        )
    current = artifacts.current_version(artifacts.models_dir(tiny_settings.artifacts_dir))
    assert current.metadata["params"]["yetirank_permutations"] == 3
    assert current.metadata["params"]["one_hot_max_size"] == 4


def test_cli_train_without_a_warehouse_says_what_to_do(
    project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIRANK_DUCKDB_PATH", str(tmp_path / "none.duckdb"))
    result = CliRunner().invoke(app, ["train", "--project-dir", str(project_dir)])
    assert result.exit_code == 1
    assert "unirank-cli build" in result.output
    assert "Traceback" not in result.output


def test_importance_does_not_credit_what_cannot_reorder_a_list() -> None:
    """A feature constant within each request that shifts every candidate alike gets (almost)
    no importance, however much it moves the scores; the item feature that orders the list gets
    it all. Mean |SHAP| (the old measure) credited the constant one most."""
    from catboost import CatBoostRegressor

    rng = np.random.default_rng(0)
    requests = np.repeat(np.arange(300), 10)
    context = np.repeat(rng.normal(0, 5, 300), 10)  # one value per request
    item = rng.normal(0, 1, len(requests))
    frame = pd.DataFrame(
        {
            "request_id": [f"r{r}" for r in requests],
            "task_type": "home",
            "context": context,
            "item": item,
            "label": 0,
        }
    )
    model = CatBoostRegressor(
        iterations=60, depth=2, verbose=0, random_seed=0, allow_writing_files=False
    )
    model.fit(frame[["context", "item"]], 3 * context + item)
    fitted = train.FittedModel(model, ("context", "item"), (), 59, 0.0, len(frame))  # type: ignore[arg-type]
    importance = train.feature_importance_per_task(fitted, frame)["home"]
    assert importance["context"] < 0.05 * importance["item"]
    shap = np.abs(
        model.get_feature_importance(type="ShapValues", data=Pool(frame[["context", "item"]]))
    )
    assert shap[:, 0].mean() > shap[:, 1].mean()  # what the old measure would have said
    assert train.request_constant_features(frame, ["context", "item"]) == ["context"]


def test_learning_curves_follow_the_staged_model_per_canvas() -> None:
    """Valid NDCG@10 per canvas after each block of trees; the last point is the final model's."""
    rng = np.random.default_rng(1)
    n = 4000
    frame = pd.DataFrame(
        {
            "request_id": np.repeat([f"r{i}" for i in range(n // 10)], 10),
            "task_type": np.repeat(rng.choice(["home", "search"], n // 10), 10),
            "x": rng.normal(size=n),
        }
    )
    frame["label"] = (frame["x"] + rng.normal(0, 1, n) > 1).astype(int)
    fitted = train.fit_ranker("unified", frame, None, ("task_type", "x"), ("task_type",), FAST)
    curves = train.learning_curves(fitted, frame, points=10)
    assert set(curves) == {"home", "search"}
    for canvas, points in curves.items():
        iterations = [i for i, _ in points]
        assert iterations == sorted(iterations) and iterations[-1] == fitted.model.tree_count_
        rows = frame[frame["task_type"] == canvas]
        final = evaluate.metrics_at_k(rows["label"], fitted.predict(rows), rows["request_id"], 10)[
            "ndcg@10"
        ].mean()
        assert points[-1][1] == pytest.approx(final)
