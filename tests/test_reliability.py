"""A failed, killed or concurrent build never reaches training or serving: dbt writes a copy aside
that replaces the warehouse only when it passed, readers never block it, a killed CLI takes its
dbt with it, and a second writer refuses in one line (ranker.warehouse_publish)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from ranker.build import BuildError, run_dbt
from ranker.config import Settings, load_settings
from ranker.warehouse_publish import WarehouseBusyError, aside_path, failed_path

from .conftest import copy_project

pytestmark = pytest.mark.dbt

CLI = Path(sys.executable).with_name("unirank-cli")
Hold = Callable[[bool], "subprocess.Popen[str]"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _count(path: Path, table: str) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        return int(con.execute(f"select count(*) from {table}").fetchone()[0])  # type: ignore[index]


@pytest.fixture
def warehouse(demo_warehouse: Settings, tmp_path: Path) -> Settings:
    """A private copy of the demo warehouse, with a table of the user's own in it."""
    path = tmp_path / "warehouse" / "demo.duckdb"
    path.parent.mkdir()
    shutil.copy2(demo_warehouse.duckdb_path, path)
    with duckdb.connect(str(path)) as con:
        con.execute("create table analyst_notes as select 42 as answer")
    return load_settings(demo_warehouse.project_dir, duckdb_path=path)


