"""Representations (ranker.representations, int_features__representation): point-in-time safety
of the learned versions, the registry's block and feature, and the feature on a built project."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from ranker.build import BuildError, run_dbt
from ranker.config import Settings, load_settings
from ranker.registry import (
    DEFAULT_FEATURES,
    REPRESENTATION_DEFAULT,
    RegistryError,
    parse_registry,
)
from ranker.representations import AlsSettings, learn_items, learn_versions, versions_fingerprint

SMALL = AlsSettings(dimensions=4, iterations=5, seed=3)
Learner = Callable[[pd.DataFrame, Sequence[pd.Timestamp], AlsSettings], pd.DataFrame]


def _engagements(seed: int, n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    users = [f"u{i}" if i % 7 else None for i in rng.integers(0, 40, n)]  # some anonymous
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "user_id": users,
            "item_id": [f"i{i}" for i in rng.integers(0, 30, n)],
            "engaged_at": pd.Timestamp("2026-01-01")
            + pd.to_timedelta(rng.integers(0, 20 * 86_400, n), unit="s"),
        }
    )


CUTS = [pd.Timestamp("2026-01-06"), pd.Timestamp("2026-01-11"), pd.Timestamp("2026-01-16")]


def _future_at(cut: pd.Timestamp, seed: int) -> pd.DataFrame:
    """Engagements at exactly ``cut`` and later: known and new users and items."""
    rng = np.random.default_rng(seed)
    n = 200
    return pd.DataFrame(
        {
            "request_id": [f"f{i}" for i in range(n)],
            "user_id": [f"u{i}" for i in rng.integers(0, 60, n)],
            "item_id": [f"i{i}" for i in rng.integers(0, 45, n)],
            "engaged_at": [cut] * 50
            + list(cut + pd.to_timedelta(rng.integers(1, 5 * 86_400, n - 50), unit="s")),
        }
    )


def versions_ignore_the_future(learn: Learner, seed: int) -> bool:
    """The point-in-time property: adding engagements at or after a cut leaves every version
    whose cut is at or before them exactly as it was."""
    history = _engagements(seed)
    before = learn(history, CUTS, SMALL)
    for index, cut in enumerate(CUTS):
        after = learn(pd.concat([history, _future_at(cut, seed)]), CUTS, SMALL)
        for kept in CUTS[: index + 1]:
            old = before[before["cut_at"] == kept].reset_index(drop=True)
            new = after[after["cut_at"] == kept].reset_index(drop=True)
            if not old.equals(new):
                return False
    return True


def _leaky_including_the_cut(
    engagements: pd.DataFrame, cuts: Sequence[pd.Timestamp], settings: AlsSettings
) -> pd.DataFrame:
    """A learner that reads engagements at its cut too (`<=`): what the test must catch."""
    return learn_versions(
        engagements.assign(engaged_at=pd.to_datetime(engagements["engaged_at"]) - pd.Timedelta(1)),
        cuts,
        settings,
    )


def _leaky_all_history(
    engagements: pd.DataFrame, cuts: Sequence[pd.Timestamp], settings: AlsSettings
) -> pd.DataFrame:
    """A learner that learns once from every engagement and stamps it with each cut."""
    frames = []
    events = engagements.assign(user=engagements["user_id"].fillna(engagements["request_id"]))
    for cut in cuts:
        vectors = learn_items(events, settings)
        vectors.insert(0, "cut_at", cut)
        frames.append(vectors)
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_version_never_changes_with_engagements_at_or_after_its_cut(seed: int) -> None:
    assert versions_ignore_the_future(learn_versions, seed)


@pytest.mark.parametrize("leaky", [_leaky_including_the_cut, _leaky_all_history])
def test_a_learner_that_sees_the_future_fails_the_check(leaky: Learner) -> None:
    assert not versions_ignore_the_future(leaky, 0)


def test_versions_are_unit_vectors_of_the_items_seen_before_each_cut() -> None:
    history = _engagements(0)
    versions = learn_versions(history, CUTS, SMALL)
    vectors = versions[[f"rep_{d}" for d in range(SMALL.dimensions)]].to_numpy()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-9)
    for cut in CUTS:
        seen = set(history.loc[history["engaged_at"] < cut, "item_id"])
        assert set(versions.loc[versions["cut_at"] == cut, "item_id"]) <= seen
    # learned twice, the same numbers: one thread, a seed
    pd.testing.assert_frame_equal(versions, learn_versions(history, CUTS, SMALL))


def test_a_cut_before_any_engagement_has_no_version() -> None:
    versions = learn_versions(_engagements(0), [pd.Timestamp("2025-12-01")], SMALL)
    assert versions.empty


# --- the registry --------------------------------------------------------------------------


def _registry(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "inputs": {"items": "items", "engagements": "engagements"},
        "context_columns": [
            {"name": "user_id", "sentinel": "__anonymous__"},
            {"name": "source_item_id", "sentinel": "__none__"},
        ],
        "canvases": [
            {
                "name": "home",
                "label_model": "home_labels",
                "context_columns": ["user_id"],
                "serving": {"key": "user_id", "sources": ["popular_in_canvas"]},
            },
            {
                "name": "related",
                "label_model": "related_labels",
                "context_columns": ["source_item_id", "user_id"],
                "serving": {"key": "source_item_id", "sources": ["coengagement"]},
            },
        ],
        "split": {"valid_from": "2026-02-02", "test_from": "2026-02-09"},
        "features": ["int_features__item_popularity", "int_features__representation"],
    }
    raw.update(changes)
    return raw


def test_the_representation_feature_is_opt_in() -> None:
    assert "int_features__representation" not in DEFAULT_FEATURES
    raw = _registry()
    del raw["features"]
    registry = parse_registry(raw)
    assert "int_features__representation" not in {f.model for f in registry.features}
    assert registry.representations.dimensions == 32
    assert registry.representations.train_versions == 4


def test_the_feature_keeps_the_columns_its_context_allows() -> None:
    registry = parse_registry(_registry())
    names = {c.name for c in registry.feature_columns}
    assert {"user_item_similarity", "source_item_similarity"} <= names
    assert "query_item_similarity" not in names  # no query_text context column
    column = next(c for c in registry.feature_columns if c.name == "user_item_similarity")
    assert column.default == REPRESENTATION_DEFAULT < -1


def test_the_feature_needs_one_of_its_context_columns() -> None:
    raw = _registry(
        context_columns=[{"name": "country", "sentinel": "__unknown__"}],
        canvases=[{"name": "home", "label_model": "home_labels", "context_columns": ["country"]}],
    )
    with pytest.raises(RegistryError, match="needs the context column"):
        parse_registry(raw)


def test_the_representations_block_is_strict() -> None:
    with pytest.raises(RegistryError, match="did you mean `dimensions`"):
        parse_registry(_registry(representations={"dimension": 8}))
    with pytest.raises(RegistryError, match=r"representations\.dimensions"):
        parse_registry(_registry(representations={"dimensions": 1}))
    with pytest.raises(RegistryError, match=r"representations\.refresh_days"):
        parse_registry(_registry(representations={"refresh_days": 0}))
    registry = parse_registry(_registry(representations={"dimensions": 8, "train_versions": 2}))
    assert (registry.representations.dimensions, registry.representations.seed) == (8, 0)
    assert registry.representations.refresh_days is None


def test_canvases_with_the_feature_are_served_from_the_cache() -> None:
    registry = parse_registry(_registry())
    assert registry.serving_mode("home") == "cache_only"
    only_related = _registry(
        features=[{"model": "int_features__representation", "canvases": ["related"]}]
    )
    registry = parse_registry(only_related)
    assert registry.serving_mode("home") == "cache_then_online"
    assert registry.serving_mode("related") == "cache_only"
    raw = _registry()
    raw["canvases"][0]["serving"]["mode"] = "online"
    with pytest.raises(RegistryError, match="int_features__representation"):
        parse_registry(raw)


# --- on a built project ----------------------------------------------------------------------

FEATURES = [*DEFAULT_FEATURES, "int_features__representation"]
REFRESH_DAYS = 3


def test_a_spark_build_with_the_feature_stops_before_dbt(project_dir: Path, tmp_path: Path) -> None:
    """The vectors are learned by a dbt Python model, which dbt-spark's session cannot run."""
    pytest.importorskip("pyspark")
    settings = load_settings(
        project_dir, {"features": FEATURES}, duckdb_path=tmp_path / "x.duckdb", target="spark"
    )
    with pytest.raises(BuildError, match="needs the DuckDB target"):
        run_dbt(settings, ["build"], echo=False)


