"""`unirank-cli monitor`: serving candidates now against those the current model was trained
beside, per canvas (the gate), the train/serve difference and the served answers (shown only);
its exit codes, its page and drift.json, and the errors that say what to run."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from ranker import artifacts, monitor
from ranker.config import Settings, load_settings
from ranker.drift import DriftResult
from ranker.monitor import CanvasDrift, ServedAnswers, compare_canvas
from ranker.registry import ModelFeatures
from tests.conftest import PROJECT_DIR

SHIFTED = "item_category_rank_pct"


def _run(settings: Settings, reports: Path, *args: str) -> tuple[int, str, dict[str, Any]]:
    """`monitor` through the CLI on ``settings``' warehouse and models, reports under
    ``reports``: (exit code, output, the run's drift.json or {} when none was written)."""
    env = {
        "UNIRANK_DUCKDB_PATH": str(settings.duckdb_path),
        "UNIRANK_ARTIFACTS_DIR": str(settings.artifacts_dir),
        "UNIRANK_REPORTS_DIR": str(reports),
    }
    before = set((reports / "monitor").glob("*")) if (reports / "monitor").is_dir() else set()
    result = CliRunner().invoke(app, ["monitor", "--project-dir", str(PROJECT_DIR), *args], env=env)
    written = sorted(set((reports / "monitor").glob("*")) - before) if reports.is_dir() else []
    payload = json.loads((written[-1] / "drift.json").read_text()) if written else {}
    return result.exit_code, result.output, payload


def _expected_code(payload: dict[str, Any]) -> int:
    shares = [c["drift_share"] for c in payload["canvases"].values() if c["compared"]]
    return 1 if any(share >= payload["threshold"] for share in shares) else 0


def _check_payload(payload: dict[str, Any]) -> None:
    """drift.json agrees with itself: each canvas's share, drifted columns and verdict."""
    for name, canvas in payload["canvases"].items():
        gate = canvas["candidates"]
        assert (gate["reference"], gate["current"]) == (
            "serving candidates at training",
            "serving candidates now",
        )
        drifted = [c["column"] for c in gate["columns"] if c["drifted"]]
        assert canvas["drifted_columns"] == drifted
        assert canvas["drift_share"] == pytest.approx(len(drifted) / len(gate["columns"]))
        assert canvas["exceeds"] is (canvas["drift_share"] >= payload["threshold"])
        assert (name in payload["exceeding"]) is canvas["exceeds"]


@pytest.mark.dbt
def test_a_fresh_model_on_an_unchanged_warehouse_is_below_the_threshold(
    served_project: Settings, tmp_path: Path
) -> None:
    """What `monitor || train` needs: right after `train`, nothing to retrain for, on every
    canvas, although its training rows (logged impressions) differ from the candidates."""
    code, output, payload = _run(served_project, tmp_path)
    assert code == 0 and "below the drift threshold" in output, output
    assert payload["threshold"] == served_project.registry.monitoring.drift_share
    assert payload["threshold_source"] == "registry monitoring.drift_share"
    assert list(payload["canvases"]) == list(served_project.registry.canvas_names)
    assert payload["exceeding"] == []
    _check_payload(payload)
    for name, canvas in payload["canvases"].items():
        assert canvas["compared"], (name, canvas["not_compared"])
        # train samples its build's candidates as monitor does: the very same rows, no drift
        assert canvas["drifted_columns"] == [] and canvas["drift_share"] == 0.0
        assert canvas["candidates"]["reference_rows"] == canvas["candidates"]["current_rows"]
        train_serve = canvas["train_serve"]
        assert canvas["train_serve_not_compared"] is None
        assert (train_serve["reference"], train_serve["current"]) == (
            "training rows",
            "serving candidates now",
        )
    differs = [n for n, c in payload["canvases"].items() if c["train_serve"]["drifted"]]
    assert differs, "the tiny data's training rows should differ from its candidates somewhere"

    code, output, _ = _run(served_project, tmp_path, "--threshold", "0")
    assert code == 2 and "threshold must be above 0 and at most 1" in output


@pytest.mark.dbt
def test_the_page_and_drift_json_say_the_same(served_project: Settings, tmp_path: Path) -> None:
    result = monitor.monitor(served_project, ["home", "search"], threshold=0.3)
    assert result.report_dir.parent == served_project.reports_dir / "monitor"
    payload = json.loads(result.report_json.read_text())
    page = result.report_index.read_text()
    assert payload == json.loads(json.dumps(result.to_dict()))
    assert payload["model_version"] == artifacts.current_name(
        artifacts.models_dir(served_project.artifacts_dir)
    )
    assert list(payload["canvases"]) == ["home", "search"]
    verdict = page[page.index('<section id="verdict">') : page.index("</section>")]
    row = r'<tr><td class="name"><a href="#canvas-\d+">(\w+)</a></td>(.*?)</tr>'
    rows = re.findall(row, verdict, re.S)
    assert [name for name, _ in rows] == ["home", "search"]
    for name, row in rows:
        canvas = payload["canvases"][name]
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        compared, drifted, share, threshold, word, columns = cells
        assert int(compared) == canvas["compared_columns"]
        assert int(drifted) == len(canvas["drifted_columns"])
        assert share == f"{canvas['drift_share']:.2f}" and threshold == "0.30"
        assert word == ("at or above: retrain" if canvas["exceeds"] else "below")
        assert columns == (", ".join(canvas["drifted_columns"]) or "none")
    if payload["exceeding"]:
        assert "Retraining advised" in verdict
    # the verdict comes first, then a section of drift tables per canvas
    assert page.index('id="verdict"') < page.index('id="canvas-1"') < page.index('id="canvas-2"')
    # per canvas: the gate and the train/serve difference; nothing served
    assert page.count('<table class="drift">') == 4
    assert page.count("Train/serve difference: serving candidates now against training rows") == 2
    for name in ("home", "search"):
        train_serve = payload["canvases"][name]["train_serve"]
        assert (train_serve["reference"], train_serve["current"]) == (
            "training rows",
            "serving candidates now",
        )


@pytest.mark.dbt
def test_a_shifted_serving_reference_column_drifts_and_its_canvas_exceeds(
    served_copy: Settings,
) -> None:
    same = monitor.monitor(served_copy, threshold=0.01)
    assert same.exceeding == ()
    assert all(c.candidates is not None and c.candidates.drifted == () for c in same.canvases)

    path = artifacts.current_version(artifacts.models_dir(served_copy.artifacts_dir)).path
    at_training = pd.read_parquet(path / artifacts.SERVING_REFERENCE_FILE)
    at_training[SHIFTED] = at_training[SHIFTED] + 0.5
    at_training.to_parquet(path / artifacts.SERVING_REFERENCE_FILE, index=False)
    shifted = monitor.monitor(served_copy, threshold=0.01)
    for before, canvas in zip(same.canvases, shifted.canvases, strict=True):
        assert canvas.candidates is not None
        assert canvas.candidates.drifted == (SHIFTED,), canvas.canvas
        assert canvas.share == pytest.approx(1 / len(canvas.candidates.columns))
        # the training rows did not move: the train/serve difference is the same as before
        assert canvas.train_serve == before.train_serve
    assert shifted.exceeding == served_copy.registry.canvas_names

    # Exactly one column in n drifted: a threshold of 1/n exceeds, just above it does not.
    home = next(c for c in shifted.canvases if c.canvas == "home")
    assert home.candidates is not None
    n = len(home.candidates.columns)
    reports = served_copy.reports_dir
    code, output, payload = _run(
        served_copy, reports, "--canvas", "home", "--threshold", str(1 / n)
    )
    assert code == 1 and "retraining is advised" in output and "home" in output, output
    assert payload["exceeding"] == ["home"] and list(payload["canvases"]) == ["home"]
    assert payload["canvases"]["home"]["drifted_columns"] == [SHIFTED]
    _check_payload(payload)
    above = str(min(1.0, 1 / n + 0.01))
    code, output, payload = _run(served_copy, reports, "--canvas", "home", "--threshold", above)
    assert code == 0 and payload["exceeding"] == [], output

    # The registry's threshold, then 1.0: the same shares, only the verdict follows the threshold.
    code, output, default = _run(served_copy, reports)
    assert code == _expected_code(default), output
    _check_payload(default)
    if code == 1:
        assert "retraining is advised" in output
        assert all(name in output for name in default["exceeding"])
    code, output, loose = _run(served_copy, reports, "--threshold", "1.0")
    assert loose["threshold"] == 1.0 and loose["threshold_source"] == "--threshold"
    assert code == 0 and "below the drift threshold 1.00" in output, output  # 1 of n > 1 drifted
    shares = {name: c["drift_share"] for name, c in default["canvases"].items()}
    assert {name: c["drift_share"] for name, c in loose["canvases"].items()} == shares


@pytest.mark.dbt
def test_errors_exit_2_and_say_what_to_run(served_copy: Settings, tmp_path: Path) -> None:
    unknown, output, _ = _run(served_copy, tmp_path, "--canvas", "promo")
    assert unknown == 2 and "unknown canvas 'promo'" in output and "home" in output

    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    no_mart = load_settings(PROJECT_DIR, duckdb_path=empty, artifacts_dir=served_copy.artifacts_dir)
    code, output, _ = _run(no_mart, tmp_path)
    assert code == 2 and "no serving_candidates" in output and "unirank-cli build" in output

    root = artifacts.models_dir(served_copy.artifacts_dir)
    model = artifacts.current_version(root)
    at_training = model.path / artifacts.SERVING_REFERENCE_FILE
    training = model.path / artifacts.REFERENCE_FILE
    kept = pd.read_parquet(at_training)
    kept.head(0).to_parquet(at_training, index=False)  # no canvas's serving candidates
    code, output, payload = _run(served_copy, tmp_path)
    assert code == 2 and "no canvas could be compared" in output, output
    assert not payload["exceeding"] and not any(c["compared"] for c in payload["canvases"].values())
    for canvas in payload["canvases"].values():
        assert "not in the current model's serving_reference.parquet" in canvas["not_compared"]
        assert "unirank-cli train" in canvas["not_compared"]
        assert canvas["train_serve"] is not None  # shown all the same
    kept.to_parquet(at_training, index=False)

    # No training rows of any canvas: the gate still decides; the train/serve difference says why
    pd.read_parquet(training).head(0).to_parquet(training, index=False)
    code, output, payload = _run(served_copy, tmp_path)
    assert code == 0 and all(c["compared"] for c in payload["canvases"].values()), output
    for canvas in payload["canvases"].values():
        assert canvas["train_serve"] is None
        assert "no training rows of this canvas" in canvas["train_serve_not_compared"]

    training.unlink()
    code, output, payload = _run(served_copy, tmp_path)
    assert code == 2 and payload == {}, output
    assert f"{model.version}/reference.parquet is missing" in output.replace("\n", "")
    assert "`unirank-cli train`" in output

    at_training.unlink()
    code, output, payload = _run(served_copy, tmp_path)
    assert code == 2 and payload == {}, output
    assert "serving_reference.parquet is missing" in output.replace("\n", "")
    assert "`unirank-cli train`" in output

    (root / artifacts.POINTER_FILE).unlink()
    code, output, _ = _run(served_copy, tmp_path)
    assert code == 2 and "no trained model" in output and "unirank-cli train" in output


@pytest.mark.dbt
def test_sampled_served_answers_are_counted_and_compared(served_copy: Settings) -> None:
    from fastapi.testclient import TestClient

    from ranker.build import run_dbt
    from ranker.cache_reader import current_cache_path
    from ranker.http_service import create_app

    with duckdb.connect(str(current_cache_path(served_copy)), read_only=True) as con:
        keys = con.execute(
            "select distinct context_key from recommendations where task_type = 'home' "
            "order by context_key limit 12"
        ).fetchall()
    homes = [str(key) for (key,) in keys]
    bodies = []
    with TestClient(create_app(served_copy, sample_rate=1.0)) as client:
        for user in homes:
            bodies.append(client.get("/recommend/home", params={"user_id": user, "k": 5}).json())
        bodies.append(client.get("/recommend/home", params={"user_id": "nobody", "k": 5}).json())
    run_dbt(served_copy, ["build", "--select", "served_answers"], echo=False)

    result = monitor.monitor(served_copy, ["home", "search"])
    home, search = result.canvases
    assert search.answers is None and search.served is None
    assert search.served_why_not is not None and "--sample-rate" in search.served_why_not
    assert home.answers is not None
    expected = Counter(b["answered_by"] for b in bodies if b["items"])
    assert home.answers.answers == dict(expected)
    assert home.answers.total == sum(expected.values())
    assert home.answers.items == sum(len(b["items"]) for b in bodies)
    assert home.answers.paths["cache"] == pytest.approx(expected["cache"] / home.answers.total)
    # The cached answers' model-ranked items are serving candidates of their context.
    ranked = sum(
        1
        for b in bodies
        if b["answered_by"] == "cache"
        for i in b["items"]
        if i["source"] == "model"
    )
    assert ranked <= home.answers.matched <= home.answers.items
    assert home.served is not None and home.served.current_rows == home.answers.matched
    assert home.candidates is not None and home.train_serve is not None
    assert home.served.reference == home.train_serve.reference == "training rows"
    assert home.served.reference_rows == home.train_serve.reference_rows
    assert home.exceeds is (home.candidates.share >= result.threshold)  # the candidates decide
    payload = json.loads(result.report_json.read_text())
    assert payload["canvases"]["home"]["answers"]["answered_by"] == dict(expected)
    page = result.report_index.read_text()
    assert f"{home.answers.total:,} sampled answers" in page
    # home: the gate, train/serve and served; search: the gate and train/serve
    assert page.count('<table class="drift">') == 5


# Small frames, no warehouse --------------------------------------------------------------------

FEATURES = ModelFeatures(categorical=("country",), numeric=("x",))


def _frame(values: list[float], countries: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"task_type": "home", "x": values, "country": countries})


