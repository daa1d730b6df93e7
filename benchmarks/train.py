"""Training benchmark: unified CatBoost YetiRank vs LightGBM lambdarank, and CatBoost's levers.

Reproduce (after `make bench` installed LightGBM, the benchmark-only dependency):

    .venv/bin/python benchmarks/train.py                  # 1M rows: levers ladder + LightGBM
    .venv/bin/python benchmarks/train.py --memory-rows 5000000   # also the 5M peak-memory check

Generates the demo logs (seed 7), builds the mart with dbt, then trains each configuration in its
own process (so peak RSS is per configuration) on the same rows and features, 2 threads, and
scores NDCG@10 per canvas on the test split. Writes benchmarks/results/train.{json,md}.

What runs, in order:

1. the CatBoost ladder: each step adds one lever to the step above (one run each);
2. levers tried on top of the final CatBoost configuration and not adopted (one run each);
3. LightGBM lambdarank: the configuration this benchmark used before (for the record), then a
   small grid a competent user would try (leaves x min_data_in_leaf x learning rate, early
   stopping on valid NDCG@10), from which the peer is chosen by VALID NDCG@10 (never test);
4. the headline pair, final CatBoost and the chosen LightGBM, run alternately ``--repeats`` times
   so both see the same machine load; the table shows the median and the range, and the ratio
   is taken per pair. Per-canvas differences come with paired bootstrap intervals over requests.

Wall time on a shared machine is noisy: every run records its CPU seconds and the 1-minute load
average before and after, so a reader can tell a slow run from a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
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
    ("+ border_count 64", {"border_count": 64}),
    ("+ at most 10 negatives per request", {"max_negatives_per_request": 10}),
    ("+ learning rate 0.1", {"learning_rate": 0.1}),
    ("+ YetiRank permutations 1 (default 10)", {"yetirank_permutations": 1}),
    (
        "+ one_hot_max_size 16 (every categorical one-hot, no CTRs)",
        {"one_hot_max_size": 16},
    ),
    ("+ early stopping patience 20", {"early_stopping_rounds": 20}),
]

# Levers tried on top of the final configuration, one at a time, and not adopted.
# "catboost_extra" passes CatBoost parameters the project does not expose.
TRIED: list[tuple[str, dict[str, Any]]] = [
    ("YetiRank permutations 2", {"yetirank_permutations": 2}),
    (
        "bootstrap Bernoulli, subsample 0.5 of requests (sampling_unit Group)",
        {
            "catboost_extra": {
                "bootstrap_type": "Bernoulli",
                "subsample": 0.5,
                "sampling_unit": "Group",
            }
        },
    ),
    ("bootstrap No (default MVS 0.8)", {"catboost_extra": {"bootstrap_type": "No"}}),
    ("depth 4", {"depth": 4}),
    ("depth 8", {"depth": 8}),
    ("border_count 32", {"border_count": 32}),
    ("at most 5 negatives per request", {"max_negatives_per_request": 5}),
    ("learning rate 0.2", {"learning_rate": 0.2}),
]

# LightGBM: what every configuration shares. eval_at 10 is the metric we report; label_gain is
# LightGBM's default 2^label - 1, the gain our NDCG uses; truncation 30 >= the largest request
# (30 candidates), so every pair counts; categorical columns are pandas categoricals (LightGBM's
# native categorical splits).
LIGHTGBM_BASE: dict[str, Any] = {
    "iterations": 2000,
    "early_stopping_rounds": 50,
    "label_gain": [0.0, 1.0, 3.0],
    "lambdarank_truncation_level": 30,
}
# What this benchmark used before: 63 leaves and LightGBM's default 20 rows per leaf stopped
# after 5 trees on this data (valid NDCG@10 peaked at once), which flattered LightGBM's time.
LIGHTGBM_PREVIOUS: dict[str, Any] = {
    **LIGHTGBM_BASE,
    "learning_rate": 0.05,
    "num_leaves": 63,
    "min_data_in_leaf": 20,
}
LIGHTGBM_GRID: list[dict[str, Any]] = [
    {**LIGHTGBM_BASE, "num_leaves": leaves, "min_data_in_leaf": min_data, "learning_rate": lr}
    for leaves in (15, 31, 63)
    for min_data in (20, 200)
    for lr in (0.05, 0.1)
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


def _catboost_params(params: dict[str, Any]) -> Any:
    """TrainParams for a benchmark configuration, with CatBoost-only extras passed through."""
    from ranker.train import TrainParams

    clean = {
        k: v
        for k, v in params.items()
        if k != "catboost_extra" and (k != "early_stopping_rounds" or v is not None)
    }
    extra = dict(params.get("catboost_extra") or {})

    class BenchParams(TrainParams):
        def catboost_params(self) -> dict[str, Any]:
            return {**super().catboost_params(), **extra}

    return BenchParams(thread_count=THREADS, **clean)


def run_one(
    kind: str, params: dict[str, Any], warehouse: Path, scores_out: Path | None
) -> dict[str, Any]:
    """Train one model in this process and report time, memory and per-canvas NDCG@10."""
    import numpy as np

    from ranker.config import load_settings
    from ranker.dataset import load_ranking_data
    from ranker.evaluate import metrics_at_k
    from ranker.train import fit_ranker, prepare_for_fit

    settings = load_settings(ROOT, duckdb_path=warehouse)
    started = time.perf_counter()
    data = load_ranking_data(settings)
    load_seconds = time.perf_counter() - started
    train, valid, test = data.split("train"), data.split("valid"), data.split("test")
    load_before = os.getloadavg()[0]
    cpu_started = time.process_time()
    started = time.perf_counter()
    valid_ndcg: float | None = None
    if kind == "catboost":
        fitted = fit_ranker(
            "unified",
            train,
            valid if params.get("early_stopping_rounds") else None,
            data.features,
            data.categorical,
            _catboost_params(params),
        )
        scores = fitted.predict(test)
        iterations = fitted.best_iteration + 1
        # use_best_model keeps the best trees; the valid curve says how many were trained.
        curves = fitted.model.get_evals_result().get("validation", {})
        trained_iterations = max([len(c) for c in curves.values()] + [fitted.model.tree_count_])
        best = fitted.model.get_best_score().get("validation", {})
        valid_ndcg = next(iter(best.values()), None)
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
            num_leaves=params["num_leaves"],
            min_child_samples=params["min_data_in_leaf"],
            label_gain=params["label_gain"],
            lambdarank_truncation_level=params["lambdarank_truncation_level"],
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
        scores = np.asarray(model.predict(aligned(test)))
        iterations = int(model.best_iteration_ or params["iterations"])
        trained_iterations = model.booster_.current_iteration()
        valid_ndcg = float(model.best_score_["valid_0"]["ndcg@10"])
        train_rows = len(fit_train)
    fit_seconds = time.perf_counter() - started
    fit_cpu_seconds = time.process_time() - cpu_started
    load_after = os.getloadavg()[0]
    ndcg: dict[str, float] = {}
    per_request: dict[str, Any] = {}
    for task in data.tasks:
        mask = (test["task_type"] == task).to_numpy()
        metrics = metrics_at_k(test["label"][mask], scores[mask], test["request_id"][mask], 10)
        ndcg[task] = float(metrics["ndcg@10"].mean())
        per_request[task] = metrics["ndcg@10"]
    overall = metrics_at_k(test["label"], scores, test["request_id"], 10)["ndcg@10"]
    per_request["all"] = overall
    if scores_out is not None:
        np.savez(scores_out, **per_request)
    return {
        "kind": kind,
        "params": params,
        "mart_rows": len(data.frame),
        "train_rows": train_rows,
        "iterations": iterations,
        "trained_iterations": trained_iterations,
        "load_seconds": round(load_seconds, 1),
        "fit_seconds": round(fit_seconds, 1),
        "fit_cpu_seconds": round(fit_cpu_seconds, 1),
        "loadavg_before": round(load_before, 1),
        "loadavg_after": round(load_after, 1),
        "valid_ndcg@10": None if valid_ndcg is None else round(float(valid_ndcg), 4),
        "ndcg@10": {k: round(v, 4) for k, v in ndcg.items()},
        "ndcg@10_all": round(float(np.mean(overall)), 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def in_subprocess(
    kind: str, params: dict[str, Any], warehouse: Path, scores_out: Path | None = None
) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--one",
        json.dumps({"kind": kind, "params": params}),
        "--warehouse",
        str(warehouse),
    ]
    if scores_out is not None:
        command += ["--scores-out", str(scores_out)]
    completed = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from repeated runs of one configuration: quality from the first run (training is
    deterministic: every run gives the same trees), times as median and range."""
    walls = [r["fit_seconds"] for r in runs]
    cpus = [r["fit_cpu_seconds"] for r in runs]
    return {
        **runs[0],
        "fit_seconds": round(statistics.median(walls), 1),
        "fit_seconds_runs": walls,
        "fit_cpu_seconds": round(statistics.median(cpus), 1),
        "fit_cpu_seconds_runs": cpus,
        "loadavg_runs": [[r["loadavg_before"], r["loadavg_after"]] for r in runs],
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "deterministic": all(r["ndcg@10"] == runs[0]["ndcg@10"] for r in runs),
    }


