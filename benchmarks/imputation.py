"""Context imputation, measured: each canvas with and without its registry `impute` rules.

A canvas that lacks a context column gets its sentinel, so every feature that reads that column
(query_title_match, category_match, ...) is blank for it. Registry `impute` rules fill it from a
related value instead, point-in-time (docs/registry.md): the related canvas's query is its
source item's title, a category page's query is the category's name, a home request's category
is the user's top category before it. For each dataset (the demo, examples/movielens,
examples/diginetica) this builds the warehouse twice, with the rules in IMPUTATIONS and with
none, trains the unified model and one bespoke model per canvas on each with the project's own
settings, and compares every canvas's NDCG@10 with and without, paired on the same requests
(imputation changes context values, never which rows there are), on the valid split (where a
default is chosen) and on test.

Reproduce (about 20 minutes on 2 cores; builds its own warehouses under
benchmarks/work/imputation):

    .venv/bin/python benchmarks/imputation.py
    .venv/bin/python benchmarks/imputation.py --datasets demo

Writes benchmarks/results/imputation.{json,md}.
"""

from __future__ import annotations

import argparse
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

from quality import DATA_DIRS, PROJECTS, paired_ndcg  # noqa: E402

from ranker.build import run_dbt  # noqa: E402
from ranker.config import load_settings  # noqa: E402
from ranker.dataset import load_ranking_data  # noqa: E402
from ranker.train import TrainParams, fit_ranker  # noqa: E402

DATASETS = ("demo", "movielens", "diginetica")
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work" / "imputation"
# The rules measured per dataset: every canvas that lacks a column a rule can fill from what it
# has. The example projects declare these; the demo declares home's and related's (its titles
# and category names are random syllables, so a category's name says nothing as a query).
IMPUTATIONS: dict[str, dict[str, list[dict[str, str]]]] = {
    "demo": {
        "home": [{"column": "category", "rule": "user_top_category"}],
        "related": [{"column": "query_text", "rule": "source_item_title"}],
        "category": [{"column": "query_text", "rule": "category_name"}],
    },
    "movielens": {
        "home": [{"column": "category", "rule": "user_top_category"}],
        "related": [
            {"column": "query_text", "rule": "source_item_title"},
            {"column": "category", "rule": "source_item_category"},
        ],
        "category": [{"column": "query_text", "rule": "category_name"}],
        "search": [{"column": "category", "rule": "user_top_category"}],
    },
    "diginetica": {
        "home": [{"column": "category", "rule": "user_top_category"}],
        "related": [{"column": "category", "rule": "source_item_category"}],
    },
}
VARIANTS = ("without", "with")
KEYS = ["task_type", "request_id", "item_id"]


def variant_settings(name: str, variant: str) -> Any:
    """The dataset's project with its canvases' `impute` replaced by IMPUTATIONS (or none)."""
    overrides: dict[str, Any] = {}
    if name in DATA_DIRS:
        overrides[f"{name}_path"] = str(DATA_DIRS[name])
    project = load_settings(PROJECTS[name], overrides)
    rules = IMPUTATIONS[name] if variant == "with" else {}
    canvases = [
        {**c.model_dump(mode="json", exclude_none=True), "impute": rules.get(c.name, [])}
        for c in project.registry.canvases
    ]
    work = WORK / name / variant
    return load_settings(
        PROJECTS[name],
        {**overrides, "canvases": canvases},
        duckdb_path=work / "unirank.duckdb",
        artifacts_dir=work / "artifacts",
        reports_dir=work / "reports",
    )


def predictions(settings: Any, threads: int) -> tuple[pd.DataFrame, float]:
    """Valid and test rows with the unified and the bespoke model's scores, key-sorted."""
    started = time.perf_counter()
    run_dbt(settings, ["build"], echo=False)
    build_seconds = time.perf_counter() - started
    data = load_ranking_data(settings)
    params = TrainParams.from_settings(settings, thread_count=threads, compare=False)
    train, valid = data.split("train"), data.split("valid")
    rows = pd.concat([valid, data.split("test")]).sort_values(KEYS).reset_index(drop=True)
    unified = fit_ranker("unified", train, valid, data.features, data.categorical, params)
    rows["unified"] = unified.predict(rows)
    rows["bespoke"] = 0.0
    for canvas in rows["task_type"].unique():
        mine = rows["task_type"] == canvas
        model = fit_ranker(
            "bespoke",
            train[train["task_type"] == canvas],
            valid[valid["task_type"] == canvas],
            data.features,
            data.categorical,
            params,
        )
        rows.loc[mine, "bespoke"] = model.predict(rows[mine])
    return rows[[*KEYS, "split", "label", "unified", "bespoke"]], build_seconds


