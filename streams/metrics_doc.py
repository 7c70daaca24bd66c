"""Render ``docs/metrics.md``: the metrics contract, generated from :mod:`providers.metrics`
and :mod:`streams.metrics` (and the ``faust_*`` families of :mod:`streams.faust_metrics`).

``python -m trackflow.streams.metrics_doc > docs/metrics.md`` rewrites it; the metrics contract
test fails when the committed file differs from what this module renders, so the table cannot
drift from the code. :func:`families` is also what the dashboard and alert tests check names
against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from prometheus_client.metrics import MetricWrapperBase

from trackflow.agents import metrics as stream_metrics
from trackflow.providers import metrics as provider_metrics
from trackflow.streams.faust_metrics import exported_families

#: Modules whose families make the contract, the providers layer's first.
METRIC_MODULES: tuple[ModuleType, ...] = (provider_metrics, stream_metrics)
#: Unit of a family, from the end of its name (checked in this order).
_UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_seconds", "seconds"),
    ("_bytes", "bytes"),
    ("_records", "records"),
    ("_ratio", "ratio (0..1)"),
    ("_total", "events"),
)
#: Units of families whose name carries no unit suffix.
_UNIT_OVERRIDES: dict[str, str] = {
    "trackflow_ratelimit_tokens": "tokens",
    "trackflow_ratelimit_capacity": "tokens",
    "trackflow_breaker_state": "state (0 closed, 1 half_open, 2 open)",
    "trackflow_breaker_failure_rate": "ratio (0..1)",
    "trackflow_provider_disabled": "state (0 enabled, 1 disabled)",
    "trackflow_dlq_schedule_size": "dead letters",
    "trackflow_build": "info (always 1)",
    "trackflow_ratelimit_global": "mode (1 global, 0 fallback)",
    "trackflow_ratelimit_waiting_calls": "calls",
    "trackflow_ratelimit_rate": "calls per second",
    "trackflow_refresh_backlog": "refresh requests",
    "trackflow_ratelimit_min_share": "ratio (0..1)",
    "trackflow_refresh_pending_stages": "stages",
    "trackflow_backlog_calls": "calls",
    "trackflow_fresh_call_demand": "calls per second",
    "trackflow_redis_evicting": "state (0 noeviction, 1 evicts)",
}
#: Area of a family, from the start of its name (first match wins); the table is grouped by it.
_AREAS: tuple[tuple[str, str], ...] = (
    ("trackflow_provider_", "Provider calls (RED per provider)"),
    ("trackflow_cache_", "Cache"),
    ("trackflow_redis_", "Cache"),
    ("trackflow_ratelimit_", "Rate limits"),
    ("trackflow_breaker_", "Circuit breakers"),
    ("trackflow_retr", "Retries"),
    ("trackflow_dlq_", "Dead letters and reprocessing"),
    ("trackflow_dead_letters", "Dead letters and reprocessing"),
    ("trackflow_build", "Build"),
    ("trackflow_", "Stream"),
)
_AREA_ORDER = ("Provider calls (RED per provider)", "Cache", "Rate limits", "Circuit breakers",
               "Retries", "Stream", "Dead letters and reprocessing", "Build")


@dataclass(frozen=True, slots=True)
class Family:
    """One ``trackflow_*`` metric family as the code defines it."""

    name: str
    """Family name as exposed (counters with ``_total``, ``trackflow_build_info`` for the info)."""
    type: str
    """counter, gauge, histogram or info."""
    labels: tuple[str, ...]
    """Label names (``le`` of histograms excluded)."""
    help: str
    """Help text."""
    unit: str
    """Base unit, derived from the name."""
    area: str
    """Section of the table."""
    samples: tuple[str, ...]
    """Sample names a scrape shows for this family (``_bucket``, ``_sum``, ``_count``, ...)."""


def _unit(base: str, exposed: str) -> str:
    if base in _UNIT_OVERRIDES:
        return _UNIT_OVERRIDES[base]
    for suffix, unit in _UNIT_SUFFIXES:
        if exposed.endswith(suffix):
            return unit
    raise ValueError(f"no unit known for {exposed}: add a suffix or an entry in _UNIT_OVERRIDES")


def _area(name: str) -> str:
    return next(area for prefix, area in _AREAS if name.startswith(prefix))


def _family(metric: MetricWrapperBase) -> Family:
    # prometheus_client keeps name, type and labels in private attributes and offers no public
    # accessor for label names on an unobserved family; they are stable across 0.x releases.
    base: str = metric._name
    kind: str = metric._type or "untyped"
    labels = tuple(metric._labelnames)
    doc: str = metric._documentation or ""
    exposed = {"counter": f"{base}_total", "info": f"{base}_info"}.get(kind, base)
    samples = {
        "counter": (f"{base}_total",),
        "histogram": (f"{base}_bucket", f"{base}_sum", f"{base}_count"),
        "info": (f"{base}_info",),
    }.get(kind, (base,))
    return Family(exposed, kind, labels, doc, _unit(base, exposed), _area(base), samples)


def families(modules: Sequence[ModuleType] = METRIC_MODULES) -> list[Family]:
    """Every ``trackflow_*`` family defined in ``modules``, module by module in definition
    order."""
    found = [_family(v) for module in modules for v in vars(module).values()
             if isinstance(v, MetricWrapperBase)]
    return [f for f in found if f.name.startswith("trackflow_")]


def sample_names(modules: Sequence[ModuleType] = METRIC_MODULES) -> dict[str, Family]:
    """Every sample name a scrape may show -> the family it belongs to."""
    return {s: f for f in families(modules) for s in f.samples}


def render(modules: Sequence[ModuleType] = METRIC_MODULES) -> str:
    """The Markdown of ``docs/metrics.md``."""
    fams = families(modules)
    out = [
        "# Metrics contract",
        "",
        "<!-- Generated by `python -m trackflow.streams.metrics_doc > docs/metrics.md`; "
        "do not edit. -->",
        "",
        "Every `trackflow_*` family a worker exports on its Faust web server (`/metrics`), next to",
        "Faust's own `faust_*` metrics, which are read from Faust's monitor at scrape time (no",
        "per-event cost; listed at the end). Base units, counters end in `_total`, histograms also",
        "expose `_bucket`, `_sum` and `_count`. Labels are low-cardinality only: never a track id,",
        "ISRC, title or cache key. Dashboards (`deploy/grafana/`) and alert rules",
        "(`deploy/prometheus/`) may only name these families; `tests/unit/test_dashboards.py`",
        "and `tests/integration/test_metrics_wiring.py` check it.",
        "",
        f"{len(fams)} families.",
    ]
    for area in _AREA_ORDER:
        rows = [f for f in fams if f.area == area]
        if not rows:
            continue
        out += ["", f"## {area}", "", "| name | type | labels | unit | meaning |",
                "|---|---|---|---|---|"]
        for f in rows:
            labels = ", ".join(f"`{label}`" for label in f.labels) or "-"
            meaning = f.help.replace("|", "\\|")
            out.append(f"| `{f.name}` | {f.type} | {labels} | {f.unit} | {meaning} |")
    return "\n".join(out + _faust_section()) + "\n"


def _faust_section() -> list[str]:
    out = [
        "",
        "## Faust's own metrics",
        "",
        "Read from Faust's `Monitor` (`app.monitor`) each time `/metrics` is scraped, so they cost",
        "nothing per event (`streams/faust_metrics.py`; Faust's Prometheus sensor cost about 20 µs",
        "per record). Names and label values are those of that sensor where the value means the",
        "same. The Monitor keeps only its last N latencies, so latencies are `*_avg_seconds`",
        "gauges: the mean of that window.",
        "",
        "| name | type | labels | meaning |",
        "|---|---|---|---|",
    ]
    for fam in exported_families():
        name = f"{fam.name}_total" if fam.type == "counter" else fam.name
        # Metric families keep their label names only in a private attribute.
        labels = ", ".join(f"`{label}`" for label in getattr(fam, "_labelnames", ())) or "-"
        out.append(f"| `{name}` | {fam.type} | {labels} | {fam.documentation} |")
    return out


if __name__ == "__main__":  # pragma: no cover
    print(render(), end="")
