"""Batch scoring and publishing: cache contents, scores identical to plain predict, the bounded
top-K selection, cold-context fill, readers during a publish, and a killed scoring run."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from catboost import Pool
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.main import app
from ranker import artifacts
from ranker import score as score_module
from ranker.cache_reader import current_cache_path
from ranker.config import Settings
from ranker.score import ScoringError, TopK, _run_tops, load_model, score_candidates

pytestmark = pytest.mark.dbt


def _cache(settings: Settings, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(current_cache_path(settings)), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_cache_has_k_ranked_rows_per_context_with_provenance(served_project: Settings) -> None:
    k_of = {c.name: c.serving.k for c in served_project.registry.canvases if c.serving}
    per_context = _cache(
        served_project,
        "select task_type, context_key, count(*), min(rank), max(rank), count(distinct item_id) "
        "from recommendations group by all",
    )
    assert {row[0] for row in per_context} == set(k_of)
    for task, _, n, low, high, distinct in per_context:
        assert (n, low, high, distinct) == (k_of[str(task)], 1, k_of[str(task)], n)
    unordered = _cache(
        served_project,
        "select count(*) from (select score, lag(score) over (partition by task_type, context_key order by rank) as previous "
        "from recommendations where source = 'model') where score > previous",
    )
    assert unordered[0][0] == 0
    info = _cache(
        served_project, "select model_version, dbt_invocation_id, contexts from cache_info"
    )[0]
    current = artifacts.current_version(artifacts.models_dir(served_project.artifacts_dir))
    assert info[0] == current.version
    with duckdb.connect(str(served_project.duckdb_path), read_only=True) as con:
        invocation, contexts = con.execute(
            "select max(dbt_invocation_id), count(distinct request_id) from serving_candidates"
        ).fetchall()[0]
    assert info[1] == invocation and info[2] == contexts
    assert (
        _cache(
            served_project,
            "select count(*) from recommendations where task_type = 'related' and item_id = context_key",
        )[0][0]
        == 0
    )


def _plain_scores(settings: Settings) -> pd.DataFrame:
    """Every candidate scored the plain way: pandas straight from DuckDB, categoricals as str
    (as training builds its pools), one `model.predict` over everything."""
    version = artifacts.current_version(artifacts.models_dir(settings.artifacts_dir))
    model = load_model(version)
    features = list(version.metadata["features"])
    categorical = list(version.metadata["categorical_features"])
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        frame = con.sql("select * from serving_candidates").to_arrow_table().to_pandas()
    data = frame[features].copy()
    for column in categorical:
        data[column] = data[column].astype(str)
    frame["score"] = model.predict(Pool(data, cat_features=categorical))
    return frame


def test_cached_scores_are_plain_predict_bit_for_bit_and_the_exact_top_k(
    served_copy: Settings,
) -> None:
    # Small batches: every context's candidates are spread over many batches.
    result = score_candidates(served_copy, batch_rows=1_000)
    plain = _plain_scores(served_copy)
    k_of = {c.name: c.serving.k for c in served_copy.registry.canvases if c.serving}
    plain = plain[~((plain["task_type"] == "related") & (plain["item_id"] == plain["context_key"]))]
    expected = (
        plain.sort_values(["task_type", "context_key", "score", "item_id"], ascending=[1, 1, 0, 1])
        .assign(rank=lambda f: f.groupby(["task_type", "context_key"]).cumcount() + 1)
        .loc[lambda f: f["rank"] <= f["task_type"].map(k_of)]
    )
    cached = pd.DataFrame(
        _cache(
            served_copy,
            "select task_type, context_key, rank, item_id, score from recommendations "
            "where source = 'model' order by all",
        ),
        columns=["task_type", "context_key", "rank", "item_id", "score"],
    )
    expected = expected[cached.columns].sort_values(["task_type", "context_key", "rank"])
    assert len(cached) == len(expected) > 0
    assert result.candidate_rows == len(_plain_scores(served_copy))
    for column in ("task_type", "context_key", "rank", "item_id"):
        assert cached[column].tolist() == expected[column].tolist(), column
    # bit for bit, not approximately
    assert cached["score"].to_numpy().tobytes() == expected["score"].to_numpy().tobytes()
    assert {"predict", "top k", "write recommendations"} <= set(result.stage_seconds)
    assert "read, convert, pool (background)" in result.stage_seconds


def test_hash_collisions_fall_back_to_joins_with_the_same_cache(
    served_copy: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    columns = "task_type, context_key, rank, item_id, score, source"
    score_candidates(served_copy, batch_rows=1_500)
    by_hash = _cache(served_copy, f"select {columns} from recommendations order by all")
    monkeypatch.setattr(score_module, "_collision_free", lambda hashes: False)
    score_candidates(served_copy, batch_rows=1_500)
    assert _cache(served_copy, f"select {columns} from recommendations order by all") == by_hash


def test_cache_rows_are_stored_in_lookup_order(served_project: Settings) -> None:
    stored = _cache(served_project, "select task_type, context_key, rank from recommendations")
    assert stored == sorted(stored)  # what lookups rely on to skip row groups


# Scores with ties at float32 precision (1.0 and 1.0 + 1e-12), exact ties and signed zeros.
SCORES = st.sampled_from([-1.0, -0.0, 0.0, 0.25, 1.0, 1.0 + 1e-12, 2.0])


@given(
    k=st.lists(st.integers(0, 4), min_size=1, max_size=6),
    rows=st.lists(st.tuples(st.integers(0, 5), SCORES), max_size=80),
    cuts=st.lists(st.integers(0, 80), max_size=6),
    seed=st.integers(0, 2**16),
    grouped=st.booleans(),
)
def test_top_k_keeps_a_superset_of_every_contexts_exact_top_k(
    k: list[int], rows: list[tuple[int, float]], cuts: list[int], seed: int, grouped: bool
) -> None:
    if grouped:  # context by context, as serving_candidates is stored: batches cut runs first
        rows = sorted(rows, key=lambda row: row[0] % len(k))
    contexts = np.array([c % len(k) for c, _ in rows], dtype=np.int32)
    scores = np.array([s for _, s in rows], dtype=np.float64)
    items = np.random.default_rng(seed).permutation(len(rows)).astype(np.int32)  # unique
    top = TopK(np.array(k))
    bounds = [0, *sorted(c for c in cuts if c < len(rows)), len(rows)]
    for start, end in itertools.pairwise(bounds):
        top.add(contexts[start:end], items[start:end], scores[start:end])
        assert top.rows <= top.capacity + (end - start)
    kept = pd.DataFrame(dict(zip(("context", "item", "score", "rank"), top.result(), strict=True)))
    everything = pd.DataFrame({"context": contexts, "item": items, "score": scores})

    def exact(frame: pd.DataFrame) -> set[tuple[int, int]]:
        ordered = frame.sort_values(["context", "score", "item"], ascending=[1, 0, 1])
        ordered = ordered[
            ordered.groupby("context").cumcount() < ordered["context"].map(dict(enumerate(k)))
        ]
        return set(zip(ordered["context"], ordered["item"], strict=True))

    assert exact(kept) == exact(everything) == set(zip(kept["context"], kept["item"], strict=True))
    # ranked in cache order: context, then score descending, then item
    expected = kept.sort_values(["context", "score", "item"], ascending=[1, 0, 1])
    assert kept.index.tolist() == expected.index.tolist()
    assert (
        kept.groupby("context")["rank"].apply(list)
        == kept.groupby("context")["rank"].apply(lambda r: list(range(1, len(r) + 1)))
    ).all()


@given(
    k=st.lists(st.integers(0, 5), min_size=1, max_size=8),
    rows=st.lists(st.tuples(st.integers(0, 7), SCORES), max_size=120),
    grouped=st.booleans(),
)
def test_run_tops_keep_every_contexts_top_k_of_the_batch(
    k: list[int], rows: list[tuple[int, float]], grouped: bool
) -> None:
    if grouped:
        rows = sorted(rows, key=lambda row: row[0] % len(k))
    context = np.array([c % len(k) for c, _ in rows], dtype=np.int32)
    scores = np.array([s for _, s in rows], dtype=np.float64)
    item = np.arange(len(rows), dtype=np.int32)
    kept_context, kept_item, kept_scores = _run_tops(context, item, scores, np.array(k))
    assert set(kept_item) <= set(item)
    assert (scores[kept_item] == kept_scores).all() and (context[kept_item] == kept_context).all()
    assert (np.diff(kept_item) > 0).all()  # the batch's order kept
    for c in set(context):  # each context's K best scores are all still there
        best = np.sort(scores[context == c])[::-1][: k[c]]
        held = np.sort(kept_scores[kept_context == c])[::-1][: k[c]]
        assert (held == best).all()


def test_run_tops_cut_long_runs_to_their_k_best() -> None:
    rng = np.random.default_rng(0)
    context = np.repeat(np.arange(100, dtype=np.int32), 200)  # 100 runs of 200 rows
    scores = rng.normal(size=len(context))
    item = np.arange(len(context), dtype=np.int32)
    kept_context, _, kept_scores = _run_tops(context, item, scores, np.full(100, 10))
    assert len(kept_context) == 100 * 10  # distinct scores: exactly K a context
    for c in range(100):
        assert np.array_equal(
            np.sort(kept_scores[kept_context == c]), np.sort(scores[context == c])[-10:]
        )
    shuffled = rng.permutation(len(context))  # no long runs: nothing to cut
    assert len(_run_tops(context[shuffled], item, scores[shuffled], np.full(100, 10))[0]) == len(
        context
    )


def test_top_k_memory_is_bounded_by_the_cache_not_the_candidates() -> None:
    contexts, k, batch = 50, 3, 1_000
    top = TopK(np.full(contexts, k))
    rng = np.random.default_rng(0)
    for step in range(200):  # 200k rows, all with the same score: the worst case for ties
        context = rng.integers(0, contexts, batch).astype(np.int32)
        item = np.arange(step * batch, (step + 1) * batch, dtype=np.int32)
        top.add(context, item, np.ones(batch))
        assert top.rows <= top.capacity + batch
    context, item, _, _ = top.result()
    assert len(context) == contexts * k
    # ties go to the smallest item numbers, as the cache ranks them (score, then item id)
    for c in range(contexts):
        assert (item[context == c] < batch * 10).all()


def test_cold_contexts_are_filled_from_the_fallback_chain(served_copy: Settings) -> None:
    with duckdb.connect(str(served_copy.duckdb_path)) as con:
        key = con.execute(
            "select min(context_key) from serving_candidates where task_type = 'category'"
        ).fetchall()[0][0]
        con.execute(
            "delete from serving_candidates where task_type = 'category' and context_key = ? and candidate_rank > 3",
            [key],
        )
    score_candidates(served_copy, batch_rows=2_000)
    rows = _cache(
        served_copy,
        f"select rank, source, score from recommendations where task_type = 'category' and context_key = '{key}' order by rank",
    )
    k = served_copy.registry.canvas("category").serving.k  # type: ignore[union-attr]
    assert len(rows) == k
    assert [r[1] for r in rows[:3]] == ["model"] * 3
    assert {r[1] for r in rows[3:]} <= {"popular_in_category", "popular_in_canvas"} and rows[3][
        1
    ] == "popular_in_category"
    assert all(r[2] is None for r in rows[3:])


def test_scoring_without_a_model_says_train_first(tiny_settings: Settings) -> None:
    with pytest.raises(artifacts.ArtifactError, match="run `unirank-cli train` first"):
        score_candidates(tiny_settings)


def test_cli_score_bounds_duckdb_and_says_what_a_bad_limit_is(
    served_copy: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIRANK_DUCKDB_PATH", str(served_copy.duckdb_path))
    monkeypatch.setenv("UNIRANK_ARTIFACTS_DIR", str(served_copy.artifacts_dir))
    project = str(served_copy.project_dir)
    before = os.path.realpath(current_cache_path(served_copy))
    runner = CliRunner()
    ok = runner.invoke(
        app, ["score", "--memory-limit", "64MB", "--threads", "1", "--project-dir", project]
    )
    assert ok.exit_code == 0, ok.output
    assert os.path.realpath(current_cache_path(served_copy)) != before
    bad = runner.invoke(app, ["score", "--memory-limit", "lots", "--project-dir", project])
    assert bad.exit_code == 1 and "memory_limit='lots'" in bad.output
    with pytest.raises(ScoringError, match="memory_limit"):
        score_candidates(served_copy, memory_limit="lots")
    assert not list(current_cache_path(served_copy).parent.glob("*.partial*"))


READER = textwrap.dedent(
    """
    import os, sys, duckdb
    path, stop = sys.argv[1], sys.argv[2]
    reads, errors = 0, []
    while not os.path.exists(stop):
        try:
            with duckdb.connect(path, read_only=True) as con:
                rows, info = con.execute(
                    "select (select count(*) from recommendations), (select cache_rows from cache_info)"
                ).fetchall()[0]
            if rows != info or rows == 0:
                errors.append(f"partial cache: {rows} rows, cache_info says {info}")
            reads += 1
        except Exception as exc:
            errors.append(repr(exc))
        if reads + len(errors) == 1:
            print("ready", flush=True)
    print(reads, len(errors), errors[:3], flush=True)
    """
)


def test_a_reader_in_another_process_always_sees_a_complete_cache(
    served_copy: Settings, tmp_path: Path
) -> None:
    """A reader loops over the cache in another process while four publishes swap it; counted
    in publishes, not seconds, so a slow machine changes how long it takes, not what it checks."""
    script, stop = tmp_path / "reader.py", tmp_path / "stop"
    script.write_text(READER)
    reader = subprocess.Popen(
        [sys.executable, str(script), str(current_cache_path(served_copy)), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None
    assert reader.stdout.readline().strip() == "ready"
    generations = set()
    for _ in range(4):
        score_candidates(served_copy, batch_rows=2_000, keep=2)
        generations.add(os.path.realpath(current_cache_path(served_copy)))
    stop.touch()
    out, _ = reader.communicate(timeout=60)
    reads, errors, sample = out.split(" ", 2)
    assert len(generations) == 4
    assert int(reads) >= 2, out
    assert int(errors) == 0, sample


KILLED_SCORER = textwrap.dedent(
    """
    import sys, time
    from ranker.config import load_settings
    from ranker.score import score_candidates
    settings = load_settings(sys.argv[1], duckdb_path=sys.argv[2], artifacts_dir=sys.argv[3])

    def slow(done, total):
        print("scoring", done, flush=True)
        time.sleep(0.5)

    score_candidates(settings, batch_rows=1_000, on_progress=slow)
    """
)


def test_a_killed_scoring_run_leaves_the_previous_cache(
    served_copy: Settings, tmp_path: Path
) -> None:
    before = os.path.realpath(current_cache_path(served_copy))
    rows_before = _cache(served_copy, "select count(*) from recommendations")
    script = tmp_path / "scorer.py"
    script.write_text(KILLED_SCORER)
    process = subprocess.Popen(
        [
            sys.executable,
            str(script),
            str(served_copy.project_dir),
            str(served_copy.duckdb_path),
            str(served_copy.artifacts_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith("scoring")  # mid-way: batches are being written
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert os.path.realpath(current_cache_path(served_copy)) == before
    assert _cache(served_copy, "select count(*) from recommendations") == rows_before
    partials = list(current_cache_path(served_copy).parent.glob("*.partial*"))
    assert partials, "the killed run should have left its partial file behind"
    # a dead run's DuckDB spill folder goes too
    spill = current_cache_path(served_copy).parent / (
        partials[0].name.split(".duckdb")[0] + ".duckdb.partial.tmp"
    )
    spill.mkdir(exist_ok=True)
    (spill / "duckdb_temp_block-1.block").write_bytes(b"x")
    score_candidates(served_copy, batch_rows=2_000)  # the next run cleans up and publishes
    assert not list(current_cache_path(served_copy).parent.glob("*.partial*"))
    assert os.path.realpath(current_cache_path(served_copy)) != before


@pytest.fixture(scope="session")
def lts_duckdb() -> Path:
    """DuckDB's 1.4 LTS release in a folder of its own (next to the venv, installed on first use
    from the package index), for a subprocess to import instead of the venv's DuckDB."""
    folder = Path(sys.prefix) / "duckdb-lts"
    if not (folder / "duckdb").is_dir():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                str(folder),
                "duckdb>=1.4,<1.5",
            ],
            check=True,
        )
    return folder


