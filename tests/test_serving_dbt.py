"""Serving in dbt: candidate generation rules, and train/serve skew (the same features for the
same context and item, whichever path computed them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from ranker.build import run_dbt
from ranker.config import Settings, load_settings
from ranker.registry import BUILTIN_FEATURES

pytestmark = pytest.mark.dbt


def comparable_features(settings: Settings, task: str) -> list[str]:
    """The registered feature columns a serving context of `task` can reproduce: a serving
    context holds only the canvas's serving key and carried columns, so a feature that needs
    another context column the canvas fills (a user's history on a non-personalised canvas) is
    computed from less context at serving time, by design; every other one must agree."""
    canvas = settings.registry.canvas(task)
    assert canvas.serving is not None
    served = {canvas.serving.key, *canvas.serving.carry}
    needs = {c.name: set(c.needs) for columns in BUILTIN_FEATURES.values() for c in columns}
    return [
        column.name
        for column in settings.registry.feature_columns
        if needs.get(column.name, set()) & set(canvas.context_columns) <= served
    ]


def _query(path: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_candidates_follow_the_registry(demo_warehouse: Settings) -> None:
    path = demo_warehouse.duckdb_path
    cap = demo_warehouse.registry.serving.candidates_per_context
    assert (
        _query(
            path,
            "select max(n) from (select count(*) as n from serving_candidates group by request_id)",
        )[0][0]
        <= cap
    )
    for canvas in demo_warehouse.registry.canvases:
        assert canvas.serving is not None
        sources = {
            r[0]
            for r in _query(
                path,
                "select distinct candidate_source from serving_candidates where task_type = ?",
                [canvas.name],
            )
        }
        assert sources and sources <= set(canvas.serving.sources), canvas.name
        key_matches = _query(
            path,
            f"select count(*) from serving_candidates where task_type = ? and context_key <> {canvas.serving.key}",
            [canvas.name],
        )[0][0]
        assert key_matches == 0, (
            f"{canvas.name}: context_key must be the {canvas.serving.key} value"
        )
    assert (
        _query(
            path,
            "select count(*) from serving_candidates where task_type = 'related' and item_id = source_item_id",
        )[0][0]
        == 0
    )
    # exclude_engaged: no home candidate the user engaged with before the serving clock
    engaged = _query(
        path,
        """select count(*) from serving_candidates as c
           inner join int_engagement_history as h on h.user_id = c.user_id and h.item_id = c.item_id
           where c.task_type = 'home' and h.engaged_at < c.served_as_of""",
    )[0][0]
    assert engaged == 0
    # category pages: candidates of the browsed category come first
    first = _query(
        path,
        "select count(*) from serving_candidates where task_type = 'category' and candidate_rank = 1 and item_category <> category",
    )[0][0]
    assert first == 0
    # search: title matches rank by query_title_match before popular fillers
    matched = _query(
        path,
        "select min(query_title_match) from serving_candidates where candidate_source = 'title_match'",
    )[0][0]
    assert matched > 0


def _training_request(path: Path, task: str) -> tuple[str, str, str]:
    """A test-split request of `task` whose context was seen before it (so it is a serving
    context then), preferring shown items that title-match (what search serving retrieves)."""
    key = {"home": "user_id", "search": "query_text"}[task]
    row = _query(
        path,
        f"""select r.request_id, r.{key}, cast(r.requested_at as varchar) from ranking_examples as r
            where r.task_type = ? and r.split = 'test' and r.{key} not like '\\_\\_%' escape '\\'
              and exists (select 1 from ranking_examples as e where e.task_type = r.task_type
                          and e.{key} = r.{key} and e.requested_at < r.requested_at)
            order by (select count(*) from ranking_examples as x
                      where x.request_id = r.request_id and x.query_title_match > 0) desc, r.request_id
            limit 1""",
        [task],
    )
    return row[0][0], row[0][1], row[0][2]


@pytest.mark.parametrize("task", ["home", "search"])
def test_serving_features_equal_training_features(
    demo_warehouse: Settings, warehouse_copy: Path, task: str
) -> None:
    """Rebuild serving as of a training request's own time: for every item in both that request's
    candidates and the serving candidates of its context, every registered feature it can
    reproduce must agree (search contexts are not personalised: the user's features are left
    out there)."""
    compared = comparable_features(demo_warehouse, task)
    assert len(compared) == (14 if task == "home" else 9)  # the demo's registry
    request_id, key, requested_at = _training_request(demo_warehouse.duckdb_path, task)
    serving = {
        **demo_warehouse.registry.serving.model_dump(mode="json"),
        "as_of": requested_at,
        "candidates_per_context": 100,
    }
    canvases = [
        {**c, "serving": {**c["serving"], "min_requests": 1}}
        for c in demo_warehouse.registry_vars["canvases"]
    ]
    settings = load_settings(
        demo_warehouse.project_dir,
        {"serving": serving, "canvases": canvases},
        duckdb_path=warehouse_copy,
    )
    run_dbt(
        settings,
        ["run", "--select", "int_serving_clock+", "--exclude", "ranking_examples"],
        echo=False,
    )
    columns = ", ".join(compared)
    training = {
        r[0]: r[1:]
        for r in _query(
            warehouse_copy,
            f"select item_id, {columns} from ranking_examples where request_id = ?",
            [request_id],
        )
    }
    served = {
        r[0]: r[1:]
        for r in _query(
            warehouse_copy,
            f"select item_id, {columns} from serving_candidates where task_type = ? and context_key = ?",
            [task, key],
        )
    }
    both = sorted(set(training) & set(served))
    assert len(both) >= 3, f"too few shared items to compare ({len(both)})"
    for item in both:
        for name, a, b in zip(compared, training[item], served[item], strict=True):
            expected = b if isinstance(b, str) else pytest.approx(b, abs=1e-9)
            assert a == expected, f"{task} {key!r} item {item}: {name} train={a} serve={b}"


def test_candidate_rules_are_registry_options(
    demo_warehouse: Settings, warehouse_copy: Path
) -> None:
    """exclude_source_item false lets the item on screen be its own candidate, in training rows
    and in serving alike (on a clickout log most related clicks are on it); exclude_engaged
    true on a canvas drops what its user engaged with, in both too."""
    canvases = [dict(c) for c in demo_warehouse.registry_vars["canvases"]]
    related = next(c for c in canvases if c["name"] == "related")
    related["exclude_source_item"] = False
    related["serving"] = {**related["serving"], "sources": ["popular_in_canvas"]}
    search = next(c for c in canvases if c["name"] == "search")
    search["exclude_engaged"] = True
    settings = load_settings(
        demo_warehouse.project_dir, {"canvases": canvases}, duckdb_path=warehouse_copy
    )
    run_dbt(
        settings,
        [
            "run",
            "--select",
            "int_labels_unioned",
            "int_serving_clock+",
            "--exclude",
            "ranking_examples",
        ],
        echo=False,
    )
    counts = dict(
        _query(
            warehouse_copy,
            """select 'train', count(*) from int_labels_unioned
               where task_type = 'related' and item_id = source_item_id
               union all
               select 'serve', count(*) from serving_candidates
               where task_type = 'related' and item_id = source_item_id""",
        )
    )
    assert counts["serve"] > 0  # popular items are often the related page's own item
    assert (
        counts["train"]
        == _query(
            warehouse_copy,
            "select count(*) from int_related__labels where item_id = source_item_id",
        )[0][0]
    )
    engaged = _query(
        warehouse_copy,
        """select count(*) from int_labels_unioned as l
           inner join int_engagement_history as h
               on h.user_id = l.user_id and h.item_id = l.item_id and h.engaged_at < l.requested_at
           where l.task_type = 'search'""",
    )[0][0]
    assert engaged == 0


def test_candidates_are_stored_context_by_context(demo_warehouse: Settings) -> None:
    """Scoring reads each context's candidates as one run of rows, in (task_type, context_key)
    order: it looks a context's number up once per run and cuts each run to its top K."""
    stored = _query(
        demo_warehouse.duckdb_path, "select task_type, context_key from serving_candidates"
    )
    runs = [key for i, key in enumerate(stored) if i == 0 or key != stored[i - 1]]
    assert len(stored) > len(runs) > 1
    assert runs == sorted(set(stored))  # one run a context, in order
