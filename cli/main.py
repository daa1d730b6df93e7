"""unirank-cli: one ranking model for several recommendation canvases.

Thin by design: each command parses options, loads the settings, calls one ``ranker`` function
and prints a short summary. Known errors become a one-line message and exit code 1.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

# pydantic looks up plugins in every installed package's entry points the first time a model
# is built (about 50 ms of each command's start); the CLI uses none. A process that imports
# ranker as a library keeps pydantic's own behaviour.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ranker.errors import UnirankError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from ranker import evaluate, serve
    from ranker import train as train_stage
    from ranker.config import Settings
    from ranker.monitor import MonitorResult

# The default of `score --memory-limit` (ranker.score.DEFAULT_MEMORY_LIMIT; the CLI does not
# import the scoring stage to show --help).
DEFAULT_MEMORY_LIMIT = "512MB"

app = typer.Typer(
    help=(
        "unirank: serve several recommendation canvases (home, related, search, category, ...) "
        "from ONE CatBoost ranking model, declared in SQL with dbt. Typical flow: "
        "`generate` (optional, larger demo logs) -> `build` (dbt: labels, union, features, mart) "
        "-> `train` (one model, evaluated per canvas, reports)."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,  # help paragraphs rewrap; "[spark]" and the like print as written
    add_completion=False,
)
console = Console(stderr=True)
out = Console()
SERVE_URL = "http://127.0.0.1:8000"  # `unirank-cli serve`'s default address


def _progress(label: str, unit: str) -> Progress:
    """A progress bar on stderr: label, bar, done/total unit, elapsed (imported when used)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        console=console,
    )


ProjectDir = Annotated[
    Path,
    typer.Option(
        "--project-dir",
        help="Your dbt project (holds dbt_project.yml with the registry under `vars: unirank:`); "
        "default: the current folder.",
    ),
]
TargetOption = Annotated[
    str | None,
    typer.Option(
        "--target",
        help="dbt target from profiles.yml the warehouse lives in: duckdb (default) or spark "
        "(needs `pip install -e '.[spark]'`); default UNIRANK_TARGET or the profile's default.",
    ),
]
VarsOption = Annotated[
    str | None,
    typer.Option(
        "--vars",
        help="Registry overrides as YAML/JSON, exactly as `dbt --vars`: a top-level key replaces "
        "the project's value, e.g. '{stratification: {strategy: equal, budget: 5000, seed: 1}}'.",
    ),
]


@contextmanager
def _known_errors(code: int = 1) -> Iterator[None]:
    """A known error becomes one `error:` line and exit ``code`` (1; `monitor` keeps 1 for its
    verdict and exits 2 on errors)."""
    try:
        yield
    except UnirankError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(code=code) from exc
    except OSError as exc:  # a write that failed: disk full, file too large, no permission
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(code=code) from exc
    except Exception as exc:
        if not _is_duckdb_write_error(exc):
            raise
        first = str(exc).strip().splitlines()[0]
        console.print(f"[bold red]error:[/] {escape(first)}", soft_wrap=True, highlight=False)
        raise typer.Exit(code=code) from exc


def _is_duckdb_write_error(exc: BaseException) -> bool:
    """A write that failed inside DuckDB (its IOException, or a commit that could not write its
    file), without importing duckdb for commands that never load it."""
    classes = type(exc).__mro__
    if not any(cls.__module__.lstrip("_").startswith("duckdb") for cls in classes):
        return False
    return any(cls.__name__ == "IOException" for cls in classes) or "Could not write" in str(exc)


def _settings(
    project_dir: Path,
    vars_text: str | None,
    extra: dict[str, Any] | None = None,
    target: str | None = None,
) -> Settings:
    from ranker.config import load_settings, parse_var_overrides

    overrides = parse_var_overrides(vars_text)
    overrides.update(extra or {})
    return load_settings(project_dir, overrides, target=target)


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log what each stage does.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


