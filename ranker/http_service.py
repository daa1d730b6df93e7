"""The HTTP service `unirank-cli serve` runs: one canvas-agnostic API over the current model and
recommendations cache (FastAPI; the OpenAPI page is at ``/docs``).

- ``GET /recommend/{canvas}?<context column>=...&k=&country=`` and ``POST /recommend`` with
  ``{"canvas", "context": {...}, "k", "country"}``: the context keys are the canvas's registry
  ``context_columns`` (its serving key is required); the answer lists items with rank, score and
  source, says which path answered (``cache``, ``online`` - scored at request time by the current
  model, per the canvas's registry ``serving.mode`` - or the fallback step, and whether online
  scoring ran over the canvas's ``online_timeout_ms``), the model that scored the answer, the
  cache generation, and whether that model is no longer the current one.
- a sample of served answers (``sample_rate``, e.g. 0.05) appended as JSON lines to
  ``<warehouse dir>/served/answers-<day>-<pid>.jsonl``, which dbt reads back as the
  ``served_answers`` model, so what was served can be monitored and joined to later engagement;
- ``/healthz`` (the process is up), ``/readyz`` (model and cache loaded, their versions; 503 with
  the command to run when one is missing), ``/metrics`` (Prometheus text: requests, latency
  histogram and answers by path, per canvas).

A new cache generation (`unirank-cli score`) or a new CURRENT model (`unirank-cli train`) is
picked up on the next request, without a restart: every lookup resolves the cache link
(``ranker.serve``), and a replaced reader is closed only once no request uses it.

Errors: an unknown canvas is 404 naming the known ones; a missing or unknown context key, K out
of range, a value that is not valid UTF-8 or longer than ``MAX_VALUE_CHARS`` is 422 naming the
field; no model or cache yet is 503 naming the command. Input only ever reaches SQL as a bound
parameter (``ranker.serve``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field

from ranker import artifacts
from ranker.cache_reader import POINTER_MAX_AGE, current_cache_path, current_reader
from ranker.config import Settings
from ranker.errors import CacheMissingError, RecommendError
from ranker.serve import (
    MAX_K,
    Pending,
    Recommendations,
    begin,
    online_scorer,
)
from ranker.serve import warm as warm_cache  # the lifespan below is called warm

logger = logging.getLogger("unirank.http")
access_log = logging.getLogger("unirank.http.access")

MAX_VALUE_CHARS = 1000
RESERVED = ("k", "country")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class RecommendBody(BaseModel):
    """``POST /recommend``: the canvas, its context (registry context columns) and options."""

    model_config = ConfigDict(extra="forbid")

    canvas: str = Field(description="a canvas of the registry")
    context: dict[str, str] = Field(
        default_factory=dict,
        description="context column -> value; the canvas's serving key is required",
    )
    k: int | None = Field(default=None, description=f"items to return, 1..{MAX_K}")
    country: str | None = Field(default=None, description="keep only items available there")


class Item(BaseModel):
    rank: int
    item_id: str
    score: float | None
    source: str


class Answer(BaseModel):
    canvas: str
    context_key: str = Field(description="the serving key's value the answer is for")
    answered_by: str = Field(
        description="`cache`, `online` (scored at request time), or the fallback step that answered"
    )
    over_budget: bool = Field(
        description="online scoring ran over the canvas's online_timeout_ms: the cache or the "
        "fallback chain answered instead"
    )
    model_version: str | None = Field(description="the model that scored the items")
    current_model_version: str | None = Field(description="the CURRENT model")
    stale_model: bool = Field(description="the cache was scored by a model that is not current")
    cache_generation: str | None
    generated_at: str | None
    items: list[Item]


class _Metrics:
    """Prometheus metrics of one app (its own registry: several apps in one process, as in the
    tests, do not share counts)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "unirank_requests",
            "Recommendation requests by canvas, HTTP status and the path that answered.",
            ["canvas", "status", "answered_by"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "unirank_request_seconds",
            "Time to answer a recommendation request, by canvas.",
            ["canvas"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe(self, canvas: str, status: int, answered_by: str, seconds: float) -> None:
        self.requests.labels(canvas, str(status), answered_by).inc()
        self.latency.labels(canvas).observe(seconds)


def _error(status: int, message: str, field: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return JSONResponse(status_code=status, content=body)


def _current_model(settings: Settings) -> str | None:
    """The CURRENT model's name (its small file, read again at most every POINTER_MAX_AGE
    seconds: a swap shows within that)."""
    return artifacts.current_name(artifacts.models_dir(settings.artifacts_dir), POINTER_MAX_AGE)


def served_dir(settings: Settings) -> Path:
    """Where sampled answers go: ``served/`` beside the warehouse file (dbt's served_answers
    reads the same folder: ``UNIRANK_SERVED_DIR``, set by ``ranker.build.run_dbt``)."""
    return settings.duckdb_path.parent / "served"


class AnswerLog:
    """Appends a random ``rate`` share of served answers, one JSON object a line, to a file per
    day and process (several workers never write one file). Each line is written whole, under
    a lock, and flushed, so a reader never sees half an answer."""

    def __init__(self, directory: Path, rate: float, seed: int | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"the sample rate must be from 0 to 1, got {rate}")
        self.directory = directory
        self.rate = rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._day = ""
        self._file: TextIO | None = None

    def maybe_write(self, request: Mapping[str, Any], body: Mapping[str, Any]) -> None:
        if self.rate <= 0.0:
            return
        with self._lock:
            if self._random.random() >= self.rate:
                return
            now = datetime.now(timezone.utc)
            line = json.dumps(
                {
                    "answer_id": uuid.uuid4().hex,
                    "served_at": now.isoformat(timespec="microseconds"),
                    "canvas": body["canvas"],
                    "context": dict(request.get("context", {})),
                    "context_key": body["context_key"],
                    "k": request.get("k"),
                    "country": request.get("country"),
                    "answered_by": body["answered_by"],
                    "model_version": body["model_version"],
                    "cache_generation": body["cache_generation"],
                    "items": [
                        {"rank": i["rank"], "item_id": i["item_id"], "source": i["source"]}
                        for i in body["items"]
                    ],
                },
                ensure_ascii=False,
            )
            day = now.strftime("%Y%m%d")
            if self._file is None or day != self._day:
                if self._file is not None:
                    self._file.close()
                self.directory.mkdir(parents=True, exist_ok=True)
                name = f"answers-{day}-{os.getpid()}.jsonl"
                self._file = open(self.directory / name, "a", encoding="utf-8")  # noqa: SIM115
                self._day = day
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def create_app(settings: Settings, sample_rate: float = 0.0) -> FastAPI:
    """The service over ``settings``' model store and cache. The registry is read once, here.
    ``sample_rate``: the share of served answers written to :func:`served_dir`."""

    @asynccontextmanager
    async def warm(_: FastAPI) -> AsyncIterator[None]:
        """Load the current cache before the first request (a cold first lookup reads the
        whole cache: ~100 ms on the demo); no cache yet is fine, /readyz says so."""
        warm_cache(settings)
        yield
        answers.close()

    app = FastAPI(
        title="unirank",
        summary="One ranking model, every canvas: recommendations from the current cache.",
        version="0.1.0",
        lifespan=warm,
    )
    metrics = _Metrics()
    answers = AnswerLog(served_dir(settings), sample_rate)
    canvases = {c.name: c for c in settings.registry.canvases}
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.answers = answers

    async def answer(
        canvas: str, context: Mapping[str, str], k: int | None, country: str | None
    ) -> tuple[int, dict[str, Any], str]:
        """(HTTP status, JSON body, the path that answered or the error kind)."""
        found = canvases.get(canvas)
        if found is None:
            return (
                404,
                {"error": f"unknown canvas {canvas!r}", "canvases": sorted(canvases)},
                "error",
            )
        if found.serving is None:
            return (
                404,
                {"error": f"canvas {canvas!r} has no `serving` entry in the registry"},
                "error",
            )
        allowed = set(found.context_columns)
        for key, value in context.items():
            if key not in allowed:
                return (
                    422,
                    {
                        "error": f"canvas {canvas!r} has no context column {key!r}; "
                        f"it takes {sorted(allowed)}",
                        "field": key,
                    },
                    "error",
                )
            problem = _value_problem(value)
            if problem:
                return 422, {"error": f"{key} {problem}", "field": key}, "error"
        if country is not None and _value_problem(country):
            return 422, {"error": f"country {_value_problem(country)}", "field": "country"}, "error"
        if found.serving.key not in context:
            return (
                422,
                {
                    "error": f"canvas {canvas!r} is looked up by {found.serving.key}; give a value for it",
                    "field": found.serving.key,
                },
                "error",
            )
        try:
            result = begin(canvas, dict(context), k=k, country=country, settings=settings)
            if isinstance(result, Pending):
                result = await _scored(result)
        except CacheMissingError as exc:
            current = _current_model(settings)
            command = (
                "unirank-cli score" if current else "unirank-cli train, then unirank-cli score"
            )
            return 503, {"error": str(exc), "run": command}, "unavailable"
        except RecommendError as exc:
            return 422, {"error": str(exc), "field": exc.field}, "error"
        return 200, _body(result, settings), result.answered_by

    async def respond(
        canvas: str, context: Mapping[str, str], k: int | None, country: str | None
    ) -> JSONResponse:
        started = time.perf_counter()
        status, body, path = await answer(canvas, context, k, country)
        seconds = time.perf_counter() - started
        if status == 200:
            answers.maybe_write({"context": context, "k": k, "country": country}, body)
        label = canvas if canvas in canvases else "unknown"
        metrics.observe(label, status, path, seconds)
        access_log.info(
            json.dumps(
                {
                    "canvas": canvas,
                    "status": status,
                    "answered_by": path,
                    "items": len(body.get("items", [])),
                    "ms": round(seconds * 1000, 3),
                }
            )
        )
        return JSONResponse(status_code=status, content=body)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query")]
        field = ".".join(location) or None
        return _error(422, f"{field or 'request'}: {first.get('msg', 'invalid')}", field)

    @app.get("/recommend/{canvas}", response_model=Answer, tags=["recommend"])
    async def recommend_get(canvas: str, request: Request) -> Response:
        """Recommendations for one context, given as query parameters named after the canvas's
        context columns (e.g. ``/recommend/home?user_id=u0000123``), plus ``k`` and ``country``."""
        params = request.query_params
        context: dict[str, str] = {}
        for key in params:
            values = params.getlist(key)
            if len(values) > 1:
                return _error(422, f"{key} is given {len(values)} times; give it once", key)
            if key not in RESERVED:
                context[key] = values[0]
        k: int | None = None
        if "k" in params:
            try:
                k = int(params["k"])
            except ValueError:
                return _error(422, f"k must be an integer from 1 to {MAX_K}", "k")
            if not 1 <= k <= MAX_K:
                return _error(422, f"k must be an integer from 1 to {MAX_K}, got {k}", "k")
        return await respond(canvas, context, k, params.get("country"))

    @app.post("/recommend", response_model=Answer, tags=["recommend"])
    async def recommend_post(body: RecommendBody) -> Response:
        """The same as ``GET /recommend/{canvas}`` with a JSON body."""
        if body.k is not None and not 1 <= body.k <= MAX_K:
            return _error(422, f"k must be an integer from 1 to {MAX_K}, got {body.k}", "k")
        return await respond(body.canvas, body.context, body.k, body.country)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """Ready when a CURRENT model and a cache exist: their versions, or what is missing."""
        model = _current_model(settings)
        cache = current_cache_path(settings)
        generation = Path(cache).resolve().name if cache.exists() else None
        body: dict[str, Any] = {"model_version": model, "cache_generation": generation}
        if model is None:
            body.update(ready=False, missing="model", run="unirank-cli train")
            return JSONResponse(status_code=503, content=body)
        if generation is None:
            body.update(ready=False, missing="cache", run="unirank-cli score")
            return JSONResponse(status_code=503, content=body)
        body["ready"] = True
        body["canvases"] = _online_status(settings)
        return JSONResponse(content=body)

    @app.get("/metrics", tags=["operations"])
    async def prometheus() -> PlainTextResponse:
        """Prometheus text format."""
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def _scored(pending: Pending) -> Recommendations:
    """Wait for online scoring within the canvas's budget without holding the event loop (other
    requests, cached ones included, are answered meanwhile); over it, the cache or the fallback
    chain answers and says so. The scoring itself is not cancelled: its result is kept for the
    next lookup of that context."""
    assert pending.future is not None
    waiting = asyncio.wrap_future(pending.future)
    try:
        scored = await asyncio.wait_for(asyncio.shield(waiting), pending.seconds_left())
    except asyncio.TimeoutError:
        return pending.finish(None, over_budget=True)
    except Exception as exc:  # see Pending.failed: the cache and the fallbacks still answer
        pending.failed(exc)
        return pending.finish(None)
    return pending.finish(scored)


def _online_status(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per served canvas: its serving mode, and whether online scoring can answer (else why)."""
    registry = settings.registry
    modes = {
        c.name: registry.serving_mode(c.name) for c in registry.canvases if c.serving is not None
    }
    problem: str | None = None
    if any(mode != "cache_only" for mode in modes.values()):
        try:
            problem = online_scorer(settings).warm(current_reader(settings))
        except CacheMissingError as exc:
            problem = str(exc)
    status: dict[str, dict[str, Any]] = {}
    for name, mode in modes.items():
        status[name] = {"mode": mode}
        if mode != "cache_only":
            status[name]["online"] = problem is None
            if problem is not None:
                status[name]["online_unavailable"] = problem
    return status


def _value_problem(value: str) -> str | None:
    """Why a context value cannot be looked up, or None."""
    if len(value) > MAX_VALUE_CHARS:
        return f"is longer than {MAX_VALUE_CHARS} characters"
    if "\ufffd" in value:  # what an undecodable %-escape in a query string becomes
        return "is not valid UTF-8"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


def _body(result: Recommendations, settings: Settings) -> dict[str, Any]:
    current = _current_model(settings)
    return {
        "canvas": result.task,
        "context_key": result.context_key,
        "answered_by": result.answered_by,
        "over_budget": result.over_budget,
        "model_version": result.model_version,
        "current_model_version": current,
        "stale_model": bool(current and result.model_version and current != result.model_version),
        "cache_generation": result.cache_generation,
        "generated_at": result.generated_at,
        "items": [r.__dict__ for r in result.items],
    }
