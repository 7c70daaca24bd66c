"""Faust's own metrics, read from a real Faust Monitor when Prometheus scrapes."""

from __future__ import annotations

import gc
import logging
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.sensors.monitor import Monitor
from faust.sensors.prometheus import PrometheusMonitor
from faust.types import TP, Message
from prometheus_client import CollectorRegistry, Counter, generate_latest

from trackflow.streams.faust_metrics import FaustCollector, exported_families, setup_faust_metrics

RAW = TP("raw-tracks", 2)


class Clock:
    """The Monitor's ``time``: latencies come out exactly as the test sets them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeStream:
    """What ``Monitor.on_stream_event_in`` reads from a stream (weak-referenceable)."""

    def __init__(self, topic: str) -> None:
        self.shortlabel = f"Stream: Topic: {topic}"
        self.task_owner = self


class Broken:
    """An app whose monitor cannot be read."""

    @property
    def monitor(self) -> Monitor:
        raise RuntimeError("no monitor")


def scrape(monitor: Monitor) -> CollectorRegistry:
    """A fresh registry holding only a collector over ``monitor``."""
    registry = CollectorRegistry()
    registry.register(FaustCollector(SimpleNamespace(monitor=monitor)))
    return registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def message(offset: int) -> Message:
    return Message(RAW.topic, RAW.partition, offset, 0.0, 0, [], b"k", b"v", None)


async def test_messages_and_events_are_read_from_the_monitor() -> None:
    clock = Clock()
    m = Monitor(time=clock)
    registry = scrape(m)
    app = faust.App("test-faust-metrics", broker="kafka://localhost:1", store="memory://",
                    autodiscover=False)
    stream = app.topic(RAW.topic).stream()
    first, second = message(41), message(42)
    m.on_message_in(RAW, 41, first)
    m.on_message_in(RAW, 42, second)
    m.on_message_out(RAW, 41, first)
    for runtime in (0.25, 0.75):
        state = m.on_stream_event_in(RAW, 41, stream, None)  # type: ignore[arg-type]
        clock.now += runtime
        m.on_stream_event_out(RAW, 41, stream, None, state)  # type: ignore[arg-type]
    m.on_stream_event_in(RAW, 42, stream, None)  # type: ignore[arg-type]

    assert value(registry, "faust_messages_received_total") == 2
    assert value(registry, "faust_messages_received_per_topic_total", topic="raw-tracks") == 2
    assert value(registry, "faust_active_messages") == 1, "one message is not acknowledged yet"
    assert value(registry, "faust_messages_received_per_topics_partition",
                 topic="raw-tracks", partition="2") == 42, "expected the last offset read"
    assert value(registry, "faust_total_events_total") == 3
    assert value(registry, "faust_total_active_events") == 1
    # The label Faust's own sensor gave this stream, so existing queries keep working.
    label = f"stream.{PrometheusMonitor._stream_label(m, stream)}.events"  # type: ignore[arg-type]
    assert label == "stream.topic_raw-tracks.events"
    assert value(registry, "faust_total_events_per_stream_total", stream=label) == 3
    assert value(registry, "faust_events_runtime_avg_seconds") == pytest.approx(0.5), (
        "expected the mean of the 0.25 s and 0.75 s runtimes")


def test_a_collected_stream_keeps_its_label_and_count() -> None:
    m = Monitor()
    registry = scrape(m)
    streams = [FakeStream("raw-tracks"), FakeStream("raw-tracks")]
    for s in streams:
        m.on_stream_event_in(RAW, 1, s, None)  # type: ignore[arg-type]
    name = "faust_total_events_per_stream_total"
    labels = {"stream": "stream.topic_raw-tracks.events"}
    assert registry.get_sample_value(name, labels) == 2, "two streams of one topic share a label"
    del streams, s
    gc.collect()
    assert not m.stream_lookup, "the test expects the streams to be garbage-collected"
    assert registry.get_sample_value(name, labels) == 2, "a counter must not go down"
    late = FakeStream("raw-tracks")
    m.on_stream_event_in(RAW, 2, late, None)  # type: ignore[arg-type]
    del late
    gc.collect()
    assert registry.get_sample_value(name, {"stream": "stream.unknown.events"}) == 1, (
        "a stream collected before any scrape is counted under stream.unknown.events")


def test_sends_commits_and_offsets() -> None:
    clock = Clock()
    m = Monitor(time=clock)
    registry = scrape(m)
    for latency in (0.02, 0.04):
        state = m.on_send_initiated(None, "enriched-tracks", None, 1, 10)  # type: ignore[arg-type]
        clock.now += latency
        m.on_send_completed(None, state, None)  # type: ignore[arg-type]
    m.on_send_error(None, RuntimeError("broker down"), None)  # type: ignore[arg-type]
    state = m.on_commit_initiated(None)  # type: ignore[arg-type]
    clock.now += 0.1
    m.on_commit_completed(None, state)  # type: ignore[arg-type]
    m.on_tp_commit({RAW: 40})
    m.track_tp_end_offset(RAW, 100)

    assert value(registry, "faust_topic_messages_sent_total", topic="topic.enriched-tracks") == 2
    assert value(registry, "faust_total_sent_messages_total") == 2
    assert value(registry, "faust_total_error_messages_sent_total") == 1
    assert value(registry, "faust_producer_send_latency_avg_seconds") == pytest.approx(0.03)
    assert value(registry, "faust_consumer_commit_latency_avg_seconds") == pytest.approx(0.1)
    assert value(registry, "faust_topic_partition_offset_commited",
                 topic="raw-tracks", partition="2") == 40
    assert value(registry, "faust_topic_partition_end_offset",
                 topic="raw-tracks", partition="2") == 100


def test_assignments_rebalances_tables_web_and_counts() -> None:
    clock = Clock()
    m = Monitor(time=clock)
    registry = scrape(m)
    state = m.on_assignment_start(None)  # type: ignore[arg-type]
    clock.now += 2.0
    m.on_assignment_completed(None, state)  # type: ignore[arg-type]
    state = m.on_assignment_start(None)  # type: ignore[arg-type]
    clock.now += 4.0
    m.on_assignment_error(None, state, RuntimeError("boom"))  # type: ignore[arg-type]
    app: Any = SimpleNamespace(rebalancing_count=3)
    state = m.on_rebalance_start(app)
    clock.now += 1.0
    m.on_rebalance_return(app, state)
    clock.now += 2.0
    m.on_rebalance_end(app, state)
    table: Any = SimpleNamespace(name="counts")
    m.on_table_get(table, "a")
    m.on_table_get(table, "b")
    m.on_table_set(table, "a", 1)
    m.on_table_del(table, "a")
    state = m.on_web_request_start(app, None)  # type: ignore[arg-type]
    clock.now += 0.5
    m.on_web_request_end(app, None, SimpleNamespace(status=200), state)  # type: ignore[arg-type]
    m.count("redirected", 2)
    m.on_topic_buffer_full(RAW)

    assert value(registry, "faust_assignment_operations_total", operation="completed") == 1
    assert value(registry, "faust_assignment_operations_total", operation="error") == 1
    assert value(registry, "faust_assign_latency_avg_seconds") == pytest.approx(3.0)
    assert value(registry, "faust_rebalances_total") == 3
    assert value(registry, "faust_rebalance_return_latency_avg_seconds") == pytest.approx(1.0)
    assert value(registry, "faust_rebalance_end_latency_avg_seconds") == pytest.approx(3.0)
    ops = {op: value(registry, "faust_table_operations_total", table="table.counts", operation=op)
           for op in ("keys_retrieved", "keys_updated", "keys_deleted")}
    assert ops == {"keys_retrieved": 2, "keys_updated": 1, "keys_deleted": 1}
    assert value(registry, "faust_http_status_codes_total", status_code="200") == 1
    assert value(registry, "faust_http_latency_avg_seconds") == pytest.approx(0.5)
    assert value(registry, "faust_metrics_by_name", metric="redirected") == 2
    assert value(registry, "faust_topic_buffer_full_total", topic="raw-tracks", partition="2") == 1


def test_an_idle_monitor_exports_every_family_and_no_averages() -> None:
    registry = scrape(Monitor())
    text = generate_latest(registry).decode()
    for family in exported_families():
        assert f"# TYPE {family.name}" in text, f"expected the family {family.name} when idle"
    assert value(registry, "faust_messages_received_total") == 0
    assert value(registry, "faust_events_runtime_avg_seconds") is None, (
        "no runtime was measured: the average must be absent, not 0")
    names = [f.name for f in exported_families()]
    assert len(names) == len(set(names)), f"duplicate family names: {names}"
    assert all(n.startswith("faust_") for n in names), names
    averages = [n for n in names if "_avg" in n]
    assert averages and all(n.endswith("_avg_seconds") for n in averages), averages


def test_a_failing_monitor_never_fails_the_scrape(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(FaustCollector(Broken()))  # registering must not read the monitor
    with caplog.at_level(logging.ERROR, logger="trackflow.streams.faust_metrics"):
        generate_latest(registry)
        text = generate_latest(registry).decode()
    assert "faust_metrics_scrape_errors_total 2.0" in text, f"expected 2 failed scrapes:\n{text}"
    assert "faust_messages_received" not in text
    assert len(caplog.records) == 1, "the failure is logged once, then only counted"


async def test_the_metrics_page_serves_faust_and_trackflow_families() -> None:
    registry = CollectorRegistry()
    Counter("trackflow_example_total", "A family of ours.", registry=registry).inc()
    app = faust.App("test-faust-metrics-page", broker="kafka://localhost:1",
                    store="memory://", autodiscover=False, web_enabled=True)
    setup_faust_metrics(app, registry=registry)
    app.monitor.on_message_in(RAW, 7, message(7))

    response = await app.web.views["/metrics"].get(None)
    body = response.body.decode()
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "trackflow_example_total 1.0" in body
    assert "faust_messages_received_total 1.0" in body
    assert type(app.monitor) is Monitor, "Faust's base Monitor must stay: no per-event work"
