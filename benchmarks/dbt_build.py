"""dbt build benchmark: generate N impression rows, run the whole dbt pipeline on DuckDB.

For each size it runs `unirank-cli build --logs <set>` (every model, every dbt test) on unirank's
own project, and - on the same logs - on a copy of it that adds one feature model of its own, the
way a user does: one SQL file under models/features/ and one entry in the registry's `features`.
From dbt's run_results.json it reads each node's time, so the table says what the added feature
costs: its own model's query, against what the whole build grew by.

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
from typing import Any

import duckdb
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work"
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "models", "macros", "seeds", "tests/dbt")

# The feature a user adds (docs/own-data.md's example, on the demo's engagement history): the
# item's engagements earlier the same day, strictly before the probe.
FEATURE_MODEL = "int_features__item_engagements_today"
FEATURE_SQL = """
{{ config(materialized='table') }}

with

feature_probes as (
    select * from {{ ref('int_feature_probes') }}
),

engagements as (
    select * from {{ ref('int_demo__engagement_history') }}
),

final as (
    select
        feature_probes.request_id,
        feature_probes.item_id,
        count(engagements.item_id) as item_engagements_today
    from feature_probes
    left join engagements
        on engagements.item_id = feature_probes.item_id
        and engagements.engaged_at < feature_probes.requested_at
        and engagements.engaged_at >= date_trunc('day', feature_probes.requested_at)
    group by feature_probes.request_id, feature_probes.item_id
)

