"""Write the per-canvas comparison of the current model (from its metadata.json) as markdown.

Reproduce: `make demo` (builds and trains on the committed demo seeds), then
`.venv/bin/python benchmarks/demo_quality.py` -> benchmarks/results/demo_quality.md.
"""

from __future__ import annotations

from pathlib import Path

from ranker import artifacts
from ranker.config import load_settings
from ranker.evaluate import METRICS

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("unified", "bespoke", "no_task", "popularity")


def _cell(value: dict[str, float]) -> str:
    return f"{value['value']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"


def _verdict(delta: dict[str, float]) -> str:
    word = "better" if delta["low"] > 0 else "worse" if delta["high"] < 0 else "tie"
    return f"{delta['value']:+.3f} [{delta['low']:+.3f}, {delta['high']:+.3f}] {word}"


def main() -> None:
    settings = load_settings(ROOT)
    model = artifacts.current_version(artifacts.models_dir(settings.artifacts_dir))
    meta = model.metadata
    lines = [
        "# Demo data: unified vs per-canvas models",
        "",
        f"Model {meta['version']} trained on the committed demo seeds ({meta['data']['rows']:,} mart "
        f"rows, fingerprint {meta['data']['fingerprint']}), params {meta['params']}. Test split; "
        "mean over requests with a positive label, 95% bootstrap interval; deltas are paired "
        "(same requests) unified minus the other model.",
        "",
        "## NDCG@10",
        "",
        "| canvas | requests | " + " | ".join(KINDS) + " | unified - bespoke | unified - no_task |",
        "| --- | ---: | " + " | ".join("---:" for _ in KINDS) + " | ---: | ---: |",
    ]
    for task in meta["metrics"]:
        if task["skipped"]:
            lines.append(f"| {task['task']} | 0 | not evaluated: {task['skipped']} |")
            continue
        cells = [_cell(task["models"][k]["ndcg@10"]) if k in task["models"] else "-" for k in KINDS]
        deltas = task["deltas_vs_unified"]
        lines.append(
            f"| {task['task']} | {task['n_requests']:,} | "
            + " | ".join(cells)
            + f" | {_verdict(deltas['bespoke']['ndcg@10'])} | {_verdict(deltas['no_task']['ndcg@10'])} |"
        )
    lines += [
        "",
        "## All metrics, unified model",
        "",
        "| canvas | " + " | ".join(METRICS) + " |",
        "| --- | " + " | ".join("---:" for _ in METRICS) + " |",
    ]
    for task in meta["metrics"]:
        if not task["skipped"]:
            lines.append(
                f"| {task['task']} | "
                + " | ".join(_cell(task["models"]["unified"][m]) for m in METRICS)
                + " |"
            )
    out = ROOT / "benchmarks" / "results" / "demo_quality.md"
    out.write_text("\n".join(lines) + "\n")
    print(out)


if __name__ == "__main__":
    main()