@pytest.fixture
def holder(warehouse: Settings) -> Iterator[Hold]:
    """Start another process that holds the warehouse open (read-only or read-write)."""
    processes: list[subprocess.Popen[str]] = []

    def hold(read_only: bool) -> subprocess.Popen[str]:
        code = (
            "import duckdb, sys, time\n"
            f"con = duckdb.connect({str(warehouse.duckdb_path)!r}, read_only={read_only})\n"
            "print(con.execute('select count(*) from ranking_examples').fetchone()[0], flush=True)\n"
            "sys.stdin.readline()\n"
            "print(con.execute('select count(*) from ranking_examples').fetchone()[0], flush=True)\n"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        process.stdout.readline()
        processes.append(process)
        return process

    yield hold
    for process in processes:
        process.kill()
        process.wait()


def test_a_failed_build_leaves_the_previous_warehouse_whole(
    warehouse: Settings, tmp_path: Path
) -> None:
    before = _digest(warehouse.duckdb_path)
    failing = load_settings(
        warehouse.project_dir, {"quarantine_max_share": 0.001}, duckdb_path=warehouse.duckdb_path
    )
    with pytest.raises(BuildError, match="quarantine_summary") as raised:
        run_dbt(failing, ["build"], echo=False)
    # The message names each source table over the limit, with its share.
    assert re.search(
        r"quarantine gate: impressions has [\d,]+ of [\d,]+ rows quarantined "
        r"\(\d+(\.\d+)?%, limit 0\.1%\)",
        str(raised.value),
    ), str(raised.value)
    assert _digest(warehouse.duckdb_path) == before
    assert not aside_path(warehouse.duckdb_path).exists()
    # The failed run's own tables are kept aside for inspection.
    kept = failed_path(warehouse.duckdb_path)
    assert _count(kept, "quarantined_rows") > 0
    # The quarantine gate stopped the pipeline before anything that trains or serves.
    results = json.loads((Path(os.environ["DBT_TARGET_PATH"]) / "run_results.json").read_text())
    status = {r["unique_id"].split(".")[-1]: r["status"] for r in results["results"]}
    for model in ("int_feature_probes", "ranking_examples", "serving_candidates"):
        assert status[model] == "skipped", (model, status[model])


def test_a_build_publishes_beside_readers_and_keeps_tables_it_does_not_make(
    warehouse: Settings, holder: Hold
) -> None:
    reader = holder(True)
    run_dbt(warehouse, ["build"], echo=False)
    # The reader still reads the warehouse it opened; a new reader sees the new build, with the
    # user's own table carried over.
    assert reader.stdin is not None and reader.stdout is not None
    reader.stdin.write("\n")
    reader.stdin.flush()
    assert int(reader.stdout.readline()) > 0
    assert _count(warehouse.duckdb_path, "ranking_examples") > 0
    assert _count(warehouse.duckdb_path, "analyst_notes") == 1
    assert not warehouse.duckdb_path.with_name(warehouse.duckdb_path.name + ".wal").exists()


def test_a_read_write_session_makes_build_refuse_in_one_line(
    warehouse: Settings, holder: Hold
) -> None:
    writer = holder(False)
    with pytest.raises(WarehouseBusyError) as raised:
        run_dbt(warehouse, ["build"], echo=False)
    message = str(raised.value)
    assert "\n" not in message and "held by another process" in message
    assert f"PID {writer.pid}" in message


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children += [int(c) for c in text]
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killing_the_cli_kills_its_dbt_and_a_second_build_refuses(
    warehouse: Settings,
) -> None:
    before = _digest(warehouse.duckdb_path)
    env = dict(os.environ, UNIRANK_DUCKDB_PATH=str(warehouse.duckdb_path))
    cli = subprocess.Popen(
        [str(CLI), "build", "--project-dir", str(warehouse.project_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert cli.stderr is not None
    for line in cli.stderr:  # dbt is running models
        if " START " in line:
            break
    dbt = _children(cli.pid)
    assert dbt, "the CLI has no dbt child"

    with pytest.raises(WarehouseBusyError, match="being written by unirank-cli build"):
        run_dbt(warehouse, ["build"], echo=False)

    cli.send_signal(signal.SIGKILL)
    cli.wait()
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in dbt) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in dbt), "dbt outlived the killed CLI"
    assert _digest(warehouse.duckdb_path) == before


def test_train_finishes_beside_a_reader_and_records_only_promoted_models(
    tiny_settings: Settings,
) -> None:
    from ranker import artifacts
    from ranker.train import TrainParams, train_and_evaluate

    params = TrainParams(
        iterations=20, learning_rate=0.3, depth=4, compare=False, bootstrap_resamples=20
    )
    code = (
        "import duckdb, sys\n"
        f"con = duckdb.connect({str(tiny_settings.duckdb_path)!r}, read_only=True)\n"
        "print('open', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout is not None
        reader.stdout.readline()
        held = train_and_evaluate(tiny_settings, params, write_reports=False)
    finally:
        reader.kill()
        reader.wait()
    root = artifacts.models_dir(tiny_settings.artifacts_dir)
    assert artifacts.current_version(root).version == held.version
    assert any("model_metrics not updated" in note for note in held.notes), held.notes

    free = train_and_evaluate(tiny_settings, params, write_reports=False)
    with duckdb.connect(str(tiny_settings.duckdb_path), read_only=True) as con:
        recorded = {
            v for (v,) in con.execute("select distinct model_version from model_metrics").fetchall()
        }
    assert recorded == {free.version}


def test_lookups_from_many_threads_never_fail_while_score_publishes(
    served_copy: Settings,
) -> None:
    """8 threads look up while `score --keep 1` publishes 10 generations: every lookup answers
    from a whole generation, none raises (a replaced reader is closed only once no thread uses
    it; a generation deleted while being opened is looked up again)."""
    from ranker.cache_reader import current_cache_path
    from ranker.score import score_candidates
    from ranker.serve import recommend

    with duckdb.connect(str(current_cache_path(served_copy)), read_only=True) as con:
        contexts = con.execute(
            "select distinct task_type, context_key from recommendations order by all limit 200"
        ).fetchall()
    errors: list[BaseException] = []
    answers: list[int] = []
    stop = threading.Event()

    def look_up(offset: int) -> None:
        i = offset
        while not stop.is_set():
            task, key = contexts[i % len(contexts)]
            try:
                result = recommend(str(task), str(key), k=5, settings=served_copy)
                answers.append(len(result.items))
            except BaseException as exc:  # every error counts, whatever its kind
                errors.append(exc)
            i += 1

    threads = [threading.Thread(target=look_up, args=(n * 25,)) for n in range(8)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(10):
            score_candidates(served_copy, batch_rows=2_000, keep=1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, f"{len(errors)} of {len(errors) + len(answers)} lookups failed: {errors[:3]}"
    assert len(answers) > 100 and min(answers) == 5


def _one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def test_a_corrupt_model_or_metadata_is_one_clear_error(served_copy: Settings) -> None:
    from ranker import artifacts
    from ranker.score import load_model

    root = artifacts.models_dir(served_copy.artifacts_dir)
    current = artifacts.current_version(root)
    current.model_file.write_bytes(b"not a catboost model")
    with pytest.raises(artifacts.ArtifactError) as raised:
        load_model(current)
    assert "cannot be loaded" in _one_line(raised.value)
    (current.path / "metadata.json").write_text("{truncated")
    with pytest.raises(artifacts.ArtifactError) as raised:
        artifacts.current_version(root)
    assert "metadata.json is not valid JSON" in _one_line(raised.value)


def test_a_cache_without_cache_info_is_one_clear_error(served_copy: Settings) -> None:
    from ranker.cache_reader import current_cache_path
    from ranker.errors import CacheMissingError
    from ranker.serve import recommend

    with duckdb.connect(str(current_cache_path(served_copy))) as con:
        con.execute("delete from cache_info")
    with pytest.raises(CacheMissingError) as raised:
        recommend("home", "u1", settings=served_copy)
    assert "no cache_info row" in _one_line(raised.value)


def test_bad_text_and_countries_are_refused_not_answered_empty(served_project: Settings) -> None:
    from ranker.errors import RecommendError
    from ranker.serve import recommend

    undecodable = b"caf\xc3".decode("utf-8", "surrogateescape")  # as argv delivers it
    with pytest.raises(RecommendError, match="not valid UTF-8"):
        recommend("search", undecodable, settings=served_project)
    with pytest.raises(RecommendError, match="did you mean 'DE'"):
        recommend("home", "u1", country="de", settings=served_project)
    with pytest.raises(RecommendError, match="country is empty"):
        recommend("home", "u1", country="", settings=served_project)
    assert recommend("home", "u1", country="DE", settings=served_project).items


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses RLIMIT_FSIZE")
def test_a_write_failure_is_one_line_and_keeps_the_cache(served_copy: Settings) -> None:
    import resource

    from ranker.cache_reader import current_cache_path

    before = os.path.realpath(current_cache_path(served_copy))
    env = dict(
        os.environ,
        UNIRANK_DUCKDB_PATH=str(served_copy.duckdb_path),
        UNIRANK_ARTIFACTS_DIR=str(served_copy.artifacts_dir),
    )

    def small_files() -> None:  # any file past 64 KiB fails to grow: "File too large"
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    completed = subprocess.run(
        [str(CLI), "score", "--project-dir", str(served_copy.project_dir)],
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=small_files,
    )
    assert completed.returncode == 1, completed.stderr[-2000:]
    output = completed.stdout + completed.stderr
    assert "Traceback" not in output, output[-3000:]
    assert "error:" in output
    assert os.path.realpath(current_cache_path(served_copy)) == before


def test_failed_or_killed_trains_leave_no_version_report_or_metrics(
    tiny_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ranker import artifacts, train
    from ranker.train import TrainParams, train_and_evaluate

    params = TrainParams(
        iterations=20, learning_rate=0.3, depth=4, compare=False, bootstrap_resamples=20
    )
    root = artifacts.models_dir(tiny_settings.artifacts_dir)
    first = train_and_evaluate(tiny_settings, params, write_reports=False).version

    # A train that fails after writing its model: the version and its reports are gone.
    def broken_reports(*args: object, **kwargs: object) -> Path:
        (tiny_settings.reports_dir / str(args[1])).mkdir(parents=True)
        raise RuntimeError("disk trouble while writing reports")

    monkeypatch.setattr(train, "_write_reports", broken_reports)
    with pytest.raises(RuntimeError, match="disk trouble"):
        train_and_evaluate(tiny_settings, params, write_reports=True)
    monkeypatch.undo()
    assert artifacts.list_versions(root) == [first]
    assert [p.name for p in root.iterdir() if p.is_dir()] == [first]
    assert not any(tiny_settings.reports_dir.iterdir())

    # A train killed after writing its model (its pid is gone): listed nowhere, swept next run.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = "20990101T000000000000Z-deadbeef"
    artifacts.write_version(root, orphan, {}, lambda p: p.write_bytes(b"model"))
    (root / orphan / artifacts.OWNER_FILE).write_text(f"{dead.pid}\n")
    (tiny_settings.reports_dir / orphan).mkdir(parents=True)
    assert orphan not in artifacts.list_versions(root)
    second = train_and_evaluate(tiny_settings, params, write_reports=False)
    assert any(orphan in note for note in second.notes), second.notes
    assert not (root / orphan).exists() and not (tiny_settings.reports_dir / orphan).exists()
    assert artifacts.list_versions(root) == [first, second.version]
    with duckdb.connect(str(tiny_settings.duckdb_path), read_only=True) as con:
        recorded = {v for (v,) in con.execute("select model_version from model_metrics").fetchall()}
    assert recorded == {first, second.version}


def test_a_model_of_an_older_build_never_replaces_one_of_a_newer_build(
    tiny_settings: Settings,
) -> None:
    """Train A starts on build 1, a build 2 is published, train B on build 2 finishes first,
    then A finishes: A must not become current (simulated by the build time each run read)."""
    from ranker import artifacts
    from ranker.train import TrainParams, train_and_evaluate

    params = TrainParams(
        iterations=20, learning_rate=0.3, depth=4, compare=False, bootstrap_resamples=20
    )
    root = artifacts.models_dir(tiny_settings.artifacts_dir)

    def published(at: str) -> None:
        with duckdb.connect(str(tiny_settings.duckdb_path)) as con:
            con.execute(
                f"create or replace table unirank_build as select timestamp '{at}' as published_at"
            )

    published("2026-01-02 00:00:00")
    newer = train_and_evaluate(tiny_settings, params, write_reports=False)
    published("2026-01-01 00:00:00")
    older = train_and_evaluate(tiny_settings, params, write_reports=False)
    assert not older.promoted and any("not promoted" in note for note in older.notes)
    assert artifacts.current_version(root).version == newer.version
    assert artifacts.list_versions(root) == [newer.version]
    published("2026-01-03 00:00:00")
    assert train_and_evaluate(tiny_settings, params, write_reports=False).promoted


@pytest.mark.parametrize(
    ("args", "from_copy"),
    [
        (["build"], False),
        (["build", "--select", "ranking_examples+"], True),
        (["build", "--select=ranking_examples"], True),
        (["build", "-s", "x"], True),
        (["build", "--exclude", "x"], True),
        (["run"], True),
        (["test"], True),
    ],
)
def test_only_a_whole_build_starts_from_an_empty_file(args: list[str], from_copy: bool) -> None:
    from ranker.build import starts_from_copy

    assert starts_from_copy(args) is from_copy


def test_quarantine_shares_keep_their_digits() -> None:
    from ranker.build import _percent

    assert (_percent(0.000385), _percent(0.0001), _percent(0.0023), _percent(0.302)) == (
        "0.0385%",
        "0.01%",
        "0.23%",
        "30.2%",
    )


def _append_csv(path: Path, *rows: str) -> None:
    with path.open("a") as file:
        file.write("".join(row + "\n" for row in rows))


def test_every_dropped_row_is_counted_with_its_reason(tmp_path: Path) -> None:
    """Duplicates, requests their canvas cannot use, orphan engagements and a fractional position
    are quarantined with a reason and counted, not dropped by label prep or fatal to the build;
    a seed read as RFC 4180 CSV keeps a doubled quote anywhere in the file."""
    project = copy_project(tmp_path / "project")
    seeds = project / "seeds" / "demo"
    items = seeds / "demo_items.csv"
    _append_csv(items, *items.read_text().splitlines()[1:4])
    # A seed of the project's own, unquoted for longer than DuckDB's dialect sniffer reads (as
    # DuckDB and most tools write CSV): only a declared dialect reads the value at the bottom.
    menu = ["dish,price", *(f"dish {n},{n % 7}" for n in range(25_000)), '"12"" pizza, thin",9']
    (project / "seeds" / "menu.csv").write_text("\n".join(menu) + "\n")
    _append_csv(
        seeds / "demo_requests.csv",
        "r_no_user,home,,US,web,,,,2026-02-13 10:25:45",
        'r_blank,search,u0000000,US,web,,"   ",,2026-02-13 10:25:45',
        "r_unshown,home,u0000000,US,web,,,,2026-02-13 10:25:45",
        "r00000000,home,u0000000,US,web,,,,2026-02-13 11:00:00",
    )
    _append_csv(
        seeds / "demo_impressions.csv",
        "r_no_user,i000001,1",
        "r_blank,i000001,1",
        "r_unshown,i000001,2.5",
    )
    _append_csv(
        seeds / "demo_engagements.csv",
        "r_nowhere,i000001,click,2026-02-13 10:27:20",
        "r00000000,i_never_shown,click,2026-02-13 10:27:20",
    )
    settings = load_settings(project, duckdb_path=tmp_path / "warehouse.duckdb")
    run_dbt(settings, ["build"], echo=False)

    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        quarantined = set(con.execute("select * from quarantined_rows").fetchall())
        summary = {
            row[0]: row[1:]
            for row in con.execute(
                "select source_table, total_rows, quarantined_rows from quarantine_summary"
            ).fetchall()
        }
        pizza = con.execute("select dish from menu where price = 9").fetchall()
    assert {
        ("items", "i000000", "duplicate item_id"),
        ("items", "i000002", "duplicate item_id"),
        ("requests", "r_no_user", "home request without user_id"),
        ("requests", "r_blank", "search request without query_text"),
        ("requests", "r00000000", "duplicate request_id"),
        ("requests", "r_unshown", "request without valid impressions"),
        ("impressions", "r_unshown/i000001", "invalid position"),
        ("impressions", "r_no_user/i000001", "request missing or quarantined"),
        ("engagements", "r_nowhere/i000001", "request missing or quarantined"),
        ("engagements", "r00000000/i_never_shown", "item not shown in its request"),
    } <= quarantined
    # Every raw row is counted: the summary's totals are the seeds' rows.
    for table in ("items", "requests", "impressions", "engagements"):
        rows = len((seeds / f"demo_{table}.csv").read_text().splitlines()) - 1
        assert summary[table][0] == rows, table
    assert summary["items"][1] == 3
    assert pizza == [('12" pizza, thin',)]


def test_train_and_score_refuse_a_warehouse_plain_dbt_left_half_built(
    warehouse: Settings, tmp_path: Path
) -> None:
    """A plain `dbt build` (not through unirank-cli, so written in place) killed mid-way leaves
    state 'running'; one that failed leaves 'failed'. train and score refuse both in one line;
    a build that passed makes the warehouse usable again."""
    from ranker.build import dbt_command
    from ranker.warehouse_publish import IncompleteBuildError, check_build_complete

    check_build_complete(warehouse.duckdb_path)  # the fixture's build completed
    env = dict(os.environ, UNIRANK_DUCKDB_PATH=str(warehouse.duckdb_path), DBT_USE_COLORS="false")
    dbt = subprocess.Popen(
        dbt_command(warehouse, ["build"]),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert dbt.stdout is not None
    for line in dbt.stdout:
        if " OK created " in line:  # dbt has started writing the warehouse in place
            break
    dbt.send_signal(signal.SIGKILL)
    dbt.wait()
    with pytest.raises(IncompleteBuildError, match=r"half-built: its last `dbt build` started"):
        check_build_complete(warehouse.duckdb_path)
    env = dict(os.environ, UNIRANK_DUCKDB_PATH=str(warehouse.duckdb_path))
    for command in (["train"], ["score"]):
        result = subprocess.run(
            [str(CLI), *command, "--project-dir", str(warehouse.project_dir)],
            env=dict(env, UNIRANK_ARTIFACTS_DIR=str(tmp_path / "artifacts")),
            capture_output=True,
            text=True,
        )
        assert result.returncode == 1, (command, result.stderr[-2000:])
        assert "half-built" in result.stderr and "Traceback" not in result.stderr, result.stderr

    failing = load_settings(
        warehouse.project_dir, {"quarantine_max_share": 0.0001}, duckdb_path=warehouse.duckdb_path
    )
    result = subprocess.run(
        dbt_command(failing, ["build", "--select", "quarantine_summary"]),
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    with pytest.raises(IncompleteBuildError, match=r"node\(s\) failed or skipped"):
        check_build_complete(warehouse.duckdb_path)

    run_dbt(warehouse, ["build", "--select", "quarantine_summary"], echo=False)
    check_build_complete(warehouse.duckdb_path)


def _set_published_at(warehouse: Path, when: str) -> None:
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            f"create or replace table unirank_build as select timestamp '{when}' as published_at"
        )


def test_a_cache_of_an_older_build_never_replaces_one_of_a_newer_build(
    served_copy: Settings,
) -> None:
    """Build while score: a score that read the previous build and finishes after a score of the
    newer build does not publish over it; a score of the newer build does."""
    from ranker.cache_reader import current_cache_path
    from ranker.score import score_candidates

    warehouse = served_copy.duckdb_path
    _set_published_at(warehouse, "2030-03-02 10:00:00")
    newer = score_candidates(served_copy, keep=10)
    assert newer.not_published is None
    current = current_cache_path(served_copy).resolve()

    _set_published_at(warehouse, "2030-03-01 10:00:00")  # the run that read the previous build
    older = score_candidates(served_copy, keep=10)
    assert older.not_published is not None and "newer build" in older.not_published
    assert current_cache_path(served_copy).resolve() == current
    assert not older.generation.exists()

    _set_published_at(warehouse, "2030-03-03 10:00:00")
    newest = score_candidates(served_copy, keep=10)
    assert newest.not_published is None
    assert current_cache_path(served_copy).resolve() == newest.generation
    with duckdb.connect(str(newest.generation), read_only=True) as con:
        built = con.execute(
            "select cast(warehouse_published_at as varchar) from cache_info"
        ).fetchone()
    assert built == ("2030-03-03 10:00:00",)
