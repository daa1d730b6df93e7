"""Report benchmark: what writing the HTML reports costs a `unirank-cli train` run, and their size.

Reproduce: `.venv/bin/python benchmarks/report.py` (about 4 minutes; `--reuse` keeps the built
workspace). It builds the demo project (committed seeds) into benchmarks/work/report with the
CLI, then times, with farm-bench (5 runs each, in turn, after one warm-up), the documented call
`unirank-cli train` (reports on, as `make demo` runs it) against `unirank-cli train --no-reports`
(both with `--force`, so every run publishes and writes its reports as a first train would). The
difference of the medians is what the reports cost the user; the issue's bound is a quarter of
the training time (the run without reports). It also records, for every run with reports, the
bytes of the pages (index plus one page per canvas) and the `report_seconds` the run measured
itself (from the models fitted to the pages written).

Writes benchmarks/results/report.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from reliability import CLI, Workspace  # noqa: E402

WORK = ROOT / "benchmarks" / "work" / "report"
RESULTS = ROOT / "benchmarks" / "results"
RUNS = 5
# The same measurement on main at 8ffe4a5 (Evidently's own HTML pages), 2026-11-30, this machine,
# one `train --force` run: four canvas pages of 4.57-4.62 MB and a 35 KB index; the run took
# 21.3 s of which 4.6 s fitting and about 15 s writing the pages.
BEFORE = {"bytes": 18_427_898, "report_seconds": 15.0, "total_seconds": 21.3}


def farm_bench(space: Workspace, a: list[str], b: list[str]) -> dict[str, Any]:
    command = [
        "farm-bench",
        "-n",
        str(RUNS),
        "--timeout",
        "1800",
        "--vs",
        " ".join(b),
        "--",
        *a,
    ]
    result = subprocess.run(command, env=space.env, capture_output=True, text=True)
    text = result.stdout + result.stderr
    found: dict[str, Any] = {"output": text}
    for key, label in (("a", "A wall s"), ("b", "B wall s"), ("ratio", "A/B wall")):
        match = re.search(rf"^{re.escape(label)}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", text, re.M)
        if match is None:
            raise SystemExit(f"farm-bench gave no {label!r}:\n{text[-2000:]}")
        found[key] = [float(v) for v in match.groups()]  # min, median, max
    for key, label in (("a_peak", "A peak MiB"), ("b_peak", "B peak MiB")):
        match = re.search(rf"^{re.escape(label)}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", text, re.M)
        found[key] = float(match.group(2)) if match else None
    return found


def report_runs(space: Workspace) -> list[dict[str, Any]]:
    """Per run that wrote reports: its pages' bytes and the seconds it measured itself."""
    runs = []
    for folder in sorted((space.work / "reports").glob("2*")):
        metadata = space.models / folder.name / "metadata.json"
        if not metadata.exists():
            continue
        timings = json.loads(metadata.read_text())["timings"]
        pages = {p.name: p.stat().st_size for p in folder.glob("*.html")}
        runs.append(
            {
                "version": folder.name,
                "bytes": sum(pages.values()),
                "largest_page": max(pages.values()),
                "pages": len(pages),
                "report_seconds": timings.get("report_seconds"),
                "fit_seconds": sum(v for k, v in timings.items() if k.endswith("_fit_seconds")),
                "total_seconds": timings.get("total_seconds"),
            }
        )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", action="store_true", help="reuse the built workspace")
    args = parser.parse_args()
    if shutil.which("farm-bench") is None:
        raise SystemExit("needs farm-bench (this machine's timing tool)")
    space = Workspace(WORK)
    if not (args.reuse and space.warehouse.exists()):
        shutil.rmtree(WORK, ignore_errors=True)
        WORK.mkdir(parents=True)
        space.check("build")
        print("setup: build done", flush=True)
    shutil.rmtree(space.work / "reports", ignore_errors=True)
    train = [str(CLI), "train", "--force", "--project-dir", str(ROOT)]
    timed = farm_bench(space, train, [*train, "--no-reports"])
    runs = report_runs(space)
    if not runs:
        raise SystemExit("no run wrote reports")
    with_reports, without = timed["a"][1], timed["b"][1]
    cost = with_reports - without
    result = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": "demo (committed seeds), 4 canvases",
        "train_seconds_median": with_reports,
        "train_no_reports_seconds_median": without,
        "wall_ratio_median": timed["ratio"][1],
        "report_cost_seconds": round(cost, 2),
        "report_cost_share_of_training": round(cost / without, 3),
        "peak_mib": {"reports": timed["a_peak"], "no_reports": timed["b_peak"]},
        "runs": runs,
        "bytes_median": statistics.median(r["bytes"] for r in runs),
        "report_seconds_median": statistics.median(r["report_seconds"] for r in runs),
        "before": BEFORE,
        "farm_bench": timed["output"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "report.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    kb = r["bytes_median"] / 1000
    before_mb = r["before"]["bytes"] / 1e6
    lines = [
        "# Report benchmark",
        "",
        f"Measured {r['measured_at']} on {r['data']}, this machine (2 cores), with "
        "`.venv/bin/python benchmarks/report.py`: farm-bench, 5 runs of each command in turn "
        "after a warm-up, medians.",
        "",
        "| | `train` (reports) | `train --no-reports` | reports cost |",
        "| --- | ---: | ---: | ---: |",
        f"| wall, median | {r['train_seconds_median']:.1f} s | "
        f"{r['train_no_reports_seconds_median']:.1f} s | {r['report_cost_seconds']:+.1f} s |",
        f"| wall, paired ratio (median of the 5 pairs) | {r['wall_ratio_median']:.3f} | 1 | "
        f"+{100 * (r['wall_ratio_median'] - 1):.0f}% of training |",
        f"| peak memory | {r['peak_mib']['reports']} MiB | {r['peak_mib']['no_reports']} MiB | |",
        "",
        f"- Pages per run (index + 4 canvases): median **{kb:.0f} KB** "
        f"(largest page {max(x['largest_page'] for x in r['runs']) / 1000:.0f} KB); before "
        f"(Evidently's own HTML, main at 8ffe4a5, same machine and data): {before_mb:.1f} MB, "
        f"{100 * kb / 1000 / before_mb:.1f}% of it.",
        f"- Writing the pages after the last fit (the run's own `report_seconds`): median "
        f"{r['report_seconds_median']:.2f} s; before: about {r['before']['report_seconds']:.0f} s "
        f"of a {r['before']['total_seconds']:.1f} s run.",
        "- Evidently's import (about 3 s) and its computations run in a worker process started "
        "with the run at the idle CPU priority (SCHED_IDLE), on the CPU the fits leave idle "
        "(`ranker.report.evidently_worker`); what the reports still cost is mostly the fits "
        "slowed by sharing the machine's two cores with it, and the learning curves.",
        "",
        "| run | pages | bytes | report s | fits s | run s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in r["runs"]:
        lines.append(
            f"| {run['version']} | {run['pages']} | {run['bytes']:,} | "
            f"{run['report_seconds']:.2f} | {run['fit_seconds']:.1f} | {run['total_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
