"""Learning curves: where one model for every canvas beats a model per canvas.

For each dataset (the demo, examples/movielens, examples/diginetica) and each canvas, the canvas
keeps 5%, 10%, 25%, 50% and 100% of its training requests (deterministic, by request: the md5 of
the request id) while the other canvases keep all of theirs. At each point the unified model
(every canvas's kept rows, the project's training settings, early stopping on the full valid
split) and a bespoke model (the canvas's kept rows only, the same settings and budget) are
scored on the canvas's full test split: NDCG@10 of each, and unified minus bespoke with its
paired 95% bootstrap interval over the same requests.

The question it answers: does sharing pay where a canvas has little data of its own?

Reproduce (about 30 minutes on 2 cores; needs ../shared/data for movielens and diginetica, and
reuses the warehouses `make quality` built under benchmarks/work/quality/, building them when
absent):

    .venv/bin/python benchmarks/learning_curve.py
    .venv/bin/python benchmarks/learning_curve.py --datasets demo      # one dataset

Writes benchmarks/results/learning_curve.{json,md,svg}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import DATA_DIRS, built_settings  # noqa: E402

from ranker.dataset import load_ranking_data  # noqa: E402
from ranker.evaluate import HEADLINE_METRIC, compare_models  # noqa: E402
from ranker.train import TrainParams, fit_ranker  # noqa: E402

FRACTIONS = (0.05, 0.10, 0.25, 0.50, 1.00)
DATASETS = ("demo", "movielens", "diginetica")
RESULTS = ROOT / "benchmarks" / "results"
COLOURS = ("#2563eb", "#f59e0b", "#10b981", "#8b5cf6", "#ef4444")


def request_share(request_ids: pd.Series) -> pd.Series:
    """A number in [0, 1) per request, from the md5 of its id: keeping the requests below f keeps
    a fraction f, the same requests on every run, nested (10% holds the 5%)."""
    unique = request_ids.drop_duplicates()
    shares = {r: int(hashlib.md5(str(r).encode()).hexdigest()[:12], 16) / 16**12 for r in unique}
    return request_ids.map(shares)


def run_dataset(name: str, threads: int, log: Any) -> dict[str, Any]:
    settings = built_settings(name)
    if settings is None:
        return {"dataset": name, "skipped": f"no data at {DATA_DIRS[name]}"}
    data = load_ranking_data(settings)
    params = TrainParams.from_settings(settings, thread_count=threads, compare=False)
    train, valid, test = data.split("train"), data.split("valid"), data.split("test")
    share = request_share(train["request_id"])
    canvases = [c for c in settings.registry.canvas_names if (test["task_type"] == c).any()]
    started = time.perf_counter()

    def fit(kind: str, rows: pd.DataFrame, valid_rows: pd.DataFrame) -> Any:
        return fit_ranker(kind, rows, valid_rows, data.features, data.categorical, params)

    full = fit("unified", train, valid)
    points: list[dict[str, Any]] = []
    for canvas in canvases:
        in_canvas = (train["task_type"] == canvas).to_numpy()
        test_rows = test[test["task_type"] == canvas]
        labels = test_rows["label"].to_numpy(dtype=float)
        groups = test_rows["request_id"].to_numpy()
        for fraction in FRACTIONS:
            keep = ~in_canvas | (share.to_numpy() < fraction)
            kept = train[keep]
            unified = full if fraction == 1.0 else fit("unified", kept, valid)
            mine = kept[kept["task_type"] == canvas]
            bespoke = fit("bespoke", mine, valid[valid["task_type"] == canvas])
            evaluation = compare_models(
                canvas,
                labels,
                groups,
                {"unified": unified.predict(test_rows), "bespoke": bespoke.predict(test_rows)},
                seed=params.random_seed,
            )
            delta = evaluation.deltas["bespoke"][HEADLINE_METRIC]
            point = {
                "canvas": canvas,
                "fraction": fraction,
                "train_requests": int(mine["request_id"].nunique()),
                "test_requests": evaluation.n_requests,
                "unified": evaluation.models["unified"].metrics[HEADLINE_METRIC].value,
                "bespoke": evaluation.models["bespoke"].metrics[HEADLINE_METRIC].value,
                "delta": delta.value,
                "low": delta.low,
                "high": delta.high,
            }
            points.append(point)
            log(
                f"{name} {canvas} {fraction:>4.0%}: {point['train_requests']:>6} requests, "
                f"unified {point['unified']:.3f} bespoke {point['bespoke']:.3f} "
                f"delta {delta.value:+.3f} [{delta.low:+.3f}, {delta.high:+.3f}]"
            )
    return {
        "dataset": name,
        "canvas_weights": params.canvas_weights,
        "params": {k: v for k, v in vars(params).items() if k not in ("compare",)},
        "seconds": round(time.perf_counter() - started, 1),
        "points": points,
    }


def verdict(point: dict[str, Any]) -> str:
    if point["low"] > 0:
        return "better"
    if point["high"] < 0:
        return "worse"
    return "tie"


def write_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Learning curves: unified against a model per canvas, by the canvas's share of data",
        "",
        f"Run {report['created_at']} on {report['machine']}, "
        "`.venv/bin/python benchmarks/learning_curve.py`. Each canvas keeps the given share of "
        "its training requests (by request id), the others keep all of theirs; NDCG@10 on the "
        "canvas's full test split; delta = unified minus bespoke with its paired 95% interval.",
        "",
        "![unified minus bespoke per canvas by share of its training requests](learning_curve.svg)",
        "",
    ]
    for run in report["runs"]:
        lines.append(f"## {run['dataset']}")
        lines.append("")
        if "skipped" in run:
            lines += [f"Skipped: {run['skipped']}.", ""]
            continue
        lines.append(
            f"Settings: the project's (canvas_weights {run['canvas_weights']}); "
            f"{run['seconds']:.0f} s."
        )
        lines.append("")
        lines.append("| canvas | share | train requests | unified | bespoke | delta [95% CI] | |")
        lines.append("| --- | ---: | ---: | ---: | ---: | --- | --- |")
        for p in run["points"]:
            lines.append(
                f"| {p['canvas']} | {p['fraction']:.0%} | {p['train_requests']:,} | "
                f"{p['unified']:.3f} | {p['bespoke']:.3f} | {p['delta']:+.3f} "
                f"[{p['low']:+.3f}, {p['high']:+.3f}] | {verdict(p)} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_svg(report: dict[str, Any]) -> str:
    """One panel per dataset, one line per canvas: unified minus bespoke with its band, over the
    share of the canvas's training requests (log axis), a zero line."""
    runs = [r for r in report["runs"] if "points" in r]
    panel_w, panel_h, left, top, bottom = 330, 240, 46, 30, 36
    width = 10 + panel_w * max(len(runs), 1)
    spans = [abs(v) for r in runs for p in r["points"] for v in (p["low"], p["high"])]
    reach = max([0.02, *spans]) * 1.05
    logs = np.log10(FRACTIONS)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{panel_h + 10}" '
        f'viewBox="0 0 {width} {panel_h + 10}" font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
    ]
    for i, run in enumerate(runs):
        x0 = 10 + i * panel_w
        plot_w = panel_w - left - 14
        plot_h = panel_h - top - bottom

        def x(fraction: float, x0: int = x0, plot_w: int = plot_w) -> float:
            span = logs[-1] - logs[0]
            return round(x0 + left + (np.log10(fraction) - logs[0]) / span * plot_w, 1)

        def y(value: float, plot_h: int = plot_h) -> float:
            return round(top + (reach - value) / (2 * reach) * plot_h, 1)

        out.append(f'<text x="{x0 + left}" y="16" font-weight="bold">{run["dataset"]}</text>')
        out.append(
            f'<line x1="{x0 + left}" y1="{y(0)}" x2="{x0 + left + plot_w}" y2="{y(0)}" '
            'stroke="#555" stroke-dasharray="4 3"/>'
        )
        for value in (-reach, -reach / 2, reach / 2, reach):
            out.append(
                f'<text x="{x0 + left - 4}" y="{y(value) + 4}" text-anchor="end" '
                f'fill="#475569">{value:+.2f}</text>'
            )
        for fraction in FRACTIONS:
            out.append(
                f'<text x="{x(fraction)}" y="{top + plot_h + 14}" text-anchor="middle" '
                f'fill="#475569">{fraction:.0%}</text>'
            )
        canvases = list(dict.fromkeys(p["canvas"] for p in run["points"]))
        for j, canvas in enumerate(canvases):
            colour = COLOURS[j % len(COLOURS)]
            mine = [p for p in run["points"] if p["canvas"] == canvas]
            band = [f"{x(p['fraction'])},{y(p['high'])}" for p in mine] + [
                f"{x(p['fraction'])},{y(p['low'])}" for p in reversed(mine)
            ]
            out.append(f'<polygon points="{" ".join(band)}" fill="{colour}" fill-opacity="0.12"/>')
            line = " ".join(f"{x(p['fraction'])},{y(p['delta'])}" for p in mine)
            out.append(
                f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
            out.append(
                f'<text x="{x0 + left + 6 + 70 * j}" y="{panel_h + 4}" fill="{colour}">'
                f"{canvas}</text>"
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import platform

    def log(line: str) -> None:
        print(line, flush=True)

    runs = [run_dataset(name, args.threads, log) for name in args.datasets]
    previous = RESULTS / "learning_curve.json"
    if previous.exists():  # keep the datasets not run this time
        kept = [
            r for r in json.loads(previous.read_text())["runs"] if r["dataset"] not in args.datasets
        ]
        runs = sorted([*kept, *runs], key=lambda r: DATASETS.index(r["dataset"]))
    report = {
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {args.threads} threads",
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "learning_curve.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "learning_curve.md").write_text(write_markdown(report))
    (RESULTS / "learning_curve.svg").write_text(write_svg(report))
    print(write_markdown(report))


if __name__ == "__main__":
    main()
