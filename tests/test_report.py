"""Tests of ranker.report: the index page and the canvas pages, on small generated data."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ranker.evaluate import (
    ALL_TASKS,
    HEADLINE_METRIC,
    Interval,
    TaskEvaluation,
    compare_models,
    skipped_task,
)
from ranker.report import (
    ModelInfo,
    ReportError,
    ReportPaths,
    TaskFrames,
    evidently_ranking_curves,
    write_reports,
)

NUMERIC = ["item_engagements", "query_title_match"]
CATEGORICAL = ["country"]
DESCRIPTIONS = {
    "unified": "one CatBoost YetiRank for all canvases",
    "bespoke": "one CatBoost YetiRank per canvas",
    "popularity": "items ordered by past engagements",
}


@dataclass(frozen=True)
class Task:
    """Generated test rows of one task with every model's scores."""

    frames: TaskFrames
    labels: np.ndarray
    groups: np.ndarray
    scores: dict[str, np.ndarray]


def make_task(
    name: str,
    seed: int,
    n_requests: int = 40,
    n_items: int = 10,
    unified_noise: float = 0.5,
    bespoke_noise: float = 1.0,
) -> Task:
    """Requests x items with graded labels; the lower a model's noise, the better it ranks."""
    rng = np.random.default_rng(seed)
    n = n_requests * n_items
    labels = rng.choice([0, 1, 2], size=n, p=[0.7, 0.2, 0.1])
    groups = np.repeat([f"{name}-r{i}" for i in range(n_requests)], n_items)
    scores = {
        "unified": labels + rng.normal(0.0, unified_noise, n),
        "bespoke": labels + rng.normal(0.0, bespoke_noise, n),
        "popularity": rng.normal(0.0, 1.0, n),
    }
    current = pd.DataFrame(
        {
            "request_id": groups,
            "item_id": [f"item{j}" for j in rng.integers(0, 60, n)],
            "label": labels,
            "score": scores["unified"],
            "item_engagements": rng.poisson(5, n).astype(float),
            "query_title_match": rng.random(n),
            "country": rng.choice(["fr", "de", "us"], n),
        }
    )
    reference = pd.DataFrame(
        {
            "item_engagements": rng.poisson(6, 300).astype(float),
            "query_title_match": rng.random(300),
            "country": rng.choice(["fr", "de", "us"], 300),
        }
    )
    return Task(TaskFrames(reference=reference, current=current), labels, groups, scores)


def evaluate(name: str, task: Task) -> TaskEvaluation:
    return compare_models(name, task.labels, task.groups, task.scores, n_resamples=200)


def evaluate_all(tasks: Mapping[str, Task]) -> TaskEvaluation:
    kinds = next(iter(tasks.values())).scores
    return compare_models(
        ALL_TASKS,
        np.concatenate([t.labels for t in tasks.values()]),
        np.concatenate([t.groups for t in tasks.values()]),
        {kind: np.concatenate([t.scores[kind] for t in tasks.values()]) for kind in kinds},
        n_resamples=200,
    )


def fmt(interval: Interval) -> str:
    return f"{interval.value:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def section_of(page: str, title: str) -> str:
    """The index section whose heading is ``title``."""
    match = re.search(rf"<h3>{re.escape(title)}</h3>(.*?)</section>", page, flags=re.S)
    assert match is not None, f"no section {title!r}"
    return match.group(1)


