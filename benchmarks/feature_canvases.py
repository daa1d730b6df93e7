"""Which canvases is a project's own feature model for? Measured on the VALID split.

A feature registered without `canvases:` reaches every canvas; with `canvases: [a, b]` the others
get its declared default (the mart's assembly does exactly that). For one feature model of an
example project, this trains the unified model (the project's training settings) with the
feature on every canvas, on each canvas alone, and on none, and reports NDCG@10 per canvas on the
valid split with the paired 95% interval against "none" (what the feature adds there). The test
split is not touched, so the choice written into the project's registry is not fitted to it.

    make quality      # builds benchmarks/work/quality/<project>/unirank.duckdb
    .venv/bin/python benchmarks/feature_canvases.py movielens int_features__ratings_before

Prints one JSON line per variation and writes benchmarks/results/feature_canvases.md.
"""

from __future__ import annotations

import argparse
import json
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

RESULTS = ROOT / "benchmarks" / "results" / "feature_canvases.md"


def run(project: str, model: str, threads: int) -> list[dict[str, Any]]:
    work = WORK / project
    settings = load_settings(PROJECTS[project], duckdb_path=work / "unirank.duckdb")
    feature = next(f for f in settings.registry.feature_models if f.model == model)
    params = TrainParams.from_settings(settings, thread_count=threads, compare=False)
    data = load_ranking_data(settings)
    canvases = list(settings.registry.canvas_names)
    variations: dict[str, list[str]] = {"every canvas": canvases}
    variations.update({f"{c} only": [c] for c in canvases})
    variations["none"] = []
    scores: dict[str, Any] = {}
    for name, kept in variations.items():
        frame = data.frame.copy()
        outside = ~frame["task_type"].isin(kept)
        for column in feature.columns:
            frame.loc[outside, column.name] = column.default
        train, valid = frame[frame["split"] == "train"], frame[frame["split"] == "valid"]
        fitted = fit_ranker(name, train, valid, data.features, data.categorical, params)
        scores[name] = fitted.predict(valid)
        print(f"{project} {model}: {name} trained ({fitted.best_iteration} trees)", file=sys.stderr)
    valid = data.frame[data.frame["split"] == "valid"]
    rows = []
    for canvas in canvases:
        mask = (valid["task_type"] == canvas).to_numpy()
        compared = evaluate.compare_models(
            canvas,
            valid["label"].to_numpy(dtype=float)[mask],
            valid["request_id"].to_numpy()[mask],
            {k: v[mask] for k, v in scores.items()},
            reference="none",
            n_resamples=1000,
        )
        for name in variations:
            value = compared.models[name].metrics["ndcg@10"].value
            delta = None
            if name != "none":
                # compare_models gives reference - other; we want other - reference
                iv = compared.deltas[name]["ndcg@10"]
                delta = [-iv.value, -iv.high, -iv.low]
            rows.append(
                {
                    "project": project,
                    "feature_model": model,
                    "variation": name,
                    "canvas": canvas,
                    "requests": compared.n_requests,
                    "ndcg@10": round(value, 4),
                    "vs_none": None if delta is None else [round(d, 4) for d in delta],
                }
            )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Which canvases a project's own feature is for (valid split)",
        "",
        "Reproduce: `.venv/bin/python benchmarks/feature_canvases.py PROJECT FEATURE_MODEL` after "
        "`make quality` built the project's warehouse. NDCG@10 of the unified model on the valid "
        "split (the test split is not used), with the feature on the canvases of the variation "
        "and its declared default elsewhere; in brackets the paired 95% interval of the "
        "difference against the model without the feature (`none`).",
        "",
    ]
    for (project, model), group in _grouped(rows).items():
        canvases = list(dict.fromkeys(r["canvas"] for r in group))
        lines += [
            f"## {project}: {model}",
            "",
            "| variation | " + " | ".join(f"{c} ({_requests(group, c)})" for c in canvases) + " |",
            "| --- | " + " | ".join("---" for _ in canvases) + " |",
        ]
        for variation in dict.fromkeys(r["variation"] for r in group):
            cells = []
            for canvas in canvases:
                row = next(
                    r for r in group if r["variation"] == variation and r["canvas"] == canvas
                )
                cell = f"{row['ndcg@10']:.3f}"
                if row["vs_none"] is not None:
                    value, low, high = row["vs_none"]
                    word = "**better**" if low > 0 else "worse" if high < 0 else "tie"
                    cell += f" ({value:+.3f} [{low:+.3f}, {high:+.3f}] {word})"
                cells.append(cell)
            lines.append(f"| {variation} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _grouped(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["project"], row["feature_model"]), []).append(row)
    return groups


def _requests(group: list[dict[str, Any]], canvas: str) -> str:
    return f"{next(r['requests'] for r in group if r['canvas'] == canvas):,} requests"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("project", choices=sorted(PROJECTS))
    parser.add_argument("feature_model")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = run(args.project, args.feature_model, args.threads)
    for row in rows:
        print(json.dumps(row))
    store = RESULTS.with_suffix(".json")
    kept = [
        r
        for r in (json.loads(store.read_text()) if store.exists() else [])
        if (r["project"], r["feature_model"]) != (args.project, args.feature_model)
    ]
    store.write_text(json.dumps(kept + rows, indent=1) + "\n")
    RESULTS.write_text(markdown(kept + rows))
    print(RESULTS)


if __name__ == "__main__":
    main()