def paired_deltas(catboost: Path, lightgbm: Path) -> dict[str, dict[str, float]]:
    """CatBoost minus LightGBM NDCG@10 per canvas, paired bootstrap 95% interval over requests."""
    import numpy as np

    from ranker.evaluate import bootstrap_interval

    a, b = np.load(catboost), np.load(lightgbm)
    return {
        task: bootstrap_interval(a[task] - b[task], n_resamples=1000, seed=0).to_dict()
        for task in a.files
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--memory-rows", type=int, default=0, help="also train the final config at this size"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of the headline pair (CatBoost, LightGBM)"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", help=argparse.SUPPRESS)
    parser.add_argument("--scores-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        spec = json.loads(args.one)
        scores_out = Path(args.scores_out) if args.scores_out else None
        result = run_one(spec["kind"], spec["params"], Path(args.warehouse), scores_out)
        print(json.dumps(result))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    warehouse = ensure_warehouse(args.rows)
    started = time.perf_counter()

    ladder: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    for label, change in LADDER[:-1]:
        params = {**params, **change}
        ladder.append({"step": label, **in_subprocess("catboost", params, warehouse)})
    final_label, final_change = LADDER[-1]
    final_params = {**params, **final_change}

    tried = [
        {"step": label, **in_subprocess("catboost", {**final_params, **change}, warehouse)}
        for label, change in TRIED
    ]

    previous = in_subprocess("lightgbm", LIGHTGBM_PREVIOUS, warehouse)
    grid = [in_subprocess("lightgbm", config, warehouse) for config in LIGHTGBM_GRID]
    chosen = max(grid, key=lambda r: r["valid_ndcg@10"])
    lightgbm_params = dict(chosen["params"])

    catboost_runs: list[dict[str, Any]] = []
    lightgbm_runs: list[dict[str, Any]] = []
    for _ in range(args.repeats):
        catboost_runs.append(
            in_subprocess("catboost", final_params, warehouse, WORK / "scores_catboost.npz")
        )
        lightgbm_runs.append(
            in_subprocess("lightgbm", lightgbm_params, warehouse, WORK / "scores_lightgbm.npz")
        )
    final = {"step": final_label, **summarize(catboost_runs)}
    ladder.append(final)
    lightgbm = summarize(lightgbm_runs)
    ratios = [
        round(c["fit_seconds"] / lg["fit_seconds"], 2)
        for c, lg in zip(catboost_runs, lightgbm_runs, strict=True)
    ]
    same_rows = in_subprocess(
        "lightgbm",
        {**lightgbm_params, "max_negatives_per_request": final_params["max_negatives_per_request"]},
        warehouse,
    )
    deltas = paired_deltas(WORK / "scores_catboost.npz", WORK / "scores_lightgbm.npz")

    memory: dict[str, Any] | None = None
    if args.memory_rows:
        big = ensure_warehouse(args.memory_rows)
        memory = in_subprocess("catboost", final_params, big)
    tasks = sorted(lightgbm["ndcg@10"])
    report = {
        "benchmark": "training: unified CatBoost YetiRank vs LightGBM lambdarank",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "threads": THREADS,
            "python": platform.python_version(),
        },
        "rows": args.rows,
        "benchmark_seconds": round(time.perf_counter() - started),
        "ladder": ladder,
        "tried_not_adopted": tried,
        "lightgbm_previous": previous,
        "lightgbm_grid": grid,
        "lightgbm": lightgbm,
        "lightgbm_same_rows": same_rows,
        "headline": {
            "repeats": args.repeats,
            "catboost_fit_seconds": final["fit_seconds"],
            "lightgbm_fit_seconds": lightgbm["fit_seconds"],
            "ratio_per_pair": ratios,
            "ratio_median": round(statistics.median(ratios), 2),
            "time_target_met": statistics.median(ratios) <= 2.0,
            "ndcg@10_delta_catboost_minus_lightgbm": deltas,
            "beats_lightgbm_on_every_canvas": all(deltas[t]["value"] > 0 for t in tasks),
            "significantly_better_on_every_canvas": all(deltas[t]["low"] > 0 for t in tasks),
        },
        "memory_check": memory,
    }
    (RESULTS / "train.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report)


def _seconds(r: dict[str, Any]) -> str:
    runs = r.get("fit_seconds_runs")
    if runs and len(runs) > 1:
        return f"{r['fit_seconds']} ({min(runs)}-{max(runs)})"
    return str(r["fit_seconds"])


def _row(label: str, r: dict[str, Any], tasks: list[str]) -> str:
    return (
        f"| {label} | {r['train_rows']:,} | {r['iterations']} | {_seconds(r)} | "
        f"{r['fit_cpu_seconds']} | {r['peak_rss_mib']} | "
        + " | ".join(f"{r['ndcg@10'][t]:.4f}" for t in tasks)
        + f" | {r['ndcg@10_all']:.4f} |"
    )


def _lightgbm_label(params: dict[str, Any]) -> str:
    return (
        f"lr {params['learning_rate']}, {params['num_leaves']} leaves, "
        f"min_data_in_leaf {params['min_data_in_leaf']}"
    )


def write_markdown(report: dict[str, Any]) -> None:
    lightgbm = report["lightgbm"]
    tasks = sorted(lightgbm["ndcg@10"])
    headline = report["headline"]
    header = [
        "| model | train rows | trees | fit (s) | fit CPU (s) | peak RSS (MiB) | "
        + " | ".join(tasks)
        + " | all |",
        "| --- | ---: | ---: | ---: | ---: | ---: | "
        + " | ".join("---:" for _ in tasks)
        + " | ---: |",
    ]
    lines = [
        "# Training benchmark",
        "",
        f"Measured {report['measured_at']}, {report['machine']['threads']} threads on a "
        f"{report['machine']['cpus']}-core machine, demo generator at {report['rows']:,} impression "
        f"rows (mart rows: {lightgbm['mart_rows']:,}). Reproduce: `.venv/bin/python "
        "benchmarks/train.py`. NDCG@10 per canvas on the test split; fit time excludes loading "
        "the mart and includes building the training data, fitting and predicting the test split. "
        "Trees = trees kept (best iteration on valid). Fit CPU = process CPU seconds, less "
        "sensitive than wall time to other work on the machine.",
        "",
        "## CatBoost levers (each row adds one lever to the row above)",
        "",
        *header,
    ]
    for r in report["ladder"]:
        lines.append(_row(f"CatBoost YetiRank {r['step']}", r, tasks))
    lines += [
        "",
        "## Levers tried on top of the final configuration, not adopted",
        "",
        *header,
    ]
    final = report["ladder"][-1]
    lines.append(_row("final configuration (above)", final, tasks))
    for r in report["tried_not_adopted"]:
        lines.append(_row(f"final + {r['step']}", r, tasks))
    lines += [
        "",
        "## LightGBM lambdarank, same features",
        "",
        "All: `objective=lambdarank`, `eval_at=[10]`, `label_gain=[0, 1, 3]` (LightGBM's default, "
        "the 2^label - 1 gain our NDCG uses), `lambdarank_truncation_level=30` (every candidate of "
        "the largest request), categorical columns as pandas categoricals (native categorical "
        "splits), early stopping 50 rounds on valid NDCG@10. The peer is the grid configuration "
        "with the best VALID NDCG@10.",
        "",
        "| configuration | train rows | trees | fit (s) | fit CPU (s) | valid NDCG@10 | "
        + " | ".join(tasks)
        + " | all |",
        "| --- | ---: | ---: | ---: | ---: | ---: | "
        + " | ".join("---:" for _ in tasks)
        + " | ---: |",
    ]

    def lgb_row(label: str, r: dict[str, Any]) -> str:
        return (
            f"| {label} | {r['train_rows']:,} | {r['iterations']} | {_seconds(r)} | "
            f"{r['fit_cpu_seconds']} | {r['valid_ndcg@10']:.4f} | "
            + " | ".join(f"{r['ndcg@10'][t]:.4f}" for t in tasks)
            + f" | {r['ndcg@10_all']:.4f} |"
        )

    lines.append(
        lgb_row(
            f"previous peer: {_lightgbm_label(report['lightgbm_previous']['params'])}",
            report["lightgbm_previous"],
        )
    )
    for r in report["lightgbm_grid"]:
        lines.append(lgb_row(f"grid: {_lightgbm_label(r['params'])}", r))
    lines.append(lgb_row(f"**chosen peer**: {_lightgbm_label(lightgbm['params'])}", lightgbm))
    lines.append(
        lgb_row(
            "chosen peer on the final CatBoost's rows (at most 10 negatives per request)",
            report["lightgbm_same_rows"],
        )
    )
    lines += [
        "",
        "## Headline: final CatBoost vs the chosen LightGBM",
        "",
        f"Run alternately {headline['repeats']} times each (median, range in brackets):",
        "",
        *header,
        _row("CatBoost YetiRank, final configuration", final, tasks),
        _row(f"LightGBM lambdarank, {_lightgbm_label(lightgbm['params'])}", lightgbm, tasks),
        "",
        f"- Wall-time ratio CatBoost / LightGBM per pair: {headline['ratio_per_pair']} "
        f"(median {headline['ratio_median']}); target at most 2: "
        f"**{'met' if headline['time_target_met'] else 'not met'}**.",
        "- 1-minute load average before/after each run (2 cores): CatBoost "
        f"{final['loadavg_runs']}, LightGBM {lightgbm['loadavg_runs']}.",
        "- NDCG@10 CatBoost minus LightGBM, paired bootstrap 95% interval over test requests: "
        + ", ".join(
            f"{t} {d['value']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"
            for t, d in headline["ndcg@10_delta_catboost_minus_lightgbm"].items()
        )
        + ".",
        "- Beats LightGBM on every canvas (point estimate): "
        f"**{'yes' if headline['beats_lightgbm_on_every_canvas'] else 'no'}**; significantly "
        f"(interval above zero) on every canvas: "
        f"**{'yes' if headline['significantly_better_on_every_canvas'] else 'no'}**.",
    ]
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