select * from final
"""


def measure(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "measure.py"), *command],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    if result["returncode"] != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{result['stderr_tail']}")
    return result


def project_with_feature(folder: Path) -> Path:
    """A copy of unirank's project that adds one feature model, as a user adds one."""
    if folder.exists():
        shutil.rmtree(folder)
    for name in PROJECT_FILES:
        source, target = ROOT / name, folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
    (folder / "models" / "features").mkdir(parents=True)
    (folder / "models" / "features" / f"{FEATURE_MODEL}.sql").write_text(FEATURE_SQL)
    config = yaml.safe_load((folder / "dbt_project.yml").read_text())
    config["vars"]["unirank"]["features"].append(
        {
            "model": FEATURE_MODEL,
            "columns": [{"name": "item_engagements_today", "type": "int", "default": 0}],
        }
    )
    (folder / "dbt_project.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def build(project: Path, logs: Path, warehouse: Path, target: Path) -> dict[str, Any]:
    """`unirank-cli build --logs` as a process, and each dbt node's time from run_results."""
    for path in (warehouse, target):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    env = dict(os.environ, UNIRANK_DUCKDB_PATH=str(warehouse), DBT_TARGET_PATH=str(target))
    command = [
        str(BIN / "unirank-cli"),
        "build",
        "--project-dir",
        str(project),
        "--logs",
        str(logs),
    ]
    result = measure(command, env=env)
    run_results = json.loads((target / "run_results.json").read_text())
    result["nodes"] = {
        r["unique_id"].split(".")[-1] if r["unique_id"].startswith("model.") else r["unique_id"]: (
            round(r["execution_time"], 2)
        )
        for r in run_results["results"]
    }
    return result


def run(rows: int) -> dict[str, Any]:
    logs = WORK / f"logs_{rows}"
    if logs.exists():
        shutil.rmtree(logs)
    generate = measure(
        [str(BIN / "unirank-cli"), "generate", "--rows", str(rows), "--out", str(logs)]
    )
    warehouse = WORK / f"bench_{rows}.duckdb"
    base = build(ROOT, logs, warehouse, WORK / f"target_{rows}")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        impressions = con.execute("select count(*) from stg_demo__impressions").fetchone()[0]  # type: ignore[index]
        mart_rows = con.execute("select count(*) from ranking_examples").fetchone()[0]  # type: ignore[index]
    warehouse.unlink()
    project = project_with_feature(WORK / "project_with_feature")
    added = build(project, logs, warehouse, WORK / f"target_{rows}_feature")
    warehouse.unlink()
    shutil.rmtree(logs)
    slowest = sorted(base["nodes"].items(), key=lambda kv: -kv[1])[:8]
    return {
        "rows_requested": rows,
        "impressions": impressions,
        "ranking_examples_rows": mart_rows,
        "generate_seconds": generate["wall_seconds"],
        "generate_peak_rss_mib": generate["peak_rss_mib"],
        "dbt_build_seconds": base["wall_seconds"],
        "dbt_build_cpu_seconds": base["cpu_seconds"],
        "dbt_build_peak_rss_mib": base["peak_rss_mib"],
        "slowest_nodes": dict(slowest),
        "with_feature": {
            "dbt_build_seconds": added["wall_seconds"],
            "dbt_build_peak_rss_mib": added["peak_rss_mib"],
            "feature_model_seconds": added["nodes"][FEATURE_MODEL],
            "nodes_seconds_sum": round(sum(added["nodes"].values()), 1),
            "changed_nodes": {
                name: [base["nodes"].get(name), seconds]
                for name, seconds in added["nodes"].items()
                if name in ("int_probe_features", "ranking_examples", "serving_candidates")
                or "feature_models" in name
            },
        },
        "nodes_seconds_sum": round(sum(base["nodes"].values()), 1),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# dbt build benchmark (DuckDB)",
        "",
        f"Measured {report['measured_at']} on {report['machine']['cpus']} CPUs, DuckDB "
        f"{report['machine']['duckdb']}. `unirank-cli build --logs <set>` runs every model and "
        "every dbt test (1 dbt thread, the profile's default). Reproduce: `.venv/bin/python benchmarks/dbt_build.py`.",
        "",
        "| impressions | mart rows | generate (s) | generate peak RSS (MiB) | dbt build (s) | dbt build CPU (s) | dbt build peak RSS (MiB) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['impressions']:,} | {r['ranking_examples_rows']:,} | {r['generate_seconds']} | "
            f"{r['generate_peak_rss_mib']} | {r['dbt_build_seconds']} | "
            f"{r.get('dbt_build_cpu_seconds', '-')} | {r['dbt_build_peak_rss_mib']} |"
        )
    lines += [
        "",
        "Targets: 10M impression rows through the whole dbt pipeline in at most 255 s (the "
        "measurement before the registry-driven features; aim: under 200 s) with peak memory "
        "under 8 GiB.",
        "",
        "## Slowest nodes (seconds, from dbt's run_results.json)",
        "",
    ]
    for r in report["runs"]:
        nodes = ", ".join(f"`{k}` {v}" for k, v in r["slowest_nodes"].items())
        lines.append(f"- {r['impressions']:,} impressions: {nodes}.")
    lines += [
        "",
        "## A feature of one's own: what it costs",
        "",
        f"The same logs built again by a copy of the project that adds `{FEATURE_MODEL}` (one "
        "model, one registry entry; the item's engagements earlier the same day). The feature's "
        "cost is its own model's query; the other nodes it touches are the assembly "
        "(`int_probe_features`: one more left join), the two marts (one more column) and the "
        "generic feature checks.",
        "",
        "| impressions | build (s) | with the feature (s) | difference (s) | the feature model's query (s) | nodes it changed (s, without -> with) |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in report["runs"]:
        f = r["with_feature"]
        changed = ", ".join(f"`{k}` {a} -> {b}" for k, (a, b) in f["changed_nodes"].items())
        lines.append(
            f"| {r['impressions']:,} | {r['dbt_build_seconds']} | {f['dbt_build_seconds']} | "
            f"{f['dbt_build_seconds'] - r['dbt_build_seconds']:+.1f} | "
            f"{f['feature_model_seconds']} | {changed} |"
        )
    return "\n".join(lines) + "\n"


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
            "platform": platform.platform(),
        },
        "targets": {
            "10M_rows_seconds": 255,
            "10M_rows_seconds_aim": 200,
            "10M_rows_peak_rss_mib": 8192,
        },
        "runs": runs,
    }
    (RESULTS / "dbt_build.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "dbt_build.md").write_text(markdown(report))


if __name__ == "__main__":
    main()
