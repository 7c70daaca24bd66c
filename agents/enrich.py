"""The enrichment agent: tracks.raw -> decode -> validate -> enrich -> tracks.enriched or DLQ.

The agent is thin: it hands each event to :class:`InFlight` (many records per partition at once,
acked in offset order) which calls :meth:`EnrichmentPipeline.handle`. ``handle`` never lets a bad
record escape: undecodable or invalid input and records that could not be enriched go to the
dead-letter topic with their original bytes and the error context in headers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import faust

from trackflow.agents import metrics
from trackflow.agents.deadletter import (
    Failure,
    Origin,
    attempt_of,
    dead_letter_headers,
    fit_record,
)
from trackflow.agents.encoded import EnrichedEncoder
from trackflow.agents.inflight import Inline
from trackflow.agents.publish import Send, is_record_error, publish, record_skipped
from trackflow.agents.records import (
    FieldValue,
    InvalidRecord,
    Outcome,
    validate_raw,
)
from trackflow.agents.refresh_schedule import (
    already_refreshed,
    known_revision,
    next_revision,
    schedule_refresh,
    stages_to_refresh,
    supersedes,
)
from trackflow.agents.runner import RunningAgent, Topics, producer_send, run_agent
from trackflow.agents.settings import AgentSettings
from trackflow.agents.wire import NO_REGISTRY, Schemas
from trackflow.providers.context import Priority, call_priority, current_record, enter_record
from trackflow.providers.errors import ConfigError
from trackflow.providers.specs import PROVIDER_NAMES
from trackflow.schemas.codec import (
    AVRO_CONTENT_TYPE,
    CONTENT_TYPE,
    DecodeError,
    decode_raw_track,
)

log = logging.getLogger("trackflow.agents.enrich")

#: The enrichment agent's name (its Faust agent, its in-flight tracker).
ENRICH_AGENT = "trackflow.enrich"


@dataclass(slots=True)
class Enrichment:
    """What the provider waterfall produced for one record."""

    filled: dict[str, FieldValue] = field(default_factory=dict)
    """Fields filled by providers."""
    outcomes: list[Outcome] = field(default_factory=list)
    """One outcome per provider stage."""
    failure: Failure | None = None
    """Set when the record must be dead-lettered instead of published."""
    not_before_ms: int | None = None
    """For a retryable failure: the earliest sensible retry time."""


class Enricher(Protocol):
    """Fills a validated raw record's missing fields."""

    async def enrich(self, raw: dict[str, Any], attempt: int) -> Enrichment: ...


class NoProviders:
    """The enricher with no provider stages: every record is published as ``partial``."""

    def cached(self, raw: dict[str, Any]) -> Enrichment:
        return Enrichment()

    async def enrich(self, raw: dict[str, Any], attempt: int) -> Enrichment:
        return Enrichment()


