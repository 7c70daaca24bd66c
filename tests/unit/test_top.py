"""trackflow top: parsing, rates, quantiles and the frame, without a worker."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from rich.console import Console

from trackflow.streams.cli.top import top
from trackflow.streams.top import (
    View,
    bucket_increase,
    build_view,
    merge,
    parse,
    per_second,
    quantile,
    render,
    scrape_all,
)


def exposition(calls_found: float, calls_transient: float, records_in: float,
               latencies: list[float], breaker: int = 0) -> str:
    """A worker's /metrics text with a few trackflow families."""
    reg = CollectorRegistry()
    calls = Counter("trackflow_provider_calls_total", "", ["provider", "kind", "outcome"],
                    registry=reg)
    calls.labels("spotify", "search", "found").inc(calls_found)
    calls.labels("spotify", "search", "transient").inc(calls_transient)
    calls.labels("spotify", "search", "rejected").inc(7)
    Counter("trackflow_records_in_total", "", ["topic"], registry=reg).labels("raw").inc(records_in)
    Gauge("trackflow_breaker_state", "", ["provider"], registry=reg).labels("spotify").set(breaker)
    Gauge("trackflow_ratelimit_tokens", "", ["provider"], registry=reg).labels("spotify").set(3)
    Gauge("trackflow_ratelimit_capacity", "", ["provider"], registry=reg).labels("spotify").set(10)
    cache = Counter("trackflow_cache_requests_total", "", ["provider", "level", "result"],
                    registry=reg)
    cache.labels("spotify", "lru", "hit").inc(30)
    cache.labels("spotify", "lru", "miss").inc(70)
    cache.labels("spotify", "redis", "hit").inc(20)
    lag = Gauge("trackflow_consumer_lag_records", "", ["topic", "partition"], registry=reg)
    lag.labels("raw", "0").set(5)
    lag.labels("raw", "1").set(7)
    Counter("trackflow_dead_letters_total", "", ["stage", "provider", "retryable"],
            registry=reg).labels("provider", "spotify", "true").inc(4)
    hist = Histogram("trackflow_end_to_end_latency_seconds", "", registry=reg,
                     buckets=(0.1, 0.5, 1.0, 5.0))
    for v in latencies:
        hist.observe(v)
    return generate_latest(reg).decode()


def test_quantile_interpolates_like_prometheus() -> None:
    cum = {0.1: 10.0, 0.5: 60.0, 1.0: 100.0, math.inf: 100.0}
    assert quantile(0.5, cum) == pytest.approx(0.1 + 0.4 * (50 - 10) / 50)
    assert quantile(0.99, cum) == pytest.approx(0.5 + 0.5 * (99 - 60) / 40)
    assert quantile(0.05, cum) == pytest.approx(0.05)


def test_quantile_in_the_inf_bucket_answers_the_highest_finite_bound() -> None:
    assert quantile(0.99, {1.0: 1.0, math.inf: 10.0}) == 1.0


def test_quantile_without_observations_is_none() -> None:
    assert quantile(0.5, {}) is None
    assert quantile(0.5, {1.0: 0.0, math.inf: 0.0}) is None


def test_rate_between_two_scrapes_and_counter_reset() -> None:
    a = parse(exposition(10, 0, 100, []), t=0.0)
    b = parse(exposition(30, 0, 150, []), t=2.0)
    assert per_second(a, b, "trackflow_records_in_total") == pytest.approx(25.0)
    assert per_second(None, b, "trackflow_records_in_total") is None
    restarted = parse(exposition(1, 0, 4, []), t=4.0)
    assert per_second(b, restarted, "trackflow_records_in_total") == pytest.approx(2.0)


def test_bucket_increase_keeps_only_the_interval() -> None:
    a = parse(exposition(0, 0, 0, [0.05] * 10), t=0.0)
    b = parse(exposition(0, 0, 0, [0.05] * 10 + [0.7] * 10), t=1.0)
    inc = bucket_increase(a, b, "trackflow_end_to_end_latency_seconds")
    assert inc[0.1] == 0 and inc[1.0] == 10
    assert quantile(0.5, inc) == pytest.approx(0.75)