@pytest.fixture(scope="module")
def represented(tmp_path_factory: pytest.TempPathFactory, project_dir: Path) -> Settings:
    """The demo built with int_features__representation added to its features, its vectors
    refreshed every 3 days."""
    path = tmp_path_factory.mktemp("represented") / "demo.duckdb"
    overrides = {"features": FEATURES, "representations": {"refresh_days": REFRESH_DAYS}}
    settings = load_settings(project_dir, overrides, duckdb_path=path)
    run_dbt(settings, ["build"], echo=False)
    return settings


def _frame(settings: Settings, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as connection:
        return connection.sql(sql).df()


COLUMNS = ("user_item_similarity", "source_item_similarity", "query_item_similarity")


@pytest.mark.dbt
def test_built_feature_columns_are_cosines_or_the_default(represented: Settings) -> None:
    rows = _frame(represented, f"select task_type, {', '.join(COLUMNS)} from ranking_examples")
    for column in COLUMNS:
        values = rows[column]
        known = values[values != REPRESENTATION_DEFAULT]
        assert known.between(-1 - 1e-9, 1 + 1e-9).all(), column
        assert len(known) > 0, column
    # a column applies only where its context exists: home has no source item, no query
    home = rows[rows["task_type"] == "home"]
    assert (home["source_item_similarity"] == REPRESENTATION_DEFAULT).all()
    assert (home["query_item_similarity"] == REPRESENTATION_DEFAULT).all()


@pytest.mark.dbt
def test_the_cuts_are_the_split_the_refresh_and_the_serving_clock(represented: Settings) -> None:
    cuts = sorted(_frame(represented, "select cut_at from int_representation_versions")["cut_at"])
    clock = _frame(represented, "select as_of from int_serving_clock")["as_of"].iloc[0]
    split = represented.registry.split
    assert cuts[-1] == clock
    assert {pd.Timestamp(split.valid_from), pd.Timestamp(split.test_from)} <= set(cuts)
    assert all(c == c.normalize() for c in cuts[:-1])  # at midnight: see the twin check
    # 4 training cuts, test_from, the clock, and the refresh every 3 days in between
    refreshed = [c for c in cuts[:-1] if (c - cuts[0]).days % REFRESH_DAYS == 0]
    assert len(cuts) > 6
    assert len(refreshed) >= (cuts[-2] - cuts[0]).days // REFRESH_DAYS


@pytest.mark.dbt
def test_probes_before_the_first_cut_get_the_default(represented: Settings) -> None:
    first = _frame(represented, "select min(cut_at) as cut from int_representation_versions")
    rows = _frame(
        represented,
        f"select requested_at, {', '.join(COLUMNS)} from ranking_examples",
    )
    early = rows[rows["requested_at"] < first["cut"].iloc[0]]
    assert len(early) > 0  # the demo has requests before its first cut
    assert (early[list(COLUMNS)] == REPRESENTATION_DEFAULT).all().all()
    later = rows[rows["requested_at"] >= first["cut"].iloc[0]]
    assert (later["user_item_similarity"] != REPRESENTATION_DEFAULT).mean() > 0.5


@pytest.mark.dbt
def test_every_probe_reads_a_version_cut_at_or_before_it(represented: Settings) -> None:
    late = _frame(
        represented,
        """
        select count(*) as n from int_features__representation as features
        inner join int_feature_probes as probes
            on features.request_id = probes.request_id and features.item_id = probes.item_id
        where features.representation_cut_at > probes.requested_at
        """,
    )
    assert late["n"].iloc[0] == 0


@pytest.mark.dbt
def test_user_similarity_recomputed_from_strictly_earlier_engagements(
    represented: Settings,
) -> None:
    """For a sample of probes, the user's vector rebuilt in pandas from the engagements strictly
    before the request and the probe's version gives the same cosine as the SQL."""
    dims = [f"rep_{d}" for d in range(represented.registry.representations.dimensions)]
    probes = _frame(
        represented,
        """
        select features.request_id, features.item_id, probes.user_id, probes.requested_at,
            features.representation_cut_at as cut_at, features.user_item_similarity
        from int_features__representation as features
        inner join int_feature_probes as probes
            on features.request_id = probes.request_id and features.item_id = probes.item_id
        where probes.probe_kind = 'train' and probes.user_id <> '__anonymous__'
        order by features.request_id, features.item_id
        limit 300
        """,
    )
    vectors = _frame(represented, "select * from int_item_representations").set_index(
        ["cut_at", "item_id"]
    )
    history = _frame(
        represented,
        "select user_id, item_id, engaged_at from int_engagement_history where user_id is not null",
    )
    checked = 0
    for probe in probes.itertuples():
        past = history[
            (history["user_id"] == probe.user_id) & (history["engaged_at"] < probe.requested_at)
        ]
        keys = [(probe.cut_at, item) for item in past["item_id"]]
        known = [k for k in keys if k in vectors.index]
        if not known:
            assert pd.isna(probe.user_item_similarity)
            continue
        user = vectors.loc[known, dims].to_numpy().sum(axis=0)
        candidate = vectors.loc[(probe.cut_at, probe.item_id), dims].to_numpy()
        expected = float(user @ candidate / np.linalg.norm(user))
        assert probe.user_item_similarity == pytest.approx(expected, abs=1e-9)
        checked += 1
    assert checked > 100


@pytest.mark.dbt
def test_the_model_metadata_names_the_representations(represented: Settings) -> None:
    found = versions_fingerprint(represented)
    assert found is not None
    cuts = _frame(represented, "select cut_at from int_representation_versions")
    learned = [pd.Timestamp(v["cut_at"]) for v in found["versions"]]
    assert len(learned) >= 2
    assert set(learned) <= set(cuts["cut_at"])
    assert found["settings"]["dimensions"] == 32
    assert versions_fingerprint(represented) == found