class EnrichmentPipeline:
    """Handles one raw event end to end. Every failure becomes a dead letter."""

    def __init__(self, *, send: Send, settings: AgentSettings, enricher: Enricher,
                 refreshed: Mapping[str, Any] | None = None, kept_encodings: int = 0,
                 schemas: Schemas = NO_REGISTRY,
                 clock: Callable[[], float] = time.time) -> None:
        self._send = send
        self._schemas = schemas
        # The refresh agent's table (read only here): revisions refreshes reached per track.
        self._refreshed: Mapping[str, Any] = refreshed if refreshed is not None else {}
        self._settings = settings
        self._enricher = enricher
        # Enrichers that know some results without waiting (agents.waterfall.Waterfall,
        # NoProviders): ``cached(raw)`` gives them, for records finished inline.
        self._cached: Callable[[dict[str, Any]], Enrichment | None] | None = getattr(
            enricher, "cached", None)
        self._clock = clock
        # The encoded part of the results of ``kept_encodings`` recent inputs (agents.encoded).
        self._encoder = EnrichedEncoder(settings.waterfall.targets, max_entries=kept_encodings,
                                        wire=schemas.wire)
        k = settings.kafka
        # Metric children resolved once: ``labels()`` takes a lock and a dict lookup per call.
        self._records_in = metrics.RECORDS_IN.labels(topic=k.raw_topic)
        self._fresh_done = metrics.FRESH_RECORDS
        self._fresh_calls = {p: metrics.FRESH_CALLS.labels(provider=p) for p in PROVIDER_NAMES}
        self._enriched_out = metrics.RECORDS_OUT.labels(topic=k.enriched_topic)
        self._status = {s: metrics.ENRICHED.labels(status=s) for s in ("complete", "partial")}
        self._avro_headers = [(CONTENT_TYPE, AVRO_CONTENT_TYPE.encode())]
        # At 0 from the start, so that the first skipped record is an increase alerts can see.
        metrics.RECORDS_SKIPPED.labels(topic=k.raw_topic, destination=k.dlq_topic)
        metrics.REFRESHES.labels(outcome="superseded")
        metrics.REFRESH_SCHEDULED.inc(0)

    async def handle(self, event: Any) -> None:
        msg = event.message
        # Provider gates keep rate-limit and breaker state per input partition.
        enter_record(msg.partition)  # this record's own task: its context ends with it
        headers = list(msg.headers or ())
        attempt = attempt_of(headers)
        self._records_in.inc()
        result = await self._handle(msg, headers, attempt)
        if attempt == 1:
            # What it cost each provider, for the backlog's estimate (agents.backlog): the
            # calls it made, and a call more where its stage was deferred (a refresh follows).
            calls = dict(current_record().calls)
            for o in result.outcomes if result is not None else ():
                if o.outcome == "deferred":
                    calls[o.provider] = calls.get(o.provider, 0) + 1
            for provider, n in calls.items():
                child = self._fresh_calls.get(provider)
                (child or metrics.FRESH_CALLS.labels(provider=provider)).inc(n)
            self._fresh_done.inc()

    async def _handle(self, msg: Any, headers: list[tuple[str, bytes]], attempt: int
                      ) -> Enrichment | None:
        """Decode, enrich and publish (or dead-letter) one record; its enrichment, None when
        it never reached the providers."""
        try:
            raw = await self._schemas.decode_raw(msg.value, headers)
        except DecodeError as exc:
            await self._dead_letter(msg, headers, attempt, Failure(
                "decode", type(exc).__name__, str(exc), exc.reason, retryable=False))
            return None
        except ConfigError as exc:  # the registry could not be asked for the record's schema
            await self._dead_letter(msg, headers, attempt, Failure(
                "decode", type(exc).__name__, str(exc)[:300], "schema_registry_unavailable",
                retryable=True))
            return None
        try:
            raw = validate_raw(raw)
        except InvalidRecord as exc:
            await self._dead_letter(msg, headers, attempt, Failure(
                "validate", type(exc).__name__, str(exc), exc.reason, retryable=False))
            return None
        if attempt > 1:
            # A dead letter's replay: it waits for budget the fresh records and refreshes
            # leave, and its minimum share.
            with call_priority(Priority.REPLAY):
                result = await self._enricher.enrich(raw, attempt)
        else:
            result = await self._enricher.enrich(raw, attempt)
        await self._complete(msg, headers, attempt, raw, result)
        return result

    async def handle_inline(self, event: Any) -> Inline:
        """Finish a record the result cache answers without a task of its own (see
        :mod:`agents.inflight`): its output is handed to the producer now, and the returned
        acknowledgement finishes it. A record the cache answered that needs more (a dead
        letter, a refresh) gets the coroutine that finishes it; any other record gets None,
        with nothing done or counted, and goes to :meth:`handle`."""
        if self._cached is None:
            return None
        msg = event.message
        headers = list(msg.headers or ())
        attempt = attempt_of(headers)
        if attempt > 1:
            return None  # a replay waits for the budget fresh records leave: handle's way
        try:
            raw = validate_raw(decode_raw_track(msg.value, headers,
                                                writers=self._schemas.writers))
        except (DecodeError, InvalidRecord):
            return None  # handle dead-letters it
        entry = self._refreshed.get(raw["track_id"])
        if supersedes(entry, raw):
            return None  # handle counts it
        result = self._cached(raw)
        if result is None:
            return None
        self._records_in.inc()
        self._fresh_done.inc()  # answered from the cache: no call
        if result.failure is not None or stages_to_refresh(result.outcomes):
            return self._complete(msg, headers, attempt, raw, result)
        now = self._clock()
        try:
            value, status = self._encoder.encode(
                raw, attempt=attempt, enriched_at_ms=int(now * 1000), filled=result.filled,
                outcomes=result.outcomes, revision=next_revision(now, known_revision(entry)))
            ack = asyncio.ensure_future(await self._send(
                self._settings.kafka.enriched_topic, raw["track_id"].encode(), value,
                self._avro_headers))
        except Exception as exc:
            if not is_record_error(exc):
                raise
            return self._complete(msg, headers, attempt, raw, result)  # dead-letters it
        ack.add_done_callback(partial(self._published, status, now, msg.timestamp))
        return ack

    def _published(self, status: str, now: float, timestamp: float | None,
                   ack: asyncio.Future[Any]) -> None:
        if ack.cancelled() or ack.exception() is not None:
            return  # recover_inline deals with it
        self._enriched_out.inc()
        self._status[status].inc()
        if timestamp:
            metrics.END_TO_END_LATENCY.observe(max(0.0, now - timestamp))

    async def recover_inline(self, event: Any, exc: BaseException) -> None:
        """A record finished inline whose publication failed: dead-lettered when Kafka refused
        the record itself; anything else stops the worker, as in :meth:`handle`."""
        if not is_record_error(exc):
            raise exc
        msg = event.message
        headers = list(msg.headers or ())
        await self._dead_letter(msg, headers, attempt_of(headers), Failure(
            "publish", type(exc).__name__, str(exc)[:200], "unpublishable", retryable=False))

    async def _complete(self, msg: Any, headers: list[tuple[str, bytes]], attempt: int,
                        raw: dict[str, Any], result: Enrichment) -> None:
        """Publish ``result`` for ``raw`` (or dead-letter it) and schedule its refresh."""
        if result.failure is not None:
            await self._dead_letter(msg, headers, attempt, result.failure,
                                    not_before_ms=result.not_before_ms)
            return
        now = self._clock()
        if already_refreshed(self._refreshed, raw):
            # Read again (a restart) after a refresh published a newer version of this same
            # input: publishing this one would put an older version after a newer one.
            metrics.REFRESHES.labels(outcome="superseded").inc()
            return
        revision = next_revision(now, known_revision(self._refreshed.get(raw["track_id"])))
        try:
            value, status = self._encoder.encode(
                raw, attempt=attempt, enriched_at_ms=int(now * 1000), filled=result.filled,
                outcomes=result.outcomes, revision=revision)
            await publish(self._send, self._settings.kafka.enriched_topic,
                          raw["track_id"].encode(), value, self._avro_headers)
        except Exception as exc:
            if not is_record_error(exc):
                raise
            # Too large for the topic, say: the input stays intact in the dead letter.
            await self._dead_letter(msg, headers, attempt, Failure(
                "publish", type(exc).__name__, str(exc)[:200], "unpublishable",
                retryable=False))
            return
        self._enriched_out.inc()
        self._status[status].inc()
        await schedule_refresh(self._send, self._settings, raw, result.filled, result.outcomes,
                               attempt=attempt, now=now, revision=revision,
                               source=(msg.partition, msg.offset))
        if msg.timestamp:  # Faust gives the Kafka timestamp in seconds
            metrics.END_TO_END_LATENCY.observe(max(0.0, now - msg.timestamp))

    async def _dead_letter(self, msg: Any, headers: list[tuple[str, bytes]], attempt: int,
                           failure: Failure, *, not_before_ms: int | None = None) -> None:
        now_ms = int(self._clock() * 1000)
        ts_ms = int(msg.timestamp * 1000) if msg.timestamp else None
        origin = Origin(msg.topic, msg.partition, msg.offset, ts_ms,
                        self._settings.kafka.consumer_group)
        out_headers = dead_letter_headers(headers, failure, origin, attempt=attempt,
                                          now_ms=now_ms, not_before_ms=not_before_ms)
        k = self._settings.kafka
        out = fit_record(msg.key, msg.value, out_headers, max_bytes=k.max_message_bytes)
        try:
            await publish(self._send, k.dlq_topic, out.key, out.value, out.headers)
        except Exception as exc:
            if not is_record_error(exc):
                raise  # Kafka is gone: stop, and read the record again after the restart
            record_skipped(msg, k.dlq_topic, exc)
            return
        log.info("event=dead_lettered topic=%s partition=%s offset=%s stage=%s reason=%s "
                 "retryable=%s", msg.topic, msg.partition, msg.offset, failure.stage,
                 failure.reason, failure.retryable)
        metrics.RECORDS_OUT.labels(topic=self._settings.kafka.dlq_topic).inc()
        metrics.DEAD_LETTERS.labels(stage=failure.stage.split(":")[0],
                                    provider=failure.provider or "",
                                    retryable=str(failure.retryable).lower()).inc()


