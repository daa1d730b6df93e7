"""Serving benchmark: batch scoring throughput vs CatBoost's raw predict, and lookup latency.

Reproduce: `.venv/bin/python benchmarks/serve.py` (about 15 minutes on 2 cores). It generates
10M impression rows (seed 7), builds with a candidate cap that yields about 10M serving candidate
rows, trains a small unified model, then:

- scoring: `unirank-cli score` end to end (read candidates, predict, top-K, fallbacks, write,
  publish) vs `model.predict` alone on the same rows, same batch size and threads, data already
  in memory; peak RSS of scoring at two candidate counts (batch size fixed) shows the bound;
- lookups: 10,000 random `ranker.serve.recommend` calls for cached contexts and 10,000 for unseen
  ones (fallback), in-process, p50/p99.

Writes benchmarks/results/serve.{json,md}.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "serve"
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
THREADS = 2
BATCH = 250_000


def _cli(*args: str, env: dict[str, str]) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "measure.py"), str(BIN / "unirank-cli"), *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    if result["returncode"] != 0:
        raise RuntimeError(f"unirank-cli {args[0]} failed:\n{result['stderr_tail']}")
    return result


def prepare(rows: int, cap: int) -> dict[str, str]:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    env = dict(
        os.environ,
        UNIRANK_DUCKDB_PATH=str(WORK / "warehouse" / "bench.duckdb"),
        UNIRANK_ARTIFACTS_DIR=str(WORK / "artifacts"),
        UNIRANK_REPORTS_DIR=str(WORK / "reports"),
    )
    subprocess.run(
        [str(BIN / "unirank-cli"), "generate", "--rows", str(rows), "--out", str(WORK / "logs")],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    serving = json.dumps(
        {
            "serving": {
                "as_of": None,
                "lookback_days": 28,
                "candidates_per_context": cap,
                "items_per_source": cap,
            }
        }
    )
    _cli("build", "--logs", str(WORK / "logs"), "--vars", serving, env=env)
    _cli(
        "train",
        "--iterations",
        "100",
        "--learning-rate",
        "0.1",
        "--max-negatives",
        "10",
        "--no-compare",
        "--no-reports",
        "--threads",
        str(THREADS),
        env=env,
    )
    return env


def reuse(cap: int) -> dict[str, str]:
    """Reuse a prepared warehouse and model: restore the full candidate table, rebuild the
    fallbacks (cheap), keep the trained model."""
    import duckdb

    env = dict(
        os.environ,
        UNIRANK_DUCKDB_PATH=str(WORK / "warehouse" / "bench.duckdb"),
        UNIRANK_ARTIFACTS_DIR=str(WORK / "artifacts"),
        UNIRANK_REPORTS_DIR=str(WORK / "reports"),
    )
    with duckdb.connect(env["UNIRANK_DUCKDB_PATH"]) as con:
        tables = {
            r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()
        }
        if "serving_candidates_all" in tables:
            con.execute(
                "create or replace table serving_candidates as select * from serving_candidates_all"
            )
            con.execute("drop table serving_candidates_all")
    serving = json.dumps(
        {
            "serving": {
                "as_of": None,
                "lookback_days": 28,
                "candidates_per_context": cap,
                "items_per_source": cap,
            },
            "demo_source": "parquet",
            "demo_path": str(WORK / "logs"),
        }
    )
    _cli("build", "--select", "serving_fallbacks", "--vars", serving, env=env)
    return env


def raw_predict(env: dict[str, str]) -> dict[str, Any]:
    """CatBoost's own predict on the same rows, batch size and threads, data already in memory
    as pandas frames (strings as categoricals, as scoring reads them): Pool + predict."""
    from catboost import Pool

    from ranker import artifacts
    from ranker.config import load_settings
    from ranker.score import load_model
    from ranker.warehouse import connect

    settings = load_settings(
        ROOT, duckdb_path=env["UNIRANK_DUCKDB_PATH"], artifacts_dir=env["UNIRANK_ARTIFACTS_DIR"]
    )
    version = artifacts.current_version(artifacts.models_dir(settings.artifacts_dir))
    model = load_model(version)
    features = version.metadata["features"]
    categorical = set(version.metadata["categorical_features"])
    with connect(settings.duckdb_path) as con:
        table = con.sql(
            "select " + ", ".join(f'"{f}"' for f in features) + " from serving_candidates"
        ).to_arrow_table()
    cat_indices = [i for i, f in enumerate(features) if f in categorical]
    frames = [
        table.slice(i, BATCH).to_pandas(strings_to_categorical=True)
        for i in range(0, table.num_rows, BATCH)
    ]
    started = time.perf_counter()
    for frame in frames:
        model.predict(Pool(frame, cat_features=cat_indices), thread_count=THREADS)
    seconds = time.perf_counter() - started
    return {
        "rows": table.num_rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(table.num_rows / seconds),
        "trees": int(model.tree_count_),
    }


def lookups(env: dict[str, str], n: int = 10_000) -> dict[str, Any]:
    import duckdb
    import numpy as np

    from ranker.config import load_settings
    from ranker.serve import current_cache_path, recommend

    settings = load_settings(
        ROOT, duckdb_path=env["UNIRANK_DUCKDB_PATH"], artifacts_dir=env["UNIRANK_ARTIFACTS_DIR"]
    )
    with duckdb.connect(str(current_cache_path(settings)), read_only=True) as con:
        contexts = con.execute(
            "select distinct task_type, context_key from recommendations"
        ).fetchall()
    rng = random.Random(0)
    cached = [rng.choice(contexts) for _ in range(n)]
    unseen = [
        (rng.choice(["home", "search", "related", "category"]), f"unseen-{i}") for i in range(n)
    ]
    recommend(*cached[0], settings=settings)  # open the cache once
    results: dict[str, Any] = {}
    for name, calls in (("cached", cached), ("fallback", unseen)):
        timings = np.empty(len(calls))
        for i, (task, key) in enumerate(calls):
            started = time.perf_counter()
            recommend(task, key, settings=settings)
            timings[i] = time.perf_counter() - started
        results[name] = {
            "lookups": len(calls),
            "p50_ms": round(float(np.percentile(timings, 50)) * 1000, 3),
            "p99_ms": round(float(np.percentile(timings, 99)) * 1000, 3),
            "max_ms": round(float(timings.max()) * 1000, 3),
        }
    return results


def main() -> None:
    rows, cap = 10_000_000, 170
    env = (
        reuse(cap)
        if "--reuse" in sys.argv and (WORK / "warehouse" / "bench.duckdb").exists()
        else prepare(rows, cap)
    )
    score = _cli("score", "--batch-rows", str(BATCH), "--threads", str(THREADS), env=env)
    import duckdb

    with duckdb.connect(
        str(Path(env["UNIRANK_DUCKDB_PATH"]).parent / "cache" / "current.duckdb"), read_only=True
    ) as con:
        candidate_rows, cache_rows, contexts = con.execute(
            "select candidate_rows, cache_rows, contexts from cache_info"
        ).fetchall()[0]
    raw = raw_predict(env)
    end_to_end = candidate_rows / score["wall_seconds"]
    # Memory bound: the same scoring with a quarter of the candidates (batch size fixed).
    with duckdb.connect(env["UNIRANK_DUCKDB_PATH"]) as con:
        con.execute("create table serving_candidates_all as select * from serving_candidates")
        con.execute("delete from serving_candidates where hash(request_id) % 4 <> 0")
    small = _cli("score", "--batch-rows", str(BATCH), "--threads", str(THREADS), env=env)
    with duckdb.connect(env["UNIRANK_DUCKDB_PATH"]) as con:
        small_rows = con.execute("select count(*) from serving_candidates").fetchall()[0][0]
    latency = lookups(env)
    report = {
        "benchmark": "batch scoring and lookups",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threads": THREADS,
        "impression_rows": rows,
        "candidates_per_context": cap,
        "scoring": {
            "candidate_rows": candidate_rows,
            "contexts": contexts,
            "cache_rows": cache_rows,
            "end_to_end_seconds": score["wall_seconds"],
            "end_to_end_rows_per_second": round(end_to_end),
            "raw_predict": raw,
            "end_to_end_share_of_raw": round(end_to_end / raw["rows_per_second"], 3),
            "peak_rss_mib": score["peak_rss_mib"],
            "batch_rows": BATCH,
            "smaller_run": {
                "candidate_rows": small_rows,
                "seconds": small["wall_seconds"],
                "peak_rss_mib": small["peak_rss_mib"],
            },
        },
        "lookups": latency,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps(report, indent=2) + "\n")
    s = report["scoring"]
    md = [
        "# Serving benchmark",
        "",
        f"Measured {report['measured_at']}, {THREADS} threads, demo generator at {rows:,} impression rows, "
        f"{cap} candidates per context. Reproduce: `.venv/bin/python benchmarks/serve.py`.",
        "",
        "## Batch scoring",
        "",
        "| | rows | seconds | rows/s | peak RSS (MiB) |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| `unirank-cli score` end to end (read, predict, top-K, fallbacks, write, publish) | {s['candidate_rows']:,} | {s['end_to_end_seconds']} | {s['end_to_end_rows_per_second']:,} | {s['peak_rss_mib']} |",
        f"| CatBoost alone (`Pool` + `predict`, data in memory as pandas, {raw['trees']} trees), same batches and threads | {raw['rows']:,} | {raw['seconds']} | {raw['rows_per_second']:,} | - |",
        f"| `unirank-cli score` on a quarter of the candidates | {s['smaller_run']['candidate_rows']:,} | {s['smaller_run']['seconds']} | - | {s['smaller_run']['peak_rss_mib']} |",
        "",
        f"End-to-end throughput is {s['end_to_end_share_of_raw']:.0%} of raw predict throughput (target: at least 70%). "
        f"{s['contexts']:,} contexts, {s['cache_rows']:,} cache rows.",
        "",
        "## Lookups (`ranker.serve.recommend`, in-process)",
        "",
        "| contexts | lookups | p50 (ms) | p99 (ms) | max (ms) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in latency.items():
        md.append(f"| {name} | {r['lookups']:,} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} |")
    md += ["", "Target: p99 under 5 ms for a cached context."]
    (RESULTS / "serve.md").write_text("\n".join(md) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