@dataclass(frozen=True)
class Written:
    paths: ReportPaths
    evaluations: dict[str, TaskEvaluation]
    index: str


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Written:
    # "search": the bespoke model sees the labels almost exactly, the unified one barely.
    tasks = {
        "home": make_task("home", seed=1),
        "search": make_task("search", seed=2, unified_noise=3.0, bespoke_noise=0.05),
    }
    evaluations = {name: evaluate(name, task) for name, task in tasks.items()}
    evaluations[ALL_TASKS] = evaluate_all(tasks)
    evaluations["category"] = skipped_task("category", "no test requests")
    importance = {
        "home": {"item_engagements": 3.0, "query_title_match": 1.0},
        "search": {"item_engagements": 1.0, "query_title_match": 3.0, "country": 4.0},
    }
    # home's serving candidates: query_title_match shifted far up, the others as in training
    home = tasks["home"].frames
    serving = home.reference.assign(query_title_match=home.reference["query_title_match"] + 5.0)
    frames = {
        "home": TaskFrames(home.reference, home.current, serving),
        "search": TaskFrames(
            tasks["search"].frames.reference,
            tasks["search"].frames.current,
            None,
            "no serving_candidates in the warehouse",
        ),
    }
    paths = write_reports(
        tmp_path_factory.mktemp("reports") / "v1",
        "v1",
        list(evaluations.values()),
        frames,
        NUMERIC,
        CATEGORICAL,
        importance,
        DESCRIPTIONS,
        model=MODEL,
    )
    return Written(paths, evaluations, paths.index.read_text(encoding="utf-8"))


MODEL = ModelInfo(
    fingerprint="abc123",
    valid_from="2024-03-01",
    test_from="2024-03-15",
    params={"learning_rate": 0.1, "depth": 6, "early_stopping_rounds": 50},
    best_iteration=30,
    timings=[("unified fit", 1.5), ("evaluate", 0.4)],
    rows=[
        {
            "canvas": c,
            "split": sp,
            "requests": n,
            "rows": 10 * n,
            "positives": n,
            "first": "2024-01-01",
            "last": "2024-03-31",
        }
        for c in ("home", "search")
        for sp, n in (("train", 900), ("valid", 100), ("test", 40))
    ],
    learning_curves={
        "home": [(i, 0.3 + 0.004 * i) for i in range(0, 60, 5)],
        "search": [(i, 0.4 + 0.002 * i) for i in range(0, 60, 5)],
    },
    request_constant=["country"],
)


def test_files_exist_for_evaluated_tasks_only(written: Written) -> None:
    out_dir = written.paths.index.parent
    assert written.paths.index == out_dir / "index.html"
    assert written.paths.tasks == {"home": out_dir / "home.html", "search": out_dir / "search.html"}
    assert sorted(p.name for p in out_dir.iterdir()) == ["home.html", "index.html", "search.html"]


def test_index_names_every_task_and_links_the_reports(written: Written) -> None:
    page = written.index
    for task in ("home", "search", "category"):
        assert f"<h3>{task}</h3>" in page
    assert "all canvases (pooled)" in page
    assert 'href="home.html"' in page
    assert 'href="search.html"' in page
    assert "category.html" not in page
    assert "not evaluated: no test requests" in section_of(page, "category")


def test_index_explains_the_setup(written: Written) -> None:
    page = written.index
    assert "<h1>unirank report — model version v1</h1>" in page
    for description in DESCRIPTIONS.values():
        assert description in page
    for phrase in ("test split", "per request", "averaged over requests", "95% bootstrap"):
        assert phrase in page


def test_index_shows_each_metric_with_its_interval(written: Written) -> None:
    home = section_of(written.index, "home")
    evaluation = written.evaluations["home"]
    for kind, scores in evaluation.models.items():
        for interval in scores.metrics.values():
            assert fmt(interval) in home, kind
    assert f"n_requests = {evaluation.n_requests} " in home
    pooled = section_of(written.index, "all canvases (pooled)")
    assert fmt(written.evaluations[ALL_TASKS].models["unified"].metrics[HEADLINE_METRIC]) in pooled


