"""Reliability audit: the concurrency, kill and bad-input probes of docs/reliability.md, run the way
an operator meets them (the CLI as processes, `ranker.serve.recommend` from threads, an analyst's
DuckDB session), with bounded loops.

Reproduce: `.venv/bin/python benchmarks/reliability.py` (about 15 minutes on 2 cores; `--runs N`
sets the runs of each kill probe, default 8; `--seed` the random kill moments). It builds the demo
project (committed seeds) into benchmarks/work/reliability with `unirank-cli build`, trains a
small model (`unirank-cli train --no-compare --no-reports --iterations 60`), scores it, then runs
each probe and counts, per probe:

- errors: an outcome the product promises not to have: a failed lookup, a command that should
  have succeeded and did not, a refusal that is a traceback instead of one line, a dbt process
  outliving its killed CLI;
- partial reads: a reader that saw part of a publish: a lookup of a cached context with fewer
  items than the cache holds for it, a cache whose rows disagree with its cache_info, a
  warehouse train or score would refuse as half-built, a reader session whose counts changed;
- data lost: what was there before and is not after: a warehouse changed by a failed build, or
  left by a killed one neither the previous one nor a whole new one; a table of the user's own
  gone; a CURRENT model or cache that does not load whole after a killed run (a kill that lands
  after a run's one publish step leaves its new, whole result: the notes count those); debris
  (unpromoted versions, partial caches, model_metrics of models never current) that the next
  run did not remove.

Writes benchmarks/results/reliability.{json,md}. The target is 0 in every cell.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ranker import artifacts  # noqa: E402
from ranker.cache_reader import current_cache_path  # noqa: E402
from ranker.config import Settings, load_settings  # noqa: E402
from ranker.errors import RecommendError  # noqa: E402
from ranker.score import load_model  # noqa: E402
from ranker.serve import recommend  # noqa: E402
from ranker.warehouse_publish import IncompleteBuildError, check_build_complete  # noqa: E402

WORK = ROOT / "benchmarks" / "work" / "reliability"
RESULTS = ROOT / "benchmarks" / "results"
CLI = Path(sys.executable).with_name("unirank-cli")
TRAIN = ["train", "--no-compare", "--no-reports", "--iterations", "60", "--threads", "2"]
LOOKUP_THREADS = 8
PUBLISHES = 10


@dataclass
class Probe:
    name: str
    runs: int = 0
    errors: int = 0
    partial_reads: int = 0
    data_lost: int = 0
    notes: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        self.notes.append(what)

    def partial(self, what: str) -> None:
        self.partial_reads += 1
        self.notes.append(what)

    def lost(self, what: str) -> None:
        self.data_lost += 1
        self.notes.append(what)


class Workspace:
    """The demo project built into WORK: the CLI's environment, paths and checks."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.warehouse = work / "warehouse" / "unirank.duckdb"
        self.env = dict(
            os.environ,
            UNIRANK_DUCKDB_PATH=str(self.warehouse),
            UNIRANK_ARTIFACTS_DIR=str(work / "artifacts"),
            UNIRANK_REPORTS_DIR=str(work / "reports"),
            DBT_TARGET_PATH=str(work / "target"),
            DBT_LOG_PATH=str(work / "logs"),
            DBT_USE_COLORS="false",
        )
        self.settings: Settings = load_settings(
            ROOT,
            duckdb_path=self.warehouse,
            artifacts_dir=work / "artifacts",
            reports_dir=work / "reports",
        )
        self.models = artifacts.models_dir(self.settings.artifacts_dir)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(CLI), *args, "--project-dir", str(ROOT)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLI), *args, "--project-dir", str(ROOT)],
            env=self.env,
            capture_output=True,
            text=True,
        )

    def check(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a CLI command that must succeed (set-up steps); stop the benchmark if not."""
        result = self.run(*args)
        if result.returncode != 0:
            raise SystemExit(f"`unirank-cli {' '.join(args)}` failed:\n{result.stderr[-3000:]}")
        return result

    def digest(self) -> str:
        return hashlib.sha256(self.warehouse.read_bytes()).hexdigest()

    def current_model(self) -> str:
        return artifacts.current_version(self.models).version

    def current_cache(self) -> str:
        return current_cache_path(self.settings).resolve().name

    def cache_is_whole(self) -> bool:
        with duckdb.connect(str(current_cache_path(self.settings)), read_only=True) as con:
            row = con.execute(
                "select (select count(*) from recommendations), (select cache_rows from cache_info)"
            ).fetchone()
        return row is not None and row[0] == row[1]

    def table_count(self, table: str) -> int:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            row = con.execute(f"select count(*) from {table}").fetchone()
        return int(row[0]) if row else 0

    def debris(self) -> list[str]:
        """Model versions never promoted, partial caches and metrics of models never current."""
        found = [
            f"unpromoted version {p.name}"
            for p in self.models.iterdir()
            if p.is_dir() and (p / artifacts.OWNER_FILE).exists()
        ]
        cache = current_cache_path(self.settings).parent
        found += [f"partial cache {p.name}" for p in cache.glob("*.partial*")]
        promoted = set(artifacts.list_versions(self.models))
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            measured = {
                row[0]
                for row in con.execute(
                    "select distinct model_version from model_metrics"
                ).fetchall()
            }
        found += [f"model_metrics of {v}, never current" for v in sorted(measured - promoted)]
        return found


def one_line_refusal(result: subprocess.CompletedProcess[str] | tuple[int, str]) -> bool:
    code, stderr = (result.returncode, result.stderr) if not isinstance(result, tuple) else result
    return code == 1 and "Traceback" not in stderr and "error:" in stderr


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    for child in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = child.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(child.parent.name))
    return found + [d for c in found for d in descendants(c)]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_at(process: subprocess.Popen[str], delay: float) -> tuple[bool, list[int]]:
    """SIGKILL ``process`` after ``delay`` seconds unless it ended first. Returns (killed, the
    process's descendants at the moment of the kill)."""
    deadline = time.monotonic() + delay
    children: list[int] = []
    while time.monotonic() < deadline:
        if process.poll() is not None:
            process.communicate()
            return False, []
        children = descendants(process.pid) or children
        time.sleep(0.05)
    children = descendants(process.pid) or children
    process.send_signal(signal.SIGKILL)
    process.communicate()
    return True, children


def _kill_note(kills: int, committed: int, runs: int, earliest: float, seconds: float) -> str:
    """How many runs the kill reached, and how many of those after their one commit step (the
    rename that publishes): both outcomes are whole, the previous state or the new one."""
    return (
        f"{kills} of {runs} killed before the process ended ({committed} of them after its "
        f"publish, which stands), at moments uniform in {earliest:g}-{seconds * 0.95:.0f}s "
        f"(a whole run takes {seconds:.0f}s)"
    )


def prepare(work: Path, reuse: bool) -> tuple[Workspace, dict[str, float]]:
    space = Workspace(work)
    timings: dict[str, float] = {}
    if reuse and space.warehouse.exists() and (space.models / "CURRENT").exists():
        return space, json.loads((work / "timings.json").read_text())
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name, args in (("build", ["build"]), ("train", TRAIN), ("score", ["score"])):
        started = time.perf_counter()
        space.check(*args)
        timings[name] = round(time.perf_counter() - started, 1)
        print(f"setup: {name} {timings[name]}s", flush=True)
    with duckdb.connect(str(space.warehouse)) as con:
        con.execute("create or replace table analyst_notes as select 42 as answer")
    (work / "timings.json").write_text(json.dumps(timings))
    return space, timings


def probe_lookups_while_score_publishes(space: Workspace) -> Probe:
    probe = Probe(
        f"lookups ({LOOKUP_THREADS} threads) while `score --keep 1` publishes {PUBLISHES} times"
    )
    with duckdb.connect(str(current_cache_path(space.settings)), read_only=True) as con:
        held = con.execute(
            "select task_type, context_key, count(*) from recommendations group by all"
        ).fetchall()
    contexts = [(str(t), str(c), int(n)) for t, c, n in held]
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"lookups": 0}

    def lookups(seed: int) -> None:
        chooser = random.Random(seed)
        while not stop.is_set():
            task, key, held_items = chooser.choice(contexts)
            try:
                answer = recommend(task, key, k=held_items, settings=space.settings)
            except Exception as exc:  # every failure is what the probe counts
                with lock:
                    probe.error(f"lookup {task}/{key}: {type(exc).__name__}: {exc}"[:300])
                continue
            with lock:
                counts["lookups"] += 1
                if answer.answered_by != "cache" or len(answer.items) < held_items:
                    probe.partial(
                        f"{task}/{key}: {len(answer.items)} of {held_items} items by {answer.answered_by}"
                    )

    threads = [threading.Thread(target=lookups, args=(n,)) for n in range(LOOKUP_THREADS)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(PUBLISHES):
            result = space.run("score", "--keep", "1")
            probe.runs += 1
            if result.returncode != 0:
                probe.error(f"score failed: {result.stderr[-300:]}")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    probe.notes.insert(0, f"{counts['lookups']:,} lookups of {len(contexts):,} cached contexts")
    if not space.cache_is_whole():
        probe.partial("the current cache's rows disagree with its cache_info")
    return probe


def probe_kill_build(
    space: Workspace, runs: int, build_seconds: float, chooser: random.Random
) -> Probe:
    probe = Probe("SIGKILL `unirank-cli build` at a random moment")
    kills = committed = 0
    for _ in range(runs):
        before = space.digest()
        delay = chooser.uniform(0.5, build_seconds * 0.95)
        process = space.start("build")
        killed, children = kill_at(process, delay)
        probe.runs += 1
        kills += killed
        time.sleep(3)
        survivors = [pid for pid in children if alive(pid)]
        if survivors:
            probe.error(f"killed at {delay:.1f}s: dbt {survivors} outlived the CLI")
            for pid in survivors:
                os.kill(pid, signal.SIGKILL)
        try:
            check_build_complete(space.warehouse)
        except IncompleteBuildError as exc:
            probe.partial(f"killed at {delay:.1f}s: {exc}")
        if killed and space.digest() != before:
            # killed after its publish: the new warehouse is whole (checked above) or it is lost
            committed += 1
        if space.table_count("analyst_notes") != 1:
            probe.lost("the user's own table analyst_notes is gone")
    probe.notes.insert(0, _kill_note(kills, committed, probe.runs, 0.5, build_seconds))
    result = space.run("build")
    if result.returncode != 0:
        probe.error(f"the build after the kills failed: {result.stderr[-300:]}")
    return probe


def probe_kill_score(
    space: Workspace, runs: int, score_seconds: float, chooser: random.Random
) -> Probe:
    probe = Probe("SIGKILL `unirank-cli score` at a random moment")
    kills = committed = 0
    for _ in range(runs):
        before = space.current_cache()
        delay = chooser.uniform(0.5, score_seconds * 0.95)
        killed, _ = kill_at(space.start("score"), delay)
        probe.runs += 1
        kills += killed
        if not space.cache_is_whole():
            probe.lost(f"killed at {delay:.1f}s: the current cache is not whole")
        elif killed and space.current_cache() != before:
            committed += 1  # killed after its publish: CURRENT is its whole cache
    probe.notes.insert(0, _kill_note(kills, committed, probe.runs, 0.5, score_seconds))
    result = space.run("score")
    if result.returncode != 0:
        probe.error(f"the score after the kills failed: {result.stderr[-300:]}")
    leftovers = [d for d in space.debris() if d.startswith("partial cache")]
    for leftover in leftovers:
        probe.lost(f"not cleaned by the next score: {leftover}")
    return probe


def probe_kill_train(
    space: Workspace, runs: int, train_seconds: float, chooser: random.Random
) -> Probe:
    probe = Probe("SIGKILL `unirank-cli train` at a random moment")
    kills = committed = 0
    for _ in range(runs):
        before = space.current_model()
        delay = chooser.uniform(1.0, train_seconds * 0.95)
        killed, _ = kill_at(space.start(*TRAIN), delay)
        probe.runs += 1
        kills += killed
        try:
            current = artifacts.current_version(space.models)
            load_model(current)
        except Exception as exc:  # a CURRENT that does not load is what the probe counts
            probe.lost(f"killed at {delay:.1f}s: CURRENT model does not load: {exc}"[:300])
        else:
            committed += killed and current.version != before  # killed after its promotion
        never_current = [d for d in space.debris() if d.startswith("model_metrics")]
        for row in never_current:  # what the README's "latest model" query would show
            probe.partial(f"killed at {delay:.1f}s: {row}")
    probe.notes.insert(0, _kill_note(kills, committed, probe.runs, 1, train_seconds))
    result = space.run(*TRAIN)
    if result.returncode != 0:
        probe.error(f"the train after the kills failed: {result.stderr[-300:]}")
    for leftover in space.debris():
        probe.lost(f"not cleaned by the next train: {leftover}")
    return probe


def hold_reader(space: Workspace) -> subprocess.Popen[str]:
    """An analyst's read-only session: counts ranking_examples, waits, counts again."""
    code = (
        "import duckdb, sys\n"
        f"con = duckdb.connect({str(space.warehouse)!r}, read_only=True)\n"
        "print(con.execute('select count(*) from ranking_examples').fetchone()[0], flush=True)\n"
        "sys.stdin.readline()\n"
        "print(con.execute('select count(*) from ranking_examples').fetchone()[0], flush=True)\n"
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert reader.stdout is not None
    reader.stdout.readline()
    return reader


def release(reader: subprocess.Popen[str]) -> int:
    """Let the reader count again; its second count."""
    assert reader.stdout is not None and reader.stdin is not None
    reader.stdin.write("\n")
    reader.stdin.flush()
    count = int(reader.stdout.readline())
    reader.wait()
    return count


def probe_readers(space: Workspace) -> Probe:
    probe = Probe("an analyst's read-only DuckDB session during `build`, then `train`")
    for args in (["build"], TRAIN):
        reader = hold_reader(space)
        seen = space.table_count("ranking_examples")
        result = space.run(*args)
        probe.runs += 1
        if result.returncode != 0:
            probe.error(f"`{args[0]}` beside a reader failed: {result.stderr[-300:]}")
        after = release(reader)
        if after != seen:
            probe.partial(f"the reader's count changed during `{args[0]}`: {seen} -> {after}")
    if space.table_count("analyst_notes") != 1:
        probe.lost("the user's own table analyst_notes is gone")
    return probe


def probe_two_writers(space: Workspace) -> Probe:
    probe = Probe("two writers: build + build, train + train, build + score")
    # build while build: the second refuses in one line
    first = space.start("build")
    time.sleep(4)
    second = space.run("build")
    first_out = first.communicate()
    probe.runs += 1
    if first.returncode != 0:
        probe.error(f"the first build failed: {first_out[1][-300:]}")
    if not one_line_refusal(second):
        probe.error(f"the second build did not refuse in one line: {second.stderr[-300:]}")
    # train while train: both finish; the one promoted last is current
    trains = [space.start(*TRAIN) for _ in range(2)]
    outputs = [t.communicate() for t in trains]
    probe.runs += 1
    for train, (_, stderr) in zip(trains, outputs, strict=True):
        if train.returncode != 0:
            probe.error(f"a concurrent train failed: {stderr[-300:]}")
    if space.debris():
        probe.lost(f"two trains left {space.debris()}")
    # build while score: both finish; the cache of the older build does not replace a newer one
    score = space.start("score")
    time.sleep(1)
    build = space.run("build")
    score_out = score.communicate()
    probe.runs += 1
    if build.returncode != 0:
        probe.error(f"build beside score failed: {build.stderr[-300:]}")
    if score.returncode != 0:
        probe.error(f"score beside build failed: {score_out[1][-300:]}")
    if not space.cache_is_whole():
        probe.partial("the cache after build + score is not whole")
    return probe


def probe_bad_input(space: Workspace) -> Probe:
    probe = Probe("quarantine over the limit (`build --vars '{quarantine_max_share: 0.0001}'`)")
    before = space.digest()
    result = space.run("build", "--vars", json.dumps({"quarantine_max_share": 0.0001}))
    probe.runs += 1
    if result.returncode != 1 or "quarantine gate:" not in result.stderr + result.stdout:
        probe.error(f"the gate did not stop the build with its message: {result.stderr[-300:]}")
    if "Traceback" in result.stderr:
        probe.error("a traceback")
    if space.digest() != before:
        probe.lost("the previous warehouse changed")
    return probe


def probe_rows_accounted(space: Workspace) -> Probe:
    probe = Probe("every raw row of the demo seeds used or in quarantined_rows")
    with duckdb.connect(str(space.warehouse), read_only=True) as con:
        summary = con.execute(
            "select source_table, total_rows, quarantined_rows from quarantine_summary order by 1"
        ).fetchall()
        for table, total, quarantined in summary:
            seed = ROOT / "seeds" / "demo" / f"demo_{table}.csv"
            read = con.execute(
                f"select count(*) from read_csv('{seed}', header = true, all_varchar = true, "
                "quote = '\"', escape = '\"')"
            ).fetchone()
            probe.runs += 1
            raw = int(read[0]) if read else 0
            if total != raw:
                probe.lost(f"{table}: {raw:,} raw rows, {total:,} accounted for")
            probe.notes.append(
                f"{table} {total:,} = {total - quarantined:,} used + {quarantined:,} quarantined"
            )
    return probe


def write_results(probes: list[Probe], timings: dict[str, float], seed: int) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores",
        "data": "the demo project's committed seeds (seeds/demo)",
        "seed": seed,
        "setup_seconds": timings,
        "probes": [asdict(p) for p in probes],
    }
    (RESULTS / "reliability.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Reliability audit",
        "",
        f"`benchmarks/reliability.py` (seed {seed}), {payload['measured_at']}, {payload['machine']}, "
        f"on {payload['data']}. Setup: build {timings['build']}s, train {timings['train']}s, "
        f"score {timings['score']}s. Definitions of the columns: the script's docstring.",
        "",
        "| probe | runs | errors | partial reads | data lost | notes |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for p in probes:
        notes = "; ".join(n.replace("|", "/").replace("\n", " ") for n in p.notes[:5])
        lines.append(
            f"| {p.name} | {p.runs} | {p.errors} | {p.partial_reads} | {p.data_lost} | {notes} |"
        )
    (RESULTS / "reliability.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="runs of each kill probe")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill moments")
    parser.add_argument("--reuse", action="store_true", help="reuse the built workspace")
    args = parser.parse_args()
    space, timings = prepare(WORK, args.reuse)
    chooser = random.Random(args.seed)
    steps: list[Callable[[], Probe]] = [
        lambda: probe_lookups_while_score_publishes(space),
        lambda: probe_kill_build(space, args.runs, timings["build"], chooser),
        lambda: probe_kill_score(space, args.runs, timings["score"], chooser),
        lambda: probe_kill_train(space, args.runs, timings["train"], chooser),
        lambda: probe_readers(space),
        lambda: probe_two_writers(space),
        lambda: probe_bad_input(space),
        lambda: probe_rows_accounted(space),
    ]
    probes = []
    for step in steps:
        started = time.perf_counter()
        probe = step()
        probes.append(probe)
        print(
            f"{probe.name}: runs {probe.runs}, errors {probe.errors}, partial reads "
            f"{probe.partial_reads}, data lost {probe.data_lost} ({time.perf_counter() - started:.0f}s)",
            flush=True,
        )
        for note in probe.notes[:6]:
            print(f"    {note}", flush=True)
    write_results(probes, timings, args.seed)
    print(f"wrote {RESULTS / 'reliability.md'}")
    if any(p.errors or p.partial_reads or p.data_lost for p in probes):
        raise SystemExit(1)


if __name__ == "__main__":
    try:
        main()
    except RecommendError as exc:
        raise SystemExit(f"error: {exc}") from None