def test_the_cache_opens_in_duckdb_lts_and_has_a_parquet_twin(
    served_copy: Settings, lts_duckdb: Path
) -> None:
    from ranker.cache_reader import CURRENT_PARQUET_LINK, cache_dir

    result = score_candidates(served_copy, batch_rows=2_000, keep=1)
    parquet = cache_dir(served_copy) / CURRENT_PARQUET_LINK
    assert parquet.resolve() == result.generation.with_suffix(".parquet")
    code = (
        "import duckdb, json, sys\n"
        "con = duckdb.connect(sys.argv[1], read_only=True)\n"
        "print(json.dumps([duckdb.__version__, con.execute("
        "'select count(*), count(distinct context_key) from recommendations').fetchall()[0]]))\n"
    )
    lts = subprocess.run(
        [sys.executable, "-c", code, str(result.cache_path)],
        env=dict(os.environ, PYTHONPATH=str(lts_duckdb)),
        capture_output=True,
        text=True,
    )
    assert lts.returncode == 0, lts.stderr[-1000:]
    version, (rows, contexts) = json.loads(lts.stdout)
    assert version.startswith("1.4.")
    assert (rows, contexts) == (result.cache_rows, result.contexts)
    with duckdb.connect() as con:
        con.execute(f"attach '{result.cache_path}' as cache (read_only)")
        same = con.execute(
            f"select count(*) from (select * from '{parquet}' except all "
            "select * from cache.recommendations)"
        ).fetchone()
        total = con.execute(f"select count(*) from '{parquet}'").fetchone()
    assert total == (result.cache_rows,) and same == (0,)
