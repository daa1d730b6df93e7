"""Batch scoring and publishing: cache contents, cold-context fill, readers during a publish,
and a killed scoring run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from ranker import artifacts
from ranker.config import Settings
from ranker.score import score_candidates
from ranker.serve import current_cache_path

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


READER = textwrap.dedent(
    """
    import sys, time, duckdb
    path, seconds = sys.argv[1], float(sys.argv[2])
    reads, errors, sizes = 0, [], set()
    end = time.time() + seconds
    while time.time() < end:
        try:
            with duckdb.connect(path, read_only=True) as con:
                rows, info = con.execute(
                    "select (select count(*) from recommendations), (select cache_rows from cache_info)"
                ).fetchall()[0]
            if rows != info or rows == 0:
                errors.append(f"partial cache: {rows} rows, cache_info says {info}")
            sizes.add(rows)
            reads += 1
        except Exception as exc:
            errors.append(repr(exc))
    print(reads, len(errors), errors[:3])
    """
)


def test_a_reader_in_another_process_always_sees_a_complete_cache(
    served_copy: Settings, tmp_path: Path
) -> None:
    script = tmp_path / "reader.py"
    script.write_text(READER)
    reader = subprocess.Popen(
        [sys.executable, str(script), str(current_cache_path(served_copy)), "8"],
        stdout=subprocess.PIPE,
        text=True,
    )
    publishes = 0
    deadline = time.time() + 6
    while time.time() < deadline:
        score_candidates(served_copy, batch_rows=2_000, keep=2)
        publishes += 1
    out, _ = reader.communicate(timeout=60)
    reads, errors, sample = out.split(" ", 2)
    assert publishes >= 3
    assert int(reads) > 50, out
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
    score_candidates(served_copy, batch_rows=2_000)  # the next run cleans up and publishes
    assert not list(current_cache_path(served_copy).parent.glob("*.partial*"))
    assert os.path.realpath(current_cache_path(served_copy)) != before