def test_deltas_are_coloured_by_their_interval(written: Written) -> None:
    home_vs_popularity = written.evaluations["home"].deltas["popularity"][HEADLINE_METRIC]
    search_vs_bespoke = written.evaluations["search"].deltas["bespoke"][HEADLINE_METRIC]
    assert home_vs_popularity.low > 0  # the data is built so
    assert search_vs_bespoke.high < 0
    cell = r'<td class="{}"[^>]*>{}</td>'
    home = section_of(written.index, "home")
    search = section_of(written.index, "search")
    assert re.search(cell.format("pos", re.escape(fmt(home_vs_popularity))), home)
    assert re.search(cell.format("neg", re.escape(fmt(search_vs_bespoke))), search)


def test_the_second_screen_says_how_the_model_was_trained(written: Written) -> None:
    page = written.index
    training = page[page.index('<section id="training">') :]
    training = training[: training.index("</section>")]
    for fact in ("abc123", "2024-03-01", "2024-03-15", "learning_rate = 0.1", "unified fit 1.5 s"):
        assert fact in training
    assert re.search(r"best iteration</dt><dd>30\b", training)
    rows = re.findall(r'<tr><td class="name">(\w+)</td><td class="name">(\w+)</td>', training)
    assert rows == [(c, sp) for c in ("home", "search") for sp in ("train", "valid", "test")]
    learning = re.search(r'<svg class="learning".*?</svg>', page, flags=re.S)
    assert learning is not None
    lines = re.findall(r'<polyline class="curve" points="([^"]+)"', learning.group(0))
    assert len(lines) == 2  # one per canvas
    assert all(len(points.split()) == 12 for points in lines)
    assert 'stroke-dasharray="4 3"' in learning.group(0)  # the best iteration
    # the verdict stays first
    assert page.index('<section id="verdict">') < page.index('<section id="training">')


def test_the_first_screen_is_the_verdict(written: Written) -> None:
    """Right under the title: one sentence per canvas against a model of its own, and a forest
    plot with a zero line and one whisker per (canvas, comparison model); the search canvas,
    built so that unified is worse than bespoke there, says so."""
    page = written.index
    verdict = page.index('<section id="verdict">')
    assert verdict < page.index("<h2>Model kinds</h2>") < page.index("<h2>Metrics per canvas</h2>")
    section = page[verdict : page.index("</section>", verdict)]
    sentences = re.findall(r'<li class="(better|tie|worse)">(.*?)</li>', section)
    assert [text.split(":")[0] for _, text in sentences] == [
        "home",
        "search",
        "all canvases pooled",
    ]
    search = written.evaluations["search"].deltas["bespoke"][HEADLINE_METRIC]
    assert (
        "worse",
        f"search: the unified model is worse than bespoke by {abs(search.value):.3f} "
        f"{HEADLINE_METRIC} (95% interval {search.low:+.3f} to {search.high:+.3f}).",
    ) in sentences
    forest = re.search(r'<svg class="forest".*?</svg>', section, flags=re.S)
    assert forest is not None
    assert forest.group(0).count('<line class="ci"') == 3 * 2  # (home, search, all) x 2 others
    assert forest.group(0).count('<line class="zero"') == 1


def test_index_is_self_contained(written: Written) -> None:
    page = written.index
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


def test_feature_importance_is_normalised_and_sorted(written: Written) -> None:
    section = written.index.split('<section id="importance">', 1)[1].split("</section>")[0]
    # home: 75 / 25; search: 12.5 / 37.5 / 50; means 43.75, 31.25, 25.
    rows = re.findall(r'<tr><td class="name">([^<]+)</td>(.*?)</tr>', section)
    assert [name for name, _ in rows] == ["item_engagements", "query_title_match", "country"]
    values = [re.findall(r">(—|[0-9.]+)</td>", cells) for _, cells in rows]
    assert values == [["75.0", "12.5", "43.8"], ["25.0", "37.5", "31.2"], ["—", "50.0", "25.0"]]
    assert "Constant within every request" in section and "country." in section


