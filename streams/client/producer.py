"""Publish raw tracks to tracks.raw, validated at the edge exactly as the worker validates them.

A track given as keyword arguments or as a loosely named dict (a scraper's item, a CSV row) goes
through the same steps as a row of ``trackflow produce``: :func:`streams.ingest.row_to_raw`
(forgiving column names, durations in s / ms / ``m:ss``, the stable ``track_id``), then the
worker's own :func:`agents.records.validate_raw` (ISRC format, lengths, control characters,
duration range), so that an item the worker would dead-letter as invalid is reported to the
caller instead, with the worker's reason code and message. What is sent is the record the
worker's validation returned, Avro single-object encoded (or JSON, on request), keyed by
``track_id``, with acks=all and an idempotent producer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from aiokafka import AIOKafkaProducer

from trackflow.agents.records import InvalidRecord, validate_raw
from trackflow.schemas.codec import (
    AVRO_CONTENT_TYPE,
    CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    SINGLE_OBJECT,
    WireFormat,
    encode,
)
from trackflow.streams.ingest import RowRejected, row_to_raw
from trackflow.streams.kafka_io import Kafka, start_producer

ValueFormat = Literal["avro", "json"]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A track queued for sending; ``delivered`` resolves when the broker acknowledged it."""

    track_id: str
    """The record key."""
    record: Mapping[str, Any]
    """The RawTrack as sent (normalised by the worker's validation)."""
    delivered: asyncio.Future[Any] = field(repr=False)
    """aiokafka's RecordMetadata once every in-sync replica has the record."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A track that was not sent, and why (the worker's reason code and message)."""

    reason: str
    """Short code, e.g. ``invalid_isrc``, ``missing_title`` (as in dead-letter headers)."""
    field: str
    """The field at fault."""
    message: str
    """Readable explanation, the worker's own wording."""
    item: Any = dataclasses.field(default=None, repr=False)
    """What the caller passed."""

    def __str__(self) -> str:
        return self.message


SendResult = Accepted | Rejected


@dataclass(slots=True)
class ProduceReport:
    """What a producer did so far."""

    sent: int = 0
    """Tracks queued for sending."""
    rejected: Counter[str] = field(default_factory=Counter)
    """Rejected tracks by message."""
    examples: list[Rejected] = field(default_factory=list)
    """The first few rejections, for a report."""

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def prepare_track(item: Mapping[str, Any], *, source: str | None = None,
                  source_ref: str | None = None, validate: bool = True) -> dict[str, Any]:
    """The RawTrack dict that would be sent for ``item``; raises :class:`TrackRejected`."""
    try:
        record = row_to_raw(item, source=source, source_ref=source_ref)
    except RowRejected as exc:
        raise TrackRejected(Rejected(exc.reason, exc.field, str(exc), item)) from None
    if not validate:
        return record
    try:
        return validate_raw(record)
    except InvalidRecord as exc:
        raise TrackRejected(Rejected(exc.reason, exc.field, str(exc), item)) from None


class TrackRejected(ValueError):
    """Raised by :func:`prepare_track`; ``rejected`` says why."""

    def __init__(self, rejected: Rejected) -> None:
        super().__init__(rejected.message)
        self.rejected = rejected


