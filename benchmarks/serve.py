"""Serving benchmark: batch scoring throughput vs CatBoost's raw predict, memory, and lookups.

Reproduce: `.venv/bin/python benchmarks/serve.py` (about an hour on 2 busy cores; `--reuse`
skips the data and the model when benchmarks/work/serve exists; `--reuse --lookups-only`
re-measures only the lookups and keeps the other committed results). It generates 10M impression
rows (the generator's default seed), builds them with a candidate cap that yields about 10M
serving candidate rows, trains the model with the project's default training settings
(`unirank-cli train --no-compare --no-reports --threads 2`, nothing else overridden) on a 1M
impression set from the same generator, then:

- scoring: `unirank-cli score` end to end (process start, read candidates, predict, top-K,
  fallbacks, write, publish) as a CLI process, `RUNS` times, vs CatBoost's `Pool` + `predict`
  alone on the same rows, model, batch size and threads with the data already in memory (the
  faster of two input forms is the baseline), `RUNS` times; wall and CPU seconds of both, as
  other jobs share the 2 cores; the per-stage profile of one in-process run; the same
  comparison by tree count (the default model cut to fewer trees, and the default model summed
  with itself 4, 8 and 16 times: the same trees repeated, a larger model of the same depth and
  features whose predict cost is what counts here); peak RSS at four candidate
  counts (1/4, 1/2, all, and every context twice; batch size and memory limit fixed);
- `--before REF` also runs and profiles the scoring code of git REF on the same data and model;
- lookups: 10,000 random `ranker.serve.recommend` calls for cached contexts and 10,000 for unseen
  ones (fallback), in-process, p50/p99.

Writes benchmarks/results/serve.{json,md}.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "serve"
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
THREADS = 2
BATCH = 250_000
MEMORY_LIMIT = "512MB"
RUNS = 3
ROWS, CAP, TRAIN_ROWS = 10_000_000, 215, 1_000_000

# One in-process scoring run: its stage timings (wall and CPU).
STAGES_SCRIPT = """
import json, sys
from ranker.config import load_settings
from ranker.score import score_candidates
settings = load_settings(sys.argv[1])
result = score_candidates(settings, batch_rows=int(sys.argv[2]), threads=int(sys.argv[3]),
                          memory_limit=sys.argv[4])
print(json.dumps({"seconds": round(result.seconds, 3),
                  "stages": {k: round(v, 3) for k, v in result.stage_seconds.items()},
                  "cpu": {k: round(v, 3) for k, v in result.stage_cpu_seconds.items()}}))
"""

# The same for older scoring code (before stage timings were returned): its own log lines.
BEFORE_SCRIPT = """
import json, logging, sys
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger("ranker.score").addHandler(Keep())
logging.getLogger("ranker.score").setLevel(logging.INFO)
from ranker.config import load_settings
from ranker.score import score_candidates
settings = load_settings(sys.argv[1])
result = score_candidates(settings, batch_rows=int(sys.argv[2]), threads=int(sys.argv[3]))
print(json.dumps({"seconds": round(result.seconds, 3),
                  "predict_seconds": round(result.predict_seconds, 3), "log": records}))
