"""Row counts per project and canvas, for docs/datasets.md.

Reads the warehouses `benchmarks/quality.py` built (benchmarks/work/quality/<project>/) and prints,
per canvas: requests and rows of its label model (before stratification), the positive share, and
the requests per split in the ranking mart. Run after the quality benchmark:

    .venv/bin/python benchmarks/dataset_counts.py [--datasets movielens diginetica]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import PROJECTS, WORK  # noqa: E402

from ranker.config import load_settings  # noqa: E402


def counts_table(dataset: str, work: Path = WORK) -> str:
    warehouse = work / dataset / "unirank.duckdb"
    if not warehouse.exists():
        return f"{dataset}: no warehouse at {warehouse} (run benchmarks/quality.py first)"
    settings = load_settings(PROJECTS[dataset], duckdb_path=warehouse)
    lines = [
        f"{dataset} ({warehouse})",
        "",
        "| canvas | requests (label prep) | rows | positive share | mart train / valid / test requests |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for canvas in settings.registry.canvases:
            requests, rows, positives = con.execute(
                f"select count(distinct request_id), count(*), avg((label > 0)::int) "
                f"from {canvas.label_model}"
            ).fetchone() or (0, 0, 0.0)
            per_split = dict(
                con.execute(
                    "select split, count(distinct request_id) from ranking_examples "
                    "where task_type = ? group by split",
                    [canvas.name],
                ).fetchall()
            )
            splits = " / ".join(f"{per_split.get(s, 0):,}" for s in ("train", "valid", "test"))
            lines.append(
                f"| {canvas.name} | {requests:,} | {rows:,} | {positives:.1%} | {splits} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(PROJECTS), default=list(PROJECTS))
    parser.add_argument("--work", type=Path, default=WORK, help="the quality benchmark's folder")
    args = parser.parse_args()
    print("\n\n".join(counts_table(d, args.work) for d in args.datasets))


if __name__ == "__main__":
    main()
