"""Dashboards and alert rules name only metrics the code defines (parsed with a PromQL parser).

The helpers here (``all_queries``, ``metric_names``, ``family_of``) are also used by
``tests/integration/test_metrics_wiring.py``, which checks the same names against a live worker.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import promql_parser
from prometheus_client import CollectorRegistry

from trackflow.streams.metrics_doc import families, sample_names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
GRAFANA = DEPLOY / "grafana"
#: Series Prometheus makes up itself for every target.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
#: Grafana's built-in interval variables, replaced by a duration before parsing.
GRAFANA_DURATIONS = re.compile(r"\$\{?__(rate_interval|interval|range)\}?")


def load(path: Path) -> ModuleType:
    """A generator script under deploy/ (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def dashboards() -> dict[str, dict[str, Any]]:
    """Committed dashboard JSON by file name."""
    paths = sorted((GRAFANA / "dashboards").glob("*.json"))
    return {p.name: json.loads(p.read_text()) for p in paths}


def _panel_queries(name: str, board: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            out.append((f"{name}: {panel['title']}", target["expr"]))
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.+),\s*\w+\)", var["definition"])
            assert m, f"{name}: variable {var['name']} is not a label_values() query"
            out.append((f"{name}: variable {var['name']}", m.group(1)))
    return out


def all_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every dashboard query, dashboard variable and alert rule."""
    out = [q for name, board in dashboards().items() for q in _panel_queries(name, board)]
    rules = load(DEPLOY / "prometheus" / "generate_rules.py")
    out += [(f"alert {a.name}", a.expr) for a in rules.alerts()]
    return out


def metric_names(expr: str) -> set[str]:
    """Every metric name a PromQL expression selects (Grafana variables substituted first)."""
    text = GRAFANA_DURATIONS.sub("5m", expr)
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            else:
                names.update(m.value for m in node.matchers.matchers if m.name == "__name__")

    promql_parser.walk(promql_parser.parse(text), visit)
    return names


@cache
def faust_sample_names() -> frozenset[str]:
    """Sample names ``streams.faust_metrics`` exports (read from a bare Faust Monitor)."""
    from faust.sensors.monitor import Monitor

    from trackflow.streams.faust_metrics import FaustCollector

    class Bare:
        monitor = Monitor()

    registry = CollectorRegistry()
    registry.register(FaustCollector(Bare()))
    return frozenset(n for fam in registry.collect() for n in _expected_samples(fam.name, fam.type))


def _expected_samples(name: str, kind: str) -> tuple[str, ...]:
    if kind == "counter":
        return (f"{name}_total",)
    if kind == "histogram":
        return (f"{name}_bucket", f"{name}_sum", f"{name}_count")
    return (name,)


def family_of(name: str) -> str | None:
    """The trackflow family a sample name belongs to, the name itself for faust/synthetic ones
    that exist, None when nobody defines it."""
    fam = sample_names().get(name)
    if fam is not None:
        return fam.name
    if name in SYNTHETIC or name in faust_sample_names():
        return name
    return None


# --- tests -------------------------------------------------------------------------------------


def test_committed_dashboards_equal_the_generator() -> None:
    gen = load(GRAFANA / "generate_dashboards.py")
    committed = {p.name: p.read_text() for p in (GRAFANA / "dashboards").glob("*.json")}
    assert committed == gen.render(), (
        "deploy/grafana/dashboards/*.json differ from generate_dashboards.py: run "
        "python deploy/grafana/generate_dashboards.py")


def test_three_dashboards_with_the_provider_variable() -> None:
    boards = dashboards()
    titles = sorted(str(b["title"]) for b in boards.values())
    assert titles == ["trackflow / Cache performance", "trackflow / Enrichment pipeline",
                      "trackflow / Resilience"], f"unexpected dashboards: {titles}"
    for name, board in boards.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["provider"]["definition"] == (
            "label_values(trackflow_provider_calls_total, provider)"), name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids must be unique"
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, f"{name}: {panel['title']} overflows the grid"


def test_no_provider_is_hard_coded() -> None:
    for where, expr in all_queries():
        if where.startswith("alert"):
            continue
        for value in re.findall(r'provider\s*=~?\s*"([^"]*)"', expr):
            assert value == "$provider", f"{where}: provider must come from $provider: {expr}"


def test_every_query_parses_and_names_only_defined_metrics() -> None:
    undefined: list[str] = []
    for where, expr in all_queries():
        names = metric_names(expr)
        assert names, f"{where}: expected at least one metric in {expr}"
        undefined += [f"{where}: {n}" for n in sorted(names) if family_of(n) is None]
    assert not undefined, "queries name metrics nobody defines:\n" + "\n".join(undefined)


def test_every_family_is_shown_or_alerted_on() -> None:
    used = {family_of(n) for _, expr in all_queries() for n in metric_names(expr)}
    unused = [f.name for f in families() if f.name not in used]
    assert not unused, f"families no dashboard or alert uses: {unused}"


def test_dashboards_cover_what_the_issue_asks() -> None:
    per_board = {name: {family_of(n) for _, e in _panel_queries(name, b) for n in metric_names(e)}
                 for name, b in dashboards().items()}
    expected = {
        "pipeline.json": {"trackflow_records_in_total", "trackflow_end_to_end_latency_seconds",
                          "trackflow_consumer_lag_records", "trackflow_enriched_total",
                          "trackflow_dead_letters_total", "trackflow_provider_calls_total",
                          "trackflow_provider_call_duration_seconds",
                          "trackflow_cache_requests_total", "trackflow_retries_total"},
        "cache.json": {"trackflow_cache_requests_total", "trackflow_cache_errors_total",
                       "trackflow_cache_operation_duration_seconds"},
        "resilience.json": {"trackflow_breaker_state", "trackflow_breaker_transitions_total",
                            "trackflow_breaker_failure_rate", "trackflow_ratelimit_tokens",
                            "trackflow_ratelimit_capacity", "trackflow_ratelimit_waits_total",
                            "trackflow_retries_total", "trackflow_retry_backoff_seconds",
                            "trackflow_retry_budget_exhausted_total",
                            "trackflow_dead_letters_total", "trackflow_dlq_parked_total"},
    }
    for name, needed in expected.items():
        missing = needed - per_board[name]
        assert not missing, f"{name} lacks panels for {sorted(missing)}"


def test_metric_names_reads_selectors_not_text() -> None:
    expr = ('histogram_quantile(0.9, sum by (le) (rate(a_bucket{x="b_total"}[$__rate_interval])))'
            ' / on() group_left absent({__name__="c"}) or vector(1)')
    assert metric_names(expr) == {"a_bucket", "c"}
    assert family_of("trackflow_provider_call_duration_seconds_count") == (
        "trackflow_provider_call_duration_seconds")
    assert family_of("trackflow_nope_total") is None


def test_provisioning_files_exist() -> None:
    ds = (GRAFANA / "provisioning" / "datasources" / "trackflow.yml").read_text()
    provider = (GRAFANA / "provisioning" / "dashboards" / "trackflow.yml").read_text()
    assert "type: prometheus" in ds, "the datasource provisioning must declare Prometheus"
    assert "type: file" in provider, "the dashboard provider must load files"
