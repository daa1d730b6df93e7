"""HTTP serving benchmark: `unirank-cli serve` under a real load generator (wrk) on loopback.

Reproduce: `.venv/bin/python benchmarks/serve_http.py` (about 3 minutes; needs `wrk`, from
Debian's packages: `apt-get install wrk`; `--reuse` keeps the built workspace). It builds the
demo project (committed seeds) into benchmarks/work/serve_http with the CLI (`build`, `train
--no-compare --no-reports`, `score`), starts `unirank-cli serve --no-access-log` as a process,
and measures, client and server on the same 2 cores:

- cached lookups: `GET /recommend/<canvas>?<serving key>=...` over 2,000 cached contexts of
  every canvas drawn at random per request (wrk, 1 thread, 16 connections, `DURATION` s):
  requests/s, latency p50/p90/p99, non-2xx answers and socket errors;
- online scoring: every request a context the cache does not hold and no earlier request asked
  (a new user, an unseen query, an unknown source item, a new category; the demo's canvases in
  their default mode, cache_then_online), so each is scored by the current model at request
  time over its candidates (100: the demo's serving.candidates_per_context); answers that ran
  over the canvas's budget are counted;
- a publish and a model swap under load: cached lookups and online-scored ones (4 to 1) while
  `unirank-cli score --keep 1` publishes a new cache twice and `unirank-cli train` makes a new
  model CURRENT; errors must be 0;
- the service's memory: resident set after the runs and its peak (VmHWM);
- the documented Python call, in this process: `ranker.serve.recommend(canvas, context, k)`
  without settings, from the project folder, as docs/serving.md shows it: p50/p99 over 10,000
  cached lookups and 1,000 online-scored ones;
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
from urllib.parse import unquote_plus, urlencode

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from reliability import Workspace  # noqa: E402

from ranker.cache_reader import current_cache_path  # noqa: E402

WORK = ROOT / "benchmarks" / "work" / "serve_http"
RESULTS = ROOT / "benchmarks" / "results"
CLI = Path(sys.executable).with_name("unirank-cli")
TRAIN = ["train", "--no-compare", "--no-reports", "--iterations", "60", "--threads", "1"]
DURATION = 20
CONTEXTS = 2_000
WRK = ["wrk", "-t1", "-c16", "--latency"]

# wrk picks one of the paths at random per request (NNN in a path becomes the request's own
# number: a context no earlier request asked); prints non-2xx counts at the end.
LUA = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
math.randomseed(7)
local n = 0
request = function()
  n = n + 1
  local path = string.gsub(paths[math.random(#paths)], "NNN", tostring(n))
  return wrk.format("GET", path)
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


def paths(space: Workspace) -> list[str]:
    """Request paths over cached contexts of every canvas."""
    settings = space.settings
    with duckdb.connect(str(current_cache_path(settings)), read_only=True) as con:
        rows = con.execute(
            "select distinct task_type, context_key from recommendations "
            "order by hash(task_type || context_key) limit ?",
            [CONTEXTS],
        ).fetchall()
    found = []
    for task, key in rows:
        column = settings.registry.canvas(task).serving.key  # type: ignore[union-attr]
        found.append(f"/recommend/{task}?{urlencode({column: key})}")
    return found


def online_contexts(space: Workspace) -> list[tuple[str, dict[str, str]]]:
    """Contexts the cache does not hold, one template per canvas and title word: NNN is replaced
    by a request number, so no two requests ask the same (nothing is answered from memory)."""
    with duckdb.connect(str(current_cache_path(space.settings)), read_only=True) as con:
        words = sorted(
            {
                str(w)
                for (w,) in con.execute(
                    "select distinct unnest(string_split(lower(title), ' ')) from item_catalogue"
                ).fetchall()
                if w
            }
        )
    chooser = random.Random(0)
    contexts: list[tuple[str, dict[str, str]]] = []
    for _ in range(50):
        contexts += [
            ("home", {"user_id": "new-user-NNN"}),
            ("search", {"query_text": f"{chooser.choice(words)} qNNN"}),
            ("related", {"source_item_id": "new-item-NNN"}),
            ("category", {"category": "new-category-NNN"}),
        ]
    return contexts


def online_paths(space: Workspace) -> list[str]:
    return [f"/recommend/{c}?{urlencode(context)}" for c, context in online_contexts(space)]


def candidates_per_context(space: Workspace) -> dict[str, int]:
    """How many candidates the online path scores for the benchmark's contexts (in-process)."""
    from ranker.cache_reader import current_reader
    from ranker.serve import online_scorer

    settings = space.settings
    scorer = online_scorer(settings)
    _, _, features, _ = scorer.model()
    tables = scorer.tables(current_reader(settings), features)
    counts = []
    for number, (canvas, context) in enumerate(online_contexts(space)):
        values = {k: v.replace("NNN", str(number)) for k, v in context.items()}
        full = scorer.full_context(tables, settings.registry.canvas(canvas), values)
        counts.append(len(scorer.candidates(tables, settings.registry.canvas(canvas), full)))
    counts.sort()
    return {"min": counts[0], "median": counts[len(counts) // 2], "max": counts[-1]}


def documented_call(space: Workspace) -> dict[str, Any]:
    """`recommend(canvas, context, k)` as docs/serving.md shows it: no settings, from the
    project folder (its UNIRANK_* paths in the environment), in this process."""
    import numpy as np

    from ranker.serve import recommend

    os.environ.update(space.env)
    os.chdir(ROOT)
    cached = [p.split("/recommend/")[1].split("?") for p in paths(space)]
    calls = {
        "cached": [
            (canvas, dict([query.split("=", 1)])) for canvas, query in (cached * 5)[:10_000]
        ],
        "online": [
            (canvas, {k: v.replace("NNN", f"py{i}") for k, v in context.items()})
            for i, (canvas, context) in enumerate((online_contexts(space) * 5)[:1_000])
        ],
    }
    recommend(calls["cached"][0][0], calls["cached"][0][1])  # the first: loads the registry
    recommend(calls["online"][0][0], calls["online"][0][1])  # and the model
    found: dict[str, Any] = {}
    for name, batch in calls.items():
        timings = np.empty(len(batch))
        answered: dict[str, int] = {}
        for i, (canvas, context) in enumerate(batch):
            started = time.perf_counter()
            result = recommend(canvas, {k: unquote_plus(v) for k, v in context.items()}, k=10)
            timings[i] = time.perf_counter() - started
            answered[result.answered_by] = answered.get(result.answered_by, 0) + 1
        found[name] = {
            "lookups": len(batch),
            "p50_ms": round(float(np.percentile(timings, 50)) * 1000, 3),
            "p99_ms": round(float(np.percentile(timings, 99)) * 1000, 3),
            "answered_by": answered,
        }
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


def _script(path_file: Path) -> Path:
    script = path_file.with_suffix(".lua")
    script.write_text(LUA % path_file)
    return script


def run_wrk(port: int, path_file: Path, duration: int) -> dict[str, Any]:
    result = subprocess.run(
        [*WRK, f"-d{duration}s", "-s", str(_script(path_file)), f"http://127.0.0.1:{port}"],
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
    key = paths(space)[0]
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
    cached, online, mixed = WORK / "cached.txt", WORK / "online.txt", WORK / "mixed.txt"
    cached_paths, online_only = paths(space), online_paths(space)
    cached.write_text("\n".join(cached_paths) + "\n")
    online.write_text("\n".join(online_only) + "\n")
    mix = cached_paths[: 4 * len(online_only)] + online_only  # 4 cached to 1 online
    mixed.write_text("\n".join(mix) + "\n")
    port = free_port()
    service = start_service(space, port)
    results: dict[str, Any] = {}
    try:
        run_wrk(port, cached, 3)  # warm-up
        results["cached"] = run_wrk(port, cached, args.duration)
        print(f"cached: {results['cached']}", flush=True)
        before = answered_by(port)
        results["online"] = run_wrk(port, online, args.duration)
        results["online"]["answered_by"] = _delta(answered_by(port), before)
        print(f"online: {results['online']}", flush=True)
        # A cache publish (twice) and a model swap while the load runs.
        load = subprocess.Popen(
            [
                *WRK,
                f"-d{args.duration + 20}s",
                "-s",
                str(_script(mixed)),
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
    results["candidates_per_context"] = candidates_per_context(space)
    results["documented_call"] = documented_call(space)
    print(f"documented call: {results['documented_call']}", flush=True)
    results["cli"] = cli_start_times(space)
    write_results(results, args.duration)


def answered_by(port: int) -> dict[str, float]:
    """The service's answers so far by path (its /metrics), summed over canvases."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as metrics:
        text = metrics.read().decode()
    found: dict[str, float] = {}
    for path, count in re.findall(
        r'^unirank_requests_total\{answered_by="([^"]+)",[^}]*\} ([\d.e+]+)$', text, re.MULTILINE
    ):
        found[path] = found.get(path, 0.0) + float(count)
    return found


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    return {k: int(v - before.get(k, 0.0)) for k, v in after.items() if v > before.get(k, 0.0)}


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
        ("online", "contexts the cache does not hold, scored online"),
        ("through_swaps", "4 cached to 1 online, through 2 cache publishes and a model swap"),
    ):
        r = results[name]
        lines.append(
            f"| {label} | {r['requests']:,} | {r['requests_per_second']:,.0f} | {r['p50_ms']} | "
            f"{r['p90_ms']} | {r['p99_ms']} | {r['non_2xx']} | {r['socket_errors']} |"
        )
    memory = results["service_memory"]
    counts = results["candidates_per_context"]
    answered = ", ".join(f"{k} {v:,}" for k, v in results["online"]["answered_by"].items())
    lines += [
        "",
        f"Online run: {counts['median']} candidates scored per context (min {counts['min']}, max "
        f"{counts['max']}); answered by: {answered} (a fallback step here means the canvas's "
        "online_timeout_ms ran out first).",
        "",
        f"Swaps during the last run: {', '.join(results['through_swaps']['swaps'])}. Service memory "
        f"after the runs: {memory['rss_mib']} MiB resident, peak {memory['peak_mib']} MiB (the "
        "cache's lists, the model and the online tables of the demo).",
        "",
        "The documented Python call, `ranker.serve.recommend(canvas, context, k=10)` without "
        "settings from the project folder, in one process (no HTTP):",
        "",
        "| lookups | count | p50 ms | p99 ms | answered by |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, r in results["documented_call"].items():
        by = ", ".join(f"{k} {v:,}" for k, v in r["answered_by"].items())
        lines.append(f"| {name} | {r['lookups']:,} | {r['p50_ms']} | {r['p99_ms']} | {by} |")
    lines += [
        "",
        "CLI start times (farm-bench, 5 runs; the per-call cost a lookup through the CLI pays):",
        "",
    ]
    lines += [f"- `{name}`: {line}" for name, line in results["cli"].items()]
    (RESULTS / "serve_http.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'serve_http.md'}")


if __name__ == "__main__":
    main()
