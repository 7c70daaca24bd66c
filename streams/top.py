"""What ``trackflow top`` shows: the workers' figures, read from their ``/metrics``.

Pure pieces first (parse a scrape, rates between two scrapes, quantiles from histogram buckets,
the figures of one frame), unit-tested without a worker; scraping and drawing with rich last;
the click command is in ``cli/top.py``.
Several ``--url`` values are added up (gauges such as the breaker state take the worst value).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.table import Table
from rich.text import Text

from trackflow.providers.metrics import BREAKER_STATE_VALUES

DEFAULT_URL = "http://127.0.0.1:6066/metrics"
STATE_NAMES = {v: k for k, v in BREAKER_STATE_VALUES.items()}
ERROR_OUTCOMES = frozenset({"transient", "permanent"})

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Samples of one or more scrapes taken at (about) the same time."""

    t: float
    """Monotonic time of the scrape, seconds."""
    samples: Mapping[tuple[str, Labels], float] = field(default_factory=dict)
    """(sample name, sorted labels) -> value."""

    def select(self, name: str, **match: str | Iterable[str]) -> list[tuple[dict[str, str], float]]:
        """Samples named ``name`` whose labels equal (or are in) the given values."""
        out = []
        for (n, labels), value in self.samples.items():
            if n != name:
                continue
            d = dict(labels)
            if all(_matches(d.get(k), v) for k, v in match.items()):
                out.append((d, value))
        return out

    def total(self, name: str, **match: str | Iterable[str]) -> float:
        """Sum of the matching samples (0 when none)."""
        return sum(v for _, v in self.select(name, **match))


def _matches(value: str | None, wanted: str | Iterable[str]) -> bool:
    if isinstance(wanted, str):
        return value == wanted
    return value in set(wanted)


def parse(text: str, t: float) -> Snapshot:
    """A snapshot from Prometheus text exposition."""
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return Snapshot(t, samples)


def merge(snapshots: Sequence[Snapshot]) -> Snapshot:
    """Add several workers' snapshots up (same name and labels summed); time of the last."""
    samples: dict[tuple[str, Labels], float] = {}
    for snap in snapshots:
        for key, value in snap.samples.items():
            samples[key] = samples.get(key, 0.0) + value
    return Snapshot(max((s.t for s in snapshots), default=0.0), samples)


def increase(prev: Snapshot | None, cur: Snapshot, name: str,
             **match: str | Iterable[str]) -> float:
    """Growth of a counter between two snapshots (a reset counts from zero)."""
    now = cur.total(name, **match)
    if prev is None:
        return now
    before = prev.total(name, **match)
    return now if now < before else now - before


def per_second(prev: Snapshot | None, cur: Snapshot, name: str,
               **match: str | Iterable[str]) -> float | None:
    """Rate of a counter between two snapshots; None without an earlier one."""
    if prev is None or cur.t <= prev.t:
        return None
    return increase(prev, cur, name, **match) / (cur.t - prev.t)


def ratio(num: float, den: float) -> float | None:
    """num / den, None when there is nothing to divide."""
    return num / den if den > 0 else None


def buckets(snap: Snapshot, name: str, **match: str | Iterable[str]) -> dict[float, float]:
    """Cumulative bucket counts of histogram ``name`` (``_bucket`` samples) by upper bound."""
    out: dict[float, float] = {}
    for labels, value in snap.select(f"{name}_bucket", **match):
        le = float(labels["le"])
        out[le] = out.get(le, 0.0) + value
    return out


def bucket_increase(prev: Snapshot | None, cur: Snapshot, name: str) -> dict[float, float]:
    """Bucket counts observed between two snapshots (all since start without ``prev``)."""
    now = buckets(cur, name)
    if prev is None:
        return now
    before = buckets(prev, name)
    if any(now.get(le, 0.0) < v for le, v in before.items()):
        return now  # a worker restarted: its counts began again
    return {le: v - before.get(le, 0.0) for le, v in now.items()}