"""


def _env() -> dict[str, str]:
    return dict(
        os.environ,
        UNIRANK_DUCKDB_PATH=str(WORK / "warehouse" / "bench.duckdb"),
        UNIRANK_ARTIFACTS_DIR=str(WORK / "artifacts"),
        UNIRANK_REPORTS_DIR=str(WORK / "reports"),
    )


def _load_average() -> float:
    return round(os.getloadavg()[0], 1)


# benchmarks/measure.py reports the child's CPU seconds (user + system, all its threads) besides
# wall time: with other jobs on the 2 cores, wall time depends on their load, CPU time much less.
def _measured(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    load = _load_average()
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "measure.py"), *command],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    if result["returncode"] != 0:
        raise RuntimeError(f"{command} failed:\n{result['stderr_tail']}")
    return result | {"load_average": load}


def _cli(*args: str, env: dict[str, str]) -> dict[str, Any]:
    return _measured([str(BIN / "unirank-cli"), *args], env)


def _serving_vars(cap: int) -> str:
    return json.dumps(
        {
            "serving": {
                "as_of": None,
                "lookback_days": 28,
                "candidates_per_context": cap,
                "items_per_source": cap,
            }
        }
    )


def prepare() -> dict[str, str]:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    env = _env()
    for name, rows in (("logs", ROWS), ("train-logs", TRAIN_ROWS)):
        subprocess.run(
            [str(BIN / "unirank-cli"), "generate", "--rows", str(rows), "--out", str(WORK / name)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
    _cli("build", "--logs", str(WORK / "logs"), "--vars", _serving_vars(CAP), env=env)
    # The model: project defaults, trained on its own smaller warehouse from the same generator.
    train_env = dict(env, UNIRANK_DUCKDB_PATH=str(WORK / "train-warehouse" / "train.duckdb"))
    _cli("build", "--logs", str(WORK / "train-logs"), env=train_env)
    _cli("train", "--no-compare", "--no-reports", "--threads", str(THREADS), env=train_env)
    return env


def reuse() -> dict[str, str]:
    """Reuse a prepared warehouse and model: restore the full candidate table."""
    import duckdb

    env = _env()
    with duckdb.connect(env["UNIRANK_DUCKDB_PATH"]) as con:
        tables = {
            r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()
        }
        if "serving_candidates_all" in tables:
            con.execute(
                "create or replace table serving_candidates as select * from serving_candidates_all"
            )
            con.execute("drop table serving_candidates_all")
    return env


def _model(env: dict[str, str]) -> tuple[Any, Any]:
    from ranker import artifacts
    from ranker.score import load_model

    version = artifacts.current_version(artifacts.models_dir(Path(env["UNIRANK_ARTIFACTS_DIR"])))
    return version, load_model(version)


def _frames(env: dict[str, str], version: Any) -> dict[str, list[Any]]:
    """The candidates in memory, in scoring's batches, in two forms CatBoost takes: pandas as
    DuckDB gives it (int64/float64, strings as categoricals) and what scoring feeds it
    (float32, categoricals)."""
    import duckdb

    features = list(version.metadata["features"])
    categorical = set(version.metadata["categorical_features"])
    with duckdb.connect(env["UNIRANK_DUCKDB_PATH"], read_only=True) as con:
        table = con.sql(
            "select " + ", ".join(f'"{f}"' for f in features) + " from serving_candidates"
        ).to_arrow_table()
    native, scoring = [], []
    for start in range(0, table.num_rows, BATCH):
        frame = table.slice(start, BATCH).to_pandas(strings_to_categorical=True)
        native.append(frame)
        scoring.append(frame.astype({f: "float32" for f in features if f not in categorical}))
    return {
        "pandas as read (int64/float64, categoricals)": native,
        "float32 + categoricals": scoring,
    }


def _timed(step: Callable[[], None], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (this process, all threads) of `runs` calls of `step`."""
    seconds, cpu = [], []
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        step()
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return seconds, cpu


def raw_predict(
    model: Any, version: Any, forms: dict[str, list[Any]], runs: int = RUNS
) -> dict[str, Any]:
    """CatBoost alone: Pool + predict per batch, data in memory, THREADS threads; the median of
    `runs` passes for each input form; the baseline is the faster form."""
    from catboost import Pool

    features = list(version.metadata["features"])
    categorical = set(version.metadata["categorical_features"])
    cat_indices = [i for i, f in enumerate(features) if f in categorical]
    rows = sum(len(f) for f in next(iter(forms.values())))

    def predict_all(frames: list[Any]) -> None:
        for frame in frames:
            model.predict(
                Pool(frame, cat_features=cat_indices, thread_count=THREADS),
                thread_count=THREADS,
            )

    by_form: dict[str, Any] = {}
    for name, frames in forms.items():
        seconds, cpu = _timed(functools.partial(predict_all, frames), runs)
        by_form[name] = {
            "seconds": [round(s, 2) for s in seconds],
            "median": round(statistics.median(seconds), 2),
            "cpu_seconds": [round(c, 2) for c in cpu],
            "median_cpu": round(statistics.median(cpu), 2),
        }
    best = min(by_form, key=lambda n: by_form[n]["median"])
    return {
        "rows": rows,
        "trees": int(model.tree_count_),
        "forms": by_form,
        "baseline_form": best,
        "seconds": by_form[best]["median"],
        "cpu_seconds": by_form[best]["median_cpu"],
        "rows_per_second": round(rows / by_form[best]["median"]),
    }


