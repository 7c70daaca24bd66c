"""A blocking front for :class:`~.producer.TrackProducer`, for synchronous frameworks.

Scrapy item pipelines, Django views and scripts call plain methods. The async producer runs on
an event loop in a thread of its own, so the caller's thread may itself be running an event
loop (Scrapy's asyncio reactor) or none at all.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from trackflow.streams.client.producer import (
    Accepted,
    ProduceReport,
    Rejected,
    SendResult,
    TrackProducer,
    ValueFormat,
)
from trackflow.streams.kafka_io import Kafka

T = TypeVar("T")


class SyncTrackProducer:
    """``with SyncTrackProducer(kafka) as p: p.send(artist=..., title=...)``.

    :meth:`send` returns once the track is validated and queued (an :class:`Accepted` without
    waiting for the broker, or a :class:`Rejected`); :meth:`flush` and :meth:`close` wait for
    every acknowledgement and raise the first broker failure.
    """

    def __init__(self, kafka: Kafka, *, topic: str | None = None, source: str | None = None,
                 value_format: ValueFormat = "avro", validate: bool = True,
                 timeout_s: float = 60.0) -> None:
        self._timeout = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="trackflow-producer", daemon=True)
        self._producer = TrackProducer(kafka, topic=topic, source=source,
                                       value_format=value_format, validate=validate)
        self._started = False

    @property
    def report(self) -> ProduceReport:
        return self._producer.report

    def start(self) -> SyncTrackProducer:
        if not self._started:
            self._thread.start()
            self._started = True
            try:
                self._call(self._producer.start())
            except BaseException:
                self._stop_loop()
                raise
        return self

    def send(self, item: Mapping[str, Any] | None = None, /, **fields: Any) -> SendResult:
        """Validate and queue one track (see :meth:`TrackProducer.send`)."""
        return self._call(self._producer.send(item, **fields))

    def send_many(self, items: Iterable[Mapping[str, Any]]) -> ProduceReport:
        return self._call(self._producer.send_many(list(items)))

    def flush(self) -> None:
        self._call(self._producer.flush())

    def close(self) -> None:
        """Wait for every acknowledgement, close the connection and the loop's thread."""
        if not self._started:
            return
        try:
            self._call(self._producer.stop())
        finally:
            self._stop_loop()

    def __enter__(self) -> SyncTrackProducer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if not self._started:
            coro.close()
            raise RuntimeError("SyncTrackProducer is not started: use `with` or start()")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(self._timeout)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._started = False


__all__ = ["Accepted", "Rejected", "SyncTrackProducer"]