def curve_rows(page: str) -> list[list[str]]:
    table = page.split('<table class="curves">', 1)[1].split("</table>", 1)[0]
    return [
        re.findall(r"<td>([^<]*)</td>", row)
        for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)[1:]
    ]


def test_canvas_page_shows_every_cut_off_as_the_index_and_evidently_do(written: Written) -> None:
    page = written.paths.tasks["home"].read_text(encoding="utf-8")
    assert len(page) < 60_000  # no embedded UI bundle: the run's pages stay small
    assert "<script" not in page
    assert "<title>unirank v1: canvas home</title>" in page  # named in the browser's tab
    body = page[page.index("<body") :]
    assert body.index('<a href="index.html">') < body.index("<h1>")  # first: the way back
    rows = curve_rows(page)
    assert [int(r[0]) for r in rows] == list(range(1, 11))  # k = 1..10, not 0..9
    unified = written.evaluations["home"].models["unified"].metrics
    assert rows[4][1] == f"{unified['ndcg@5'].value:.3f}"  # agrees with the index
    assert rows[9][1] == f"{unified['ndcg@10'].value:.3f}"
    assert rows[9][2] == f"{unified['map@10'].value:.3f}"
    assert rows[9][3] == f"{unified['hitrate@10'].value:.3f}"
    task = written.paths.tasks["home"]
    assert task.exists()
    current = make_task("home", seed=1).frames.current
    theirs = evidently_ranking_curves(current, 10)
    for k, row in enumerate(rows, start=1):
        assert row[4:8] == [f"{theirs[m][k - 1]:.3f}" for m in ("ndcg", "map", "hitrate", "mrr")]
    assert rows[0][3] == rows[0][6]  # HitRate has one definition
    assert "MAP divided by all relevant items" in page  # why the others may differ


def test_canvas_page_tests_drift_against_test_rows_and_serving(written: Written) -> None:
    home = written.paths.tasks["home"].read_text(encoding="utf-8")
    assert "training rows → test rows" in home and "training rows → serving candidates" in home
    serving = home.split("training rows → serving candidates", 1)[1]
    drifted = re.findall(
        r'<td class="name">(\w+)</td><td class="name">[^<]+</td>\s*<td>[^<]+</td><td>[^<]+</td>\s*<td class="drifted">',
        serving,
    )
    assert drifted == ["query_title_match"]  # shifted by 5; the others are the same rows
    search = written.paths.tasks["search"].read_text(encoding="utf-8")
    assert "Not compared: no serving_candidates in the warehouse" in search
    assert len(re.findall(r'<table class="drift">', search)) == 1


def test_hostile_names_are_escaped(tmp_path: Path) -> None:
    hostile_task = "<script>alert(1)</script>"
    hostile_feature = "<img src=x onerror=alert(2)>"
    task = make_task("x", seed=3, n_requests=10)
    frames = TaskFrames(
        reference=task.frames.reference.rename(columns={"country": hostile_feature}),
        current=task.frames.current.rename(columns={"country": hostile_feature}),
    )
    paths = write_reports(
        tmp_path / "out",
        "v<1>",
        [evaluate(hostile_task, task)],
        {hostile_task: frames},
        NUMERIC,
        [hostile_feature],
        {hostile_task: {hostile_feature: 1.0}},
        {"unified": "<b>bold</b>"},
    )
    index = paths.index.read_text(encoding="utf-8")
    for raw in (hostile_task, hostile_feature, "<b>bold</b>", "v<1>"):
        assert raw not in index
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    assert "&lt;img src=x onerror=alert(2)&gt;" in index
    # The report file stays inside the folder, under a name safe in a URL.
    report = paths.tasks[hostile_task]
    assert report.parent == tmp_path / "out"
    assert re.fullmatch(r"script-alert-1-script-[0-9a-f]{8}\.html", report.name)
    assert f'href="{report.name}"' in index
    page = report.read_text(encoding="utf-8")
    assert hostile_task not in page
    assert hostile_feature not in page


