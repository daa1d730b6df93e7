"""HTTP serving benchmark: `unirank-cli serve` under a real load generator (wrk) on loopback.

Reproduce: `.venv/bin/python benchmarks/serve_http.py` (about 3 minutes; needs `wrk`, from
Debian's packages: `apt-get install wrk`; `--reuse` keeps the built workspace). It builds the
demo project (committed seeds) into benchmarks/work/serve_http with the CLI (`build`, `train
--no-compare --no-reports`, `score`), starts `unirank-cli serve --no-access-log` as a process,
and measures, client and server on the same 2 cores:

- cached lookups: `GET /recommend/<canvas>?<serving key>=...` over 2,000 cached contexts of
  every canvas drawn at random per request (wrk, 1 thread, 16 connections, `DURATION` s):
  requests/s, latency p50/p90/p99, non-2xx answers and socket errors;
- unseen contexts (the fallback chain): the same, with keys the cache does not hold;
- a publish and a model swap under load: the cached run again while `unirank-cli score --keep 1`
  publishes a new cache twice and `unirank-cli train` makes a new model CURRENT; errors must be 0;
- the service's memory: resident set after the runs and its peak (VmHWM);
- CLI start times with farm-bench: `unirank-cli --help` and one `unirank-cli recommend`, the
  per-call cost the HTTP service removes.

Writes benchmarks/results/serve_http.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from reliability import Workspace  # noqa: E402

from ranker.serve import current_cache_path  # noqa: E402

WORK = ROOT / "benchmarks" / "work" / "serve_http"
RESULTS = ROOT / "benchmarks" / "results"
CLI = Path(sys.executable).with_name("unirank-cli")
TRAIN = ["train", "--no-compare", "--no-reports", "--iterations", "60", "--threads", "1"]
DURATION = 20
CONTEXTS = 2_000
WRK = ["wrk", "-t1", "-c16", "--latency"]

# wrk picks one of the paths at random per request; prints non-2xx counts at the end.
LUA = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
math.randomseed(7)
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
"""


def prepare(work: Path, reuse: bool) -> Workspace:
    space = Workspace(work)
    if reuse and current_cache_path(space.settings).exists():
        return space
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for args in (["build"], TRAIN, ["score"]):
        space.check(*args)
        print(f"setup: {args[0]} done", flush=True)
    return space


def paths(space: Workspace, unseen: bool) -> list[str]:
    """Request paths over cached contexts (or keys the cache does not hold) of every canvas."""
    settings = space.settings
    with duckdb.connect(str(current_cache_path(settings)), read_only=True) as con:
        rows = con.execute(
            "select distinct task_type, context_key from recommendations "
            "order by hash(task_type || context_key) limit ?",
            [CONTEXTS],
        ).fetchall()
    chooser = random.Random(0)
    found = []
    for task, key in rows:
        column = settings.registry.canvas(task).serving.key  # type: ignore[union-attr]
        value = f"unseen-{chooser.randrange(10**9)}" if unseen else key
        found.append(f"/recommend/{task}?{urlencode({column: value})}")
    return found


