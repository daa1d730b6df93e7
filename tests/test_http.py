"""The HTTP service (`unirank-cli serve`, ranker.http_service): the API contract per canvas, every
bad input answered 404 / 422 / 503 naming the problem and never 500, Prometheus metrics, and hot
swaps of the cache and the model under concurrent requests with zero failed requests."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from ranker import artifacts
from ranker.cache_reader import current_cache_path
from ranker.config import Settings
from ranker.http_service import MAX_VALUE_CHARS, create_app
from tests.conftest import with_online_budget

CLI = Path(sys.executable).with_name("unirank-cli")


def _cached(settings: Settings) -> dict[str, tuple[str, int]]:
    """One cached context per canvas: canvas -> (serving-key value, items held)."""
    with duckdb.connect(str(current_cache_path(settings)), read_only=True) as con:
        rows = con.execute(
            "select task_type, min(context_key), count(*) from recommendations "
            "where context_key = (select min(context_key) from recommendations r "
            "where r.task_type = recommendations.task_type) group by task_type"
        ).fetchall()
    return {str(task): (str(key), int(n)) for task, key, n in rows}


@pytest.fixture(scope="module")
def client(served_project: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(served_project)) as test_client:
        yield test_client


def test_every_canvas_answers_from_the_cache_by_its_own_context_column(
    client: TestClient, served_project: Settings
) -> None:
    current = artifacts.current_version(artifacts.models_dir(served_project.artifacts_dir)).version
    generation = current_cache_path(served_project).resolve().name
    cached = _cached(served_project)
    assert set(cached) == {c.name for c in served_project.registry.canvases if c.serving}
    for canvas, (key, held) in cached.items():
        column = served_project.registry.canvas(canvas).serving.key  # type: ignore[union-attr]
        k = min(held, 5)
        got = client.get(f"/recommend/{canvas}", params={column: key, "k": k})
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["answered_by"] == "cache"
        assert body["model_version"] == body["current_model_version"] == current
        assert body["stale_model"] is False
        assert body["cache_generation"] == generation
        assert [i["rank"] for i in body["items"]] == list(range(1, k + 1))
        assert all(i["source"] and i["item_id"] for i in body["items"])
        posted = client.post(
            "/recommend", json={"canvas": canvas, "context": {column: key}, "k": k}
        )
        assert posted.status_code == 200 and posted.json() == body


def test_an_unseen_context_is_scored_online_by_the_current_model_and_says_so(
    client: TestClient, served_project: Settings
) -> None:
    """A user the cache does not hold, on a canvas in the default mode cache_then_online: the
    current model scores the canvas's candidates at request time."""
    current = artifacts.current_version(artifacts.models_dir(served_project.artifacts_dir)).version
    got = client.get("/recommend/home", params={"user_id": "nobody-ever", "k": 7})
    body = got.json()
    assert got.status_code == 200 and body["answered_by"] == "online", body
    assert body["over_budget"] is False and body["model_version"] == current
    scores = [i["score"] for i in body["items"]]
    assert len(scores) == 7 and scores == sorted(scores, reverse=True)
    home = served_project.registry.canvas("home").serving
    assert home is not None
    assert {i["source"] for i in body["items"]} <= set(home.sources)


def test_an_unseen_context_is_answered_by_the_fallback_chain_in_mode_cache_only(
    cache_only_project: Settings,
) -> None:
    with TestClient(create_app(cache_only_project)) as cache_only:
        body = cache_only.get("/recommend/home", params={"user_id": "nobody-ever"}).json()
        ready = cache_only.get("/readyz").json()
    assert body["answered_by"] == "popular_in_canvas" and body["over_budget"] is False
    assert body["items"] and {i["source"] for i in body["items"]} == {"popular_in_canvas"}
    assert ready["canvases"]["home"] == {"mode": "cache_only"}


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("/recommend/nowhere", {"user_id": "u1"}, 404, None),
        ("/recommend/home", {}, 422, "user_id"),
        ("/recommend/home", {"user_id": "u1", "colour": "red"}, 422, "colour"),
        ("/recommend/home", {"user_id": "u1", "k": "0"}, 422, "k"),
        ("/recommend/home", {"user_id": "u1", "k": "1001"}, 422, "k"),
        ("/recommend/home", {"user_id": "u1", "k": "101"}, 422, "k"),  # home's max_k is 100
        ("/recommend/home", {"user_id": "u1", "k": "ten"}, 422, "k"),
        ("/recommend/home", {"user_id": "x" * (MAX_VALUE_CHARS + 1)}, 422, "user_id"),
        ("/recommend/home", {"user_id": "u1", "country": "de"}, 422, "country"),
        ("/recommend/home", {"user_id": "u1", "country": ""}, 422, "country"),
        ("/recommend/related", {"user_id": "u1"}, 422, "source_item_id"),
    ],
)
def test_bad_input_is_a_client_error_naming_the_field(
    client: TestClient, path: str, params: dict[str, str], status: int, field: str | None
) -> None:
    got = client.get(path, params=params)
    assert got.status_code == status, got.text
    body = got.json()
    assert body["error"]
    if status == 404:
        assert "home" in body["canvases"]
    else:
        assert body["field"] == field, body


