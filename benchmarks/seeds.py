"""How much of a per-canvas difference is training randomness? The unified model over seeds.

The quality benchmark trains every model once (random_seed 0); its 95% intervals resample the
test requests, not the training. This trains the unified model of a project again with other
seeds - with the project's own feature models and without them - on the warehouse the quality
benchmark built, and reports NDCG@10 per canvas on the test split for each seed, so a
difference can be read against the spread between seeds.

    make quality      # builds benchmarks/work/quality/<project>/unirank.duckdb
    .venv/bin/python benchmarks/seeds.py movielens diginetica --seeds 0 1 2 3

Writes benchmarks/results/seeds.md and seeds.json (a re-run replaces the projects it ran).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import PROJECTS, WORK  # noqa: E402

from ranker import evaluate  # noqa: E402
from ranker.config import load_settings  # noqa: E402
from ranker.dataset import load_ranking_data  # noqa: E402
from ranker.train import TrainParams, fit_ranker  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def run(project: str, seeds: list[int], threads: int) -> list[dict[str, Any]]:
    settings = load_settings(PROJECTS[project], duckdb_path=WORK / project / "unirank.duckdb")
    own = {c.name for f in settings.registry.feature_models if not f.builtin for c in f.columns}
    data = load_ranking_data(settings)
    train, valid, test = data.split("train"), data.split("valid"), data.split("test")
    base = TrainParams.from_settings(settings, thread_count=threads, compare=False)
    variants = {"with its own features": data.features}
    if own:
        variants["without them"] = tuple(f for f in data.features if f not in own)
    rows = []
    for seed in seeds:
        params = dataclasses.replace(base, random_seed=seed)
        for name, features in variants.items():
            scores = fit_ranker(name, train, valid, features, data.categorical, params).predict(
                test
            )
            row: dict[str, Any] = {"project": project, "seed": seed, "features": name}
            for canvas in settings.registry.canvas_names:
                mask = (test["task_type"] == canvas).to_numpy()
                per_request = evaluate.per_request_metrics(
                    test["label"].to_numpy(float)[mask],
                    scores[mask],
                    test["request_id"].to_numpy()[mask],
                )
                row[canvas] = round(float(per_request["ndcg@10"].mean()), 4)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# The unified model over training seeds (test split, NDCG@10)",
        "",
        "Reproduce: `.venv/bin/python benchmarks/seeds.py PROJECT ... --seeds 0 1 2 3` after "
        "`make quality` built the warehouses. The unified model with the project's training "
        "settings, trained with each seed, with and without the project's own feature models; "
        "the quality benchmark's table is seed 0.",
        "",
    ]
    for project in dict.fromkeys(r["project"] for r in rows):
        group = [r for r in rows if r["project"] == project]
        canvases = [k for k in group[0] if k not in ("project", "seed", "features")]
        lines += [
            f"## {project}",
            "",
            "| features | seed | " + " | ".join(canvases) + " |",
            "| --- | ---: | " + " | ".join("---:" for _ in canvases) + " |",
        ]
        for row in group:
            lines.append(
                f"| {row['features']} | {row['seed']} | "
                + " | ".join(f"{row[c]:.3f}" for c in canvases)
                + " |"
            )
        variants = list(dict.fromkeys(r["features"] for r in group))
        for variant in variants:
            values = {c: [r[c] for r in group if r["features"] == variant] for c in canvases}
            lines.append(
                f"| {variant}: mean (min-max) | | "
                + " | ".join(
                    f"{statistics.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})" for v in values.values()
                )
                + " |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("projects", nargs="+", choices=sorted(PROJECTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    store = RESULTS / "seeds.json"
    rows = [
        r
        for r in (json.loads(store.read_text()) if store.exists() else [])
        if r["project"] not in args.projects
    ]
    for project in args.projects:
        rows += run(project, args.seeds, args.threads)
    store.write_text(json.dumps(rows, indent=1) + "\n")
    (RESULTS / "seeds.md").write_text(markdown(rows))
    print(RESULTS / "seeds.md")


if __name__ == "__main__":
    main()