def start_service(space: Workspace, port: int) -> subprocess.Popen[bytes]:
    service = subprocess.Popen(
        [str(CLI), "serve", "--port", str(port), "--no-access-log", "--project-dir", str(ROOT)],
        env=space.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz") as ready:
                if ready.status == 200:
                    return service
        except OSError:
            if time.monotonic() > deadline or service.poll() is not None:
                raise SystemExit("`unirank-cli serve` did not become ready") from None
            time.sleep(0.2)


def run_wrk(port: int, path_file: Path, duration: int) -> dict[str, Any]:
    script = path_file.with_suffix(".lua")
    script.write_text(LUA % path_file)
    result = subprocess.run(
        [*WRK, f"-d{duration}s", "-s", str(script), f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_wrk(result.stdout)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    percentiles = {
        p: _ms(v) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)$", output, re.MULTILINE)
    }
    requests = re.search(r"(\d+) requests in", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return {
        "requests": int(requests.group(1)) if requests else 0,
        "requests_per_second": float(rate.group(1)) if rate else 0.0,
        "p50_ms": percentiles.get("50"),
        "p90_ms": percentiles.get("90"),
        "p99_ms": percentiles.get("99"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
    }


def memory_mib(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB$", status, re.MULTILINE))
    return {
        "rss_mib": round(int(found["VmRSS"]) / 1024, 1),
        "peak_mib": round(int(found["VmHWM"]) / 1024, 1),
    }


def cli_start_times(space: Workspace) -> dict[str, str]:
    """Wall time of the CLI calls the service replaces (farm-bench: median, min, max of 5 runs)."""
    found: dict[str, str] = {}
    key = paths(space, unseen=False)[0]
    canvas, query = key.split("/recommend/")[1].split("?")
    column, value = query.split("=", 1)
    for name, command in (
        ("unirank-cli --help", [str(CLI), "--help"]),
        (
            f"unirank-cli recommend {canvas}",
            [
                str(CLI),
                "recommend",
                canvas,
                "--context",
                f"{column}={value}",
                "--project-dir",
                str(ROOT),
            ],
        ),
    ):
        result = subprocess.run(
            ["farm-bench", "-n", "5", "--", *command], env=space.env, capture_output=True, text=True
        )
        wall = re.search(r"wall s\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", result.stdout + result.stderr)
        if wall is None:
            raise SystemExit(f"farm-bench gave no wall time:\n{result.stdout[-1000:]}")
        low, median, high = wall.groups()
        found[name] = f"median {median} s (min {low}, max {high})"
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", action="store_true", help="reuse the built workspace")
    parser.add_argument("--duration", type=int, default=DURATION, help="seconds per wrk run")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk: apt-get install wrk")
    space = prepare(WORK, args.reuse)
    cached, unseen = WORK / "cached.txt", WORK / "unseen.txt"
    cached.write_text("\n".join(paths(space, unseen=False)) + "\n")
    unseen.write_text("\n".join(paths(space, unseen=True)) + "\n")
    port = free_port()
    service = start_service(space, port)
    results: dict[str, Any] = {}
    try:
        run_wrk(port, cached, 3)  # warm-up
        results["cached"] = run_wrk(port, cached, args.duration)
        print(f"cached: {results['cached']}", flush=True)
        results["unseen"] = run_wrk(port, unseen, args.duration)
        print(f"unseen: {results['unseen']}", flush=True)
        # A cache publish (twice) and a model swap while the load runs.
        load = subprocess.Popen(
            [
                *WRK,
                f"-d{args.duration + 20}s",
                "-s",
                str(cached.with_suffix(".lua")),
                f"http://127.0.0.1:{port}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(2)
        swaps = []
        for step in (["score", "--keep", "1"], TRAIN, ["score", "--keep", "1"]):
            started = time.perf_counter()
            space.check(*step)
            swaps.append(f"{step[0]} {time.perf_counter() - started:.1f}s")
        output, _ = load.communicate()
        results["through_swaps"] = {**parse_wrk(output), "swaps": swaps}
        print(f"through swaps: {results['through_swaps']}", flush=True)
        results["service_memory"] = memory_mib(service.pid)
    finally:
        service.terminate()
        service.wait(timeout=30)
    results["cli"] = cli_start_times(space)
    write_results(results, args.duration)


def write_results(results: dict[str, Any], duration: int) -> None:
    measured = datetime.now(timezone.utc).isoformat(timespec="seconds")
    payload = {"measured_at": measured, "cores": os.cpu_count(), "wrk": " ".join(WRK), **results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_http.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# HTTP serving",
        "",
        f"`benchmarks/serve_http.py`, {measured}, {os.cpu_count()} cores (wrk and the service on "
        f"the same cores), the demo project's cache ({CONTEXTS:,} contexts of every canvas drawn at "
        f"random per request), `{' '.join(WRK)}`, {duration} s a run.",
        "",
        "| run | requests | requests/s | p50 ms | p90 ms | p99 ms | non-2xx | socket errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, label in (
        ("cached", "cached contexts"),
        ("unseen", "unseen contexts (fallback chain)"),
        ("through_swaps", "cached, through 2 cache publishes and a model swap"),
    ):
        r = results[name]
        lines.append(
            f"| {label} | {r['requests']:,} | {r['requests_per_second']:,.0f} | {r['p50_ms']} | "
            f"{r['p90_ms']} | {r['p99_ms']} | {r['non_2xx']} | {r['socket_errors']} |"
        )
    memory = results["service_memory"]
    lines += [
        "",
        f"Swaps during the last run: {', '.join(results['through_swaps']['swaps'])}. Service memory "
        f"after the runs: {memory['rss_mib']} MiB resident, peak {memory['peak_mib']} MiB.",
        "",
        "CLI start times (farm-bench, 5 runs; the per-call cost a lookup through the CLI pays):",
        "",
    ]
    lines += [f"- `{name}`: {line}" for name, line in results["cli"].items()]
    (RESULTS / "serve_http.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'serve_http.md'}")


if __name__ == "__main__":
    main()