def test_build_view_figures() -> None:
    a = parse(exposition(10, 0, 100, [0.05] * 10), t=0.0)
    b = parse(exposition(40, 10, 200, [0.05] * 10 + [0.3] * 10, breaker=2), t=1.0)
    view = build_view(a, b)
    assert view.in_per_s == pytest.approx(100.0)
    assert view.lag == 12
    assert view.dead_letters == 4
    assert view.p50 is not None and 0.1 < view.p50 < 0.5, "p50 of the interval's observations"
    (row,) = view.providers
    assert row.provider == "spotify"
    assert row.calls_per_s == pytest.approx(40.0)
    assert row.error_ratio == pytest.approx(10 / 40), "rejected calls are not calls made"
    assert row.breaker == "open"
    assert (row.tokens, row.capacity) == (3, 10)
    assert row.cache_hit_ratio is None, "no lookups in the interval"
    first = build_view(None, b)
    assert first.providers[0].cache_hit_ratio == pytest.approx(0.5)
    assert first.in_per_s is None


def test_merge_adds_workers_and_breaker_takes_the_worst() -> None:
    w1 = parse(exposition(10, 0, 100, [], breaker=0), t=1.0)
    w2 = parse(exposition(10, 0, 100, [], breaker=1), t=1.0)
    merged = merge([w1, w2])
    assert merged.total("trackflow_records_in_total") == 200
    view = build_view(None, merged, per_worker=[w1, w2])
    assert view.providers[0].breaker == "half_open"


class _Handler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_url() -> Iterator[str]:
    """A loopback HTTP server answering a fixed /metrics."""
    _Handler.body = exposition(10, 1, 100, [0.2, 0.3]).encode()
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()


def test_scrape_all_reports_who_did_not_answer(metrics_url: str) -> None:
    with httpx.Client(timeout=1) as client:
        snaps, errors = scrape_all(client, [metrics_url, "http://127.0.0.1:1/metrics"])
    assert len(snaps) == 1 and len(errors) == 1
    assert "127.0.0.1:1" in errors[0]


def test_once_prints_a_frame(metrics_url: str) -> None:
    result = CliRunner().invoke(top, ["--url", metrics_url, "--once", "--interval", "0.1"])
    assert result.exit_code == 0, result.output
    for text in ("spotify", "closed", "3/10", "lag"):
        assert text in result.output, f"expected {text!r} in the frame:\n{result.output}"


def test_once_without_a_worker_says_so() -> None:
    result = CliRunner().invoke(top, ["--url", "http://127.0.0.1:1/metrics", "--once",
                                      "--interval", "0.1"])
    assert result.exit_code == 1
    assert "no worker answered" in result.output


def budget_exposition(waiting: float, deferred: float, backlog: float, overdue: float) -> str:
    reg = CollectorRegistry()
    Counter("trackflow_provider_calls_total", "", ["provider", "kind", "outcome"],
            registry=reg).labels("musicbrainz", "search", "found").inc(5)
    Gauge("trackflow_ratelimit_waiting_calls", "", ["provider"],
          registry=reg).labels("musicbrainz").set(waiting)
    Gauge("trackflow_ratelimit_rate", "", ["provider"],
          registry=reg).labels("musicbrainz").set(0.5)
    Counter("trackflow_deferred_fields_total", "", ["provider"],
            registry=reg).labels("musicbrainz").inc(deferred)
    Gauge("trackflow_refresh_backlog", "", registry=reg).set(backlog)
    Gauge("trackflow_refresh_oldest_due_seconds", "", registry=reg).set(overdue)
    return generate_latest(reg).decode()


def test_build_view_shows_budget_waits_drain_time_deferrals_and_the_refresh_backlog() -> None:
    a = parse(budget_exposition(10, 4, 3, 1.0), t=0.0)
    b = parse(budget_exposition(30, 10, 8, 2.5), t=2.0)
    view = build_view(a, b)
    (row,) = view.providers
    assert row.waiting == 30
    assert row.drain_s == pytest.approx(60.0), "30 calls waiting at 0.5 calls/s"
    assert row.deferred_per_s == pytest.approx(3.0)
    assert view.refresh_backlog == 8 and view.refresh_overdue_s == 2.5