def floor(env: dict[str, str], version: Any, raw: dict[str, Any]) -> dict[str, Any]:
    """What any scorer of these rows does besides predicting, each step alone with nothing else
    running (median of `RUNS`): read the model's features from the warehouse into memory (the
    cheapest form DuckDB gives: numeric columns as stored, categoricals as codes; no ids), and
    write the cache's rows into a new DuckDB file. Raw predict already keeps both cores busy,
    so their CPU seconds add to its time: raw CPU / (raw CPU + read CPU + write CPU) bounds
    the share of raw throughput any scorer reaching the cache can get on this machine."""
    import duckdb

    features = list(version.metadata["features"])
    categorical = set(version.metadata["categorical_features"])
    current = Path(env["UNIRANK_DUCKDB_PATH"]).parent / "cache" / "current.duckdb"
    config: dict[str, str | bool | int | float | list[str]] = {
        "threads": THREADS,
        "memory_limit": MEMORY_LIMIT,
    }

    def read() -> None:
        with duckdb.connect(env["UNIRANK_DUCKDB_PATH"], read_only=True, config=config) as con:
            selected = [f'"{f}"' for f in features if f not in categorical]
            params = []
            for f in features:
                if f in categorical:
                    values = [
                        r[0]
                        for r in con.execute(
                            f'select distinct "{f}" from serving_candidates'
                        ).fetchall()
                    ]
                    selected.append(f'list_position(?::varchar[], "{f}")')
                    params.append(values)
            sql = f"select {', '.join(selected)} from serving_candidates"
            for batch in con.sql(sql, params=params).to_arrow_reader(BATCH):
                for column in batch.columns:
                    column.to_numpy(zero_copy_only=False)

    with duckdb.connect(str(current), read_only=True) as con:
        rows = con.sql("select * from recommendations").to_arrow_table()

    def write() -> None:
        with (
            tempfile.TemporaryDirectory(dir=WORK) as scratch,
            duckdb.connect(str(Path(scratch) / "cache.duckdb"), config=config) as con,
        ):
            con.register("cache_rows", rows)
            con.execute("create table recommendations as select * from cache_rows")
            con.execute("checkpoint")

    steps: dict[str, Any] = {}
    for name, step in (("read features", read), ("write cache rows", write)):
        seconds, cpu = _timed(step, RUNS)
        steps[name] = {
            "seconds": round(statistics.median(seconds), 2),
            "cpu_seconds": round(statistics.median(cpu), 2),
        }
    overhead = sum(step["cpu_seconds"] for step in steps.values())
    return {
        "steps": steps,
        "cache_rows": rows.num_rows,
        "raw_cpu_seconds": raw["cpu_seconds"],
        "bound_share": round(raw["cpu_seconds"] / (raw["cpu_seconds"] + overhead), 3),
    }


def stage_profile(
    env: dict[str, str], pythonpath: str | None = None, script: str = STAGES_SCRIPT
) -> dict[str, Any]:
    """One in-process run (`python -c`, so the working directory comes first on the path: it
    is the older code's folder for that)."""
    run_env = dict(env, PYTHONPATH=pythonpath) if pythonpath else env
    args = [str(ROOT), str(BATCH), str(THREADS)]
    if script is STAGES_SCRIPT:
        args.append(MEMORY_LIMIT)
    completed = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=pythonpath or ROOT,
        env=run_env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def score_runs(
    env: dict[str, str], runs: int = RUNS, pythonpath: str | None = None
) -> dict[str, Any]:
    """`unirank-cli score` as a process, `runs` times (older code via PYTHONPATH: its CLI has
    no --memory-limit)."""
    run_env = dict(env, PYTHONPATH=pythonpath) if pythonpath else env
    args = ["score", "--batch-rows", str(BATCH), "--threads", str(THREADS)]
    if pythonpath is None:
        args += ["--memory-limit", MEMORY_LIMIT]
    measured = [_cli(*args, env=run_env) for _ in range(runs)]
    return {
        "seconds": [m["wall_seconds"] for m in measured],
        "median_seconds": statistics.median(m["wall_seconds"] for m in measured),
        "cpu_seconds": [m["cpu_seconds"] for m in measured],
        "median_cpu_seconds": statistics.median(m["cpu_seconds"] for m in measured),
        "peak_rss_mib": [m["peak_rss_mib"] for m in measured],
        "load_average": [m["load_average"] for m in measured],
    }