def quantile(q: float, cumulative: Mapping[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative bucket counts; None with no observations.

    Linear interpolation inside the bucket; a quantile in the ``+Inf`` bucket answers the highest
    finite bound, as Prometheus does.
    """
    if not cumulative:
        return None
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le in bounds:
        count = cumulative[le]
        if count >= rank:
            if math.isinf(le):
                finite = [b for b in bounds if not math.isinf(b)]
                return finite[-1] if finite else None
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return bounds[-1]


@dataclass(frozen=True, slots=True)
class ProviderRow:
    """One provider's line in the view."""

    provider: str
    calls_per_s: float | None
    error_ratio: float | None
    """Transient and permanent failures among calls made (rejected calls excluded)."""
    breaker: str
    """Worst breaker state over the workers."""
    tokens: float | None
    capacity: float | None
    cache_hit_ratio: float | None
    waiting: float | None = None
    """Calls waiting for a rate-limit slot, all workers."""
    drain_s: float | None = None
    """Time to serve the waiting calls at the provider's paced rate."""
    deferred_per_s: float | None = None
    """Fields deferred per second (provider busy or down)."""
    backlog_calls: float | None = None
    """Calls the backlog (fresh records not finished, refreshes to come) still needs from the
    provider (see :func:`backlog_demand`)."""
    backlog_eta_s: float | None = None
    """Time to make them at the rate fresh records arriving and replays leave."""


@dataclass(frozen=True, slots=True)
class View:
    """The figures of one frame."""

    in_per_s: float | None
    out_per_s: float | None
    p50: float | None
    p99: float | None
    lag: float | None
    in_flight: float
    dead_letters: float
    parked: float
    scheduled: float
    providers: tuple[ProviderRow, ...]
    refresh_backlog: float = 0.0
    """Refresh requests read and not finished, all workers."""
    refresh_overdue_s: float | None = None
    """How long the most overdue refresh request has been due."""
    backlog_eta_s: float | None = None
    """When the backlog is done, its refreshes included (see :func:`backlog_eta`); None:
    nothing left."""
    backlog_eta_provider: str | None = None
    """The provider that sets it (None: the last request's due time does)."""


#: How far back ``trackflow top`` reads the replays' rate for the backlog's ETA: a provider at
#: 1/s makes one call a second, so a frame's second says little.
ETA_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class BacklogDemand:
    """What the backlog asks of one provider, and the rate left to answer it."""

    calls: float
    """Calls still needed (``trackflow_backlog_calls``, all workers: see
    :mod:`agents.backlog`)."""
    rate: float
    """Calls per second for them: the paced rate less what fresh records arriving ask and
    what replays took in the window up to their minimum share; at least the refreshes'
    minimum share."""

    @property
    def eta_s(self) -> float:
        return self.calls / self.rate if self.rate > 0 else math.inf


def _label_values(snap: Snapshot, label: str, names: Iterable[str]) -> list[str]:
    found = {dict(labels).get(label) for (n, labels) in snap.samples if n in set(names)}
    return sorted(v for v in found if v)


def _gauge_sum(snap: Snapshot, name: str, provider: str) -> float | None:
    values = [v for _, v in snap.select(name, provider=provider)]
    return sum(values) if values else None


def _worst(per_worker: Sequence[Snapshot], name: str, **match: str) -> float | None:
    """The highest value of a gauge over the workers (the paced rate and the shares every
    worker exports alike; the worst breaker state)."""
    values = [v for w in per_worker for _, v in w.select(name, **match)]
    return max(values) if values else None


def backlog_demand(window: Snapshot | None, cur: Snapshot, provider: str, *,
                   per_worker: Sequence[Snapshot] = ()) -> BacklogDemand | None:
    """What the backlog still needs from ``provider``; None when nothing, or when the
    provider's paced rate is unknown. The rate is what the limiter leaves the backlog
    (:mod:`providers.limiter`): fresh records arriving first, then refreshes, replays only
    their minimum share while refreshes ask."""
    workers = per_worker or (cur,)
    calls = cur.total("trackflow_backlog_calls", provider=provider)
    paced = _worst(workers, "trackflow_ratelimit_rate", provider=provider)
    if calls <= 0 or not paced:
        return None
    fresh = cur.total("trackflow_fresh_call_demand", provider=provider)
    replays = 0.0
    if window is not None and cur.t > window.t:
        replays = increase(window, cur, "trackflow_ratelimit_slots_total", provider=provider,
                           priority="replay") / (cur.t - window.t)
    replay_share = _worst(workers, "trackflow_ratelimit_min_share", priority="replay") or 0.0
    refresh_share = _worst(workers, "trackflow_ratelimit_min_share", priority="refresh") or 0.0
    left = paced - fresh - min(replays, replay_share * paced)
    return BacklogDemand(calls, max(left, refresh_share * paced))


def backlog_eta(demands: Mapping[str, BacklogDemand], due_in_s: float
                ) -> tuple[float | None, str | None]:
    """When the backlog is done and which provider decides it: the slowest provider's calls
    at its rate, but not before the last refresh request read is due."""
    if not demands:
        return (due_in_s, None) if due_in_s > 0 else (None, None)
    provider = max(demands, key=lambda p: demands[p].eta_s)
    eta = demands[provider].eta_s
    return (eta, provider) if eta >= due_in_s else (due_in_s, None)


def build_view(prev: Snapshot | None, cur: Snapshot, *,
               per_worker: Sequence[Snapshot] = (), window: Snapshot | None = None) -> View:
    """Every figure of one frame from two merged snapshots (``prev`` None on the first).

    ``per_worker`` (the current snapshots, unmerged) gives the worst breaker state; without it
    the merged (summed) gauge is read, which is right for a single worker. ``window`` (merged,
    up to :data:`ETA_WINDOW_S` old; ``prev`` without it) is where the backlog ETA's replay
    rate is read from.
    """
    lat = bucket_increase(prev, cur, "trackflow_end_to_end_latency_seconds")
    if not lat or max(lat.values(), default=0.0) <= 0:
        lat = buckets(cur, "trackflow_end_to_end_latency_seconds")  # idle: since start
    lag_samples = cur.select("trackflow_consumer_lag_records")
    rows = []
    providers = _label_values(cur, "provider", (
        "trackflow_provider_calls_total", "trackflow_breaker_state",
        "trackflow_ratelimit_capacity", "trackflow_cache_requests_total",
        "trackflow_ratelimit_rate", "trackflow_backlog_calls"))
    demands: dict[str, BacklogDemand] = {}
    for p in providers:
        demand = backlog_demand(window or prev, cur, p, per_worker=per_worker)
        if demand is not None:
            demands[p] = demand
        calls = increase(prev, cur, "trackflow_provider_calls_total", provider=p)
        errors = increase(prev, cur, "trackflow_provider_calls_total", provider=p,
                          outcome=ERROR_OUTCOMES)
        # Refused before sending: by the breaker, or deferred past the stage's deadline.
        rejected = increase(prev, cur, "trackflow_provider_calls_total", provider=p,
                            outcome=("rejected", "deferred"))
        hits = increase(prev, cur, "trackflow_cache_requests_total", provider=p, result="hit")
        lookups = increase(prev, cur, "trackflow_cache_requests_total", provider=p, level="lru")
        waiting = _gauge_sum(cur, "trackflow_ratelimit_waiting_calls", p)
        # Every worker exports the same paced rate: the provider's, for all of them.
        paced = _worst(per_worker or (cur,), "trackflow_ratelimit_rate", provider=p)
        worst = _worst(per_worker or (cur,), "trackflow_breaker_state", provider=p)
        rows.append(ProviderRow(
            provider=p,
            calls_per_s=per_second(prev, cur, "trackflow_provider_calls_total", provider=p),
            error_ratio=ratio(errors, calls - rejected),
            breaker=STATE_NAMES.get(int(worst), "?") if worst is not None else "-",
            tokens=_gauge_sum(cur, "trackflow_ratelimit_tokens", p),
            capacity=_gauge_sum(cur, "trackflow_ratelimit_capacity", p),
            cache_hit_ratio=ratio(hits, lookups),
            waiting=waiting,
            drain_s=waiting / paced if waiting is not None and paced else None,
            deferred_per_s=per_second(prev, cur, "trackflow_deferred_fields_total", provider=p),
            backlog_calls=demand.calls if demand else None,
            backlog_eta_s=demand.eta_s if demand else None,
        ))
    overdue = [v for _, v in cur.select("trackflow_refresh_oldest_due_seconds")]
    due_in = _worst(per_worker or (cur,), "trackflow_refresh_due_in_seconds") or 0.0
    eta, eta_provider = backlog_eta(demands, due_in)
    return View(
        in_per_s=per_second(prev, cur, "trackflow_records_in_total"),
        out_per_s=per_second(prev, cur, "trackflow_records_out_total"),
        p50=quantile(0.5, lat),
        p99=quantile(0.99, lat),
        lag=sum(v for _, v in lag_samples) if lag_samples else None,
        in_flight=cur.total("trackflow_in_flight_records"),
        dead_letters=cur.total("trackflow_dead_letters_total"),
        parked=cur.total("trackflow_dlq_parked_total"),
        scheduled=cur.total("trackflow_dlq_schedule_size"),
        providers=tuple(rows),
        refresh_backlog=cur.total("trackflow_refresh_backlog"),
        refresh_overdue_s=max(overdue) if overdue else None,
        backlog_eta_s=eta,
        backlog_eta_provider=eta_provider,
    )


# --- drawing ---------------------------------------------------------------------------------


def _num(v: float | None, fmt: str = "{:,.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _secs(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def _eta(view: View) -> str:
    if view.backlog_eta_s is None:
        return "-"
    if math.isinf(view.backlog_eta_s):
        return f"never ({view.backlog_eta_provider} leaves the backlog nothing)"
    by = view.backlog_eta_provider or "the last refresh's due time"
    return f"{_secs(view.backlog_eta_s)} ({by})"


_BREAKER_STYLE = {"closed": "green", "half_open": "yellow", "open": "bold red"}


def render(view: View, *, urls: Sequence[str], answered: int) -> Group:
    """The rich renderable of one frame."""
    head = Table.grid(padding=(0, 3))
    for _ in range(5):
        head.add_column()
    head.add_row(f"in [bold]{_num(view.in_per_s)}[/]/s", f"out [bold]{_num(view.out_per_s)}[/]/s",
                 f"e2e p50 [bold]{_secs(view.p50)}[/]  p99 [bold]{_secs(view.p99)}[/]",
                 f"lag [bold]{_num(view.lag, '{:,.0f}')}[/]",
                 f"in flight [bold]{view.in_flight:,.0f}[/]")
    head.add_row(f"DLQ [bold]{view.dead_letters:,.0f}[/]", f"parked [bold]{view.parked:,.0f}[/]",
                 f"waiting retry [bold]{view.scheduled:,.0f}[/]",
                 f"workers {answered}/{len(urls)}",
                 f"refresh backlog [bold]{view.refresh_backlog:,.0f}[/] overdue "
                 f"[bold]{_secs(view.refresh_overdue_s)}[/]")
    head.add_row("", "", "", "", f"backlog ETA [bold]{_eta(view)}[/]")
    table = Table(title="providers", expand=False)
    for col in ("provider", "calls/s", "errors", "breaker", "tokens", "cache hits"):
        table.add_column(col, justify="left" if col in ("provider", "breaker") else "right")
    for r in view.providers:
        tokens = "-" if r.capacity is None else f"{_num(r.tokens, '{:,.0f}')}/{r.capacity:,.0f}"
        err_style = "red" if (r.error_ratio or 0) > 0.1 else ""
        table.add_row(r.provider, _num(r.calls_per_s), Text(_pct(r.error_ratio), err_style),
                      Text(r.breaker, _BREAKER_STYLE.get(r.breaker, "")), tokens,
                      _pct(r.cache_hit_ratio))
    if not view.providers:
        table.add_row("(no provider calls yet)", "", "", "", "", "")
    budget = Table(title="budget", expand=False)
    for col in ("provider", "waiting", "drain at rate", "deferred/s", "backlog calls",
                "backlog ETA"):
        budget.add_column(col, justify="left" if col == "provider" else "right")
    for r in view.providers:
        budget.add_row(r.provider, _num(r.waiting, "{:,.0f}"), _secs(r.drain_s),
                       _num(r.deferred_per_s), _num(r.backlog_calls, "{:,.0f}"),
                       _secs(r.backlog_eta_s))
    return Group(Text("trackflow top", style="bold"), head, table, budget)


def no_worker_message(urls: Sequence[str], errors: Sequence[str]) -> str:
    """What to print when no URL answered."""
    lines = [f"no worker answered at {', '.join(urls)}"]
    lines += [f"  {e}" for e in errors]
    lines.append("is `trackflow worker` running? its /metrics port is worker.web_port "
                 "(TRACKFLOW_WORKER__WEB_PORT, default 6066); pass it with --url")
    return "\n".join(lines)


# --- scraping ---------------------------------------------------------------------------------


def scrape_all(client: httpx.Client, urls: Sequence[str],
               clock: Callable[[], float] = time.monotonic
               ) -> tuple[list[Snapshot], list[str]]:
    """Scrape every URL; the snapshots that answered and one error line per URL that did not."""
    snaps, errors = [], []
    for url in urls:
        try:
            resp = client.get(url)
            resp.raise_for_status()
            snaps.append(parse(resp.text, clock()))
        except (httpx.HTTPError, ValueError) as exc:
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
    return snaps, errors