def backlog_exposition(*, calls: float, fresh: float = 0.0, replay: float = 0.0,
                       due_in: float = 0.0, paced: float = 1.0) -> str:
    """A worker's backlog for MusicBrainz as it estimates it (agents.backlog), and the slots
    replays have taken so far."""
    reg = CollectorRegistry()
    Counter("trackflow_ratelimit_slots_total", "", ["provider", "priority"], registry=reg).labels(
        "musicbrainz", "replay").inc(replay)
    Gauge("trackflow_ratelimit_rate", "", ["provider"], registry=reg).labels(
        "musicbrainz").set(paced)
    share = Gauge("trackflow_ratelimit_min_share", "", ["priority"], registry=reg)
    share.labels("refresh").set(0.1)
    share.labels("replay").set(0.05)
    Gauge("trackflow_backlog_calls", "", ["provider"], registry=reg).labels(
        "musicbrainz").set(calls)
    Gauge("trackflow_fresh_call_demand", "", ["provider"], registry=reg).labels(
        "musicbrainz").set(fresh)
    Gauge("trackflow_refresh_due_in_seconds", "", registry=reg).set(due_in)
    return generate_latest(reg).decode()


def test_the_backlog_eta_is_its_calls_at_the_rate_fresh_records_arriving_leave() -> None:
    # Fresh records arriving ask 0.5/s of MusicBrainz's 1/s: 100 calls take 200 s.
    b = parse(backlog_exposition(calls=100, fresh=0.5, due_in=30), t=60.0)
    view = build_view(b, b)
    (row,) = view.providers
    assert row.backlog_calls == pytest.approx(100)
    assert row.backlog_eta_s == pytest.approx(200)
    assert (view.backlog_eta_s, view.backlog_eta_provider) == (pytest.approx(200), "musicbrainz")
    assert "backlog ETA 200.00 s (musicbrainz)" in _frame(view)


def test_busy_fresh_records_and_replays_leave_the_backlog_at_least_the_refreshes_share() -> None:
    saturated = parse(backlog_exposition(calls=100, fresh=1.0), t=60.0)
    (row,) = build_view(saturated, saturated).providers
    assert row.backlog_eta_s == pytest.approx(1000), "the refreshes' minimum share, 0.1/s"
    # Replays took 30 slots in the minute while no refresh was due; once refreshes ask,
    # replays keep only their minimum share (0.05/s).
    a = parse(backlog_exposition(calls=100), t=0.0)
    replays = parse(backlog_exposition(calls=100, replay=30), t=60.0)
    (row,) = build_view(replays, replays, window=a).providers
    assert row.backlog_eta_s == pytest.approx(100 / 0.95)


def test_the_backlog_eta_is_not_before_the_last_refresh_is_due() -> None:
    b = parse(backlog_exposition(calls=10, due_in=90), t=60.0)
    view = build_view(b, b)
    assert (view.backlog_eta_s, view.backlog_eta_provider) == (90, None)
    idle = parse(backlog_exposition(calls=0), t=60.0)
    assert build_view(idle, idle).backlog_eta_s is None, "nothing left"


def test_two_workers_add_their_backlogs_and_share_one_provider_rate() -> None:
    w1 = parse(backlog_exposition(calls=100, fresh=0.25), t=60.0)
    w2 = parse(backlog_exposition(calls=50, fresh=0.25, due_in=20), t=60.0)
    view = build_view(merge([w1, w2]), merge([w1, w2]), per_worker=[w1, w2])
    # The paced rate is every worker's together (not summed); fresh records ask 0.5/s of it.
    assert view.backlog_eta_s == pytest.approx(150 / 0.5)


def _frame(view: View) -> str:
    console = Console(width=200, record=True)
    console.print(render(view, urls=["u"], answered=1))
    return console.export_text()