def is_replay(msg: Any) -> bool:
    """Whether a raw record is a dead letter's replay: it runs beside the fresh records, in a
    place of its own (``worker.max_replays_in_flight``), for it waits for the budget they
    leave."""
    return bool(msg.headers) and attempt_of(msg.headers) > 1


def register_enrich_agent(app: faust.App, topics: Topics, settings: AgentSettings,
                          enricher: Enricher, *,
                          on_fatal: Callable[[BaseException], Awaitable[None]],
                          refreshed: Mapping[str, Any] | None = None,
                          kept_encodings: int = 0,
                          schemas: Schemas = NO_REGISTRY) -> RunningAgent:
    """Attach the enrichment agent to ``app``.

    ``on_fatal`` stops the worker (:func:`agents.runner.crash_handler`): acking an unhandled
    record would lose it, and not acking it would stall its partition.
    """
    pipeline = EnrichmentPipeline(send=producer_send(app), settings=settings, enricher=enricher,
                                  refreshed=refreshed, kept_encodings=kept_encodings,
                                  schemas=schemas)
    agent = run_agent(app, topics.raw, name=ENRICH_AGENT, handler=pipeline.handle,
                         inline=pipeline.handle_inline, recover=pipeline.recover_inline,
                         max_in_flight=settings.worker.max_in_flight,
                         max_queued=settings.worker.max_queued, on_fatal=on_fatal,
                         key_of=lambda msg: msg.key, background_of=is_replay,
                         max_background=settings.worker.max_replays_in_flight)
    metrics.IN_FLIGHT.set_function(agent.inflight.in_flight)
    return agent
