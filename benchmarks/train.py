"""Training benchmark: unified CatBoost YetiRank vs LightGBM lambdarank, and CatBoost's levers.

Reproduce (after `make bench` installed LightGBM, the benchmark-only dependency):

    .venv/bin/python benchmarks/train.py                  # 1M rows: levers ladder + LightGBM
    .venv/bin/python benchmarks/train.py --memory-rows 5000000   # also the 5M peak-memory check

Generates the demo logs (seed 7), builds the mart with dbt, then trains each configuration in its
own process (so peak RSS is per configuration) on the same rows and features, 2 threads, and
scores NDCG@10 per canvas on the test split. Writes benchmarks/results/train.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work"
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
THREADS = 2

# Cumulative ladder: each step adds one lever to the previous one.
LADDER: list[tuple[str, dict[str, Any]]] = [
    (
        "catboost defaults-like (lr 0.05, depth 6, 254 borders, 600 iterations)",
        {
            "iterations": 600,
            "learning_rate": 0.05,
            "depth": 6,
            "border_count": 254,
            "early_stopping_rounds": None,
        },
    ),
    ("+ early stopping (50 rounds on valid NDCG@10)", {"early_stopping_rounds": 50}),
    ("+ evaluate valid NDCG every 10 iterations (metric_period)", {"metric_period": 10}),
    ("+ border_count 64", {"border_count": 64}),
    ("+ at most 10 negatives per request", {"max_negatives_per_request": 10}),
    ("+ learning rate 0.1", {"learning_rate": 0.1}),
]


def ensure_warehouse(rows: int) -> Path:
    warehouse = WORK / f"train_{rows}.duckdb"
    if warehouse.exists():
        return warehouse
    logs = WORK / f"train_logs_{rows}"
    if logs.exists():
        shutil.rmtree(logs)
    subprocess.run(
        [str(BIN / "unirank-cli"), "generate", "--rows", str(rows), "--out", str(logs)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    env = dict(os.environ, UNIRANK_DUCKDB_PATH=str(warehouse))
    subprocess.run(
        [str(BIN / "unirank-cli"), "build", "--logs", str(logs)],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
    )
    shutil.rmtree(logs)
    return warehouse


def run_one(kind: str, params: dict[str, Any], warehouse: Path) -> dict[str, Any]:
    """Train one model in this process and report time, memory and per-canvas NDCG@10."""
    import numpy as np

    from ranker.config import load_settings
    from ranker.dataset import load_ranking_data
    from ranker.evaluate import metrics_at_k
    from ranker.train import TrainParams, fit_ranker, prepare_for_fit

    settings = load_settings(ROOT, duckdb_path=warehouse)
    started = time.perf_counter()
    data = load_ranking_data(settings)
    load_seconds = time.perf_counter() - started
    train, valid, test = data.split("train"), data.split("valid"), data.split("test")
    started = time.perf_counter()
    if kind == "catboost":
        clean = {k: v for k, v in params.items() if k != "early_stopping_rounds" or v is not None}
        p = TrainParams(thread_count=THREADS, **clean)
        fitted = fit_ranker(
            "unified",
            train,
            valid if params.get("early_stopping_rounds") else None,
            data.features,
            data.categorical,
            p,
        )
        scores = fitted.predict(test)
        iterations = fitted.best_iteration + 1
        train_rows = fitted.train_rows
    else:
        import lightgbm as lgb

        fit_train = prepare_for_fit(train, params.get("max_negatives_per_request"), 0)
        fit_valid = prepare_for_fit(valid, None, 0)

        def frame(rows: Any) -> Any:
            x = rows[list(data.features)].copy()
            for c in data.categorical:
                x[c] = x[c].astype("category")
            return x

        def group_sizes(rows: Any) -> Any:
            return rows.groupby("request_id", sort=False).size().to_numpy()

        x_train = frame(fit_train)
        categories = {c: x_train[c].cat.categories for c in data.categorical}

        def aligned(rows: Any) -> Any:
            x = frame(rows)
            for c in data.categorical:
                x[c] = x[c].cat.set_categories(categories[c])
            return x

        model = lgb.LGBMRanker(
            objective="lambdarank",
            n_estimators=params["iterations"],
            learning_rate=params["learning_rate"],
            num_leaves=params.get("num_leaves", 63),
            min_child_samples=20,
            n_jobs=THREADS,
            verbose=-1,
            random_state=0,
        )
        model.fit(
            x_train,
            fit_train["label"],
            group=group_sizes(fit_train),
            eval_set=[(aligned(fit_valid), fit_valid["label"])],
            eval_group=[group_sizes(fit_valid)],
            eval_at=[10],
            callbacks=[lgb.early_stopping(params["early_stopping_rounds"], verbose=False)],
        )
        scores = model.predict(aligned(test))
        iterations = int(model.best_iteration_ or params["iterations"])
        train_rows = len(fit_train)
    fit_seconds = time.perf_counter() - started
    ndcg: dict[str, float] = {}
    for task in data.tasks:
        mask = (test["task_type"] == task).to_numpy()
        ndcg[task] = float(
            metrics_at_k(test["label"][mask], scores[mask], test["request_id"][mask], 10)[
                "ndcg@10"
            ].mean()
        )
    overall = metrics_at_k(test["label"], scores, test["request_id"], 10)["ndcg@10"]
    return {
        "kind": kind,
        "params": params,
        "mart_rows": len(data.frame),
        "train_rows": train_rows,
        "iterations": iterations,
        "load_seconds": round(load_seconds, 1),
        "fit_seconds": round(fit_seconds, 1),
        "ndcg@10": {k: round(v, 4) for k, v in ndcg.items()},
        "ndcg@10_all": round(float(np.mean(overall)), 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def in_subprocess(kind: str, params: dict[str, Any], warehouse: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [
            sys.executable,
            __file__,
            "--one",
            json.dumps({"kind": kind, "params": params}),
            "--warehouse",
            str(warehouse),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--memory-rows", type=int, default=0, help="also train the final config at this size"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(run_one(spec["kind"], spec["params"], Path(args.warehouse))))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    warehouse = ensure_warehouse(args.rows)
    ladder: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    for label, change in LADDER:
        params = {**params, **change}
        result = in_subprocess("catboost", params, warehouse)
        ladder.append({"step": label, **result})
    final_params = dict(params)
    lightgbm = in_subprocess(
        "lightgbm",
        {"iterations": 1000, "learning_rate": 0.05, "early_stopping_rounds": 50, "num_leaves": 63},
        warehouse,
    )
    memory: dict[str, Any] | None = None
    if args.memory_rows:
        big = ensure_warehouse(args.memory_rows)
        memory = in_subprocess("catboost", final_params, big)
    report = {
        "benchmark": "training: unified CatBoost YetiRank vs LightGBM lambdarank",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "threads": THREADS,
            "python": platform.python_version(),
        },
        "rows": args.rows,
        "ladder": ladder,
        "lightgbm": lightgbm,
        "memory_check": memory,
    }
    (RESULTS / "train.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report)


def write_markdown(report: dict[str, Any]) -> None:
    tasks = sorted(report["lightgbm"]["ndcg@10"])
    lines = [
        "# Training benchmark",
        "",
        f"Measured {report['measured_at']}, {report['machine']['threads']} threads, demo generator at "
        f"{report['rows']:,} impression rows (mart rows: {report['lightgbm']['mart_rows']:,}). "
        "Reproduce: `.venv/bin/python benchmarks/train.py`. NDCG@10 per canvas on the test split; "
        "fit time excludes loading the mart.",
        "",
        "| model | train rows | trees | fit (s) | peak RSS (MiB) | "
        + " | ".join(tasks)
        + " | all |",
        "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in tasks) + " | ---: |",
    ]
    rows = [(f"CatBoost YetiRank {r['step']}", r) for r in report["ladder"]]
    rows.append(("LightGBM lambdarank (lr 0.05, 63 leaves, early stopping 50)", report["lightgbm"]))
    for label, r in rows:
        lines.append(
            f"| {label} | {r['train_rows']:,} | {r['iterations']} | {r['fit_seconds']} | {r['peak_rss_mib']} | "
            + " | ".join(f"{r['ndcg@10'][t]:.4f}" for t in tasks)
            + f" | {r['ndcg@10_all']:.4f} |"
        )
    if report.get("memory_check"):
        m = report["memory_check"]
        lines += [
            "",
            f"Memory check: the final CatBoost configuration on {m['mart_rows']:,} mart rows "
            f"peaked at {m['peak_rss_mib']} MiB (load {m['load_seconds']} s, fit {m['fit_seconds']} s).",
        ]
    (RESULTS / "train.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
