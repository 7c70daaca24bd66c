"""The three trackflow Grafana dashboards, generated from code into ``dashboards/*.json``.

Regenerate with ``python deploy/grafana/generate_dashboards.py`` and commit the JSON;
``tests/unit/test_dashboards.py`` fails when the committed JSON differs from this module or when a
query names a metric that ``agents/metrics.py`` or ``providers/metrics.py`` does not define.
Providers come from the ``$provider`` template variable, never from hard-coded panels.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "prometheus"))
from generate_rules import backlog_eta  # deploy/ is not a package: by path

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "dashboards"

DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
P = 'provider=~"$provider"'
#: Query behind the provider variable (also what the tests check for).
PROVIDER_QUERY = "label_values(trackflow_provider_calls_total, provider)"
#: Defaults from streams/settings.py, drawn as threshold lines (not exported as metrics).
BREAKER_FAILURE_THRESHOLD = 0.5
RETRY_BUDGET_RATIO = 0.2

Target = tuple[str, str]
"""(PromQL expression, legend format)."""


def q(expr: str, legend: str = "") -> Target:
    """One query of a panel."""
    return expr, legend


def quantiles(metric: str, by: str = "", where: str = "",
              qs: Iterable[float] = (0.5, 0.95, 0.99)) -> list[Target]:
    """histogram_quantile targets for a ``_seconds`` histogram, one per quantile."""
    keys = f"{by}, le" if by else "le"
    sel = f"{{{where}}}" if where else ""
    legend_by = " ".join(f"{{{{{k.strip()}}}}}" for k in by.split(",")) if by else ""
    return [q(f"histogram_quantile({x}, sum by ({keys}) (rate({metric}_bucket{sel}[{RI}])))",
              f"p{round(x * 100)} {legend_by}".strip()) for x in qs]


def hit_ratio(by: str, where: str = "") -> str:
    """Share of lookups answered by any cache level (LRU, in flight, Redis)."""
    extra = f",{where}" if where else ""
    agg = f"sum by ({by})" if by else "sum"
    return (f'{agg} (rate(trackflow_cache_requests_total{{result="hit"{extra}}}[{RI}]))'
            f' / {agg} (rate(trackflow_cache_requests_total{{level="lru"{extra}}}[{RI}]))')


class Board:
    """Accumulates panels and lays them out left to right, top to bottom on a 24-column grid."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self._x = self._y = self._row_h = 0

    def row(self, title: str) -> None:
        """Start a new section."""
        self._newline()
        self.panels.append({"collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
                            "id": len(self.panels) + 1, "panels": [], "title": title,
                            "type": "row"})
        self._y += 1

    def _newline(self) -> None:
        self._y += self._row_h
        self._x = self._row_h = 0

    def add(self, kind: str, title: str, description: str, targets: list[Target], *,
            unit: str = "short", w: int = 12, h: int = 8, defaults: dict[str, Any] | None = None,
            options: dict[str, Any] | None = None) -> None:
        """Add a panel of ``kind`` (timeseries, stat, state-timeline, ...)."""
        if self._x + w > 24:
            self._newline()
        field_defaults: dict[str, Any] = {"unit": unit, **(defaults or {})}
        panel: dict[str, Any] = {
            "datasource": DS,
            "description": description,
            "fieldConfig": {"defaults": field_defaults, "overrides": []},
            "gridPos": {"h": h, "w": w, "x": self._x, "y": self._y},
            "id": len(self.panels) + 1,
            "options": options or {},
            "targets": [{"datasource": DS, "expr": expr, "legendFormat": legend or "__auto",
                         "range": True, "refId": chr(ord("A") + i)}
                        for i, (expr, legend) in enumerate(targets)],
            "title": title,
            "type": kind,
        }
        self.panels.append(panel)
        self._x += w
        self._row_h = max(self._row_h, h)

    def ts(self, title: str, description: str, targets: list[Target], unit: str = "short",
           **kw: Any) -> None:
        """A time series panel with a table legend."""
        options = {"legend": {"calcs": ["mean", "max", "lastNotNull"], "displayMode": "table",
                              "placement": "bottom", "showLegend": True},
                   "tooltip": {"mode": "multi", "sort": "desc"}}
        self.add("timeseries", title, description, targets, unit=unit, options=options, **kw)

    def stat(self, title: str, description: str, targets: list[Target], unit: str = "short",
             w: int = 6, h: int = 4, **kw: Any) -> None:
        """A single-value panel."""
        options = {"colorMode": "value", "graphMode": "area", "justifyMode": "auto",
                   "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "textMode": "auto"}
        self.add("stat", title, description, targets, unit=unit, w=w, h=h, options=options, **kw)


def threshold_line(*steps: tuple[str, float | None]) -> dict[str, Any]:
    """Field defaults that draw thresholds as dashed lines."""
    return {"custom": {"thresholdsStyle": {"mode": "dashed"}},
            "thresholds": {"mode": "absolute",
                           "steps": [{"color": c, "value": v} for c, v in steps]}}


def dashboard(uid: str, title: str, description: str, board: Board) -> dict[str, Any]:
    """The dashboard JSON around ``board``'s panels, with datasource and provider variables."""
    return {
        "annotations": {"list": []},
        "description": description,
        "editable": True,
        "graphTooltip": 1,
        "links": [{"asDropdown": False, "icon": "dashboard", "includeVars": True,
                   "keepTime": True, "tags": ["trackflow"], "targetBlank": False,
                   "title": "trackflow", "type": "dashboards"}],
        "panels": board.panels,
        "refresh": "10s",
        "schemaVersion": 39,
        "tags": ["trackflow"],
        "templating": {"list": [
            {"current": {}, "hide": 0, "includeAll": False, "label": "Data source",
             "multi": False, "name": "datasource", "options": [], "query": "prometheus",
             "refresh": 1, "regex": "", "type": "datasource"},
            {"allValue": ".*", "current": {"selected": True, "text": ["All"],
                                           "value": ["$__all"]},
             "datasource": DS, "definition": PROVIDER_QUERY, "hide": 0, "includeAll": True,
             "label": "Provider", "multi": True, "name": "provider", "options": [],
             "query": {"qryType": 1, "query": PROVIDER_QUERY, "refId": "ProviderVariable"},
             "refresh": 2, "regex": "", "sort": 1, "type": "query"},
        ]},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
    }


def pipeline() -> dict[str, Any]:
    """Enrichment pipeline: is data flowing, how fast, and where does it go wrong."""
    b = Board()
    b.row("Stream")
    b.stat("Records in /s", "Records read from the raw topic per second.",
           [q(f"sum(rate(trackflow_records_in_total[{RI}]))")], unit="ops")
    b.stat("Records out /s", "Records published (enriched and DLQ) per second.",
           [q(f"sum(rate(trackflow_records_out_total[{RI}]))")], unit="ops")
    b.stat("Consumer lag", "Records waiting in the input partitions (all workers).",
           [q("sum(trackflow_consumer_lag_records)")], unit="short")
    b.stat("Workers", "Processes exporting trackflow metrics.",
           [q("count(trackflow_build_info)")], unit="short")
    b.ts("Throughput", "Records read and published per topic.",
         [q(f"sum by (topic) (rate(trackflow_records_in_total[{RI}]))", "in {{topic}}"),
          q(f"sum by (topic) (rate(trackflow_records_out_total[{RI}]))", "out {{topic}}")],
         unit="ops")
    b.ts("End-to-end latency", "From the raw record's Kafka timestamp to its enriched record.",
         quantiles("trackflow_end_to_end_latency_seconds"), unit="s")
    b.ts("Consumer lag", "Records between the workers' positions and the end of each topic.",
         [q("sum by (topic) (trackflow_consumer_lag_records)", "{{topic}}")])
    b.ts("Outcomes", "Complete, partial and dead-lettered records per second.",
         [q(f"sum by (status) (rate(trackflow_enriched_total[{RI}]))", "{{status}}"),
          q(f"sum(rate(trackflow_dead_letters_total[{RI}]))", "dead-lettered")], unit="ops")
    b.ts("In flight", "Records being processed right now, per worker.",
         [q("sum by (instance) (trackflow_in_flight_records)", "{{instance}}")], w=24, h=6)
    b.row("Providers")
    b.ts("Provider calls", "Calls per second by provider and outcome.",
         [q(f"sum by (provider, outcome) (rate(trackflow_provider_calls_total{{{P}}}[{RI}]))",
            "{{provider}} {{outcome}}")], unit="reqps")
    b.ts("Provider success ratio", "Answered calls (found, not found, unavailable) among "
         "calls made (rejected and deferred calls excluded).",
         [q(f'sum by (provider) (rate(trackflow_provider_calls_total{{{P},'
            f'outcome=~"found|not_found|unavailable"}}[{RI}])) / sum by (provider) '
            f'(rate(trackflow_provider_calls_total{{{P},outcome!~"rejected|deferred"}}[{RI}]))',
            "{{provider}}")], unit="percentunit", defaults={"max": 1, "min": 0})
    b.ts("Provider latency p95", "95th percentile of one HTTP exchange, by provider and kind.",
         quantiles("trackflow_provider_call_duration_seconds", "provider, kind", P, (0.95,)),
         unit="s")
    b.ts("Cache hit ratio", "Lookups answered by a cache level, by provider.",
         [q(hit_ratio("provider", P), "{{provider}}")], unit="percentunit",
         defaults={"max": 1, "min": 0})
    b.ts("Retries", "Retries per second by provider.",
         [q(f"sum by (provider) (rate(trackflow_retries_total{{{P}}}[{RI}]))", "{{provider}}")],
         unit="ops")
    b.ts("Provider errors", "Failed calls by error class.",
         [q(f"sum by (provider, error_class) (rate(trackflow_provider_errors_total{{{P}}}[{RI}]))",
            "{{provider}} {{error_class}}")], unit="ops")
    b.ts("Waterfall stages", "Stage results per record: matched, not found, skipped, failed.",
         [q(f"sum by (provider, outcome) "
            f"(rate(trackflow_provider_stage_outcomes_total{{{P}}}[{RI}]))",
            "{{provider}} {{outcome}}")], unit="ops", w=24)
    b.row("Budget and backpressure")
    b.ts("Records waiting for budget", "Calls held waiting for their provider's rate-limit "
         "slot (each is one record's stage): the provider is the bottleneck while this stays "
         "up. The rest of a burst waits in Kafka (consumer lag).",
         [q(f"sum by (provider) (trackflow_ratelimit_waiting_calls{{{P}}})", "{{provider}}")])
    b.ts("Time to drain at the provider's rate", "Waiting calls divided by the rate the "
         "provider is paced at, all workers together.",
         [q(f"sum by (provider) (trackflow_ratelimit_waiting_calls{{{P}}}) / max by (provider) "
            f"(trackflow_ratelimit_rate{{{P}}})", "{{provider}}")], unit="s")
    b.ts("Deferred fields", "Fields published missing because their provider was busy or "
         "down (the stage was deferred), per second.",
         [q(f"sum by (provider) (rate(trackflow_deferred_fields_total{{{P}}}[{RI}]))",
            "{{provider}}")], unit="ops")
    b.ts("Refresh backlog", "Refresh requests read and not finished (waiting until due or "
         "running), and how long the most overdue one has been due.",
         [q("sum(trackflow_refresh_backlog)", "backlog"),
          q("max(trackflow_refresh_oldest_due_seconds)", "most overdue (s)"),
          q(f"sum by (provider) (trackflow_refresh_pending_stages{{{P}}})",
            "{{provider}} stages to come"),
          q("sum(trackflow_fresh_backlog_records)", "fresh records not finished")])
    b.ts("Backlog ETA", "When the backlog is done, per provider: the calls the fresh records "
         "not finished and the refreshes to come (those not due yet too) still need, at the "
         "rate fresh records arriving and replays leave; the slowest provider sets it, and it "
         "is never before the last refresh request read is due. trackflow top shows the same "
         "figure.",
         [q(backlog_eta(P, RI), "{{provider}}"),
          q("max(trackflow_refresh_due_in_seconds)", "last refresh due in")], unit="s")
    b.ts("Backlog calls", "What the ETA divides (agents.backlog, per worker, added up): the "
         "calls the backlog still needs from each provider, the calls per second fresh "
         "records arriving ask of it, and what a fresh record has cost it lately.",
         [q(f"sum by (provider) (trackflow_backlog_calls{{{P}}})", "{{provider}} calls"),
          q(f"sum by (provider) (trackflow_fresh_call_demand{{{P}}})",
            "{{provider}} fresh calls/s"),
          q(f"sum by (provider) (rate(trackflow_fresh_calls_total{{{P}}}[{RI}])) / scalar("
            f"sum(rate(trackflow_fresh_records_total[{RI}])))", "{{provider}} calls per record")])
    b.ts("Refreshes", "Refresh requests scheduled and handled per second, by outcome; "
         "refresh stages run, by provider; fresh records read.",
         [q(f"sum(rate(trackflow_refresh_scheduled_total[{RI}]))", "scheduled"),
          q(f"sum by (outcome) (rate(trackflow_refreshes_total[{RI}]))", "{{outcome}}"),
          q(f"sum by (provider) (rate(trackflow_refresh_stages_total{{{P}}}[{RI}]))",
            "{{provider}} stages"),
          q(f"sum(rate(trackflow_fresh_records_total[{RI}]))", "fresh records read")],
         unit="ops")
    b.ts("Global limiter", "1 while a provider is paced by the limiter in Redis, 0 while by "
         "the per-partition fallback; failed round trips and slots lost to late wake-ups.",
         [q(f"min by (provider) (trackflow_ratelimit_global{{{P}}})", "{{provider}} global"),
          q(f"sum by (provider) (rate(trackflow_ratelimit_limiter_errors_total{{{P}}}[{RI}]))",
            "{{provider}} errors/s"),
          q(f"sum by (provider) (rate(trackflow_ratelimit_slots_lost_total{{{P}}}[{RI}]))",
            "{{provider}} slots lost/s")])
    b.ts("Commit to answer (p99)", "Time from a call's commit in the global limiter to the "
         "provider's answer: each call counts against the provider's limit for its window plus "
         "this (at least rate_slack_s), so while it is long the provider gets less than its "
         "rate.",
         [q(f"histogram_quantile(0.99, sum by (provider, le) "
            f"(rate(trackflow_ratelimit_transit_seconds_bucket{{{P}}}[{RI}])))",
            "{{provider}}")], unit="s", w=24, h=6)
    b.row("Dead letters")
    b.ts("Dead letters", "Records sent to the DLQ by stage and provider.",
         [q(f"sum by (stage, provider) (rate(trackflow_dead_letters_total[{RI}]))",
            "{{stage}} {{provider}}")], unit="ops")
    b.ts("Reprocessing", "Dead letters received, scheduled, replayed and parked.",
         [q(f"sum(rate(trackflow_dlq_received_total[{RI}]))", "received"),
          q(f"sum(rate(trackflow_dlq_scheduled_total[{RI}]))", "scheduled"),
          q(f"sum(rate(trackflow_dlq_replayed_total[{RI}]))", "replayed"),
          q(f"sum(rate(trackflow_dlq_parked_total[{RI}]))", "parked")], unit="ops")
    b.ts("Waiting for retry", "Dead letters scheduled and the age of the oldest.",
         [q("sum(trackflow_dlq_schedule_size)", "scheduled"),
          q("max(trackflow_dlq_oldest_waiting_seconds)", "oldest (s)")], w=24, h=6)
    return dashboard("trackflow-pipeline", "trackflow / Enrichment pipeline",
                     "Throughput, latency, lag and outcomes of the enrichment pipeline.", b)


def cache() -> dict[str, Any]:
    """Cache performance: is the two-level cache saving provider calls."""
    b = Board()
    b.row("Hit ratio")
    b.stat("Hit ratio", "Lookups answered by any cache level (selected providers).",
           [q(hit_ratio("", P))], unit="percentunit", w=8)
    b.stat("Lookups /s", "Cache lookups per second (selected providers).",
           [q(f'sum(rate(trackflow_cache_requests_total{{level="lru",{P}}}[{RI}]))')],
           unit="ops", w=8)
    b.stat("Redis errors /s", "Failed Redis operations per second.",
           [q(f"sum(rate(trackflow_cache_errors_total[{RI}]))")], unit="ops", w=8)
    b.ts("Hit ratio per provider", "Lookups answered by any level, by provider.",
         [q(hit_ratio("provider", P), "{{provider}}")], unit="percentunit",
         defaults={"max": 1, "min": 0})
    b.ts("Hit ratio per level", "Hits among the lookups that reached each level.",
         [q(f'sum by (provider, level) (rate(trackflow_cache_requests_total{{result="hit",{P}}}'
            f'[{RI}])) / sum by (provider, level) (rate(trackflow_cache_requests_total'
            f'{{result=~"hit|miss",{P}}}[{RI}]))', "{{provider}} {{level}}")],
         unit="percentunit", defaults={"max": 1, "min": 0})
    b.ts("Hits vs misses", "Lookups per second by level and result (skipped: Redis down).",
         [q(f"sum by (level, result) (rate(trackflow_cache_requests_total{{{P}}}[{RI}]))",
            "{{level}} {{result}}")], unit="ops", w=24)
    b.row("Result cache")
    b.ts("Waterfall results reused", "Records whose whole waterfall result came from a recent "
         "identical input, kept by the worker (process) or shared in Redis by any worker "
         "(redis, asked after a process miss); a redis miss is computed stage by stage.",
         [q(f"sum by (level, result) (rate(trackflow_result_cache_requests_total[{RI}]))",
            "{{level}} {{result}}")], unit="ops", w=24)
    b.row("Redis")
    b.ts("Redis latency", "Percentiles of Redis MGET (batched reads) and SET, failures included.",
         quantiles("trackflow_cache_operation_duration_seconds", "operation"), unit="s")
    b.ts("Redis operations", "Redis operations per second.",
         [q(f"sum by (operation) (rate(trackflow_cache_operation_duration_seconds_count[{RI}]))",
            "{{operation}}")], unit="ops")
    b.ts("Redis errors", "Failed Redis operations (lookups carry on without the cache).",
         [q(f"sum by (operation) (rate(trackflow_cache_errors_total[{RI}]))", "{{operation}}")],
         unit="ops", w=24)
    return dashboard("trackflow-cache", "trackflow / Cache performance",
                     "Hit ratios per provider and level, Redis latency and errors.", b)


def resilience() -> dict[str, Any]:
    """Resilience: breakers, rate limits, retries and dead letters per provider."""
    b = Board()
    b.row("Circuit breakers")
    b.add("state-timeline", "Breaker state", "Worst state over the workers, per provider.",
          [q(f"max by (provider) (trackflow_breaker_state{{{P}}})", "{{provider}}")],
          w=24, h=6,
          defaults={"mappings": [{"options": {
              "0": {"color": "green", "index": 0, "text": "closed"},
              "1": {"color": "yellow", "index": 1, "text": "half_open"},
              "2": {"color": "red", "index": 2, "text": "open"}}, "type": "value"}],
              "color": {"mode": "thresholds"},
              "thresholds": {"mode": "absolute", "steps": [
                  {"color": "green", "value": None}, {"color": "yellow", "value": 1},
                  {"color": "red", "value": 2}]}},
          options={"mergeValues": True, "showValue": "auto", "rowHeight": 0.9,
                   "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}})
    b.ts("Breaker transitions", "State changes per provider (history).",
         [q(f"sum by (provider, to_state) "
            f"(increase(trackflow_breaker_transitions_total{{{P}}}[{RI}]))",
            "{{provider}} -> {{to_state}}")])
    b.ts("Failure rate vs threshold", "Failure rate over the breaker's count window; the "
         f"dashed line is the default failure_rate_threshold ({BREAKER_FAILURE_THRESHOLD}).",
         [q(f"max by (provider) (trackflow_breaker_failure_rate{{{P}}})", "{{provider}}")],
         unit="percentunit",
         defaults={"max": 1, "min": 0, **threshold_line(
             ("green", None), ("red", BREAKER_FAILURE_THRESHOLD))})
    b.ts("Rejected calls", "Calls refused by an open breaker or taken half-open probes.",
         [q(f"sum by (provider) (rate(trackflow_breaker_rejected_calls_total{{{P}}}[{RI}]))",
            "{{provider}}")], unit="ops", w=24, h=6)
    b.add("state-timeline", "Disabled by a configuration error",
          "A provider that rejected our credentials is disabled in the worker until restart "
          "(its log line names the variable to fix); records skip it as provider_disabled.",
          [q(f"max by (provider) (trackflow_provider_disabled{{{P}}})", "{{provider}}")],
          w=24, h=5,
          defaults={"mappings": [{"options": {
              "0": {"color": "green", "index": 0, "text": "enabled"},
              "1": {"color": "red", "index": 1, "text": "disabled"}}, "type": "value"}],
              "color": {"mode": "thresholds"},
              "thresholds": {"mode": "absolute", "steps": [
                  {"color": "green", "value": None}, {"color": "red", "value": 1}]}},
          options={"mergeValues": True, "showValue": "auto", "rowHeight": 0.9,
                   "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}})
    b.row("Rate limits")
    b.ts("Tokens vs capacity",
         "Permits ready now (one per partition at most) and the partitions owned.",
         [q(f"sum by (provider) (trackflow_ratelimit_tokens{{{P}}})", "{{provider}} tokens"),
          q(f"sum by (provider) (trackflow_ratelimit_capacity{{{P}}})",
            "{{provider}} capacity")])
    b.ts("Limit waits", "Permits that had to wait, per second.",
         [q(f"sum by (provider) (rate(trackflow_ratelimit_waits_total{{{P}}}[{RI}]))",
            "{{provider}}")], unit="ops")
    b.ts("Limit wait time", "Percentiles of the time spent waiting for a permit.",
         quantiles("trackflow_ratelimit_wait_seconds", "provider", P, (0.5, 0.95)), unit="s")
    b.ts("Limit answers", "Answers saying we exceeded a limit (should stay at zero).",
         [q(f"sum by (provider) "
            f"(increase(trackflow_ratelimit_limited_answers_total{{{P}}}[{RI}]))",
            "{{provider}}")])
    b.row("Retries")
    b.add("barchart", "Retries by attempt", "Retries over the time range by retry number.",
          [q(f"sum by (attempt) (increase(trackflow_retries_total{{{P}}}[$__range]))",
             "attempt {{attempt}}")],
          w=8, options={"orientation": "auto", "showValue": "auto", "xTickLabelRotation": 0,
                        "legend": {"displayMode": "list", "placement": "bottom",
                                   "showLegend": False}})
    b.ts("Backoff", "Percentiles of the backoff slept before a retry.",
         quantiles("trackflow_retry_backoff_seconds", "provider", P), unit="s", w=8)
    b.ts("Retry budget", "Retries as a share of calls (dashed: default retry_budget_ratio "
         f"{RETRY_BUDGET_RATIO}) and retries refused because the budget was spent.",
         [q(f"sum by (provider) (rate(trackflow_retries_total{{{P}}}[{RI}])) / "
            f"sum by (provider) (rate(trackflow_provider_calls_total{{{P}}}[{RI}]))",
            "{{provider}} retries/calls"),
          q(f"sum by (provider) (rate(trackflow_retry_budget_exhausted_total{{{P}}}[{RI}]))",
            "{{provider}} refused /s")],
         unit="short", w=8,
         defaults=threshold_line(("green", None), ("red", RETRY_BUDGET_RATIO)))
    b.row("Dead letters")
    b.ts("Dead letters by provider", "Records sent to the DLQ per second.",
         [q(f"sum by (provider) (rate(trackflow_dead_letters_total{{{P}}}[{RI}]))",
            "{{provider}}")],
         unit="ops", w=8)
    b.ts("Parked", "Dead letters parked (retries exhausted or not retryable).",
         [q(f"sum by (provider, error_class) (increase(trackflow_dlq_parked_total{{{P}}}[{RI}]))",
            "{{provider}} {{error_class}}")], w=8)
    b.ts("Waiting for retry", "Dead letters scheduled for a retry.",
         [q("sum(trackflow_dlq_schedule_size)", "scheduled")], w=8)
    return dashboard("trackflow-resilience", "trackflow / Resilience",
                     "Circuit breakers, rate limits, retries and dead letters per provider.", b)


DASHBOARDS = {"pipeline.json": pipeline, "cache.json": cache, "resilience.json": resilience}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n"
            for name, build in DASHBOARDS.items()}


def main(argv: list[str]) -> None:
    """Write the dashboards into ``dashboards/``."""
    OUT_DIR.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT_DIR / name).write_text(text)
        if "-q" not in argv:
            print(f"wrote {OUT_DIR / name}")


if __name__ == "__main__":
    main(sys.argv[1:])
