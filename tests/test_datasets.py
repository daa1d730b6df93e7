"""The real datasets (MovieLens, Diginetica) as the example projects examples/<name>/, which
install unirank as a package exactly as a user's project does: each builds, its requests follow
the documented definitions, sampled negatives follow the documented distribution and never hit a
positive, no engagement crosses splits between canvases, its own feature models reach the mart,
and a short training evaluates every canvas.

The data lives beside the project in ../shared/data and is never copied into it; these tests skip
with the reason when it is absent (a clone outside this workspace). Each dataset is built once, on
a small stratified slice (the label prep still reads the whole log)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from ranker.build import run_dbt
from ranker.config import Settings, load_settings, read_project
from ranker.train import TrainParams, train_and_evaluate

from .conftest import PROJECT_DIR

pytestmark = pytest.mark.dbt

DATA_DIR = PROJECT_DIR.parent / "shared" / "data"
MOVIELENS = DATA_DIR / "movielens-latest-small"
DIGINETICA = DATA_DIR / "diginetica-sample"
NEGATIVES = 20
SLICE = {"strategy": "weights", "budget": 2000, "seed": 42}


def _needs(path: Path) -> None:
    if not path.is_dir():
        pytest.skip(
            f"real data not found at {path} (the workspace's ../shared/data); not copied here"
        )


def _query(settings: Settings, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(sql).df()


# Every example project of the repository, found, not listed: a new one is built and trained
# by the tests below that take `example`.
EXAMPLES = sorted(p.parent.name for p in (PROJECT_DIR / "examples").glob("*/dbt_project.yml"))
_built: dict[str, Settings] = {}


def _data_paths(project: Path) -> list[Path]:
    """Where an example reads its data: its vars named `*_path`, relative to its folder."""
    variables = read_project(project).vars
    return [(project / str(v)).resolve() for k, v in variables.items() if k.endswith("_path")]


def _build(name: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The example project `name` built once per session (on a stratified slice; its label prep
    reads the whole log), into a temporary warehouse."""
    if name not in _built:
        project = PROJECT_DIR / "examples" / name
        for data in _data_paths(project):
            _needs(data)
        tmp = tmp_path_factory.mktemp(name)
        settings = load_settings(
            project,
            {"stratification": SLICE},
            duckdb_path=tmp / f"{name}.duckdb",
            artifacts_dir=tmp / "artifacts",
            reports_dir=tmp / "reports",
        )
        run_dbt(settings, ["build"], echo=False)
        _built[name] = settings
    return _built[name]