def test_a_canvas_knob_bounds_k(client: TestClient) -> None:
    """The registry's serving.max_k: home takes up to 100 items (the fallbacks fill what the
    cache's 20 do not), search the global 1000."""
    home = client.get("/recommend/home", params={"user_id": "nobody", "k": 101}).json()
    assert "from 1 to 100 for canvas 'home'" in home["error"]
    assert client.get("/recommend/home", params={"user_id": "nobody", "k": 100}).status_code == 200
    assert client.get("/recommend/search", params={"query_text": "x", "k": 500}).status_code == 200


def test_undecodable_repeated_and_malformed_input_is_422(client: TestClient) -> None:
    assert client.get("/recommend/home?user_id=%ff%fe").json()["field"] == "user_id"
    repeated = client.get("/recommend/home?user_id=a&user_id=b")
    assert (repeated.status_code, repeated.json()["field"]) == (422, "user_id")
    extra = client.post("/recommend", json={"canvas": "home", "context": {"user_id": "u"}, "x": 1})
    assert (extra.status_code, extra.json()["field"]) == (422, "x")
    not_json = client.post("/recommend", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    surrogate = client.post(
        "/recommend",
        content=b'{"canvas": "search", "context": {"query_text": "\\ud800"}}',
        headers={"content-type": "application/json"},
    )
    assert (surrogate.status_code, surrogate.json()["field"]) == (422, "query_text")


def test_sql_metacharacters_are_plain_data(client: TestClient) -> None:
    got = client.get(
        "/recommend/search", params={"query_text": "x'); drop table recommendations;--"}
    )
    assert got.status_code == 200
    assert client.get("/recommend/search", params={"query_text": "vimipo"}).status_code == 200


@given(
    canvas=st.sampled_from(["home", "search", "related", "category", "nope", "ho me"]),
    key=st.sampled_from(["user_id", "query_text", "source_item_id", "category", "k", "zz"]),
    value=st.text(max_size=40),
)
def test_no_input_produces_a_server_error(
    served_project: Settings, canvas: str, key: str, value: str
) -> None:
    with TestClient(create_app(served_project)) as fuzz:
        got = fuzz.get(f"/recommend/{canvas}", params={key: value})
        assert got.status_code in (200, 404, 422), got.text
        posted = fuzz.post("/recommend", json={"canvas": canvas, "context": {key: value}})
        assert posted.status_code in (200, 404, 422), posted.text


def test_health_readiness_and_a_missing_cache(
    client: TestClient, served_project: Settings, tiny_settings: Settings
) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] is True and ready["model_version"] and ready["cache_generation"]
    with TestClient(create_app(tiny_settings)) as empty:  # no model, no cache yet
        not_ready = empty.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json()["missing"] == "model"
        missing = empty.get("/recommend/home", params={"user_id": "u1"})
        assert missing.status_code == 503
        assert "unirank-cli train" in missing.json()["run"]
    assert "/recommend/{canvas}" in client.get("/openapi.json").json()["paths"]