@app.command()
def generate(
    rows: Annotated[
        int, typer.Option("--rows", "-n", min=1_000, help="Target number of impression rows.")
    ] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same logs.")] = 7,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the Parquet set (one sub-folder per table).")
    ] = Path("data/generated"),
    seeds: Annotated[
        bool,
        typer.Option(
            "--seeds",
            help="Write the committed demo seeds (CSV, seeds/demo) instead of a Parquet set.",
        ),
    ] = False,
    chunk_requests: Annotated[
        int, typer.Option(min=1_000, help="Requests per chunk: bounds memory.")
    ] = 50_000,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Generate deterministic multi-canvas demo logs (Parquet, or the committed seeds).

    Writes users, items, requests, impressions and engagements in chunks of requests, so memory
    stays bounded at any size. Build on a set with `unirank-cli build --logs <out>`.
    """
    from ranker import simulate

    with _known_errors():
        config = simulate.SimulationConfig(
            n_impressions=rows, seed=seed, chunk_requests=chunk_requests
        )
        target = project_dir / "seeds" / "demo" if seeds else out_dir
        file_format = "csv" if seeds else "parquet"
        with _progress("generating", "requests") as progress:
            task = progress.add_task("generate", total=config.n_requests)
            on_chunk: Callable[[int], None] = lambda done: progress.update(task, completed=done)  # noqa: E731
            result = simulate.generate(config, target, file_format, on_chunk=on_chunk)
        table = Table(title=f"generated {file_format} logs in {result.directory}")
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name, count in result.row_counts.items():
            table.add_row(name, f"{count:,}")
        out.print(table)


@app.command()
def build(
    logs: Annotated[
        Path | None,
        typer.Option(
            "--logs",
            help="A generated Parquet set (from `generate`) to build on instead of the committed "
            "demo seeds; sets vars demo_source=parquet and demo_path.",
        ),
    ] = None,
    select: Annotated[
        str | None, typer.Option("--select", "-s", help="dbt selection, e.g. 'ranking_examples+'.")
    ] = None,
    target: TargetOption = None,
    vars_text: VarsOption = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Run `dbt build`: labels, stratified union, features and the ranking mart, with all tests.

    Builds staging, per-canvas label prep, the stratified union with sentinels, point-in-time
    features and the ranking mart, runs every dbt test, then prints the mart's requests per canvas
    and split and the quarantined rows.
    """
    from ranker import build as build_stage
    from ranker import spark as spark_stage
    from ranker.simulate import SimulationError

    with _known_errors():
        extra: dict[str, Any] = {}
        if logs is not None:
            if not logs.is_dir():
                raise SimulationError(
                    f"--logs {logs} is not a folder; create one with `unirank-cli generate --out {logs}`"
                )
            extra = {"demo_source": "parquet", "demo_path": str(logs.resolve())}
        settings = _settings(project_dir, vars_text, extra, target=target)
        args = ["build"] + (["--select", select] if select else [])
        build_stage.run_dbt(settings, args)
        try:
            _print_mart_summary(settings)
        except (
            spark_stage.SparkError
        ) as exc:  # e.g. a Thrift target: dbt built it, Python can't read
            out.print(f"dbt build succeeded; summary not shown: {escape(str(exc))}")


def _print_mart_summary(settings: Settings) -> None:
    from ranker.dataset import location, mart_summary, quarantine_summary

    summary = mart_summary(settings)
    table = Table(title=f"ranking_examples in {location(settings)}")
    for column in ("canvas", "split", "requests", "rows", "positive share"):
        table.add_column(column, justify="left" if column in ("canvas", "split") else "right")
    for row in summary:
        table.add_row(
            row.task_type,
            row.split,
            f"{row.requests:,}",
            f"{row.rows:,}",
            f"{row.positive_share:.3f}",
        )
    out.print(table)
    quarantine = quarantine_summary(settings)
    if quarantine:
        quarantined = ", ".join(
            f"{r.source_table} {r.quarantined_rows:,} ({r.quarantined_share:.2%})"
            for r in quarantine
        )
        out.print(f"quarantined rows: {quarantined} (see table quarantined_rows)")


