"""Faust's own ``faust_*`` metrics for Prometheus, read from ``app.monitor`` at scrape time.

Why not ``faust.sensors.prometheus``: its ``PrometheusMonitor`` updates prometheus_client metrics
in every per-event sensor hook (label lookups and locks), about 20 µs per record; a no-op agent
dropped from 16,000 to 12,000 records/s with it. Faust always runs its base ``Monitor``, which
counts the same things in plain ints, Counters and deques, so this collector reads those when
Prometheus scrapes and costs nothing per event.

Names (and label values) are those of Faust's sensor with ``name_prefix="faust"`` where the value
means the same thing. Faust's latency histograms have no equivalent: the Monitor keeps only the
last N latencies, so they become ``*_avg_seconds`` gauges, the mean of that window. Its
``faust_total_rebalances`` gauge (rebalances in progress) becomes the ``faust_rebalances``
counter, which is what the Monitor counts. Faust's sensor counted ``faust_total_sent_messages``
when a send completed; the Monitor counts it when the send is handed to the producer.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol, cast

import faust
from aiohttp.web import Response
from faust import web
from faust.sensors.monitor import RE_NORMALIZE, Monitor
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["FaustCollector", "HasMonitor", "exported_families", "setup_faust_metrics"]

log = logging.getLogger("trackflow.streams.faust_metrics")


class HasMonitor(Protocol):
    """What the collector reads: a Faust app, or in tests anything holding a Monitor."""

    @property
    def monitor(self) -> Monitor: ...


def setup_faust_metrics(app: faust.App, *, pattern: str = "/metrics",
                        registry: CollectorRegistry = REGISTRY) -> FaustCollector:
    """Export ``app.monitor`` through ``registry`` and serve ``registry`` on ``pattern``.

    The page is the one ``setup_prometheus_sensors`` registers, so it also serves every
    ``trackflow_*`` family of the default registry. A registry exports one app: the collector
    of an app set up before on the same registry (a test building a second worker in one
    process) is replaced.
    """
    collector = FaustCollector(app)
    previous = _collectors.get(registry)
    if previous is not None:
        registry.unregister(previous)
    registry.register(collector)
    _collectors[registry] = collector

    @app.page(pattern)
    async def metrics_handler(self: web.View, request: web.Request) -> web.Response:
        body = generate_latest(registry)
        headers = {"Content-Type": CONTENT_TYPE_LATEST}
        return cast(web.Response, Response(body=body, headers=headers, status=200))

    return collector


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, FaustCollector] = \
    weakref.WeakKeyDictionary()
"""The collector registered on each registry by :func:`setup_faust_metrics`."""


def exported_families() -> list[Metric]:
    """Every family the collector exports, with an empty Monitor's values (docs and tests)."""
    return [*_families(Monitor(), {}), _errors_family(0)]


class FaustCollector(Collector):
    """Metric families built from a Faust Monitor's counters when Prometheus scrapes."""

    def __init__(self, app: HasMonitor) -> None:
        # The app, not its monitor: Faust creates the monitor lazily (bound to its event loop).
        self._app = app
        self._stream_labels: dict[str, str] = {}
        self._errors = 0

    def describe(self) -> Iterable[Metric]:
        # Names only, from an empty Monitor: registering must not create the app's monitor early.
        return exported_families()

    def collect(self) -> Iterator[Metric]:
        # A scrape must never fail: a bug here costs the faust_* samples, not the trackflow_* ones.
        try:
            families = _families(self._app.monitor, self._stream_labels)
        except Exception:
            self._errors += 1
            if self._errors == 1:
                log.exception("event=faust_metrics_failed")
            families = []
        yield from families
        yield _errors_family(self._errors)


def _errors_family(count: int) -> Metric:
    return CounterMetricFamily("faust_metrics_scrape_errors",
                               "Scrapes whose faust_* families failed to build (logged once).",
                               value=count)