def _cache_info(env: dict[str, str]) -> tuple[int, int, int]:
    import duckdb

    current = Path(env["UNIRANK_DUCKDB_PATH"]).parent / "cache" / "current.duckdb"
    with duckdb.connect(str(current), read_only=True) as con:
        row = con.execute("select candidate_rows, cache_rows, contexts from cache_info").fetchall()
    return int(row[0][0]), int(row[0][1]), int(row[0][2])


def tree_sweep(
    env: dict[str, str], version: Any, model: Any, forms: dict[str, list[Any]]
) -> list[dict[str, Any]]:
    """End to end vs raw predict (one run each) by tree count: the default model cut to its
    first N trees (`shrink`), and summed with itself (`sum_models`: its trees repeated, so a
    larger model of the same depth and features; with early stopping on, training does not
    give a large model on this data, and only the predict cost matters here)."""
    from catboost import sum_models

    variants: list[tuple[str, Any]] = []
    for n in (25, 50, 100, 200):
        if n < int(model.tree_count_):
            cut = model.copy()
            cut.shrink(n)
            variants.append(("default model, first trees", cut))
    variants.append(("default model", model))
    for times in (4, 8, 16):
        variants.append((f"default model summed {times} times", sum_models([model] * times)))
    rows = []
    for label, variant in variants:
        artifacts_dir = Path(tempfile.mkdtemp(prefix="trees-", dir=WORK))
        models = artifacts_dir / "models"
        shutil.copytree(version.path, models / version.version)
        variant.save_model(str(models / version.version / "model.cbm"))
        (models / "CURRENT").write_text(version.version + "\n")
        raw = raw_predict(variant, version, forms, runs=1)
        scored = score_runs(dict(env, UNIRANK_ARTIFACTS_DIR=str(artifacts_dir)), runs=1)
        rows.append(
            {
                "model": label,
                "trees": int(variant.tree_count_),
                "raw_seconds": raw["seconds"],
                "end_to_end_seconds": scored["median_seconds"],
                "share_of_raw": round(raw["seconds"] / scored["median_seconds"], 3),
                "raw_cpu_seconds": raw["cpu_seconds"],
                "end_to_end_cpu_seconds": scored["median_cpu_seconds"],
                "cpu_share_of_raw": round(raw["cpu_seconds"] / scored["median_cpu_seconds"], 3),
                "load_average": scored["load_average"][0],
            }
        )
        shutil.rmtree(artifacts_dir)
    return rows


