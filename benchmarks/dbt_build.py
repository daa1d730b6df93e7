"""dbt build benchmark: generate N impression rows, run the whole dbt pipeline on DuckDB.

Reproduce (from the project folder, after `make test` or `make demo` created .venv):

    .venv/bin/python benchmarks/dbt_build.py               # 1M and 10M rows
    .venv/bin/python benchmarks/dbt_build.py --rows 1000000

Writes benchmarks/results/dbt_build.json and .md. Work files go to benchmarks/work (ignored).
Peak memory is the max RSS of the measured process (dbt runs DuckDB in-process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work"
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent


def measure(command: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "measure.py"), *command],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    if result["returncode"] != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{result['stderr_tail']}")
    return result


def run(rows: int) -> dict[str, object]:
    logs = WORK / f"logs_{rows}"
    warehouse = WORK / f"bench_{rows}.duckdb"
    for path in (logs, warehouse):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    generate = measure(
        [str(BIN / "unirank-cli"), "generate", "--rows", str(rows), "--out", str(logs)]
    )
    env = dict(os.environ, UNIRANK_DUCKDB_PATH=str(warehouse))
    build = measure([str(BIN / "unirank-cli"), "build", "--logs", str(logs)], env=env)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        impressions = con.execute("select count(*) from stg_demo__impressions").fetchone()[0]  # type: ignore[index]
        mart_rows = con.execute("select count(*) from ranking_examples").fetchone()[0]  # type: ignore[index]
    warehouse.unlink()
    shutil.rmtree(logs)
    return {
        "rows_requested": rows,
        "impressions": impressions,
        "ranking_examples_rows": mart_rows,
        "generate_seconds": generate["wall_seconds"],
        "generate_peak_rss_mib": generate["peak_rss_mib"],
        "dbt_build_seconds": build["wall_seconds"],
        "dbt_build_peak_rss_mib": build["peak_rss_mib"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="*", default=[1_000_000, 10_000_000])
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs = []
    for rows in args.rows:
        print(f"benchmarking dbt build at {rows:,} impression rows ...", flush=True)
        runs.append(run(rows))
        print(json.dumps(runs[-1]), flush=True)
    report = {
        "benchmark": "dbt build (whole pipeline, all dbt tests) on DuckDB",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
        },
        "targets": {"10M_rows_seconds": 300, "10M_rows_peak_rss_mib": 8192},
        "runs": runs,
    }
    (RESULTS / "dbt_build.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# dbt build benchmark (DuckDB)",
        "",
        f"Measured {report['measured_at']} on {os.cpu_count()} CPUs, DuckDB {duckdb.__version__}. "
        "`unirank-cli build --logs <set>` runs every model and every dbt test. "
        "Reproduce: `.venv/bin/python benchmarks/dbt_build.py`.",
        "",
        "| impressions | mart rows | generate (s) | generate peak RSS (MiB) | dbt build (s) | dbt build peak RSS (MiB) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        lines.append(
            f"| {r['impressions']:,} | {r['ranking_examples_rows']:,} | {r['generate_seconds']} | "
            f"{r['generate_peak_rss_mib']} | {r['dbt_build_seconds']} | {r['dbt_build_peak_rss_mib']} |"
        )
    lines += [
        "",
        "Targets: 10M impression rows through the whole dbt pipeline in under 300 s with peak memory under 8 GiB.",
    ]
    (RESULTS / "dbt_build.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
