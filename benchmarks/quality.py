"""Quality benchmark: unified vs per-canvas models on every dataset, one table per dataset.

For each project - the demo (unirank's root), examples/movielens and examples/diginetica, each a
dbt project that installs unirank as a package - it runs the whole pipeline as a user would
(`dbt build` of the project, then `train_and_evaluate` with the project's training settings) and
compares on exactly the same test requests: the unified CatBoost YetiRank model, bespoke
per-canvas YetiRank models (same features and budget), the unified model without `task_type`,
popularity, LightGBM lambdarank on the same features (benchmarks/peers.py) and, where the
project declares feature models of its own, the unified model without them
(`without_project_features`: what those features are worth, per canvas). Metrics per canvas:
NDCG@10, MAP@10, MRR, HitRate@10 with 95% bootstrap intervals over requests, and paired intervals
for the differences.

Reproduce (installs the bench extra, then ~15-25 min on 2 cores):

    make quality                      # = .venv/bin/python benchmarks/quality.py
    .venv/bin/python benchmarks/quality.py --datasets movielens   # one dataset

Writes benchmarks/results/quality.{md,json}; warehouses and models go to benchmarks/work/quality/.
Needs ../shared/data for movielens and diginetica (skipped with a note when absent).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from peers import LIGHTGBM_PARAMS, lightgbm_lambdarank  # noqa: E402

from ranker.build import run_dbt  # noqa: E402
from ranker.config import load_settings  # noqa: E402
from ranker.dataset import mart_summary  # noqa: E402
from ranker.evaluate import HEADLINE_METRIC, compare_models  # noqa: E402
from ranker.train import (  # noqa: E402
    TrainParams,
    evaluation_to_dict,
    fit_ranker,
    train_and_evaluate,
)

DATASETS = ("demo", "movielens", "diginetica")
PROJECTS = {
    "demo": ROOT,
    "movielens": ROOT / "examples" / "movielens",
    "diginetica": ROOT / "examples" / "diginetica",
}
DATA_DIRS = {
    "movielens": ROOT.parent / "shared" / "data" / "movielens-latest-small",
    "diginetica": ROOT.parent / "shared" / "data" / "diginetica-sample",
}
KINDS = ("unified", "bespoke", "no_task", "popularity", "lightgbm", "without_project_features")
METRICS = ("ndcg@10", "map@10", "mrr", "hitrate@10")
WORK = ROOT / "benchmarks" / "work" / "quality"
RESULTS = ROOT / "benchmarks" / "results"


def without_project_features(settings: Any, params: TrainParams) -> Callable[..., Any] | None:
    """A peer: the unified model trained without the project's own feature columns (same data,
    same settings), or None when the project declares none."""
    own = {c.name for f in settings.registry.feature_models if not f.builtin for c in f.columns}
    if not own:
        return None

    def peer(train: Any, valid: Any, test: Any, features: Any, categorical: Any) -> Any:
        kept = [f for f in features if f not in own]
        return fit_ranker(
            "without_project_features", train, valid, kept, categorical, params
        ).predict(test)

    return peer


def dataset_settings(name: str) -> Any:
    """The settings of one dataset's project, its warehouse and models under WORK/<name> (the
    studies of benchmarks/learning_curve.py and weighting.py reuse these warehouses)."""
    overrides: dict[str, Any] = {}
    if name in DATA_DIRS:
        overrides[f"{name}_path"] = str(DATA_DIRS[name])
    work = WORK / name
    return load_settings(
        PROJECTS[name],
        overrides,
        duckdb_path=work / "unirank.duckdb",
        artifacts_dir=work / "artifacts",
        reports_dir=work / "reports",
    )


def built_settings(name: str) -> Any:
    """``dataset_settings``, the warehouse built first when absent; None when the dataset's
    data is not there."""
    if name in DATA_DIRS and not DATA_DIRS[name].exists():
        return None
    settings = dataset_settings(name)
    if not settings.duckdb_path.exists():
        run_dbt(settings, ["build"], echo=False)
    return settings


def paired_ndcg(
    canvas: str, rows: pd.DataFrame, scores: dict[str, Any], reference: str, seed: int
) -> tuple[int, dict[str, float], dict[str, dict[str, float]]]:
    """The studies' comparison on one canvas's ``rows``: its requests, each scored model's NDCG@10
    and each one minus ``reference`` with the paired 95% interval (``delta``, ``low``, ``high``)."""
    evaluation = compare_models(
        canvas,
        rows["label"].to_numpy(dtype=float),
        rows["request_id"].to_numpy(),
        scores,
        reference=reference,
        seed=seed,
    )
    ndcg = {k: m.metrics[HEADLINE_METRIC].value for k, m in evaluation.models.items()}
    # compare_models gives the reference minus each model: flip to read model minus reference
    versus = {
        k: {
            "delta": -d[HEADLINE_METRIC].value,
            "low": -d[HEADLINE_METRIC].high,
            "high": -d[HEADLINE_METRIC].low,
        }
        for k, d in evaluation.deltas.items()
    }
    return evaluation.n_requests, ndcg, versus


def run_dataset(name: str, threads: int) -> dict[str, Any]:
    settings = dataset_settings(name)
    started = time.perf_counter()
    run_dbt(settings, ["build"], echo=False)
    build_seconds = time.perf_counter() - started
    params = TrainParams.from_settings(settings, thread_count=threads, compare=True)
    peers: dict[str, Callable[..., Any]] = {
        "lightgbm": lambda tr, va, te, f, c: lightgbm_lambdarank(tr, va, te, f, c, threads)
    }
    ablation = without_project_features(settings, params)
    if ablation is not None:
        peers["without_project_features"] = ablation
    result = train_and_evaluate(settings, params, write_reports=False, peers=peers)
    splits = [
        {"task": s.task_type, "split": s.split, "requests": s.requests, "rows": s.rows}
        for s in mart_summary(settings)
    ]
    return {
        "dataset": name,
        "project": str(PROJECTS[name].relative_to(ROOT)) or ".",
        "project_features": sorted(
            c.name for f in settings.registry.feature_models if not f.builtin for c in f.columns
        ),
        "run_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "model_version": result.version,
        "build_seconds": round(build_seconds, 1),
        "timings": {k: round(v, 1) for k, v in result.timings.items()},
        "params": {
            k: v for k, v in vars(params).items() if k not in ("compare", "bootstrap_resamples")
        },
        "mart": splits,
        "evaluations": [evaluation_to_dict(e) for e in result.evaluations],
        "notes": result.notes,
    }


def _cell(interval: dict[str, float] | None) -> str:
    if interval is None:
        return "-"
    return f"{interval['value']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def _verdict(delta: dict[str, float] | None) -> str:
    if delta is None:
        return "-"
    word = "**better**" if delta["low"] > 0 else "worse" if delta["high"] < 0 else "tie"
    return f"{delta['value']:+.3f} [{delta['low']:+.3f}, {delta['high']:+.3f}] {word}"


def _run_at(model_version: str) -> str:
    """When a run recorded before ``run_at`` existed trained: its model version's UTC stamp."""
    stamp = datetime.strptime(model_version[:15], "%Y%m%dT%H%M%S")
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def write_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Quality: one unified model vs a model per canvas, on three datasets",
        "",
        f"Last run {report['created_at']} on {report['machine']}, {report['threads']} threads, "
        "with `.venv/bin/python benchmarks/quality.py` (`--datasets` re-runs some and keeps the "
        "others; each section says when it ran). Test split of each dataset; every model is "
        "scored on exactly the same test requests; a metric is the mean over requests with a "
        "positive label, with its 95% bootstrap interval over requests; differences are paired "
        "(same requests), unified minus the other model: **better** / worse when the interval "
        "excludes 0, tie otherwise. Models: `unified` CatBoost YetiRank with `task_type`; "
        "`bespoke` one YetiRank per canvas on that canvas's rows (same features, same budget); "
        "`no_task` the unified model without `task_type`; `popularity` the item's engagements "
        "in the canvas before the request; `lightgbm` LightGBM lambdarank on the same features "
        f"({', '.join(f'{k}={v}' for k, v in LIGHTGBM_PARAMS.items() if k != 'verbose')}, "
        "early stopping 50 on valid NDCG@10); `without_project_features` the unified model "
        "without the feature models the example project declares itself (so `vs "
        "without_project_features` is what they add).",
        "",
    ]
    for run in report["runs"]:
        if "skipped" in run:
            lines += [f"## {run['dataset']}", "", f"Not run: {run['skipped']}", ""]
            continue
        train_requests: dict[str, int] = {}
        for row in run["mart"]:
            if row["split"] == "train":
                train_requests[row["task"]] = row["requests"]
        lines += [
            f"## {run['dataset']}",
            "",
            f"Project `{run.get('project', '.')}`"
            + (
                f"; its own features: {', '.join(run['project_features'])}"
                if run.get("project_features")
                else ""
            )
            + ". "
            f"Run {run.get('run_at') or _run_at(run['model_version'])}. "
            f"Model {run['model_version']}; dbt build {run['build_seconds']} s; training and "
            f"comparison {run['timings'].get('total_seconds', 0)} s. Params: {run['params']}.",
            "",
            "| canvas | train requests | test requests | model | "
            + " | ".join(m.upper() if m == "mrr" else m.replace("@", "@") for m in METRICS)
            + " |",
            "| --- | ---: | ---: | --- | " + " | ".join("---:" for _ in METRICS) + " |",
        ]
        for evaluation in run["evaluations"]:
            task = evaluation["task"]
            if evaluation["skipped"]:
                lines.append(f"| {task} | | 0 | not evaluated: {evaluation['skipped']} | |")
                continue
            trained = sum(train_requests.values()) if task == "all" else train_requests.get(task, 0)
            for kind in KINDS:
                if kind not in evaluation["models"]:
                    continue
                metrics = evaluation["models"][kind]
                lines.append(
                    f"| {task} | {trained:,} | {evaluation['n_requests']:,} | {kind} | "
                    + " | ".join(_cell(metrics.get(m)) for m in METRICS)
                    + " |"
                )
        lines += [
            "",
            "NDCG@10, unified minus each other model (paired 95% interval):",
            "",
            "| canvas | " + " | ".join(f"vs {k}" for k in KINDS[1:]) + " |",
            "| --- | " + " | ".join("---" for _ in KINDS[1:]) + " |",
        ]
        for evaluation in run["evaluations"]:
            if evaluation["skipped"]:
                continue
            deltas = evaluation["deltas_vs_unified"]
            lines.append(
                f"| {evaluation['task']} | "
                + " | ".join(_verdict(deltas.get(k, {}).get("ndcg@10")) for k in KINDS[1:])
                + " |"
            )
        if run["notes"]:
            lines += ["", "Notes: " + "; ".join(run["notes"])]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    previous: dict[str, Any] = {}
    json_path = RESULTS / "quality.json"
    if json_path.exists():  # a partial re-run keeps the other datasets' committed results
        previous = {r["dataset"]: r for r in json.loads(json_path.read_text())["runs"]}
    runs = dict(previous)
    for name in args.datasets:
        if name in DATA_DIRS and not DATA_DIRS[name].is_dir():
            runs[name] = {"dataset": name, "skipped": f"data not found at {DATA_DIRS[name]}"}
            continue
        print(f"quality: {name} ...", file=sys.stderr)
        runs[name] = run_dataset(name, args.threads)
    report = {
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "threads": args.threads,
        "runs": [runs[name] for name in DATASETS if name in runs],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "quality.md").write_text(write_markdown(report))
    print(RESULTS / "quality.md")


if __name__ == "__main__":
    main()