def before(env: dict[str, str], ref: str) -> dict[str, Any]:
    """The scoring code of git `ref` (its ranker/ and cli/ first on the path), same data, model,
    batch size and threads."""
    old = Path(tempfile.mkdtemp(prefix="before-"))
    try:
        archive = subprocess.run(
            ["git", "archive", ref, "ranker", "cli"], cwd=ROOT, check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        run = score_runs(env, runs=1, pythonpath=str(old))
        return {
            "ref": ref,
            "seconds": run["median_seconds"],
            "cpu_seconds": run["median_cpu_seconds"],
            "peak_rss_mib": run["peak_rss_mib"][0],
            "load_average": run["load_average"][0],
            "profile": stage_profile(env, pythonpath=str(old), script=BEFORE_SCRIPT),
        }
    finally:
        shutil.rmtree(old)


def memory_runs(env: dict[str, str]) -> list[dict[str, Any]]:
    """Scoring on 1/4 and 1/2 of the contexts (whole contexts removed) and on twice as many
    (each context again under another key); batch size and memory limit fixed."""
    import duckdb

    with duckdb.connect(env["UNIRANK_DUCKDB_PATH"]) as con:
        con.execute("create table serving_candidates_all as select * from serving_candidates")
    runs = []
    for subset in ("hash(request_id) % 4 = 0", "hash(request_id) % 2 = 0", "doubled"):
        with duckdb.connect(env["UNIRANK_DUCKDB_PATH"]) as con:
            if subset == "doubled":  # every context a second time under another key
                columns = [
                    r[0]
                    for r in con.execute(
                        "select column_name from information_schema.columns "
                        "where table_name = 'serving_candidates_all' order by ordinal_position"
                    ).fetchall()
                ]
                renamed = ", ".join(
                    f"{c} || '~2' as {c}" if c in ("request_id", "context_key") else c
                    for c in columns
                )
                con.execute(
                    "create or replace table serving_candidates as select * from "
                    f"serving_candidates_all union all select {renamed} from serving_candidates_all"
                )
            else:
                con.execute(
                    "create or replace table serving_candidates as select * from "
                    f"serving_candidates_all where {subset}"
                )
            rows = con.execute("select count(*) from serving_candidates").fetchall()[0][0]
        run = score_runs(env, runs=1)
        _, cache_rows, contexts = _cache_info(env)
        runs.append(
            {
                "candidate_rows": rows,
                "contexts": contexts,
                "cache_rows": cache_rows,
                "seconds": run["median_seconds"],
                "cpu_seconds": run["median_cpu_seconds"],
                "peak_rss_mib": run["peak_rss_mib"][0],
            }
        )
    return runs


def lookups(env: dict[str, str], n: int = 10_000) -> dict[str, Any]:
    import duckdb
    import numpy as np

    from ranker.cache_reader import current_cache_path
    from ranker.config import load_settings
    from ranker.serve import recommend

    settings = load_settings(
        ROOT, duckdb_path=env["UNIRANK_DUCKDB_PATH"], artifacts_dir=env["UNIRANK_ARTIFACTS_DIR"]
    )
    # Unseen contexts answered by the fallback chain, as in serving mode cache_only (online
    # scoring of them is measured by benchmarks/serve_http.py).
    canvases = tuple(
        c.model_copy(update={"serving": c.serving.model_copy(update={"mode": "cache_only"})})
        if c.serving is not None
        else c
        for c in settings.registry.canvases
    )
    settings = dataclasses.replace(
        settings, registry=settings.registry.model_copy(update={"canvases": canvases})
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
    started = time.perf_counter()
    first_task, first_key = cached[0]
    recommend(first_task, first_key, settings=settings)  # opens the generation: its context spans
    results: dict[str, Any] = {"first_lookup_ms": round((time.perf_counter() - started) * 1000, 1)}
    for name, calls in (("cached", cached), ("fallback", unseen)):
        timings, cpu = np.empty(len(calls)), np.empty(len(calls))
        for i, (task, key) in enumerate(calls):
            started, cpu_started = time.perf_counter(), time.process_time()
            recommend(task, key, settings=settings)
            timings[i] = time.perf_counter() - started
            cpu[i] = time.process_time() - cpu_started
        results[name] = {
            "lookups": len(calls),
            "p50_ms": round(float(np.percentile(timings, 50)) * 1000, 3),
            "p99_ms": round(float(np.percentile(timings, 99)) * 1000, 3),
            "max_ms": round(float(timings.max()) * 1000, 3),
            "cpu_p50_ms": round(float(np.percentile(cpu, 50)) * 1000, 3),
            "cpu_p99_ms": round(float(np.percentile(cpu, 99)) * 1000, 3),
        }
    return results


def lookups_only() -> None:
    """`--lookups-only`: re-measure the lookups on the prepared data and cache, keep the rest of
    the committed results."""
    report = json.loads((RESULTS / "serve.json").read_text())
    report["lookups"] = lookups(reuse())
    report["lookups_measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report["lookups_load_average"] = _load_average()
    (RESULTS / "serve.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "serve.md").write_text(markdown(report))
    print(json.dumps(report["lookups"], indent=2))


def main() -> None:
    prepared = (WORK / "warehouse" / "bench.duckdb").exists()
    if "--lookups-only" in sys.argv and prepared:
        lookups_only()
        return
    env = reuse() if "--reuse" in sys.argv and prepared else prepare()
    before_ref = sys.argv[sys.argv.index("--before") + 1] if "--before" in sys.argv else None
    version, model = _model(env)
    load_at_start = _load_average()

    scoring = score_runs(env)
    candidate_rows, cache_rows, contexts = _cache_info(env)
    profile = stage_profile(env)
    forms = _frames(env, version)
    raw = raw_predict(model, version, forms)
    bound = floor(env, version, raw)
    old = before(env, before_ref) if before_ref else None
    sweep = tree_sweep(env, version, model, forms)
    del forms
    smaller = memory_runs(env)
    reuse()
    score_runs(env, runs=1)  # the full cache again, for the lookups
    latency = lookups(env)

    end_to_end = candidate_rows / scoring["median_seconds"]
    report = {
        "benchmark": "batch scoring and lookups",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threads": THREADS,
        "load_average": {"start": load_at_start, "end": _load_average()},
        "impression_rows": ROWS,
        "candidates_per_context": CAP,
        "model": {
            "version": version.version,
            "trees": int(model.tree_count_),
            "trained_on_impressions": TRAIN_ROWS,
            "params": version.metadata.get("params"),
        },
        "scoring": {
            "candidate_rows": candidate_rows,
            "contexts": contexts,
            "cache_rows": cache_rows,
            "batch_rows": BATCH,
            "memory_limit": MEMORY_LIMIT,
            "end_to_end": scoring,
            "end_to_end_rows_per_second": round(end_to_end),
            "raw_predict": raw,
            "end_to_end_share_of_raw": round(end_to_end / raw["rows_per_second"], 3),
            "end_to_end_cpu_share_of_raw": round(
                raw["cpu_seconds"] / scoring["median_cpu_seconds"], 3
            ),
            "floor": bound,
            "stage_profile": profile,
            "before": old,
            "trees_sweep": sweep,
            "smaller_runs": smaller,  # and one larger
        },
        "lookups": latency,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "serve.md").write_text(markdown(report))
    print(json.dumps(report, indent=2))


def markdown(report: dict[str, Any]) -> str:
    s = report["scoring"]
    raw, e2e = s["raw_predict"], s["end_to_end"]
    md = [
        "# Serving benchmark",
        "",
        f"Measured {report['measured_at']}, {report['threads']} threads, demo generator at "
        f"{report['impression_rows']:,} impression rows, {report['candidates_per_context']} "
        f"candidates per context. Load average {report['load_average']['start']} at the start, "
        f"{report['load_average']['end']} at the end (the benchmark's own processes count in "
        "it; more than about 1 at the start means other jobs shared the 2 cores, and wall times "
        "then grow: raw predict more than scoring end to end). Every row says how many runs it "
        "is and their spread; CPU seconds (all threads), which depend much less on the load, "
        "are given beside them. "
        "Reproduce: `.venv/bin/python benchmarks/serve.py` (`--reuse` keeps the data and the "
        "model, `--before REF` adds the scoring code of git REF).",
        "",
        f"Model: `unirank-cli train` with the project's default training settings, trained on "
        f"{report['model']['trained_on_impressions']:,} impressions of the same generator: "
        f"**{report['model']['trees']} trees**.",
        "",
        "## Batch scoring",
        "",
        "| | rows | wall seconds (median, runs) | rows/s | CPU seconds | peak RSS (MiB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| `unirank-cli score` end to end (process start, read, predict, top-K, fallbacks, "
        f"write, publish) | {s['candidate_rows']:,} | {e2e['median_seconds']} "
        f"({', '.join(map(str, e2e['seconds']))}) | {s['end_to_end_rows_per_second']:,} | "
        f"{e2e['median_cpu_seconds']} | {max(e2e['peak_rss_mib'])} |",
        f"| CatBoost alone (`Pool` + `predict`, data in memory as {raw['baseline_form']}, "
        f"{raw['trees']} trees), same batches and threads | {raw['rows']:,} | {raw['seconds']} "
        f"({', '.join(map(str, raw['forms'][raw['baseline_form']]['seconds']))}) | "
        f"{raw['rows_per_second']:,} | {raw['cpu_seconds']} | - |",
    ]
    for run in s["smaller_runs"]:
        md.append(
            f"| `unirank-cli score` on {run['contexts']:,} contexts (memory check, one run) | "
            f"{run['candidate_rows']:,} | {run['seconds']} | - | {run['cpu_seconds']} | "
            f"{run['peak_rss_mib']} |"
        )
    md += [
        "",
        f"End-to-end throughput is **{s['end_to_end_share_of_raw']:.0%} of raw predict "
        f"throughput** (wall medians; target: at least 70%); by CPU seconds "
        f"{s['end_to_end_cpu_share_of_raw']:.0%}. {s['contexts']:,} contexts, "
        f"{s['cache_rows']:,} cache rows; batch {s['batch_rows']:,} rows, DuckDB memory limit "
        f"{s['memory_limit']}. Raw predict by input form (wall seconds per pass): "
        + "; ".join(f"{name}: {v['seconds']}" for name, v in raw["forms"].items())
        + ".",
        "",
    ]
    if "floor" in s:
        f = s["floor"]
        read, write = f["steps"]["read features"], f["steps"]["write cache rows"]
        md += [
            "### The floor on this machine",
            "",
            f"Two steps no scorer can skip, each alone (median of {RUNS}): reading the model's "
            f"features from the warehouse into memory (numeric columns as stored, categoricals "
            f"as codes, no ids) {read['seconds']} s wall, {read['cpu_seconds']} CPU s; writing "
            f"the cache's {f['cache_rows']:,} rows into a new DuckDB file {write['seconds']} s, "
            f"{write['cpu_seconds']} CPU s. Raw predict keeps both cores busy "
            f"({f['raw_cpu_seconds']} CPU s in {raw['seconds']} s), so their CPU adds to its "
            f"time: with these two steps alone, end to end is at most "
            f"**{f['bound_share']:.0%} of raw predict throughput** here (raw CPU / (raw + read + "
            "write CPU)), before numbering, top K, fallbacks and process start.",
            "",
        ]
    md += [
        "### Where the time goes (one in-process run)",
        "",
        "| stage | wall seconds | CPU seconds (process, all threads) |",
        "| --- | ---: | ---: |",
    ]
    for stage, seconds in s["stage_profile"]["stages"].items():
        md.append(f"| {stage} | {seconds} | {s['stage_profile']['cpu'].get(stage, '-')} |")
    md.append(f"| total in-process (no interpreter start) | {s['stage_profile']['seconds']} | - |")
    md += [
        "",
        "Background stages overlap the others: CPU seconds of overlapping stages count the "
        "same work twice.",
    ]
    if s.get("before"):
        b = s["before"]
        md += [
            "",
            f"Before (scoring code of `{b['ref']}`, same data, model, batches and threads, one run, "
            f"load {b['load_average']}): {b['seconds']} s wall, {b['cpu_seconds']} CPU seconds, "
            f"peak RSS {b['peak_rss_mib']} MiB. Its own log of an in-process run: "
            + "; ".join(b["profile"]["log"])
            + f"; predict {b['profile']['predict_seconds']} s.",
        ]
    md += [
        "",
        "### Share of raw predict by tree count (one run each)",
        "",
        "| model | trees | raw predict wall (s) | end to end wall (s) | share (wall) | "
        "raw CPU (s) | end to end CPU (s) | share (CPU) | load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in s["trees_sweep"]:
        md.append(
            f"| {row['model']} | {row['trees']} | {row['raw_seconds']} | "
            f"{row['end_to_end_seconds']} | {row['share_of_raw']:.0%} | {row['raw_cpu_seconds']} | "
            f"{row['end_to_end_cpu_seconds']} | {row['cpu_share_of_raw']:.0%} | "
            f"{row['load_average']} |"
        )
    md += [
        "",
        "## Lookups (`ranker.serve.recommend`, in-process)",
        "",
        "| contexts | lookups | p50 (ms) | p99 (ms) | max (ms) | CPU p50 (ms) | CPU p99 (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in report["lookups"].items():
        if not isinstance(r, dict):
            continue
        md.append(
            f"| {name} | {r['lookups']:,} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | "
            f"{r['cpu_p50_ms']} | {r['cpu_p99_ms']} |"
        )
    md += ["", "Target: p99 under 5 ms for a cached context."]
    if "first_lookup_ms" in report["lookups"]:
        md.append(
            f"The first lookup of a process opens the cache generation and reads its context "
            f"spans: {report['lookups']['first_lookup_ms']} ms."
        )
    if "lookups_measured_at" in report:
        md.append(
            f"Lookups re-measured {report['lookups_measured_at']} (`--reuse --lookups-only`, "
            f"load average {report['lookups_load_average']}) on the same data and cache."
        )
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