def test_ties_short_lists_and_constant_category_still_give_a_full_report(tmp_path: Path) -> None:
    # All scores tied, 5 items per request (fewer than k) and a constant category in train:
    # each trips Evidently when passed naively.
    task = make_task("ties", seed=4, n_requests=20, n_items=5)
    current = task.frames.current.assign(score=1.0)
    reference = task.frames.reference.assign(country="fr")
    paths = write_reports(
        tmp_path,
        "v1",
        [evaluate("ties", task)],
        {"ties": TaskFrames(reference=reference, current=current)},
        NUMERIC,
        CATEGORICAL,
        {},
        DESCRIPTIONS,
    )
    page = paths.tasks["ties"].read_text(encoding="utf-8")
    rows = curve_rows(page)
    assert [r[0] for r in rows] == [str(k) for k in range(1, 11)]
    assert rows[4][4] != "—" and rows[5][4:] == ["—"] * 4  # Evidently stops at the list length
    assert '<table class="drift">' in page
    assert "Not compared" not in page.split("serving candidates")[0]
    assert "Feature importance" not in paths.index.read_text(encoding="utf-8")


def test_a_failing_part_is_reported_and_the_rest_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    task = make_task("home", seed=5, n_requests=10)
    frames = TaskFrames(reference=task.frames.reference.iloc[:0], current=task.frames.current)
    with caplog.at_level(logging.WARNING, logger="ranker.report"):
        paths = write_reports(
            tmp_path,
            "v1",
            [evaluate("home", task)],
            {"home": frames},
            NUMERIC,
            CATEGORICAL,
            {},
            DESCRIPTIONS,
        )
    page = paths.tasks["home"].read_text(encoding="utf-8")
    assert len(curve_rows(page)) == 10
    assert "no training rows rows to compare" in page
    assert "Canvas page incomplete" in paths.index.read_text(encoding="utf-8")
    assert any("home" in r.getMessage() for r in caplog.records)


def test_evidently_failing_everywhere_gives_a_fallback_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("evidently exploded")

    monkeypatch.setattr("evidently.core.report.Report.run", fail)
    monkeypatch.setattr("evidently.legacy.calculations.stattests.registry.StatTest.__call__", fail)
    task = make_task("home", seed=6, n_requests=10)
    paths = write_reports(
        tmp_path,
        "v1",
        [evaluate("home", task)],
        {"home": task.frames},
        NUMERIC,
        CATEGORICAL,
        {},
        DESCRIPTIONS,
    )
    page = paths.tasks["home"].read_text(encoding="utf-8")
    assert len(curve_rows(page)) == 10  # our own numbers do not need Evidently
    assert "Evidently NDCG@k" not in page
    # named at the top (ranking metrics, drift) and in the drift section
    assert page.count("RuntimeError: evidently exploded") == 3
    assert fmt(evaluate("home", task).models["unified"].metrics[HEADLINE_METRIC]) in (
        paths.index.read_text(encoding="utf-8")
    )


def test_missing_frames_or_columns_raise_report_error(tmp_path: Path) -> None:
    task = make_task("home", seed=7, n_requests=5)
    evaluation = evaluate("home", task)
    no_importance: dict[str, dict[str, float]] = {}
    args = (NUMERIC, CATEGORICAL, no_importance, DESCRIPTIONS)
    with pytest.raises(ReportError, match="'home'"):
        write_reports(tmp_path, "v1", [evaluation], {}, *args)
    no_score = TaskFrames(task.frames.reference, task.frames.current.drop(columns="score"))
    with pytest.raises(ReportError, match=r"'home'.*score"):
        write_reports(tmp_path, "v1", [evaluation], {"home": no_score}, *args)
    with pytest.raises(ReportError, match="twice"):
        write_reports(tmp_path, "v1", [evaluation, evaluation], {"home": task.frames}, *args)
    assert not (tmp_path / "index.html").exists()