@pytest.fixture(params=EXAMPLES)
def example(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return _build(request.param, tmp_path_factory)


@pytest.fixture
def movielens(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return _build("movielens", tmp_path_factory)


@pytest.fixture
def diginetica(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return _build("diginetica", tmp_path_factory)


def test_every_example_is_found_and_reads_its_data_in_place() -> None:
    assert {"movielens", "diginetica"} <= set(EXAMPLES)
    for name in EXAMPLES:
        project = PROJECT_DIR / "examples" / name
        packages = (project / "packages.yml").read_text()
        assert "local: ../.." in packages  # installs unirank as a user's project does
        for data in _data_paths(project):
            assert data.is_relative_to(PROJECT_DIR.parent)  # beside the clone, never inside


def _ratings() -> pd.DataFrame:
    ratings = pd.read_csv(MOVIELENS / "ratings.csv", dtype={"userId": str, "movieId": str})
    ratings["rated_at"] = pd.to_datetime(ratings["timestamp"], unit="s")
    return ratings


def _labels(settings: Settings, model: str) -> pd.DataFrame:
    return _query(settings, f"select * from {model}")


def test_movielens_requests_follow_the_documented_definitions(movielens: Settings) -> None:
    """Request counts recomputed from the raw CSV files with pandas, independently of the SQL."""
    ratings = _ratings()
    positives = ratings[ratings["rating"] >= 4]
    tags = pd.read_csv(MOVIELENS / "tags.csv", dtype={"userId": str, "movieId": str})
    tags["query"] = tags["tag"].str.strip().str.lower()

    def requests(model: str) -> int:
        return int(
            _query(movielens, f"select count(distinct request_id) as n from {model}")["n"][0]
        )

    user_days = positives.assign(day=positives["rated_at"].dt.date)[["userId", "day"]]
    assert requests("int_home__labels") == len(user_days.drop_duplicates())
    # related: every positive but each user's first one (it has no earlier positive as source)
    assert requests("int_related__labels") == len(positives) - positives["userId"].nunique()
    assert requests("int_category__labels") == len(positives)
    assert requests("int_search__labels") == len(
        tags[["userId", "movieId", "query"]].drop_duplicates()
    )


@pytest.mark.parametrize(
    "model",
    [
        "int_home__labels",
        "int_related__labels",
        "int_category__labels",
        "int_search__labels",
    ],
)
def test_movielens_negatives_are_drawn_and_never_a_positive(
    movielens: Settings, model: str
) -> None:
    labels = _labels(movielens, model)
    per_request = labels.groupby("request_id")["label"].agg(
        positives=lambda s: int((s > 0).sum()), negatives=lambda s: int((s == 0).sum())
    )
    assert (per_request["positives"] >= 1).all()
    assert per_request["negatives"].max() == NEGATIVES
    assert per_request["negatives"].mean() > NEGATIVES - 1  # a 9,742-movie pool rarely runs dry
    if model.endswith("home_labels"):
        assert per_request["positives"].max() <= 10
    # never a movie the user likes (4+ stars or a tag, any canvas) at or after the request: a
    # false negative; earlier likes stay eligible (the features see them, so may a negative)
    last_liked = _movielens_last_liked()
    negatives = labels[labels["label"] == 0].merge(
        last_liked, how="left", left_on=["user_id", "item_id"], right_on=["userId", "movieId"]
    )
    assert not (negatives["last_liked_at"] >= negatives["requested_at"]).any()
    if model.endswith("related_labels"):
        assert (negatives["item_id"] != negatives["source_item_id"]).all()


def _movielens_last_liked() -> pd.DataFrame:
    """(userId, movieId, last_liked_at): the last 4+ rating or tag of each liked movie."""
    ratings = _ratings()
    tags = pd.read_csv(MOVIELENS / "tags.csv", dtype={"userId": str, "movieId": str})
    tags["rated_at"] = pd.to_datetime(tags["timestamp"], unit="s")
    liked = pd.concat([ratings[ratings["rating"] >= 4], tags])[["userId", "movieId", "rated_at"]]
    return (
        liked.groupby(["userId", "movieId"], as_index=False)["rated_at"]
        .max()
        .rename(columns={"rated_at": "last_liked_at"})
    )


def test_movielens_related_source_is_the_previous_liked_movie(movielens: Settings) -> None:
    labels = _labels(movielens, "int_related__labels")
    positives = labels[labels["label"] > 0].set_index("request_id")
    ratings = _ratings()
    liked = ratings[ratings["rating"] >= 4].sort_values(["userId", "rated_at", "movieId"])
    liked["previous"] = liked.groupby("userId")["movieId"].shift()
    liked["request_id"] = "ml-related|" + liked["userId"] + "|" + liked["movieId"]
    expected = liked.dropna(subset=["previous"]).set_index("request_id")["previous"]
    assert (positives["source_item_id"] == expected.reindex(positives.index)).all()
    assert (labels["item_id"] != labels["source_item_id"]).all()


def test_category_negatives_come_from_the_page_category(
    movielens: Settings, diginetica: Settings
) -> None:
    for settings, model in (
        (movielens, "int_category__labels"),
        (diginetica, "int_category__labels"),
    ):
        off_page = _query(
            settings,
            f"select count(*) as n from {model} as labels inner join int_items as items "
            "on labels.item_id = items.item_id where items.category <> labels.category",
        )
        assert off_page["n"][0] == 0, model


def _python_negatives(
    request_id: str, tickets: list[str], excluded: set[str], seed: int
) -> list[str]:
    """The documented draw, reimplemented: draw d takes ticket md5(request|d|seed)[:12] mod T."""
    kept: list[str] = []
    for draw in range(1, 2 * NEGATIVES + 11):
        digest = hashlib.md5(f"{request_id}|{draw}|{seed}".encode()).hexdigest()
        item = tickets[int(digest[:12], 16) % len(tickets)]
        if item not in excluded and item not in kept:
            kept.append(item)
    return kept[:NEGATIVES]


@pytest.mark.parametrize("model", ["int_home__labels", "int_related__labels"])
def test_negative_sampling_is_the_documented_popularity_weighted_draw(
    movielens: Settings, model: str
) -> None:
    """Recompute the negatives of some requests in Python from the pool weights and the raw
    files' likes: the SQL must draw exactly the same items (so any engine computing md5 draws
    them too)."""
    pool = _query(
        movielens,
        "select item_id, weight from int_movielens__negative_pool where pool_key = '__all__' "
        "order by item_id",
    )
    tickets = [
        item
        for item, weight in zip(pool["item_id"], pool["weight"], strict=True)
        for _ in range(weight)
    ]
    seed = movielens.registry.negative_sampling.seed
    labels = _labels(movielens, model)
    last_liked = _movielens_last_liked()
    for request_id in sorted(labels["request_id"].unique())[:25]:
        rows = labels[labels["request_id"] == request_id]
        user, requested_at = rows["user_id"].iloc[0], rows["requested_at"].iloc[0]
        mine = last_liked[last_liked["userId"] == user]
        excluded = set(mine.loc[mine["last_liked_at"] >= requested_at, "movieId"])
        if "source_item_id" in rows:
            excluded.add(rows["source_item_id"].iloc[0])
        expected = _python_negatives(request_id, tickets, excluded, seed)
        assert sorted(rows.loc[rows["label"] == 0, "item_id"]) == sorted(expected), request_id


def _split(requested_at: pd.Series, settings: Settings) -> pd.Series:
    cut = settings.registry.split
    valid, test = pd.Timestamp(cut.valid_from), pd.Timestamp(cut.test_from)
    return pd.Series(
        ["train" if t < valid else "valid" if t < test else "test" for t in requested_at],
        index=requested_at.index,
    )


@pytest.mark.parametrize("dataset", ["movielens", "diginetica"])
def test_no_engagement_is_in_one_split_for_one_canvas_and_another_for_another(
    dataset: str, request: pytest.FixtureRequest
) -> None:
    """Cross-canvas leakage: one engagement feeds several canvases' requests (a MovieLens 4+
    rating is a home, a related and a category positive; a Diginetica visit's item is a home, a
    related and a category positive). With one global time cut they must all land in the same
    split, over every label row (not only the sampled slice). A MovieLens tag is another
    engagement (a search positive), keyed apart from the rating of the same movie."""
    settings: Settings = request.getfixturevalue(dataset)
    splits: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    for canvas in settings.registry.canvases:
        labels = _labels(settings, canvas.label_model)
        positives = labels[labels["label"] > 0].copy()
        if dataset == "movielens":
            kind = "tag" if canvas.name == "search" else "rating"
            owners = positives["user_id"] + "|" + kind
        else:  # the visit: request ids are dg-<canvas>|<session>@<date>|...
            owners = positives["request_id"].str.split("|").str[1]
        positives["split"] = _split(positives["requested_at"], settings)
        for owner, item, split in zip(
            owners, positives["item_id"], positives["split"], strict=True
        ):
            splits[(owner, item)].add(split)
    crossing = {pair: s for pair, s in splits.items() if len(s) > 1}
    assert len(splits) > 1000
    assert not crossing, list(crossing.items())[:5]


def test_mart_splits_follow_the_global_cut(example: Settings) -> None:
    mart = _query(example, "select request_id, split, requested_at from ranking_examples")
    assert (mart["split"] == _split(mart["requested_at"], example)).all()
    counts = mart.groupby("split")["request_id"].nunique()
    assert set(counts.index) == {"train", "valid", "test"}


def test_diginetica_requests_follow_the_documented_definitions(diginetica: Settings) -> None:
    """Counts recomputed from the raw CSV files with pandas: a visit is a session on one date."""

    def read(name: str) -> pd.DataFrame:
        return pd.read_csv(DIGINETICA / name, sep=";", dtype=str, keep_default_na=False)

    catalogue = set(read("product-categories.csv")["itemId"])
    views = read("sample_train-item-views.csv")
    purchases = read("train-purchases.csv").rename(
        columns={"sessionId": "session_id", "itemId": "item_id", "userId": "user_id"}
    )
    events = pd.concat(
        [f[["session_id", "eventdate", "item_id", "user_id"]] for f in (views, purchases)]
    )
    events = events[events["item_id"].isin(catalogue)]
    events["visit"] = events["session_id"] + "@" + events["eventdate"]

    def requests(model: str) -> int:
        return int(
            _query(diginetica, f"select count(distinct request_id) as n from {model}")["n"][0]
        )

    visit_items = events[["visit", "item_id"]].drop_duplicates()
    assert requests("int_category__labels") == len(visit_items)
    known = events.loc[events["user_id"] != "NA", "visit"].nunique()
    assert requests("int_home__labels") == known
    # negatives: never an item the visit (or its known user) engages with at or after the request
    views["at"] = pd.to_datetime(views["eventdate"]) + pd.to_timedelta(
        views["timeframe"].astype(int), unit="ms"
    )
    purchases["at"] = pd.to_datetime(purchases["eventdate"]) + pd.Timedelta(milliseconds=86_399_999)
    timed = pd.concat([f[["session_id", "eventdate", "item_id", "at"]] for f in (views, purchases)])
    timed["visit"] = timed["session_id"] + "@" + timed["eventdate"]
    last = timed.groupby(["visit", "item_id"], as_index=False)["at"].max()
    for model in ("int_related__labels", "int_category__labels"):
        labels = _labels(diginetica, model)
        negatives = labels[labels["label"] == 0].assign(
            visit=lambda f: f["request_id"].str.split("|").str[1]
        )
        joined = negatives.merge(last, how="left", on=["visit", "item_id"])
        assert not (joined["at"] >= joined["requested_at"]).any(), model
        if "source_item_id" in labels:
            assert (labels["source_item_id"] != labels["item_id"]).all()


def test_a_short_training_evaluates_every_canvas(example: Settings, tmp_path: Path) -> None:
    built = example
    copy = tmp_path / "warehouse.duckdb"
    copy.write_bytes(built.duckdb_path.read_bytes())
    settings = load_settings(
        built.project_dir,
        built.var_overrides,
        duckdb_path=copy,
        artifacts_dir=tmp_path / "artifacts",
        reports_dir=tmp_path / "reports",
    )
    params = TrainParams(
        iterations=40,
        learning_rate=0.3,
        depth=4,
        early_stopping_rounds=10,
        bootstrap_resamples=50,
        thread_count=2,
    )
    result = train_and_evaluate(settings, params, write_reports=False)
    evaluated = {e.task: e for e in result.evaluations}
    for canvas in settings.registry.canvas_names:
        assert evaluated[canvas].skipped is None, evaluated[canvas].skipped
        assert {"unified", "bespoke", "no_task", "popularity"} <= set(evaluated[canvas].models)
    assert result.promoted


def test_vars_override_the_project_registry_in_dbt_as_in_python(movielens: Settings) -> None:
    """The slice's stratification is a --vars override of a key the project's registry also
    sets: dbt (unirank_registry) must apply it exactly as ranker.config does."""
    registry = movielens.registry
    assert registry.stratification.budget == SLICE["budget"]
    available = _query(
        movielens,
        " union all ".join(
            f"select '{c.name}' as task, count(distinct request_id) as n from {c.label_model}"
            for c in registry.canvases
        ),
    )
    expected = registry.stratification.target_requests(
        dict(zip(available["task"], available["n"], strict=True)),
        {c.name: c.weight for c in registry.canvases},
    )
    kept = _query(
        movielens,
        "select task_type, count(distinct request_id) as n from ranking_examples group by task_type",
    )
    assert dict(zip(kept["task_type"], kept["n"], strict=True)) == expected


@pytest.mark.parametrize(
    ("dataset", "columns"),
    [
        (
            "movielens",
            ["release_year", "years_since_release", "user_mean_rating", "item_mean_rating"],
        ),
        ("diginetica", ["session_item_views", "session_category_views", "session_views"]),
    ],
)
def test_named_examples_add_features_of_their_own(
    dataset: str, columns: list[str], request: pytest.FixtureRequest
) -> None:
    """One SQL model and one registry entry: the columns reach the mart with real values on the
    canvases that have the signal, and their declared default where it does not apply."""
    settings: Settings = request.getfixturevalue(dataset)
    own = [f for f in settings.registry.feature_models if not f.builtin]
    assert own and {c.name for f in own for c in f.columns} >= set(columns)
    stats = _query(
        settings,
        "select task_type, "
        + ", ".join(f"count(distinct {c}) as {c}" for c in columns)
        + " from ranking_examples group by task_type",
    ).set_index("task_type")
    assert (stats.max() > 2).all(), stats  # informative somewhere, not a constant
    assert set(columns) <= set(settings.registry.model_features.numeric)


def test_every_example_declares_a_feature_of_its_own_that_reaches_the_mart(
    example: Settings,
) -> None:
    own = [c.name for f in example.registry.feature_models if not f.builtin for c in f.columns]
    assert own, f"{example.project_name} declares no feature model of its own"
    present = set(_query(example, "select * from ranking_examples limit 0").columns)
    assert set(own) <= present


def test_movielens_ratings_before_never_see_the_request_itself(movielens: Settings) -> None:
    """A related request is asked at the rating of its positive: the user's and the movie's
    rating counts before it must leave that rating out (recomputed here with pandas)."""
    mart = _query(
        movielens,
        "select request_id, item_id, user_id, requested_at, user_ratings, item_ratings "
        "from ranking_examples where task_type = 'related' and label > 0 limit 300",
    )
    ratings = _ratings().sort_values("rated_at")
    ratings = ratings.drop_duplicates(["userId", "movieId"], keep="last")
    for row in mart.itertuples():
        before = ratings[ratings["rated_at"] < row.requested_at]
        assert row.user_ratings == int((before["userId"] == row.user_id).sum()), row
        assert row.item_ratings == int((before["movieId"] == row.item_id).sum()), row