def test_metrics_count_requests_latency_and_answers_by_path(served_project: Settings) -> None:
    with TestClient(create_app(served_project)) as fresh:
        for _ in range(3):
            fresh.get("/recommend/home", params={"user_id": "nobody"})
        fresh.get("/recommend/nowhere", params={"user_id": "u"})
        text = fresh.get("/metrics").text
    assert 'unirank_requests_total{answered_by="online",canvas="home",status="200"} 3.0' in text
    assert 'unirank_requests_total{answered_by="error",canvas="unknown",status="404"} 1.0' in text
    assert re.search(r'unirank_request_seconds_bucket\{canvas="home",le="0\.05"\} 3\.0', text)
    assert 'unirank_request_seconds_count{canvas="home"} 3.0' in text


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_cache_publish_and_a_model_swap_under_load_fail_no_request(
    served_copy: Settings,
) -> None:
    """A real server (uvicorn) and client (httpx) from 6 threads, cached lookups and users the
    cache does not hold (scored online), while `score --keep 1` publishes twice and another
    model becomes CURRENT: every request answers 200, after the swap the cached answers say the
    cache's model is no longer the current one, and online answers are scored by the new one."""
    import uvicorn

    from ranker.score import score_candidates

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(served_copy), port=port, log_level="warning", access_log=False)
    )
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    while not server.started:
        time.sleep(0.05)
    cached = _cached(served_copy)
    stop = threading.Event()
    failures: list[str] = []
    answered = [0]
    lock = threading.Lock()

    def load() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            while not stop.is_set():
                for canvas, (key, _) in cached.items():
                    column = served_copy.registry.canvas(canvas).serving.key  # type: ignore[union-attr]
                    got = http.get(f"/recommend/{canvas}", params={column: key})
                    with lock:
                        answered[0] += 1
                        if got.status_code != 200 or got.json()["answered_by"] != "cache":
                            failures.append(f"{got.status_code} {got.text[:200]}")
                # a user the cache does not hold: scored online, or over budget the fallbacks
                got = http.get("/recommend/home", params={"user_id": f"new-{answered[0]}"})
                with lock:
                    answered[0] += 1
                    body = got.json() if got.status_code == 200 else {}
                    if not body.get("items") or not (
                        body["answered_by"] == "online" or body["over_budget"]
                    ):
                        failures.append(f"{got.status_code} {got.text[:200]}")

    threads = [threading.Thread(target=load) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        generations = set()
        for _ in range(2):
            generations.add(score_candidates(served_copy, batch_rows=2_000, keep=1).generation.name)
        models = artifacts.models_dir(served_copy.artifacts_dir)
        old = artifacts.current_version(models).version
        new = old + "-swapped"
        shutil.copytree(models / old, models / new)
        artifacts.promote(models, new)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
        after = http.get("/recommend/home", params={"user_id": cached["home"][0]}).json()
        deadline = time.monotonic() + 10
        while True:  # the first online request after the swap loads the new model
            online = http.get("/recommend/home", params={"user_id": "after-swap"}).json()
            if online["model_version"] == new or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    server.should_exit = True
    serving.join(timeout=10)
    assert not failures, failures[:5]
    assert answered[0] > 100
    assert after["cache_generation"] in generations
    assert after["current_model_version"] == new and after["stale_model"] is True
    assert online["answered_by"] == "online" and online["model_version"] == new
    assert online["stale_model"] is False


def test_a_model_being_loaded_does_not_hold_up_other_requests(
    served_copy: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After CURRENT moves, the first online request loads the new model in a worker; the
    service awaits it without blocking: a cached lookup sent meanwhile is answered while the
    model is still loading, and the online request is then scored by the new model."""
    import uvicorn

    from ranker import score

    settings = with_online_budget(served_copy, 10_000)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), port=port, log_level="warning", access_log=False)
    )
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    while not server.started:  # started: the current model and tables are loaded
        time.sleep(0.05)
    release, loading = threading.Event(), threading.Event()
    loaded = score.load_model

    def held(version: artifacts.ModelVersion) -> object:
        loading.set()
        release.wait(10)
        return loaded(version)

    monkeypatch.setattr(score, "load_model", held)
    models = artifacts.models_dir(settings.artifacts_dir)
    new = artifacts.current_version(models).version + "-next"
    shutil.copytree(models / artifacts.current_version(models).version, models / new)
    artifacts.promote(models, new)
    time.sleep(0.2)  # past POINTER_MAX_AGE: the service sees the new CURRENT
    online: dict[str, object] = {}

    def ask_online() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            online.update(http.get("/recommend/home", params={"user_id": "held-user"}).json())

    asking = threading.Thread(target=ask_online)
    asking.start()
    try:
        assert loading.wait(10)
        key = _cached(settings)["search"][0]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            cached = http.get("/recommend/search", params={"query_text": key}).json()
        assert cached["answered_by"] == "cache"
        assert not online  # still waiting for the model
    finally:
        release.set()
        asking.join(timeout=30)
        server.should_exit = True
        serving.join(timeout=10)
    assert online["answered_by"] == "online" and online["model_version"] == new


def test_the_curls_score_prints_work_against_unirank_cli_serve(served_copy: Settings) -> None:
    """`unirank-cli score` (the last step of `make demo`) ends with how to start the service,
    one curl per canvas and one for a context the cache does not hold; sent to `unirank-cli
    serve`, each of the first answers from the cache, the last is scored online."""
    env = dict(
        os.environ,
        UNIRANK_DUCKDB_PATH=str(served_copy.duckdb_path),
        UNIRANK_ARTIFACTS_DIR=str(served_copy.artifacts_dir),
    )
    project = ["--project-dir", str(served_copy.project_dir)]
    scored = subprocess.run(
        [str(CLI), "score", *project], env=env, capture_output=True, text=True, check=True
    )
    assert "unirank-cli serve" in scored.stdout
    urls = re.findall(r"curl '(http://127\.0\.0\.1:8000/recommend/[^']+)'", scored.stdout)
    *urls, unseen = urls
    assert (
        "scored online" in scored.stdout.splitlines()[-1]
        and unseen in scored.stdout.splitlines()[-1]
    )
    canvases = {c.name for c in served_copy.registry.canvases if c.serving}
    assert {re.search(r"/recommend/(\w+)", u).group(1) for u in urls} == canvases  # type: ignore[union-attr]
    port = _free_port()
    service = subprocess.Popen(
        [str(CLI), "serve", "--port", str(port), *project],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/readyz") as ready:
                    if ready.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or service.poll() is not None:
                    raise
                time.sleep(0.2)
        for url in urls:
            with urllib.request.urlopen(url.replace("http://127.0.0.1:8000", base)) as answer:
                assert b'"answered_by":"cache"' in answer.read(), url
        with urllib.request.urlopen(unseen.replace("http://127.0.0.1:8000", base)) as answer:
            assert b'"answered_by":"online"' in answer.read(), unseen
    finally:
        service.terminate()
        service.wait(timeout=20)
    assert service.stdout is not None
    assert '"status": 200' in service.stdout.read()  # the access log, one JSON line a request


def test_sampled_answers_are_logged_and_dbt_reads_them_back(served_copy: Settings) -> None:
    """`serve --sample-rate 1` writes every answer as one JSON line beside the warehouse; the
    served_answers model reads them back, one row per served item."""
    from ranker.build import run_dbt
    from ranker.http_service import served_dir

    cached = _cached(served_copy)
    with TestClient(create_app(served_copy, sample_rate=1.0)) as sampled:
        answers = [
            sampled.get("/recommend/home", params={"user_id": cached["home"][0], "k": 3}).json(),
            sampled.get("/recommend/home", params={"user_id": "nobody", "k": 2}).json(),
            sampled.post(
                "/recommend", json={"canvas": "search", "context": {"query_text": "x y"}, "k": 4}
            ).json(),
        ]
        sampled.get("/recommend/home", params={})  # a 422 is not an answer: not logged
    lines = [line for f in served_dir(served_copy).glob("answers-*.jsonl") for line in f.open()]
    assert len(lines) == 3
    run_dbt(served_copy, ["build", "--select", "served_answers"], echo=False)
    with duckdb.connect(str(served_copy.duckdb_path), read_only=True) as con:
        rows = con.execute(
            "select task_type, context_key, answered_by, count(*), min(rank), max(rank) "
            "from served_answers group by all order by all"
        ).fetchall()
    expected = sorted(
        (a["canvas"], a["context_key"], a["answered_by"], len(a["items"]), 1, len(a["items"]))
        for a in answers
    )
    assert rows == expected


def test_the_sample_rate_samples(tmp_path: Path) -> None:
    from ranker.http_service import AnswerLog

    log = AnswerLog(tmp_path, rate=0.05, seed=1)
    body = {
        "canvas": "home",
        "context_key": "u",
        "answered_by": "cache",
        "model_version": "m",
        "cache_generation": "g",
        "items": [{"rank": 1, "item_id": "i", "source": "model"}],
    }
    for _ in range(2_000):
        log.maybe_write({"context": {"user_id": "u"}}, body)
    log.close()
    written = sum(1 for f in tmp_path.glob("answers-*.jsonl") for _ in f.open())
    assert 60 <= written <= 140  # 100 expected
    with pytest.raises(ValueError, match="sample rate"):
        AnswerLog(tmp_path, rate=1.5)
