"""Canvas weights in the loss: which to use, per project, chosen on the valid split.

The registry's `training.canvas_weights` sets each training request's weight in YetiRank's loss:
`none` (every request alike: a canvas counts by its number of requests), `sqrt` (a canvas's total
weight grows with the square root of its requests) or `balanced` (every canvas the same total).
For each dataset (the demo, examples/movielens, examples/diginetica) this trains the unified
model with each setting on the same rows and scores it per canvas on the valid split (where
settings are chosen) and the test split, next to the bespoke models (one per canvas, which
weights do not change), all paired on the same requests. It repeats that at extreme imbalance:
the canvas with the fewest training requests keeps 5% of them (by request id, as in
benchmarks/learning_curve.py), where a large weight on a few requests can pull the one model
off course.

Reproduce (about 15 minutes on 2 cores; reuses the warehouses of `make quality`):

    .venv/bin/python benchmarks/weighting.py
    .venv/bin/python benchmarks/weighting.py --datasets demo

Writes benchmarks/results/weighting.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from learning_curve import request_share  # noqa: E402
from quality import DATA_DIRS, built_settings, paired_ndcg  # noqa: E402

from ranker.dataset import load_ranking_data  # noqa: E402
from ranker.train import TrainParams, fit_ranker  # noqa: E402

WEIGHTS = ("none", "sqrt", "balanced")
DATASETS = ("demo", "movielens", "diginetica")
RESULTS = ROOT / "benchmarks" / "results"
SCARCE = 0.05


def evaluate(
    name: str, rows: pd.DataFrame, models: dict[str, Any], canvases: list[str], seed: int
) -> dict[str, Any]:
    """Per canvas: NDCG@10 of every model and each unified variant minus bespoke (paired)."""
    found: dict[str, Any] = {}
    for canvas in canvases:
        part = rows[rows["task_type"] == canvas]
        scores = {kind: model.predict(part) for kind, model in models.items()}
        bespoke = models.get(f"bespoke:{canvas}")
        if bespoke is not None:
            scores = {k: v for k, v in scores.items() if not k.startswith("bespoke:")}
            scores["bespoke"] = bespoke.predict(part)
        else:
            scores = {k: v for k, v in scores.items() if not k.startswith("bespoke:")}
        requests, ndcg, versus = paired_ndcg(canvas, part, scores, "bespoke", seed)
        found[canvas] = {"requests": requests, "ndcg": ndcg, "vs_bespoke": versus}
    return found


def run_dataset(name: str, threads: int, log: Any) -> dict[str, Any]:
    settings = built_settings(name)
    if settings is None:
        return {"dataset": name, "skipped": f"no data at {DATA_DIRS[name]}"}
    data = load_ranking_data(settings)
    base = TrainParams.from_settings(settings, thread_count=threads, compare=False)
    train, valid, test = data.split("train"), data.split("valid"), data.split("test")
    canvases = [c for c in settings.registry.canvas_names if (test["task_type"] == c).any()]
    started = time.perf_counter()

    def fit(kind: str, rows: pd.DataFrame, valid_rows: pd.DataFrame, weights: str) -> Any:
        params = dataclasses.replace(base, canvas_weights=weights)
        return fit_ranker(kind, rows, valid_rows, data.features, data.categorical, params)

    runs: dict[str, Any] = {}
    smallest = min(
        canvases, key=lambda c: train.loc[train["task_type"] == c, "request_id"].nunique()
    )
    scarce = train[(train["task_type"] != smallest) | (request_share(train["request_id"]) < SCARCE)]
    for setting, rows in (("all data", train), (f"{smallest} at {SCARCE:.0%}", scarce)):
        models: dict[str, Any] = {}
        for canvas in canvases:
            mine = rows[rows["task_type"] == canvas]
            models[f"bespoke:{canvas}"] = fit(
                "bespoke", mine, valid[valid["task_type"] == canvas], "none"
            )
        for weights in WEIGHTS:
            models[f"unified ({weights})"] = fit("unified", rows, valid, weights)
            log(f"{name} {setting}: unified ({weights}) fitted")
        runs[setting] = {
            "valid": evaluate(name, valid, models, canvases, base.random_seed),
            "test": evaluate(name, test, models, canvases, base.random_seed),
            "train_requests": {
                c: int(rows.loc[rows["task_type"] == c, "request_id"].nunique()) for c in canvases
            },
        }
    return {
        "dataset": name,
        "project_canvas_weights": base.canvas_weights,
        "smallest": smallest,
        "seconds": round(time.perf_counter() - started, 1),
        "runs": runs,
    }


def write_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Canvas weights in the loss, per project",
        "",
        f"Run {report['created_at']} on {report['machine']}, "
        "`.venv/bin/python benchmarks/weighting.py`. NDCG@10 per canvas; each unified variant "
        "minus the canvas's bespoke model with its paired 95% interval (better / tie / worse). "
        "Choose on **valid**; test is shown to confirm.",
        "",
    ]
    for run in report["runs"]:
        lines.append(f"## {run['dataset']}")
        lines.append("")
        if "skipped" in run:
            lines += [f"Skipped: {run['skipped']}.", ""]
            continue
        lines.append(
            f"The project declares `canvas_weights: {run['project_canvas_weights']}`; the smallest "
            f"canvas is {run['smallest']}. {run['seconds']:.0f} s."
        )
        lines.append("")
        for setting, result in run["runs"].items():
            for split in ("valid", "test"):
                lines.append(
                    f"**{setting}, {split} split** (train requests: "
                    + ", ".join(f"{c} {n:,}" for c, n in result["train_requests"].items())
                    + ")"
                )
                lines.append("")
                lines.append(
                    "| canvas | bespoke | "
                    + " | ".join(f"unified ({w})" for w in WEIGHTS)
                    + " | best on this split |"
                )
                lines.append("| --- | ---: | " + " | ".join("---" for _ in WEIGHTS) + " | --- |")
                for canvas, cell in result[split].items():
                    cells = []
                    for w in WEIGHTS:
                        kind = f"unified ({w})"
                        d = cell["vs_bespoke"][kind]
                        word = "better" if d["low"] > 0 else "worse" if d["high"] < 0 else "tie"
                        cells.append(
                            f"{cell['ndcg'][kind]:.3f} ({d['delta']:+.3f} "
                            f"[{d['low']:+.3f}, {d['high']:+.3f}] {word})"
                        )
                    best = max(WEIGHTS, key=lambda w: cell["ndcg"][f"unified ({w})"])
                    lines.append(
                        f"| {canvas} | {cell['ndcg']['bespoke']:.3f} | "
                        + " | ".join(cells)
                        + f" | {best} |"
                    )
                lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    def log(line: str) -> None:
        print(line, flush=True)

    runs = [run_dataset(name, args.threads, log) for name in args.datasets]
    previous = RESULTS / "weighting.json"
    if previous.exists():
        kept = [
            r for r in json.loads(previous.read_text())["runs"] if r["dataset"] not in args.datasets
        ]
        runs = sorted([*kept, *runs], key=lambda r: DATASETS.index(r["dataset"]))
    report = {
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {args.threads} threads",
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "weighting.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "weighting.md").write_text(write_markdown(report))
    print(write_markdown(report))


if __name__ == "__main__":
    main()