def _families(m: Monitor, stream_labels: dict[str, str]) -> list[Metric]:
    """The families with ``m``'s values; ``stream_labels`` caches stream label values."""
    tables: dict[tuple[str, ...], float] = {}
    for name, state in dict(m.tables).items():
        for operation, count in state.asdict().items():
            tables[(f"table.{name}", operation)] = count
    return [
        _counter("faust_messages_received", "Messages received from Kafka.",
                 value=m.messages_received_total),
        _counter("faust_messages_received_per_topic", "Messages received per topic.", ("topic",),
                 {(t,): n for t, n in dict(m.messages_received_by_topic).items()}),
        _gauge("faust_active_messages", "Messages received and not yet acknowledged.",
               value=m.messages_active),
        _gauge("faust_messages_received_per_topics_partition",
               "Offset of the last message read per topic/partition.", ("topic", "partition"),
               _per_tp(m.tp_read_offsets)),
        _counter("faust_total_events", "Events delivered to streams.", value=m.events_total),
        _gauge("faust_total_active_events", "Events being processed by a stream.",
               value=m.events_active),
        _counter("faust_total_events_per_stream", "Events delivered per stream.", ("stream",),
                 _events_per_stream(m, stream_labels)),
        _counter("faust_table_operations", "Table key reads, updates and deletes.",
                 ("table", "operation"), tables),
        _counter("faust_topic_messages_sent", "Messages handed to the producer per topic.",
                 ("topic",),
                 {(f"topic.{t}",): n for t, n in dict(m.messages_sent_by_topic).items()}),
        _counter("faust_total_sent_messages",
                 "Messages handed to the producer (counted when the send starts).",
                 value=m.messages_sent),
        _counter("faust_total_error_messages_sent", "Sends that failed.", value=m.send_errors),
        _counter("faust_assignment_operations", "Partition assignments (completed, error).",
                 ("operation",),
                 {("completed",): m.assignments_completed, ("error",): m.assignments_failed}),
        _counter("faust_rebalances", "Rebalances this worker started.", value=m.rebalances),
        _counter("faust_topic_buffer_full",
                 "Times a partition's stream buffer was full and the consumer waited.",
                 ("topic", "partition"), _per_tp(m.topic_buffer_full)),
        _gauge("faust_topic_partition_end_offset", "Log end offset per topic/partition.",
               ("topic", "partition"), _per_tp(m.tp_end_offsets)),
        _gauge("faust_topic_partition_offset_commited", "Committed offset per topic/partition.",
               ("topic", "partition"), _per_tp(m.tp_committed_offsets)),
        _gauge("faust_metrics_by_name", "Counts the app added with monitor.count().", ("metric",),
               {(k,): n for k, n in dict(m.metric_counts).items()}),
        _counter("faust_http_status_codes", "Web server responses per status code.",
                 ("status_code",),
                 {(str(int(c)),): n for c, n in dict(m.http_response_codes).items()}),
        _mean("faust_events_runtime_avg_seconds", "Time a stream spent on one event",
              m.events_runtime),
        _mean("faust_producer_send_latency_avg_seconds", "Producer send latency", m.send_latency),
        _mean("faust_consumer_commit_latency_avg_seconds", "Consumer commit latency",
              m.commit_latency),
        _mean("faust_assign_latency_avg_seconds", "Partition assignment latency",
              m.assignment_latency),
        _mean("faust_rebalance_return_latency_avg_seconds",
              "Rebalance start to assignment returned to the broker", m.rebalance_return_latency),
        _mean("faust_rebalance_end_latency_avg_seconds",
              "Rebalance start to rebalance done (recovery included)", m.rebalance_end_latency),
        _mean("faust_http_latency_avg_seconds", "Web server request to response",
              m.http_response_latency),
    ]


def _counter(name: str, doc: str, labels: tuple[str, ...] = (),
             samples: Mapping[tuple[str, ...], float] | None = None,
             value: float | None = None) -> Metric:
    return _fill(CounterMetricFamily(name, doc, labels=labels or None, value=value), samples)


def _gauge(name: str, doc: str, labels: tuple[str, ...] = (),
           samples: Mapping[tuple[str, ...], float] | None = None,
           value: float | None = None) -> Metric:
    return _fill(GaugeMetricFamily(name, doc, labels=labels or None, value=value), samples)


def _fill(family: CounterMetricFamily | GaugeMetricFamily,
          samples: Mapping[tuple[str, ...], float] | None) -> Metric:
    for labels, value in (samples or {}).items():
        family.add_metric(list(labels), value)
    return family


def _mean(name: str, doc: str, window: deque[float]) -> Metric:
    # Faust's sensor observed each latency into a histogram; the Monitor keeps only a window.
    family = GaugeMetricFamily(name, f"{doc}: mean of the last {window.maxlen} samples, however "
                                     "old (no sample before the first).")
    values = list(window)
    if values:
        family.add_metric([], sum(values) / len(values))
    return family


def _per_tp(values: Mapping[TP, int]) -> dict[tuple[str, ...], float]:
    return {(tp.topic, str(tp.partition)): n for tp, n in dict(values).items()}


def _events_per_stream(m: Monitor, stream_labels: dict[str, str]) -> dict[tuple[str, ...], float]:
    # The Monitor keys events by str(stream), which holds an object id; Faust's sensor
    # labelled them by the stream's short label. Labels are remembered per key so that a
    # stream garbage-collected since (gone from stream_lookup) keeps its label and the
    # per-label sum never goes down.
    for stream, key in list(m.stream_lookup.items()):
        if key not in stream_labels:
            # As PrometheusMonitor._stream_label does.
            short = RE_NORMALIZE.sub("_", stream.shortlabel.lstrip("Stream:"))
            stream_labels[key] = f"stream.{short.strip('_').lower()}.events"
    out: dict[tuple[str, ...], float] = {}
    for key, count in dict(m.events_by_stream).items():
        label = (stream_labels.get(key, "stream.unknown.events"),)
        out[label] = out.get(label, 0) + count
    return out