@app.command()
def train(
    iterations: Annotated[int | None, typer.Option(min=1, help="Max boosting iterations.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    depth: Annotated[int | None, typer.Option(min=1, max=16, help="Tree depth.")] = None,
    border_count: Annotated[
        int | None, typer.Option(min=1, help="Histogram borders per numeric feature.")
    ] = None,
    early_stopping_rounds: Annotated[
        int | None,
        typer.Option(min=1, help="Stop after this many rounds without a better valid NDCG@10."),
    ] = None,
    max_negatives: Annotated[
        int | None,
        typer.Option(
            "--max-negatives", min=1, help="Keep at most N negatives per training request (faster)."
        ),
    ] = None,
    yetirank_permutations: Annotated[
        int | None,
        typer.Option(min=1, help="YetiRank permutations per iteration (fewer = faster)."),
    ] = None,
    one_hot_max_size: Annotated[
        int | None,
        typer.Option(
            min=1, max=255, help="One-hot categoricals with at most N values (instead of CTRs)."
        ),
    ] = None,
    canvas_weights: Annotated[
        str | None,
        typer.Option(
            help="Weight of each canvas's requests: none (by request count), sqrt, or "
            "balanced (every canvas the same in total)."
        ),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (-1 = all).")] = None,
    compare: Annotated[
        bool,
        typer.Option(help="Also train the per-canvas (bespoke) and no-task models and compare."),
    ] = True,
    reports: Annotated[bool, typer.Option(help="Write the HTML reports.")] = True,
    force: Annotated[
        bool,
        typer.Option(
            help="Make the new model CURRENT even when the promotion gate would keep it as a "
            "candidate (recorded in its metadata)."
        ),
    ] = False,
    target: TargetOption = None,
    vars_text: VarsOption = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Train one CatBoost YetiRank model for all canvases; evaluate it per canvas; publish it.

    Reads the ranking mart (run `build` first; with --target spark, from Spark through Arrow),
    trains the unified model with early stopping on the valid split, compares it on the test
    split with a model per canvas, the model without task_type, popularity and the CURRENT
    model, writes artifacts/models/<version>/, the model_metrics table (in the target's
    warehouse) and reports/<version>/. The new version becomes CURRENT only when no canvas is
    surely worse than the current model (registry `promotion`); otherwise it is kept as a
    candidate (`models list`, `models promote`).
    """
    from ranker import train as train_stage

    with _known_errors():
        settings = _settings(project_dir, vars_text, target=target)
        params = train_stage.TrainParams.from_settings(
            settings,
            iterations=iterations,
            learning_rate=learning_rate,
            depth=depth,
            border_count=border_count,
            early_stopping_rounds=early_stopping_rounds,
            max_negatives_per_request=max_negatives,
            yetirank_permutations=yetirank_permutations,
            one_hot_max_size=one_hot_max_size,
            canvas_weights=canvas_weights,
            thread_count=threads,
        )
        params = dataclasses.replace(params, compare=compare)
        with _progress("{task.description:<22}", "iterations") as progress:
            bars: dict[str, TaskID] = {}

            def on_progress(stage: str, done: int, total: int) -> None:
                if stage not in bars:
                    bars[stage] = progress.add_task(f"training {stage}", total=total)
                progress.update(bars[stage], completed=done, total=total)

            result = train_stage.train_and_evaluate(
                settings, params, on_progress, write_reports=reports, force=force
            )
        _print_evaluation(result)


def _print_evaluation(result: train_stage.TrainingResult) -> None:
    from ranker import verdict
    from ranker.evaluate import HEADLINE_METRIC

    metric = HEADLINE_METRIC
    table = Table(
        title=f"{metric} on the test split: the unified model, and unified minus each "
        "comparison model (paired 95% interval: better / tie / worse)"
    )
    versus = ["bespoke", "no_task", "popularity", "current"]
    versus += sorted({k for e in result.evaluations for k in e.deltas} - {*versus})  # peers
    versus = [k for k in versus if any(k in e.deltas for e in result.evaluations)]
    table.add_column("canvas")
    table.add_column("requests", justify="right")
    table.add_column("unified", justify="right")
    for kind in versus:
        table.add_column(f"vs {kind}", justify="right")
    for evaluation in result.evaluations:
        if evaluation.skipped:
            table.add_row(evaluation.task, "0", f"not evaluated: {evaluation.skipped}")
            continue
        unified = evaluation.models.get("unified")
        cells = ["-" if unified is None else _plus_minus(unified.metrics[metric])]
        for kind in versus:
            delta = evaluation.deltas.get(kind, {}).get(metric)
            cells.append("-" if delta is None else _verdict(delta))
        table.add_row(evaluation.task, f"{evaluation.n_requests:,}", *cells)
    out.print(table)
    if "bespoke" in versus:  # the product's question: one model against a model per canvas
        for evaluation in result.evaluations:
            delta = evaluation.deltas.get("bespoke", {}).get(metric)
            if delta is not None and not evaluation.skipped:
                out.print(verdict.sentence(evaluation.task, "bespoke", delta, metric))
    for disagreement in verdict.disagreements(result.evaluations, metric, versus):
        out.print(f"[yellow]pooled vs canvases: {disagreement}[/yellow]")
    for note in result.notes:
        out.print(f"note: {note}")
    if result.promoted:
        out.print(f"model {result.version}: {result.model_dir} (now current)")
    else:
        kept = result.model_dir.is_dir()  # a candidate; else discarded (an older build)
        hint = f"; `unirank-cli models promote {result.version}` makes it current" if kept else ""
        out.print(f"model {result.version}: not promoted (see the note above){hint}")
    if result.report_index is not None:
        out.print(f"report: {result.report_index}")


def _plus_minus(interval: evaluate.Interval) -> str:
    return f"{interval.value:.3f} ±{(interval.high - interval.low) / 2:.3f}"


def _verdict(delta: evaluate.Interval) -> str:
    """A paired difference and whether its 95% interval excludes zero."""
    from ranker.verdict import word

    return f"{delta.value:+.3f} {word(delta)}"


@app.command()
def score(
    batch_rows: Annotated[
        int, typer.Option(min=1_000, help="Candidates per Arrow batch: bounds memory.")
    ] = 250_000,
    threads: Annotated[
        int,
        typer.Option(
            help="Threads for CatBoost predict and DuckDB (-1 = all cores; on Spark: CatBoost "
            "threads per task, -1 = 1)."
        ),
    ] = -1,
    memory_limit: Annotated[
        str,
        typer.Option(
            "--memory-limit",
            help="DuckDB memory limit while scoring (it spills to disk beyond it), e.g. 512MB.",
        ),
    ] = DEFAULT_MEMORY_LIMIT,
    keep: Annotated[int, typer.Option(min=1, help="Cache generations to keep on disk.")] = 3,
    samples: Annotated[
        int, typer.Option(min=0, help="Example recommendations to print per canvas.")
    ] = 0,
    target: TargetOption = None,
    vars_text: VarsOption = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Score serving candidates with the current model and publish the recommendations cache.

    Reads serving_candidates (run `build`) in Arrow batches (Python memory bounded by
    --batch-rows, DuckDB's by --memory-limit), predicts, keeps the top K per context (K
    per canvas in the registry), fills cold contexts from the canvas's fallback chain, and
    publishes <warehouse dir>/cache/current.duckdb atomically: readers see the previous complete
    cache until the new one is in place; a failed run leaves it untouched. With --target spark
    the candidates are scored in parallel Spark tasks and the cache is the Spark view
    <schema>_cache.recommendations, switched to each new complete generation.
    """
    from ranker import score as score_stage
    from ranker.warehouse import engine

    with _known_errors():
        settings = _settings(project_dir, vars_text, target=target)
        if engine(settings) == "spark":
            _score_on_spark(settings, batch_rows, threads, keep, samples)
            return
        with _progress("scoring", "candidates") as progress:
            task = progress.add_task("score", total=None)

            def on_progress(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            result = score_stage.score_candidates(
                settings,
                batch_rows=batch_rows,
                threads=threads,
                keep=keep,
                on_progress=on_progress,
                memory_limit=memory_limit,
            )
        if result.not_published:
            out.print(f"[yellow]{escape(result.not_published)}[/yellow]")
            return
        out.print(
            f"cache {result.cache_path} -> {result.generation.name}: {result.cache_rows:,} rows for "
            f"{result.contexts:,} contexts ({result.fallback_rows:,} filled by fallbacks) from "
            f"{result.candidate_rows:,} candidates, model {result.model_version}, "
            f"dbt run {result.dbt_invocation_id}, {result.seconds:.1f}s"
        )
        _print_cache_metrics(result.cache_metrics)
        for note in result.notes:
            out.print(f"note: {note}")
        _warn_if_not_current(settings, result.model_version, "the cache just published")
        if samples:
            _print_samples(settings, samples)
        _print_serving_hint(settings)


def _print_cache_metrics(rows: list[tuple[str, str, float]]) -> None:
    """Beyond accuracy per canvas on the published cache (also in the warehouse's cache_metrics)."""
    from ranker.beyond_accuracy import METRICS

    if not rows:
        return
    values = {(task, metric): value for task, metric, value in rows}
    table = Table(
        title="what is served, per canvas (warehouse table cache_metrics): catalogue coverage, "
        "distinct categories per list, popularity percentile (0.5 = no bias), fallback share"
    )
    table.add_column("canvas")
    for metric in METRICS:
        table.add_column(metric.replace("_", " "), justify="right")
    for task in dict.fromkeys(task for task, _, _ in rows):
        cells = []
        for metric in METRICS:
            value = values.get((task, metric))
            if value is None:
                cells.append("-")
            elif metric == "contexts":
                cells.append(f"{value:,.0f}")
            else:
                cells.append(f"{value:.3f}" if metric != "distinct_categories" else f"{value:.1f}")
        table.add_row(task, *cells)
    out.print(table)


def _warn_if_not_current(settings: Settings, model_version: str | None, what: str) -> None:
    """Say when ``what`` was scored by a model that is not (or no longer) CURRENT."""
    from ranker import artifacts

    current = artifacts.current_name(artifacts.models_dir(settings.artifacts_dir))
    if model_version and current and model_version != current:
        out.print(
            f"[yellow]note: {what} was scored by model {model_version}, but CURRENT is "
            f"{current}; run `unirank-cli score` to score with it[/yellow]"
        )


def _score_on_spark(
    settings: Settings, batch_rows: int, threads: int, keep: int, samples: int
) -> None:
    from ranker import score_spark

    with console.status("scoring on Spark"):
        result = score_spark.score_candidates_spark(
            settings, keep=keep, threads=max(threads, 1), batch_rows=batch_rows
        )
    out.print(
        f"cache {result.cache_table} -> {result.generation}: {result.cache_rows:,} rows for "
        f"{result.contexts:,} contexts ({result.fallback_rows:,} filled by fallbacks) from "
        f"{result.candidate_rows:,} candidates, model {result.model_version}, "
        f"dbt run {result.dbt_invocation_id}, {result.seconds:.1f}s"
    )
    if samples:
        for task, key, items in score_spark.sample_recommendations(settings, samples, k=5):
            table = Table(title=f"{task} | {key} (from {result.cache_table})")
            for column in ("rank", "item", "score", "source"):
                table.add_column(column, justify="right" if column in ("rank", "score") else "left")
            for rank, item, item_score, source in items:
                table.add_row(
                    str(rank), item, "-" if item_score is None else f"{item_score:.3f}", source
                )
            out.print(table)


def _sample_contexts(settings: Settings, per_canvas: int) -> list[tuple[str, str]]:
    """A few cached contexts per canvas: (canvas, serving-key value)."""
    import duckdb

    from ranker.cache_reader import current_cache_path

    with duckdb.connect(str(current_cache_path(settings)), read_only=True) as con:
        rows = con.execute(
            "select task_type, context_key from (select task_type, context_key, "
            "row_number() over (partition by task_type order by hash(context_key)) as n "
            "from (select distinct task_type, context_key from recommendations)) where n <= ? "
            "order by task_type, context_key",
            [per_canvas],
        ).fetchall()
    return [(str(task), str(key)) for task, key in rows]


def _print_samples(settings: Settings, per_canvas: int) -> None:
    """A few cached contexts per canvas and their top items (what `make demo` ends with)."""
    from ranker import serve

    for task, key in _sample_contexts(settings, per_canvas):
        _print_recommendations(serve.recommend(task, key, k=5, settings=settings))


def _invoked_as() -> str:
    """This CLI as the user can type it again: `unirank-cli` when that is on PATH, otherwise
    the path it was started by (relative to the current folder when under it, e.g.
    `.venv/bin/unirank-cli` after `make demo`)."""
    import shutil

    started = Path(sys.argv[0]).resolve()
    on_path = shutil.which("unirank-cli")
    if on_path and Path(on_path).resolve() == started:
        return "unirank-cli"
    try:
        return str(started.relative_to(Path.cwd()))
    except ValueError:
        return str(started)


def _print_serving_hint(settings: Settings) -> None:
    """How to serve the cache over HTTP, with one request per canvas to try, and one for a
    context the cache does not hold (scored online) where a canvas's serving mode does that."""
    from urllib.parse import urlencode

    out.print(
        f"serve it over HTTP: {_invoked_as()} serve   (then, in another shell:)", highlight=False
    )
    for task, key in _sample_contexts(settings, 1):
        column = settings.registry.canvas(task).serving.key  # type: ignore[union-attr]
        query = urlencode({column: key, "k": 5})
        out.print(f"  curl '{SERVE_URL}/recommend/{task}?{query}'", highlight=False, soft_wrap=True)
    registry = settings.registry
    online = [
        c for c in registry.canvases if c.serving and registry.serving_mode(c.name) != "cache_only"
    ]
    if online:
        canvas = online[0]
        query = urlencode({canvas.serving.key: "someone-new", "k": 5})  # type: ignore[union-attr]
        out.print(
            f"  curl '{SERVE_URL}/recommend/{canvas.name}?{query}'   "
            "# not in the cache: scored online",
            highlight=False,
            soft_wrap=True,
        )


def _print_recommendations(result: serve.Recommendations) -> None:
    table = Table(title=f"{result.task} | {result.context_key} (answered by {result.answered_by})")
    for column in ("rank", "item", "score", "source"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    for item in result.items:
        table.add_row(
            str(item.rank),
            item.item_id,
            "-" if item.score is None else f"{item.score:.3f}",
            item.source,
        )
    out.print(table)


@app.command()
def recommend(
    canvas: Annotated[str, typer.Argument(help="The canvas, as the registry names it.")],
    context: Annotated[
        list[str] | None,
        typer.Option(
            "--context",
            "-c",
            help="A context value as COLUMN=VALUE, for the canvas's serving key (any registry "
            "context column), e.g. --context user_id=u0000001. Repeatable.",
        ),
    ] = None,
    user: Annotated[str | None, typer.Option(help="Shortcut for --context user_id=...")] = None,
    item: Annotated[
        str | None, typer.Option(help="Shortcut for --context source_item_id=...")
    ] = None,
    query: Annotated[str | None, typer.Option(help="Shortcut for --context query_text=...")] = None,
    category: Annotated[
        str | None, typer.Option(help="Shortcut for --context category=...")
    ] = None,
    k: Annotated[
        int | None, typer.Option("--k", help="How many items (default: the canvas's cache K).")
    ] = None,
    country: Annotated[
        str | None,
        typer.Option(help="Only items available in this country (unknown availability = all)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    vars_text: VarsOption = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Look up recommendations: the cache, online scoring, the canvas's fallback chain.

    The canvas is looked up by the context column its registry entry names as serving key:
    `recommend home --context user_id=u0000001`, `recommend related --item i000002`,
    `recommend search --query "vimipo"`, `recommend category --category barilo --k 5`.
    Other context columns of the canvas may be given too (`--context country=DE`): online
    scoring uses them. The output says which path answered: the cache, `online` (a context the
    cache does not hold, scored by the current model, per the canvas's serving mode), or a
    fallback step.
    """
    from ranker import serve

    with _known_errors():
        settings = _settings(project_dir, vars_text)
        values: dict[str, str | None] = {
            "user_id": user,
            "source_item_id": item,
            "query_text": query,
            "category": category,
        }
        for pair in context or []:
            column, sep, value = pair.partition("=")
            if not sep or not column.strip():
                raise serve.RecommendError(
                    f"--context {pair!r} is not COLUMN=VALUE, e.g. --context user_id=u0000001"
                )
            values[column.strip()] = value
        registry = settings.registry
        if canvas in registry.canvas_names:
            serving = registry.canvas(canvas).serving
            if serving is not None and not values.get(serving.key):
                raise serve.RecommendError(
                    f"canvas {canvas!r} is looked up by {serving.key}: pass "
                    f"--context {serving.key}=VALUE"
                )
        result = serve.recommend(canvas, values, k=k, country=country, settings=settings)
        if as_json:
            import json

            typer.echo(json.dumps(result.to_dict()))
        else:
            _print_recommendations(result)
            if result.answered_by == "cache":
                _warn_if_not_current(settings, result.model_version, "the cache")


models_app = typer.Typer(
    help="The model store: list versions, show one, promote one, roll back CURRENT.",
    rich_markup_mode=None,
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")


def _models_root(project_dir: Path, vars_text: str | None) -> Path:
    from ranker import artifacts

    return artifacts.models_dir(_settings(project_dir, vars_text).artifacts_dir)


@models_app.command("list")
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    vars_text: VarsOption = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Every model version: when, on which data, its headline metric per canvas, whether the
    promotion gate let it become CURRENT, and which one is CURRENT."""
    from ranker import artifacts
    from ranker.evaluate import HEADLINE_METRIC

    with _known_errors():
        root = _models_root(project_dir, vars_text)
        current = artifacts.current_name(root)
        found = artifacts.versions(root)
    if as_json:
        import json

        listed = [
            {
                "version": v.version,
                "created_at": v.metadata.get("created_at"),
                "data_fingerprint": v.metadata.get("data", {}).get("fingerprint"),
                "status": _status(v.version, current, v.metadata),
                "current": v.version == current,
                HEADLINE_METRIC: _headline(v.metadata, HEADLINE_METRIC),
            }
            for v in found
        ]
        typer.echo(json.dumps(listed))
        return
    if not found:
        out.print(f"no model versions under {root}; run `unirank-cli train`")
        return
    canvases: list[str] = []
    for version in found:
        for entry in version.metadata.get("metrics", []):
            if entry["task"] not in canvases and entry["task"] != "all":
                canvases.append(entry["task"])
    table = Table(title=f"models under {root} (unified {HEADLINE_METRIC} on each canvas)")
    table.add_column("version / created, data fingerprint", overflow="fold", min_width=20)
    table.add_column("status", min_width=9)
    for canvas in canvases:
        table.add_column(canvas, justify="right", overflow="fold")
    for version in found:
        metadata = version.metadata
        headline = _headline(metadata, HEADLINE_METRIC)
        created = str(metadata.get("created_at", ""))[:16].replace("T", " ")
        fingerprint = str(metadata.get("data", {}).get("fingerprint", ""))[:8]
        table.add_row(
            f"{version.version}\n{created}, {fingerprint}",
            _status(version.version, current, metadata),
            *("-" if headline.get(c) is None else f"{headline[c]:.3f}" for c in canvases),
        )
    out.print(table)


def _headline(metadata: dict[str, Any], metric: str) -> dict[str, float | None]:
    """The unified model's ``metric`` per canvas, from a version's metadata."""
    return {
        e["task"]: e["models"].get("unified", {}).get(metric, {}).get("value")
        for e in metadata.get("metrics", [])
    }


def _status(version: str, current: str | None, metadata: dict[str, Any]) -> str:
    if version == current:
        return "CURRENT"
    decision = metadata.get("promotion") or {}
    if decision.get("promoted") is False:
        blocked = ", ".join(b["canvas"] for b in decision.get("blocked_by", []))
        return f"candidate (blocked by {blocked})" if blocked else "candidate"
    return "earlier"


@models_app.command("show")
def models_show(
    version: Annotated[str, typer.Argument(help="A version, as `models list` names it.")],
    vars_text: VarsOption = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """One version: data, parameters, the promotion decision, its comparison per canvas."""
    from ranker import artifacts
    from ranker.evaluate import HEADLINE_METRIC, Interval

    with _known_errors():
        root = _models_root(project_dir, vars_text)
        model = artifacts.load_version(root, version)
    metadata = model.metadata
    current = artifacts.current_name(root)
    out.print(f"model {model.version} ({_status(model.version, current, metadata)}): {model.path}")
    data = metadata.get("data", {})
    out.print(
        f"created {metadata.get('created_at')}; data {data.get('fingerprint', '')[:8]}, "
        f"{data.get('rows', 0):,} rows, {data.get('requests', 0):,} requests; best iteration "
        f"{metadata.get('best_iteration')}; evaluated on {metadata.get('evaluated_on', 'test')}"
    )
    decision = metadata.get("promotion")
    if decision:
        out.print(f"at training: {decision.get('reason')}", highlight=False)
    for at, name, reason in artifacts.history(root):
        if name == model.version:
            out.print(f"CURRENT from {at}: {reason}", highlight=False)
    table = Table(title=f"{HEADLINE_METRIC}: unified minus each model, paired 95% interval")
    table.add_column("canvas")
    table.add_column("unified", justify="right")
    kinds = sorted({k for e in metadata.get("metrics", []) for k in e.get("deltas_vs_unified", {})})
    for kind in kinds:
        table.add_column(f"vs {kind}", justify="right")
    for entry in metadata.get("metrics", []):
        unified = entry["models"].get("unified", {}).get(HEADLINE_METRIC)
        cells = []
        for kind in kinds:
            delta = entry.get("deltas_vs_unified", {}).get(kind, {}).get(HEADLINE_METRIC)
            cells.append("-" if delta is None else _verdict(Interval(**delta)))
        table.add_row(entry["task"], "-" if unified is None else f"{unified['value']:.3f}", *cells)
    out.print(table)


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="A version, as `models list` names it.")],
    vars_text: VarsOption = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Make VERSION the CURRENT model (an atomic pointer move, recorded in HISTORY); the next
    `score` scores with it, and the HTTP service picks it up without a restart."""
    from ranker import artifacts

    with _known_errors():
        root = _models_root(project_dir, vars_text)
        artifacts.load_version(root, version)  # a clear error for an unknown or broken one
        before = artifacts.current_name(root)
        artifacts.promote(root, version, "promoted by hand")
    out.print(f"CURRENT: {version} (was {before}); run `unirank-cli score` to re-score the cache")


@models_app.command("rollback")
def models_rollback(vars_text: VarsOption = None, project_dir: ProjectDir = Path(".")) -> None:
    """Make the model that was CURRENT before the current one CURRENT again."""
    from ranker import artifacts

    with _known_errors():
        root = _models_root(project_dir, vars_text)
        before = artifacts.current_name(root)
        version = artifacts.rollback(root)
    out.print(f"CURRENT: {version} (was {before}); run `unirank-cli score` to re-score the cache")


@app.command("check-online")
def check_online(
    contexts: Annotated[
        int, typer.Option(min=1, help="Cached contexts of each canvas to compare.")
    ] = 20,
    vars_text: VarsOption = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Check that online scoring agrees with batch serving (train/serve skew, online edition).

    For cached contexts of every served canvas, computes what online scoring computes for a
    context the cache does not hold - candidates from the canvas's sources, every feature, the
    current model's scores - and compares it with the warehouse's serving_candidates, the SQL
    the model was trained on. Lists every difference (canvas, context, item, column) and exits
    1 on any. Run it after `score`, for example when you add a feature of `grain: item`.
    """
    from ranker import online_skew

    with _known_errors():
        settings = _settings(project_dir, vars_text)
        report = online_skew.skew(settings, contexts_per_canvas=contexts)
    summary = f"{report.contexts:,} contexts, {report.candidates:,} candidates"
    if report.ok:
        out.print(f"online scoring agrees with batch serving: {summary}, 0 differences")
        return
    console.print(
        f"[bold red]online scoring differs from batch serving:[/] {summary}, "
        f"{len(report.mismatches):,} differences; the first:",
        highlight=False,
    )
    for mismatch in report.mismatches[:20]:
        console.print(f"  {escape(str(mismatch))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


@app.command()
def monitor(
    canvas: Annotated[
        list[str] | None,
        typer.Option(
            "--canvas",
            help="A canvas to check, as the registry names it (repeatable; default: all).",
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Exit 1 when on some canvas at least this share (above 0, at most 1) of the "
            "compared columns drifted; default: the registry's monitoring.drift_share."
        ),
    ] = None,
    target: TargetOption = None,
    vars_text: VarsOption = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Check whether what is served has drifted since the current model was trained.

    Per canvas, compares the serving candidates now (run `build` after new logs) with the
    serving candidates the CURRENT model was trained beside (its serving_reference.parquet),
    column by column with Evidently's drift test, on the columns the registry keeps stable (a
    feature column's `drift`); a retrain resets it. Shown, not gated on: the candidates against
    the model's training rows (reference.parquet; they differ by design) and, where the service
    sampled its answers (`serve --sample-rate`, then `build`), the served items, with the
    answers counted by path (cache, online, fallback). Writes
    reports/monitor/<UTC time>/index.html and drift.json. Nightly:
    `unirank-cli monitor || unirank-cli train`.

    Exit codes: 0 every canvas below the threshold; 1 some canvas at or above it (retraining
    advised); 2 an error: no CURRENT model, a model without serving_reference.parquet or
    reference.parquet (train again), no serving_candidates (build), an unknown canvas, nothing
    compared on any canvas.
    """
    from ranker import monitor as monitor_stage

    with _known_errors(code=2):
        settings = _settings(project_dir, vars_text, target=target)
        with _progress("comparing", "canvases") as progress:
            task = progress.add_task("monitor", total=None)

            def on_canvas(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            result = monitor_stage.monitor(
                settings, canvas or None, threshold=threshold, on_canvas=on_canvas
            )
    _print_monitor(result)
    if not result.compared:
        console.print(
            "[bold red]error:[/] no canvas could be compared (reasons above)", highlight=False
        )
        raise typer.Exit(code=2)
    if result.exceeding:
        console.print(
            f"[bold red]drift at or above {result.threshold:.2f}[/] on "
            f"{escape(', '.join(result.exceeding))}: retraining is advised (`unirank-cli train`)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=1)
    out.print(f"every compared canvas is below the drift threshold {result.threshold:.2f}")


def _print_monitor(result: MonitorResult) -> None:
    """The verdict per canvas (ranker.monitor.MonitorResult), how it was served, the report."""
    table = Table(
        title=f"feature drift per canvas: serving candidates now against those at training of model "
        f"{result.model_version} (threshold {result.threshold:.2f}, {result.threshold_source})"
    )
    for column in ("canvas", "compared", "drifted", "share", "exceeds", "drifted columns"):
        table.add_column(
            column,
            justify="left" if column in ("canvas", "drifted columns") else "right",
            overflow="fold",
        )
    for c in result.canvases:
        if c.candidates is None:
            table.add_row(c.canvas, "-", "-", "-", "-", f"not compared: {escape(str(c.why_not))}")
            continue
        table.add_row(
            c.canvas,
            str(len(c.candidates.columns)),
            str(len(c.candidates.drifted)),
            f"{c.share:.2f}",
            "[red]yes[/red]" if c.exceeds else "no",
            ", ".join(c.candidates.drifted) or "-",
        )
    out.print(table)
    if all(c.answers is None for c in result.canvases):
        out.print(
            "served items: none sampled yet (`unirank-cli serve --sample-rate 0.05`, then "
            "`unirank-cli build`, to monitor them too)"
        )
    for c in result.canvases:
        if c.answers is None:
            continue
        paths = ", ".join(f"{path} {share:.0%}" for path, share in c.answers.paths.items())
        served = (
            f"{len(c.served.drifted)} of {len(c.served.columns)} columns drifted"
            if c.served is not None
            else f"not compared: {escape(str(c.served_why_not))}"
        )
        out.print(
            f"served on {c.canvas}: {c.answers.total:,} sampled answers ({paths}); "
            f"served items {served}",
            highlight=False,
        )
    out.print(f"report: {result.report_index} ({result.seconds:.1f}s)")


@app.command("serve")
def serve_http(
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 = every one).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    access_log: Annotated[
        bool,
        typer.Option(
            help="Log one JSON line per recommendation request (canvas, status, path, ms)."
        ),
    ] = True,
    sample_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of served answers written as JSON lines to warehouse/served/ (dbt model "
            "served_answers reads them back), e.g. 0.05.",
        ),
    ] = 0.0,
    vars_text: VarsOption = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Serve recommendations over HTTP: GET /recommend/CANVAS?COLUMN=VALUE, POST /recommend.

    One API for every canvas: the query parameters are the canvas's registry context columns
    (`/recommend/home?user_id=u0000001`, `/recommend/related?source_item_id=i000002&k=5`),
    answered from the current cache; a context it does not hold is scored online by the current
    model (per the canvas's registry serving.mode, within its online_timeout_ms), else by the
    canvas's fallback chain. A new cache from `score` or model from `train` is picked up without
    a restart. Also /healthz, /readyz, /metrics (Prometheus) and the OpenAPI page at /docs.
    """
    with _known_errors():
        import uvicorn

        from ranker.http_service import create_app

        settings = _settings(project_dir, vars_text)
        application = create_app(settings, sample_rate=sample_rate)
        if access_log:  # one JSON object per line on stdout, for a log shipper
            requests_log = logging.getLogger("unirank.http.access")
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(logging.Formatter('{"at": "%(asctime)s", "request": %(message)s}'))
            requests_log.addHandler(handler)
            requests_log.setLevel(logging.INFO)
            requests_log.propagate = False
        console.print(
            f"serving {', '.join(settings.registry.canvas_names)} on http://{host}:{port} "
            f"(OpenAPI: http://{host}:{port}/docs); Ctrl-C stops",
            highlight=False,
        )
        uvicorn.run(application, host=host, port=port, access_log=False, log_level="warning")


@app.command()
def registry(
    schema: Annotated[
        bool,
        typer.Option(
            "--schema",
            help="Print the registry's JSON Schema (for editors: docs/registry.schema.json) "
            "instead of checking the project.",
        ),
    ] = False,
    vars_text: VarsOption = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Check the project's registry (`vars: unirank:` in dbt_project.yml) and show it.

    Exits non-zero, naming the key, where it is and the nearest valid key, on any problem: an
    unknown or misspelt key, a missing one, a wrong type or value, a model that does not exist.
    """
    if schema:
        import json

        from ranker.registry import json_schema

        typer.echo(json.dumps(json_schema(), indent=2))
        return
    with _known_errors():
        settings = _settings(project_dir, vars_text)
        reg = settings.registry
        table = Table(title=f"canvases of project {settings.project_name!r}")
        for column in ("canvas", "label model", "context columns", "required", "rules", "serving"):
            table.add_column(column, overflow="fold")
        for canvas in reg.canvases:
            rules = [
                "no source item" if canvas.exclude_source_item else "source item allowed",
                *(["no engaged items"] if canvas.exclude_engaged else []),
            ]
            table.add_row(
                canvas.name,
                canvas.label_model,
                ", ".join(canvas.context_columns),
                ", ".join(canvas.required_context),
                ", ".join(rules),
                "-" if canvas.serving is None else f"by {canvas.serving.key}, k={canvas.serving.k}",
            )
        out.print(table)
        columns = Table(title="context columns")
        for column in ("column", "type", "sentinel", "model feature"):
            columns.add_column(column)
        for col in reg.context_columns:
            columns.add_row(col.name, col.type, repr(col.sentinel), "yes" if col.feature else "")
        out.print(columns)
        features = Table(title="features (one row per probe each)")
        for column in ("feature model", "column", "type", "default", "canvases"):
            features.add_column(column, overflow="fold")
        for model in reg.feature_models:
            for i, feature_column in enumerate(model.columns):
                features.add_row(
                    (model.model + (" (built in)" if model.builtin else "")) if i == 0 else "",
                    feature_column.name,
                    feature_column.type,
                    repr(feature_column.default),
                    ", ".join(model.canvases) if model.canvases else "all",
                )
        out.print(features)
        s = reg.stratification
        out.print(
            f"stratification: {s.strategy}, budget {s.budget:,} requests, seed {s.seed}; "
            f"split: train < {reg.split.valid_from} <= valid < {reg.split.test_from} <= test"
        )
        out.print(
            f"registry OK: {len(reg.canvases)} canvases, {len(reg.model_features.all)} model features"
        )


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="The folder to create (must not hold a project).")],
    name: Annotated[
        str | None,
        typer.Option(help="The dbt project name (default: the folder's name, as an identifier)."),
    ] = None,
    unirank_path: Annotated[
        Path | None,
        typer.Option(
            "--unirank-path",
            help="Where packages.yml points for the unirank dbt package (default: this "
            "installation's folder).",
        ),
    ] = None,
) -> None:
    """Create a dbt project that uses unirank as a package and runs on its first try.

    Writes dbt_project.yml (a commented registry with two canvases), profiles.yml (a DuckDB file
    inside the project), packages.yml (pointing at unirank), a small sample log in seeds/,
    staging, label and engagement models with their contract in comments, and a README of next
    steps. Then: `cd PATH && unirank-cli build && unirank-cli train && unirank-cli score`.
    Refuses to write into a folder that already holds a dbt project or any file it would write.
    """
    from ranker import scaffold

    with _known_errors():
        result = scaffold.init_project(path, name=name, unirank_path=unirank_path)
        out.print(
            f"created project {result.name!r} in {result.directory} ({len(result.files)} files)"
        )
        out.print("next:")
        for line in result.next_steps:
            out.print(f"  {line}")


# Commands that only read: once their answer is printed, the process may end without Python's
# interpreter teardown (about 70 ms of a lookup's 0.4 s: unloading DuckDB and every module).
_READ_ONLY = {"recommend"}


def run() -> None:
    """The `unirank-cli` console script: the app; a read-only command then exits at once."""
    try:
        app()
    except SystemExit as exc:
        if len(sys.argv) > 1 and sys.argv[1] in _READ_ONLY:
            sys.stdout.flush()
            sys.stderr.flush()
            code = exc.code
            os._exit(code if isinstance(code, int) else (0 if code is None else 1))
        raise


if __name__ == "__main__":
    run()
