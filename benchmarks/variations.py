"""Unified vs bespoke under training variations, on a warehouse the quality benchmark built.

Used to investigate where the unified model loses to the per-canvas models (docs/training.md).
Each variation changes TrainParams for every model compared (unified, bespoke, no_task: same
budget), trains on a copy of the warehouse and prints one JSON line per variation: NDCG@10 of
unified and bespoke per canvas and the paired 95% interval of their difference.

    make quality    # builds benchmarks/work/quality/<project>/unirank.duckdb
    .venv/bin/python benchmarks/variations.py --dataset diginetica \\
        base='{}' depth8='{"depth": 8}' ctr='{"one_hot_max_size": 1}' \\
        all_negatives='{"max_negatives_per_request": null}'

With ``--split valid`` the models are compared on the valid split instead (the split early
stopping also watches; the test split is not touched), which is where a per-dataset setting is
chosen before its test numbers are looked at.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import PROJECTS  # noqa: E402

from ranker.config import load_settings  # noqa: E402
from ranker.train import TrainParams, evaluation_to_dict, train_and_evaluate  # noqa: E402

WORK = ROOT / "benchmarks" / "work" / "quality"


def run_variation(
    dataset: str, name: str, changes: dict[str, Any], work: Path, split: str = "test"
) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        warehouse = Path(scratch) / "unirank.duckdb"
        shutil.copy(work / dataset / "unirank.duckdb", warehouse)
        settings = load_settings(
            PROJECTS[dataset],
            duckdb_path=warehouse,
            artifacts_dir=Path(scratch) / "artifacts",
            reports_dir=Path(scratch) / "reports",
        )
        params = TrainParams.from_settings(settings, thread_count=2, compare=True)
        params = dataclasses.replace(params, **changes)
        evaluations = train_and_evaluate(
            settings, params, write_reports=False, evaluate_on=split
        ).evaluations
    out: dict = {"dataset": dataset, "variation": name, "changes": changes, "split": split}
    for evaluation in map(evaluation_to_dict, evaluations):
        if evaluation["skipped"]:
            continue
        models, delta = evaluation["models"], evaluation["deltas_vs_unified"]["bespoke"]["ndcg@10"]
        out[evaluation["task"]] = {
            "unified": round(models["unified"]["ndcg@10"]["value"], 4),
            "bespoke": round(models["bespoke"]["ndcg@10"]["value"], 4),
            "unified_minus_bespoke": [round(delta[k], 4) for k in ("value", "low", "high")],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True, choices=sorted(PROJECTS))
    parser.add_argument("--work", type=Path, default=WORK, help="the quality benchmark's folder")
    parser.add_argument(
        "--split", choices=("test", "valid"), default="test", help="where the models are compared"
    )
    parser.add_argument("variations", nargs="+", help="name=JSON of TrainParams changes")
    args = parser.parse_args()
    for spec in args.variations:
        name, _, changes = spec.partition("=")
        result = run_variation(args.dataset, name, json.loads(changes), args.work, args.split)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
