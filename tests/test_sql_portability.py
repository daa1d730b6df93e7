"""SQL portability lint: every compiled model and data test of every project in the repository
(unirank's own demo and each examples/<name>/, which installs unirank as a package), parsed with
sqlglot as DuckDB SQL and transpiled to Spark, Trino, Snowflake and BigQuery with unsupported
constructs raised; findings are fixed or listed with a reason in
tests/sql_portability_allowlist.yml (docs/spark.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlglot
import yaml
from sqlglot import ErrorLevel, exp
from sqlglot.errors import ParseError, UnsupportedError

from ranker.build import run_dbt
from ranker.config import Settings, load_settings
from ranker.registry import DEFAULT_FEATURES, OPT_IN_FEATURES

pytestmark = pytest.mark.dbt

DIALECTS = ("spark", "trino", "snowflake", "bigquery")
ALLOWLIST = Path(__file__).with_name("sql_portability_allowlist.yml")


@dataclass(frozen=True)
class Finding:
    node: str  # model or test name, `<name>@<project>` for a unirank node compiled for a project
    dialect: str  # a target dialect, or '*' for a finding in the DuckDB SQL itself
    finding: str


def lint(node: str, sql: str) -> list[Finding]:
    """Portability findings for one compiled statement."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except ParseError as exc:
        return [Finding(node, "*", f"does not parse: {exc}")]
    findings = [
        Finding(node, "*", f"unknown function {name}")
        for name in sorted({f.name.lower() for f in tree.find_all(exp.Anonymous)})
    ]
    for dialect in DIALECTS:
        try:
            sqlglot.transpile(sql, read="duckdb", write=dialect, unsupported_level=ErrorLevel.RAISE)
        except UnsupportedError as exc:
            for message in dict.fromkeys(str(exc).split("\n\n")):
                findings.append(Finding(node, dialect, message.strip()))
    return findings


def _allowed(finding: Finding, entry: dict[str, Any]) -> bool:
    return (
        entry["node"] in ("*", finding.node.split("@")[0])
        and (entry["dialect"] == "*" or finding.dialect in ("*", entry["dialect"]))
        and entry["finding"] == finding.finding
    )


def _compile(settings: Settings, target_path: Path) -> dict[str, str]:
    run_dbt(settings, ["compile", "--target-path", str(target_path)], echo=False)
    manifest = json.loads((target_path / "manifest.json").read_text())
    return {
        node["name"]: node["compiled_code"]
        for node in manifest["nodes"].values()
        if node["resource_type"] in ("model", "test")
        and node.get("compiled_code")
        and node.get("language", "sql") == "sql"  # a Python model (ALS) is not SQL to lint
    }


def projects(root: Path) -> list[Path]:
    """Every dbt project of the repository: unirank's root and each example."""
    return [root, *sorted(p.parent for p in (root / "examples").glob("*/dbt_project.yml"))]


@pytest.fixture(scope="module")
def compiled_nodes(project_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Compiled SQL of every model and data test of every project: `dbt compile` on an empty
    warehouse (no data needed). A unirank node whose SQL differs under another project's
    registry (other canvases, context columns, features, sampling, serving) is linted again as
    `<name>@<project>`."""
    base = tmp_path_factory.mktemp("portability")
    nodes: dict[str, str] = {}
    for folder in projects(project_dir):
        settings = load_settings(folder, duckdb_path=base / f"{folder.name}.duckdb")
        for name, sql in _compile(settings, base / f"target-{folder.name}").items():
            if name not in nodes:
                nodes[name] = sql
            elif nodes[name] != sql:
                nodes[f"{name}@{settings.project_name}"] = sql
    # the opt-in built-in feature models no project lists: compiled with the demo's registry
    optin = {"features": [*DEFAULT_FEATURES, *OPT_IN_FEATURES]}
    settings = load_settings(project_dir, optin, duckdb_path=base / "opt-in.duckdb")
    for name, sql in _compile(settings, base / "target-opt-in").items():
        if name not in nodes:
            nodes[name] = sql
        elif nodes[name] != sql:
            nodes[f"{name}@opt-in"] = sql
    return nodes


def _allowlist() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = yaml.safe_load(ALLOWLIST.read_text()) or []
    return entries


def test_every_model_and_test_transpiles_or_is_allow_listed(
    compiled_nodes: dict[str, str], project_dir: Path
) -> None:
    models = {
        p.stem for folder in projects(project_dir) for p in (folder / "models").rglob("*.sql")
    }
    assert models <= set(compiled_nodes), f"not compiled: {sorted(models - set(compiled_nodes))}"
    entries = _allowlist()
    unexplained = [
        finding
        for name, sql in sorted(compiled_nodes.items())
        for finding in lint(name, sql)
        if not any(_allowed(finding, entry) for entry in entries)
    ]
    assert not unexplained, (
        "fix these or list them with a reason in "
        + str(ALLOWLIST)
        + ":\n"
        + ("\n".join(f"{f.node} [{f.dialect}]: {f.finding}" for f in unexplained))
    )


def test_every_allow_list_entry_is_still_needed_and_explained(
    compiled_nodes: dict[str, str],
) -> None:
    findings = [f for name, sql in compiled_nodes.items() for f in lint(name, sql)]
    for entry in _allowlist():
        assert set(entry) == {"node", "dialect", "finding", "reason"}, entry
        assert len(str(entry["reason"]).split()) >= 10, f"give a real reason: {entry}"
        assert any(_allowed(f, entry) for f in findings), f"stale allow-list entry: {entry}"


def test_lint_reports_engine_specific_sql_and_accepts_its_portable_form() -> None:
    window = "select sum(x) over (partition by k order by t{} range between 5 preceding and 1 preceding) from e"
    assert lint("m", "select epoch_us(t) as us, md5(a || b) as h from e") == [
        Finding("m", "*", "unknown function epoch_us")
    ]
    assert lint("m", window.format("")) == [
        Finding("m", "bigquery", "'NULLS LAST' translation not supported in window function SUM")
    ]
    assert lint("m", window.format(" nulls first")) == []
    assert lint("m", "select * from (select 1")[0].finding.startswith("does not parse")