def test_answer_paths_group_every_fallback_step() -> None:
    answers = ServedAnswers(
        {"cache": 6, "online": 2, "popular_in_canvas": 1, "coengagement": 1}, 40, 30
    )
    assert answers.total == 10
    assert answers.paths == {"cache": 0.6, "online": 0.2, "fallback": 0.2}
    assert ServedAnswers({}, 0, 0).paths == {"cache": 0.0, "online": 0.0, "fallback": 0.0}


def test_a_canvas_with_nothing_to_compare_says_why() -> None:
    rows = _frame([0.1, 0.2, 0.3, 0.4] * 10, ["DE", "FR"] * 20)
    empty = rows.head(0)
    untrained = compare_canvas("home", rows, rows, empty, FEATURES, 0.5)
    assert isinstance(untrained.candidates, DriftResult)  # the gate needs no training rows
    assert untrained.train_serve is None and "no training rows" in (
        untrained.train_serve_why_not or ""
    )
    unkept = compare_canvas("home", rows, empty, rows, FEATURES, 0.5)
    assert unkept.candidates is None and not unkept.exceeds and unkept.share is None
    assert unkept.why_not is not None and "serving_reference.parquet" in unkept.why_not
    assert "unirank-cli train" in unkept.why_not
    assert isinstance(unkept.train_serve, DriftResult)
    unserved = compare_canvas("home", empty, rows, rows, FEATURES, 0.5)
    assert unserved.candidates is None and "serving_candidates" in (unserved.why_not or "")
    assert unserved.train_serve is None and unserved.train_serve_why_not == unserved.why_not
    constant = _frame([1.0] * 40, ["DE"] * 40)
    same = compare_canvas("home", constant, constant, constant, FEATURES, 0.5)
    assert same.candidates is None and "no column to compare" in (same.why_not or "")
    assert same.to_dict()["compared"] is False and same.to_dict()["exceeds"] is False


