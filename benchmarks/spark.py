"""DuckDB vs Spark local mode on one machine: `dbt build`, reading the mart for training, scoring.

Reproduce (from the project folder, after `make test` created .venv with the spark extra):

    .venv/bin/python benchmarks/spark.py                      # 250k and 1M impression rows
    .venv/bin/python benchmarks/spark.py --rows 250000 1000000 2000000

For each size it generates the logs (seed 7), then on each engine runs the whole pipeline with
the same vars and measures, each as its own process: wall time and peak resident memory of the
whole process tree, sampled every 0.2 s (so the PySpark JVM, a child of Python, is included):

- `dbt build` (every model and every dbt test; on Spark including the session's start);
- reading `ranking_examples` into pandas as training does (ranker.dataset.load_ranking_data);
- `unirank-cli score` with the same model (trained once per size on DuckDB, 100 trees).

Spark also gets `spark_start_seconds`: starting a session and running `select 1`, the fixed cost
every Spark command pays here. Writes benchmarks/results/spark.{json,md}; work files go to
benchmarks/work/spark (ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "spark"
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
THREADS = 2

LOAD_MART = """
import sys, time
from ranker.config import load_settings
from ranker.dataset import load_ranking_data
settings = load_settings(sys.argv[1], target=sys.argv[2])
started = time.perf_counter()
data = load_ranking_data(settings)
print("rows", len(data.frame), "seconds", round(time.perf_counter() - started, 2), file=sys.stderr)
"""
START_SPARK = """
import sys
from ranker.config import load_settings
from ranker.spark import session
session(load_settings(sys.argv[1], target="spark")).sql("select 1").collect()
"""


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def _tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants (the PySpark JVM included)."""
    children, total, stack = _children(), 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def measure(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Wall time and peak resident memory of the whole process tree (sampled every 0.2 s)."""
    started = time.perf_counter()
    # Output goes to a file, not a pipe: a pipe nobody drains while we poll fills up and blocks
    # the JVM's logging (and with it the whole build).
    with tempfile.TemporaryFile(mode="w+") as output:
        with subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, text=True
        ) as process:
            peak = 0
            while process.poll() is None:
                peak = max(peak, _tree_rss_kib(process.pid))
                time.sleep(0.2)
        wall = time.perf_counter() - started
        output.seek(0)
        tail = output.read()[-3000:]
    if process.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{tail}")
    return {"wall_seconds": round(wall, 2), "peak_rss_mib": round(peak / 1024, 1)}


def dbt(args: list[str], target: str, overrides: dict[str, Any]) -> list[str]:
    return [
        str(BIN / "dbt"),
        *args,
        "--project-dir",
        str(ROOT),
        "--profiles-dir",
        str(ROOT),
        "--target",
        target,
        "--vars",
        json.dumps(overrides),
    ]


def run(rows: int) -> dict[str, Any]:
    work = WORK / str(rows)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    logs = work / "logs"
    env = dict(
        os.environ,
        UNIRANK_DUCKDB_PATH=str(work / "duck" / "bench.duckdb"),
        UNIRANK_SPARK_DIR=str(work / "spark"),
        UNIRANK_ARTIFACTS_DIR=str(work / "artifacts"),
        UNIRANK_REPORTS_DIR=str(work / "reports"),
        DBT_TARGET_PATH=str(work / "target"),
        DBT_LOG_PATH=str(work / "logs_dbt"),
    )
    (work / "duck").mkdir()
    subprocess.run(
        [str(BIN / "unirank-cli"), "generate", "--rows", str(rows), "--out", str(logs)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    overrides = {"demo_source": "parquet", "demo_path": str(logs)}
    vars_text = json.dumps(overrides)
    result: dict[str, Any] = {
        "rows_requested": rows,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_average_before": round(os.getloadavg()[0], 2),
    }
    for engine in ("duckdb", "spark"):
        build = measure(dbt(["build"], engine, overrides), env)
        load = measure([sys.executable, "-c", LOAD_MART, str(ROOT), engine], env)
        if engine == "duckdb":
            subprocess.run(
                [
                    str(BIN / "unirank-cli"),
                    "train",
                    "--iterations",
                    "100",
                    "--learning-rate",
                    "0.1",
                    "--no-compare",
                    "--no-reports",
                    "--threads",
                    str(THREADS),
                    "--vars",
                    vars_text,
                ],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
        score = measure(
            [str(BIN / "unirank-cli"), "score", "--target", engine, "--vars", vars_text], env
        )
        result[engine] = {
            "dbt_build_seconds": build["wall_seconds"],
            "dbt_build_peak_rss_mib": build["peak_rss_mib"],
            "load_mart_seconds": load["wall_seconds"],
            "score_seconds": score["wall_seconds"],
            "score_peak_rss_mib": score["peak_rss_mib"],
        }
    result["spark"]["spark_start_seconds"] = measure(
        [sys.executable, "-c", START_SPARK, str(ROOT)], env
    )["wall_seconds"]
    sizes = _sizes(env)
    result.update(sizes)
    shutil.rmtree(work)
    return result


def _sizes(env: dict[str, str]) -> dict[str, int]:
    import duckdb

    with duckdb.connect(env["UNIRANK_DUCKDB_PATH"], read_only=True) as con:
        impressions, mart, candidates = con.execute(
            "select (select count(*) from stg_demo__impressions), "
            "(select count(*) from ranking_examples), (select count(*) from serving_candidates)"
        ).fetchall()[0]
    return {
        "impressions": int(impressions),
        "ranking_examples_rows": int(mart),
        "serving_candidate_rows": int(candidates),
    }


def _ratio(spark: float, duck: float) -> str:
    return f"{spark / duck:.1f}x"


def write_report(runs: list[dict[str, Any]]) -> None:
    import duckdb
    import pyspark

    measured_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report = {
        "benchmark": "DuckDB vs Spark local mode (dbt build, mart load, scoring), one machine",
        "measured_at": measured_at,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "pyspark": pyspark.__version__,
        },
        "runs": runs,
    }
    (RESULTS / "spark.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# DuckDB vs Spark local mode (one machine)",
        "",
        f"Measured {measured_at} on {os.cpu_count()} CPUs, DuckDB {duckdb.__version__}, "
        f"PySpark {pyspark.__version__} (`local[*]`, driver memory 4g), Java 17. Each step is its "
        "own process, wall time; Spark's include starting its session. Reproduce: "
        "`.venv/bin/python benchmarks/spark.py` (`--rows N ...` re-measures those sizes and keeps "
        "the others' committed results).",
        "",
        "| impressions | mart rows | candidates | step | DuckDB (s) | Spark (s) | Spark / DuckDB |",
        "| ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in runs:
        d, s = r["duckdb"], r["spark"]
        for label, key in (
            ("`dbt build` (all models and tests)", "dbt_build_seconds"),
            ("read the mart into pandas (training's load)", "load_mart_seconds"),
            ("`unirank-cli score`", "score_seconds"),
        ):
            lines.append(
                f"| {r['impressions']:,} | {r['ranking_examples_rows']:,} | "
                f"{r['serving_candidate_rows']:,} | {label} | {d[key]} | {s[key]} | "
                f"{_ratio(s[key], d[key])} |"
            )
    lines += [
        "",
        "| impressions | measured at | load average before | Spark session start (s) | dbt build peak RSS DuckDB / Spark (MiB) | score peak RSS DuckDB / Spark (MiB) |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        d, s = r["duckdb"], r["spark"]
        load = r.get("load_average_before")
        lines.append(
            f"| {r['impressions']:,} | {r.get('measured_at', measured_at)} | "
            f"{'-' if load is None else load} | {s['spark_start_seconds']} | "
            f"{d['dbt_build_peak_rss_mib']} / {s['dbt_build_peak_rss_mib']} | "
            f"{d['score_peak_rss_mib']} / {s['score_peak_rss_mib']} |"
        )
    if len(runs) >= 2:
        first, last = runs[0], runs[-1]
        scale = (last["impressions"] - first["impressions"]) / 1e6
        lines += [
            "",
            "Marginal cost per extra million impressions, between the smallest and largest size:",
            "",
        ]
        for label, key in (("dbt build", "dbt_build_seconds"), ("score", "score_seconds")):
            slope = {
                engine: (last[engine][key] - first[engine][key]) / scale
                for engine in ("duckdb", "spark")
            }
            lines.append(
                f"- {label}: DuckDB {slope['duckdb']:.1f} s, Spark {slope['spark']:.1f} s "
                f"per million impressions"
            )
    lines += [
        "",
        "Peak RSS is of the whole process tree (for Spark: Python, the JVM and its Python "
        "workers). A load average above about 0.5 before a size means other work shared the "
        "cores: both engines' times are inflated, the ratio less so.",
    ]
    (RESULTS / "spark.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="*", default=[250_000, 1_000_000])
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    committed = RESULTS / "spark.json"
    runs = {  # other sizes' committed results are kept
        r["rows_requested"]: r
        for r in (json.loads(committed.read_text())["runs"] if committed.exists() else [])
    }
    for rows in args.rows:
        print(f"benchmarking DuckDB and Spark at {rows:,} impression rows ...", flush=True)
        runs[rows] = run(rows)
        print(json.dumps(runs[rows]), flush=True)
        write_report([runs[r] for r in sorted(runs)])  # a later size's failure loses nothing


if __name__ == "__main__":
    main()
