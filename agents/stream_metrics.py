"""Stream metrics that no single record produces: consumer lag per input partition, build info."""

from __future__ import annotations

import logging
import platform
from importlib import metadata
from typing import Any

import faust
from aiokafka.errors import IllegalStateError

from trackflow.agents import metrics

log = logging.getLogger("trackflow.agents.stream_metrics")

LAG_INTERVAL_S = 2.0


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def export_build_info() -> None:
    metrics.BUILD_INFO.info({
        "version": _version("trackflow"),
        "python": platform.python_version(),
        "faust": _version("faust-streaming"),
        "aiokafka": _version("aiokafka"),
    })


class LagExporter:
    """End offset minus this worker's position, per assigned partition of ``topics``.

    A rebalance can revoke a partition between reading the assignment and asking for its
    position (the consumer then raises ``IllegalStateError``): that partition is skipped for
    this tick, since an exception here would stop the timer and with it the worker.
    """

    def __init__(self, topics: set[str]) -> None:
        self.topics = topics
        self.exported: set[tuple[str, str]] = set()
        self._lags: dict[tuple[str, str], int] = {}
        self._ends: dict[tuple[str, str], int] = {}

    def total(self, topic: str) -> int:
        """The lag of ``topic``'s partitions this worker consumes, at the last tick."""
        return sum(lag for (t, _), lag in self._lags.items() if t == topic)

    def lag(self, topic: str, partition: int) -> int:
        return self._lags.get((topic, str(partition)), 0)

    def ends(self, topic: str) -> dict[int, int]:
        """The end offsets of ``topic``'s partitions this worker consumes, at the last tick."""
        return {int(p): end for (t, p), end in self._ends.items() if t == topic}

    async def tick(self, consumer: Any) -> None:
        tps = [tp for tp in consumer.assignment() if tp.topic in self.topics]
        current: set[tuple[str, str]] = set()
        if tps:
            try:
                ends = await consumer.highwaters(*tps)
            except Exception as exc:  # broker hiccup: try again next tick, but say so
                log.warning("event=consumer_lag_failed error=%r", exc)
                return
            for tp in tps:
                try:
                    position = await consumer.position(tp)
                except IllegalStateError:  # revoked since assignment() was read
                    continue
                end = ends.get(tp)
                if end is None or position is None:
                    continue
                labels = (tp.topic, str(tp.partition))
                self._lags[labels] = max(0, end - position)
                self._ends[labels] = end
                metrics.CONSUMER_LAG.labels(*labels).set(self._lags[labels])
                current.add(labels)
        # Partitions that moved to another worker must not keep reporting a stale lag here.
        for labels in self.exported - current:
            metrics.CONSUMER_LAG.remove(*labels)
            self._lags.pop(labels, None)
            self._ends.pop(labels, None)
        self.exported = current


def register_lag_metrics(app: faust.App, topics: set[str]) -> LagExporter:
    """Every few seconds: end offset minus this worker's position, per assigned partition."""
    exporter = LagExporter(topics)

    async def consumer_lag() -> None:
        await exporter.tick(app.consumer)

    app.timer(LAG_INTERVAL_S, name="trackflow.consumer_lag")(consumer_lag)
    return exporter