def test_the_train_serve_difference_and_served_items_never_decide() -> None:
    candidates = _frame([0.1, 0.2, 0.3, 0.4] * 50, ["DE", "FR"] * 100)
    training = _frame([0.9, 1.0, 1.1, 1.2] * 50, ["DE", "FR"] * 100)  # x shifted by 0.8
    served = _frame([0.9, 1.0, 1.1, 1.2] * 10, ["DE", "FR"] * 20)
    answers = ServedAnswers({"cache": 8}, 40, 40)
    result = compare_canvas(
        "home", candidates, candidates, training, FEATURES, 0.5, served, answers
    )
    assert isinstance(result.candidates, DriftResult) and result.candidates.drifted == ()
    assert isinstance(result.train_serve, DriftResult) and result.train_serve.drifted == ("x",)
    assert isinstance(result.served, DriftResult) and result.served.drifted == ()
    assert result.share == 0.0 and not result.exceeds
    payload = result.to_dict()
    assert payload["train_serve"]["drifted"] == ["x"] and payload["drift_share"] == 0.0
    moved = compare_canvas("home", training, candidates, training, FEATURES, 0.5)
    assert moved.share == 0.5 and moved.exceeds  # x of (x, country): the gate moved
    assert isinstance(moved.train_serve, DriftResult) and moved.train_serve.drifted == ()
    unmatched = compare_canvas(
        "home", candidates, candidates, training, FEATURES, 0.5, served.head(0), answers
    )
    assert unmatched.served is None and "none of the 40 served items" in (
        unmatched.served_why_not or ""
    )