def compare(name: str, scored: dict[str, pd.DataFrame], seed: int) -> dict[str, Any]:
    """Per split and canvas, for the unified and the bespoke model: NDCG@10 without and with
    the rules, and with minus without with its paired 95% interval."""
    without, with_ = scored["without"], scored["with"]
    if not without[KEYS].equals(with_[KEYS]):
        raise SystemExit(f"{name}: the two builds hold different rows; imputation must not")
    found: dict[str, Any] = {}
    for split in ("valid", "test"):
        for canvas in sorted(without["task_type"].unique()):
            mine = (without["split"] == split) & (without["task_type"] == canvas)
            part = without[mine]
            cell: dict[str, Any] = {"requests": int(part["request_id"].nunique())}
            for model in ("unified", "bespoke"):
                _, ndcg, versus = paired_ndcg(
                    canvas,
                    part,
                    {"without": part[model].to_numpy(), "with": with_.loc[mine, model].to_numpy()},
                    "without",
                    seed,
                )
                cell[model] = {"without": ndcg["without"], "with": ndcg["with"], **versus["with"]}
            found.setdefault(split, {})[canvas] = cell
    return found


def run_dataset(name: str, threads: int) -> dict[str, Any]:
    if name in DATA_DIRS and not DATA_DIRS[name].exists():
        return {"dataset": name, "skipped": f"no data at {DATA_DIRS[name]}"}
    scored: dict[str, pd.DataFrame] = {}
    seconds: dict[str, float] = {}
    seed = 0
    for variant in VARIANTS:
        settings = variant_settings(name, variant)
        seed = TrainParams.from_settings(settings).random_seed
        scored[variant], seconds[variant] = predictions(settings, threads)
        print(f"{name} {variant}: built in {seconds[variant]:.0f} s, fitted", flush=True)
    return {
        "dataset": name,
        "rules": IMPUTATIONS[name],
        "build_seconds": seconds,
        "splits": compare(name, scored, seed),
    }


def word(delta: dict[str, float]) -> str:
    return "better" if delta["low"] > 0 else "worse" if delta["high"] < 0 else "tie"


def write_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Context imputation, per canvas",
        "",
        f"Run {report['created_at']} on {report['machine']}, "
        "`.venv/bin/python benchmarks/imputation.py`. NDCG@10 per canvas without and with the "
        "registry `impute` rules listed, for the unified model and the canvas's bespoke model; "
        "with minus without and its paired 95% interval (better / tie / worse). Choose on "
        "**valid**; test confirms.",
        "",
    ]
    for run in report["runs"]:
        lines += [f"## {run['dataset']}", ""]
        if "skipped" in run:
            lines += [f"Skipped: {run['skipped']}.", ""]
            continue
        rules = "; ".join(
            f"{canvas}: " + ", ".join(f"`{r['column']}` from `{r['rule']}`" for r in listed)
            for canvas, listed in run["rules"].items()
        )
        lines += [f"Rules: {rules}.", ""]
        for split, canvases in run["splits"].items():
            lines += [
                f"**{split} split**",
                "",
                "| canvas | requests | unified without | unified with | unified change | "
                "bespoke without | bespoke with | bespoke change |",
                "| --- | ---: | ---: | ---: | --- | ---: | ---: | --- |",
            ]
            for canvas, cell in canvases.items():
                parts = [canvas, f"{cell['requests']:,}"]
                for model in ("unified", "bespoke"):
                    d = cell[model]
                    parts += [
                        f"{d['without']:.3f}",
                        f"{d['with']:.3f}",
                        f"{d['delta']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] {word(d)}",
                    ]
                lines.append("| " + " | ".join(parts) + " |")
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
    stem = "imputation" if args.datasets == list(DATASETS) else "imputation_partial"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(write_markdown(report) + "\n")
    print(write_markdown(report))


if __name__ == "__main__":
    main()