def encode_track(record: Mapping[str, Any], value_format: ValueFormat = "avro",
                 wire: WireFormat = SINGLE_OBJECT) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(value, headers) of a RawTrack on the wire (Avro framed as ``wire`` says, or JSON)."""
    if value_format == "json":
        return json.dumps(record).encode(), [(CONTENT_TYPE, JSON_CONTENT_TYPE.encode())]
    return encode("RawTrack", record, wire=wire), [(CONTENT_TYPE, AVRO_CONTENT_TYPE.encode())]


class TrackProducer:
    """Async producer of raw tracks. Use as ``async with TrackProducer(settings.kafka) as p``.

    ``kafka`` is the ``[kafka]`` settings section (what the CLI uses, so the same connection
    settings apply) or a bootstrap string. With ``kafka.schema_registry.url`` set, Avro values
    are in the Confluent wire format, the schema registered on start under ``<topic>-value``.
    ``validate=False`` sends what the worker will dead-letter, for testing the dead-letter path.
    """

    EXAMPLES = 5
    PRUNE_AT = 10_000

    def __init__(self, kafka: Kafka, *, topic: str | None = None, source: str | None = None,
                 value_format: ValueFormat = "avro", validate: bool = True,
                 linger_ms: int = 10) -> None:
        self._kafka = kafka
        if topic is None:
            topic = "tracks.raw" if isinstance(kafka, str) else kafka.raw_topic
        self.topic = topic
        self._source = source
        self._format = value_format
        self._validate = validate
        self._linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._wire = SINGLE_OBJECT
        self._pending: list[asyncio.Future[Any]] = []
        self.report = ProduceReport()

    async def start(self) -> None:
        if self._producer is None:
            if not isinstance(self._kafka, str) and self._format == "avro" \
                    and self._kafka.schema_registry.url is not None:
                from trackflow.streams.schema_registry import register_schemas, subject

                self._wire = await register_schemas(self._kafka,
                                                    {subject(self.topic): "RawTrack"})
            self._producer = await start_producer(self._kafka, linger_ms=self._linger_ms)

    async def stop(self) -> None:
        """Wait for every queued track to be acknowledged, then close the connection."""
        if self._producer is None:
            return
        try:
            await self.flush()
        finally:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def __aenter__(self) -> TrackProducer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def send(self, item: Mapping[str, Any] | None = None, /, *,
                   source_ref: str | None = None, **fields: Any) -> SendResult:
        """Validate and queue one track: a dict, keyword fields (``artist=``, ``title=``,
        ``isrc=``, ``duration_ms=`` or ``duration=``, ``album=``, ``spotify_id=``,
        ``observed_at=``, ``attributes=``, ``track_id=``), or both (keywords win).

        Returns :class:`Accepted` (await ``delivered`` or :meth:`flush` for the broker's ack)
        or :class:`Rejected`. Raises only when Kafka itself fails.
        """
        merged = {**(item or {}), **fields}
        try:
            record = prepare_track(merged, source=self._source, source_ref=source_ref,
                                   validate=self._validate)
        except TrackRejected as exc:
            return self.reject(exc.rejected)
        return await self.send_record(record)

    async def send_record(self, record: Mapping[str, Any]) -> Accepted:
        """Queue a RawTrack dict as it is (no parsing, no validation)."""
        if self._producer is None:
            raise RuntimeError("TrackProducer is not started: use `async with` or start()")
        value, headers = encode_track(record, self._format, self._wire)
        future = await self._producer.send(self.topic, value=value,
                                           key=str(record["track_id"]).encode(),
                                           headers=headers)
        self._pending.append(future)
        if len(self._pending) >= self.PRUNE_AT:
            # A long-lived producer (a scraper's pipeline) may never flush: keep only what is
            # unacknowledged or failed, so memory stays bounded and failures still surface.
            self._pending = [f for f in self._pending
                             if not f.done() or f.cancelled() or f.exception() is not None]
        self.report.sent += 1
        return Accepted(str(record["track_id"]), record, future)

    async def send_many(self, items: Iterable[Mapping[str, Any]]) -> ProduceReport:
        """Send every item and wait for the broker's acknowledgements; the report so far."""
        for item in items:
            await self.send(item)
        await self.flush()
        return self.report

    async def flush(self) -> None:
        """Wait until every queued track is acknowledged; raises the first broker failure."""
        if self._producer is not None:
            await self._producer.flush()
        pending, self._pending = self._pending, []
        # gather in order so the first failure is the one raised; all are awaited either way.
        results = await asyncio.gather(*pending, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def reject(self, rejected: Rejected) -> Rejected:
        """Count a track the caller rejected itself (a row it could not parse) in the report."""
        self.report.rejected[rejected.message] += 1
        if len(self.report.examples) < self.EXAMPLES:
            self.report.examples.append(rejected)
        return rejected