def test_the_exceeding_canvases_are_those_at_or_above_the_threshold(tmp_path: Path) -> None:
    def canvas(name: str, drifted: int, columns: int) -> CanvasDrift:
        from ranker.drift import Bin, ColumnDrift

        bins = (Bin("0", 0.5, 0.5), Bin("1", 0.5, 0.5))
        cols = tuple(
            ColumnDrift(f"c{i}", "numeric", "ks", 0.05, 0.0, i < drifted, bins)
            for i in range(columns)
        )
        return CanvasDrift(name, 0.5, DriftResult("training rows", "serving", 10, 10, cols))

    canvases = (canvas("a", 1, 2), canvas("b", 1, 3), CanvasDrift("c", 0.5, None, "no rows"))
    created = "2026-01-01T00:00:00+00:00"
    result = monitor.MonitorResult("v1", 0.5, "test", canvases, created, tmp_path / "run", 0.1)
    assert result.exceeding == ("a",)  # 1/2 is at the threshold; 1/3 below; c not compared
    assert result.compared == ("a", "b")
    monitor.write_report(result)
    payload = json.loads(result.report_json.read_text())
    assert payload["exceeding"] == ["a"]
    skipped = payload["canvases"]["c"]
    assert (skipped["compared"], skipped["not_compared"], skipped["drift_share"]) == (
        False,
        "no rows",
        None,
    )
    assert "not compared: no rows" in result.report_index.read_text()


def test_train_never_sweeps_the_monitor_reports(tmp_path: Path) -> None:
    """`train` removes unfinished report folders of versions that do not exist; the monitor's
    runs (reports/monitor/, no index.html at its top) are not a version's."""
    reports = tmp_path / "reports"
    (reports / "monitor" / "20260101T000000000000Z").mkdir(parents=True)
    (reports / "20990101T000000000000Z-deadbeef").mkdir()
    removed = artifacts.sweep_unpromoted(tmp_path / "models", reports)
    assert removed == ["reports/20990101T000000000000Z-deadbeef"]
    assert (reports / "monitor" / "20260101T000000000000Z").is_dir()
