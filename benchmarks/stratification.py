"""Stratification at a fixed budget: which canvas mix of training requests to keep.

When the registry's `stratification.budget` binds, the `stratified_union` macro keeps a number of
requests per canvas by strategy: `traffic` (every canvas the same share of its requests), `equal`
(budget / number of canvases each, a canvas with fewer keeping all it has) or `weights` (budget x
weight / sum of the canvases' registry `weight`). YetiRank's loss then weighs canvases by
`training.canvas_weights` (none, sqrt, balanced). For each dataset (the demo, examples/movielens,
examples/diginetica) this keeps BUDGET of the training requests with each strategy - the same
requests the macro keeps: md5(request_id || '|' || seed) order within a canvas, the targets of
ranker.registry.Stratification.target_requests - and trains the unified model with each canvas
weighting on them. Every variant is scored on the full valid split (where a default is chosen)
and the full test split, paired on the same requests, against the defaults (traffic, sqrt).
`weights` with equal registry weights is `equal`; it is run only where a project declares
different weights.

Reproduce (about 15 minutes on 2 cores; reuses the warehouses of `make quality`):

    .venv/bin/python benchmarks/stratification.py
    .venv/bin/python benchmarks/stratification.py --datasets demo

Writes benchmarks/results/stratification.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import DATA_DIRS, built_settings, paired_ndcg  # noqa: E402

from ranker.dataset import load_ranking_data  # noqa: E402
from ranker.registry import Stratification  # noqa: E402
from ranker.train import TrainParams, fit_ranker  # noqa: E402

DATASETS = ("demo", "movielens", "diginetica")
RESULTS = ROOT / "benchmarks" / "results"
BUDGET = 0.25  # of the training requests: a budget that binds
WEIGHTS = ("none", "sqrt", "balanced")
DEFAULT = "traffic, sqrt"


def kept(train: pd.DataFrame, strategy: Stratification, weights: dict[str, float]) -> pd.DataFrame:
    """The training rows the stratified_union macro keeps with ``strategy``: per canvas, the first
    target requests by md5(request_id || '|' || seed), then request_id."""
    requests = train[["task_type", "request_id"]].drop_duplicates()
    counts = requests.groupby("task_type").size().to_dict()
    targets = strategy.target_requests(counts, weights)
    order = requests.assign(
        key=[
            hashlib.md5(f"{r}|{strategy.seed}".encode()).hexdigest() for r in requests["request_id"]
        ]
    ).sort_values(["task_type", "key", "request_id"])
    order["rank"] = order.groupby("task_type").cumcount() + 1
    keep = order[order["rank"] <= order["task_type"].map(targets)]
    return train.merge(keep[["task_type", "request_id"]], on=["task_type", "request_id"])


def evaluate(rows: pd.DataFrame, scores: dict[str, Any], seed: int) -> dict[str, Any]:
    """Per canvas: NDCG@10 of every variant and its paired difference with the default."""
    found: dict[str, Any] = {}
    for canvas in sorted(rows["task_type"].unique()):
        mine = (rows["task_type"] == canvas).to_numpy()
        part = rows[mine]
        requests, ndcg, versus = paired_ndcg(
            canvas, part, {kind: values[mine] for kind, values in scores.items()}, DEFAULT, seed
        )
        found[canvas] = {"requests": requests, "ndcg": ndcg, "vs_default": versus}
    return found


def run_dataset(name: str, threads: int) -> dict[str, Any]:
    settings = built_settings(name)
    if settings is None:
        return {"dataset": name, "skipped": f"no data at {DATA_DIRS[name]}"}
    data = load_ranking_data(settings)
    registry = settings.registry
    base = TrainParams.from_settings(settings, thread_count=threads, compare=False)
    train, valid, test = data.split("train"), data.split("valid"), data.split("test")
    weights = {c.name: c.weight for c in registry.canvases}
    budget = max(1, int(BUDGET * train["request_id"].nunique()))
    strategies = ["traffic", "equal"] + (["weights"] if len(set(weights.values())) > 1 else [])
    started = time.perf_counter()
    scores: dict[str, dict[str, Any]] = {"valid": {}, "test": {}}
    kept_requests: dict[str, dict[str, int]] = {}
    for strategy in strategies:
        stratification = Stratification.model_validate(
            {"strategy": strategy, "budget": budget, "seed": registry.stratification.seed}
        )
        rows = kept(train, stratification, weights)
        kept_requests[strategy] = (
            rows.groupby("task_type")["request_id"].nunique().astype(int).to_dict()
        )
        for loss_weights in WEIGHTS:
            kind = f"{strategy}, {loss_weights}"
            params = dataclasses.replace(base, canvas_weights=loss_weights)
            model = fit_ranker("unified", rows, valid, data.features, data.categorical, params)
            scores["valid"][kind] = model.predict(valid)
            scores["test"][kind] = model.predict(test)
            print(f"{name}: {kind} fitted", flush=True)
    return {
        "dataset": name,
        "budget": budget,
        "train_requests": int(train["request_id"].nunique()),
        "kept_requests": kept_requests,
        "seconds": round(time.perf_counter() - started, 1),
        "valid": evaluate(valid, scores["valid"], base.random_seed),
        "test": evaluate(test, scores["test"], base.random_seed),
    }


def write_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Stratification at a fixed budget, per canvas",
        "",
        f"Run {report['created_at']} on {report['machine']}, "
        "`.venv/bin/python benchmarks/stratification.py`. The unified model trained on "
        f"{BUDGET:.0%} of each dataset's training requests, kept by each strategy, with each "
        "canvas weighting in the loss; NDCG@10 per canvas on the full split, and the paired "
        f"difference with the default ({DEFAULT}) with its 95% interval (better / tie / worse). "
        "Choose on **valid**; test confirms.",
        "",
    ]
    for run in report["runs"]:
        lines += [f"## {run['dataset']}", ""]
        if "skipped" in run:
            lines += [f"Skipped: {run['skipped']}.", ""]
            continue
        kept_text = "; ".join(
            f"{strategy}: " + ", ".join(f"{c} {n:,}" for c, n in counts.items())
            for strategy, counts in run["kept_requests"].items()
        )
        lines += [
            f"Budget {run['budget']:,} of {run['train_requests']:,} training requests. "
            f"Kept per canvas: {kept_text}. {run['seconds']:.0f} s.",
            "",
        ]
        for split in ("valid", "test"):
            canvases = run[split]
            kinds = list(next(iter(canvases.values()))["ndcg"])
            lines += [
                f"**{split} split**",
                "",
                "| variant | " + " | ".join(canvases) + " | worse / better than default |",
                "| --- | " + " | ".join("---" for _ in canvases) + " | --- |",
            ]
            for kind in kinds:
                cells, worse, better = [], 0, 0
                for cell in canvases.values():
                    value = cell["ndcg"][kind]
                    d = cell["vs_default"].get(kind)
                    if d is None:
                        cells.append(f"{value:.3f}")
                        continue
                    worse += d["high"] < 0
                    better += d["low"] > 0
                    cells.append(f"{value:.3f} ({d['delta']:+.3f})")
                tally = "default" if kind == DEFAULT else f"{worse} / {better}"
                lines.append(f"| {kind} | " + " | ".join(cells) + f" | {tally} |")
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    report = {
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {args.threads} threads",
        "runs": [run_dataset(name, args.threads) for name in args.datasets],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "stratification" if args.datasets == list(DATASETS) else "stratification_partial"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(write_markdown(report) + "\n")
    print(write_markdown(report))


if __name__ == "__main__":
    main()
