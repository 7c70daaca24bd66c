"""The DLQ reprocessing agent: tracks.dlq -> wait -> tracks.raw (attempt + 1), or tracks.dlq.parked.

Every dead letter of a partition waits in its own task (:class:`InFlight` with a large limit), so
one due in an hour never delays one due in a minute. Offsets are acked strictly in order, so the
DLQ topic itself is the durable schedule: after a crash everything unfinished is re-delivered.
A changelogged table remembers each dead letter's retry time and whether its replay was
published, so a re-delivered dead letter keeps its time and a finished one is not replayed again.

Faust lets only code running for an event write a table. Each task was created while the agent
iterated over its event and asyncio copies context variables into new tasks, so the task's
writes go to the event's partition. Timers only read state and set gauges.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import faust

from trackflow.agents import metrics
from trackflow.agents.deadletter import (
    H_CLASS,
    H_LAST_FAILURE,
    H_PROVIDER,
    H_STAGE,
    error_facts,
    fit_record,
    parked_headers,
    replay_headers,
)
from trackflow.agents.inflight import InFlight
from trackflow.agents.publish import Send, is_record_error, publish, record_skipped
from trackflow.agents.retry_schedule import (
    DONE,
    WAITING,
    Park,
    Retry,
    Waiting,
    breaker_wait_s,
    decide,
    done_entry,
    parse_key,
    prunable,
    schedule_key,
    waiting_entry,
)
from trackflow.agents.runner import RunningAgent, Topics, declare_table, producer_send, run_agent
from trackflow.agents.settings import AgentSettings, DlqSettings
from trackflow.agents.tables import DLQ_SCHEDULE_TABLE

log = logging.getLogger("trackflow.agents.reprocess")

SLEEP_SLICE_S = 1.0
"""Longest single sleep: keeps waits responsive to shutdown and to wall-clock steps."""
GAUGE_INTERVAL_S = 5.0

BreakerOpenUntil = Callable[[str, int], float]
"""``(provider, original partition) -> epoch seconds`` the breaker may let a probe through; 0
when it is not open."""


@dataclass(slots=True)
class _Partition:
    """What this worker knows about one DLQ partition it owns."""

    first_delivered: int
    """The first offset delivered since the assignment: the committed position."""
    states: dict[int, str]
    """Mirror of the partition's schedule entries, ``{offset: state}``, for pruning."""


class Reprocessor:
    """Handles one dead letter end to end: park it, or wait and replay it."""

    def __init__(self, *, send: Send, settings: AgentSettings, dlq: DlqSettings,
                 table: MutableMapping[str, Any], breaker_open_until: BreakerOpenUntil,
                 clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self._send = send
        self._settings = settings
        self._dlq = dlq
        self._table = table
        self._breaker_open_until = breaker_open_until
        self._clock = clock
        self._rng = rng or random.Random()
        self._parts: dict[int, _Partition] = {}
        self._waiting = Waiting()
        self._tasks: dict[Hashable, set[asyncio.Task[Any]]] = {}
        self.inflight: InFlight[Any] | None = None
        k = settings.kafka
        for destination in (k.raw_topic, k.parked_topic):  # at 0 from the start, for alerts
            metrics.RECORDS_SKIPPED.labels(topic=k.dlq_topic, destination=destination)

    # --- the agent loop side (runs for the event being iterated) ---

    def on_delivered(self, partition: int, offset: int) -> None:
        """Note the first offset of a partition and load its entries (table reads only)."""
        if partition in self._parts:
            return
        states: dict[int, str] = {}
        prefix = f"{partition}/"
        for key, value in list(self._table.items()):
            parsed = parse_key(key) if isinstance(key, str) and key.startswith(prefix) else None
            if parsed is not None and isinstance(value, dict):
                states[parsed[1]] = str(value.get("state"))
        self._parts[partition] = _Partition(offset, states)

    def revoke(self, tps: set[Any]) -> None:
        """Stop waiting for revoked partitions; their new owner re-reads them from the commit."""
        for tp in tps:
            if tp.topic != self._settings.kafka.dlq_topic:
                continue
            for task in self._tasks.pop(tp, set()):
                task.cancel()
            self._parts.pop(tp.partition, None)
            for key in self._waiting.keys():
                if key[0] == tp.partition:
                    self._waiting.discard(key)
        self.update_gauges()

    # --- the task side (one task per dead letter) ---

    async def handle(self, event: Any) -> None:
        msg = event.message
        task = asyncio.current_task()
        if task is not None:
            self._tasks.setdefault(msg.tp, set()).add(task)
        try:
            await self._handle(msg)
        finally:
            if task is not None:
                self._tasks.get(msg.tp, set()).discard(task)

    async def _handle(self, msg: Any) -> None:
        headers = list(msg.headers or ())
        metrics.RECORDS_IN.labels(topic=msg.topic).inc()
        key = schedule_key(msg.partition, msg.offset)
        stored = self._table.get(key)
        entry: dict[str, Any] | None = stored if isinstance(stored, dict) else None
        if entry is not None and entry.get("state") == DONE:
            # Replayed before a crash or rebalance, acked after it: do not replay twice.
            log.info("event=dlq_already_replayed partition=%s offset=%s",
                     msg.partition, msg.offset)
            return
        facts = error_facts(headers)
        labels = _labels(facts)
        metrics.DLQ_RECEIVED.labels(**labels).inc()
        log.debug("event=dlq_received partition=%s offset=%s", msg.partition, msg.offset)
        now_ms = int(self._clock() * 1000)
        decision = decide(headers, self._dlq, now_ms=now_ms, rng=self._rng)
        if isinstance(decision, Park):
            await self._park(msg, headers, decision.reason, labels)
            return
        if entry is not None and entry.get("state") == WAITING:
            resumed = True
            # Re-delivered after a restart or rebalance: keep the time drawn the first time.
            decision = Retry(decision.attempt, int(entry.get("not_before", decision.not_before_ms)),
                             decision.provider, decision.partition)
        else:
            resumed = False
            entry = waiting_entry(decision)
            self._table[key] = entry
            self._note(msg.partition, msg.offset, WAITING)
            metrics.DLQ_SCHEDULED.labels(provider=decision.provider).inc()
        log.info("event=dlq_scheduled partition=%s offset=%s provider=%s attempt=%s "
                 "not_before_ms=%s resumed=%s", msg.partition, msg.offset,
                 decision.provider or "-", decision.attempt, decision.not_before_ms,
                 str(resumed).lower())
        since = _float_ms(facts.get(H_LAST_FAILURE)) or (msg.timestamp or self._clock())
        self._waiting.add((msg.partition, msg.offset), since)
        self.update_gauges()
        try:
            await self._sleep_until(decision.not_before_ms / 1000)
            await self._wait_for_breaker(decision)
        finally:
            self._waiting.discard((msg.partition, msg.offset))
            self.update_gauges()
        await self._replay(msg, headers, decision)
        self._table[key] = done_entry(entry)
        self._note(msg.partition, msg.offset, DONE)
        self._prune(msg.tp, msg.partition)

    async def _sleep_until(self, when: float) -> None:
        # Slices, not one long sleep: the wall clock may step, and a cancelled wait ends promptly.
        while (left := when - self._clock()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(left, SLEEP_SLICE_S))

    async def _wait_for_breaker(self, retry: Retry) -> None:
        if not retry.provider or retry.partition is None:
            return
        while True:
            now = self._clock()
            wait = breaker_wait_s(self._breaker_open_until(retry.provider, retry.partition), now,
                                  self._dlq.breaker_jitter_s, self._rng)
            if wait <= 0:
                return
            log.debug("event=dlq_waiting_for_breaker provider=%s partition=%s wait_s=%.1f",
                      retry.provider, retry.partition, wait)
            await self._sleep_until(now + wait)

    async def _replay(self, msg: Any, headers: list[tuple[str, bytes]], retry: Retry) -> None:
        k = self._settings.kafka
        raw_topic = k.raw_topic
        out = fit_record(msg.key, msg.value, replay_headers(headers, attempt=retry.attempt + 1),
                         max_bytes=k.max_message_bytes)
        try:
            await publish(self._send, raw_topic, out.key, out.value, out.headers)
        except Exception as exc:
            if not is_record_error(exc):
                raise
            record_skipped(msg, raw_topic, exc)
            return
        metrics.DLQ_REPLAYED.labels(provider=retry.provider).inc()
        metrics.RECORDS_OUT.labels(topic=raw_topic).inc()
        log.info("event=dlq_replayed partition=%s offset=%s provider=%s attempt=%s",
                 msg.partition, msg.offset, retry.provider or "-", retry.attempt + 1)

    async def _park(self, msg: Any, headers: list[tuple[str, bytes]], reason: str,
                    labels: dict[str, str]) -> None:
        k = self._settings.kafka
        out = fit_record(msg.key, msg.value,
                         parked_headers(headers, reason=reason, now_ms=int(self._clock() * 1000)),
                         max_bytes=k.max_message_bytes)
        try:
            await publish(self._send, k.parked_topic, out.key, out.value, out.headers)
        except Exception as exc:
            if not is_record_error(exc):
                raise
            record_skipped(msg, k.parked_topic, exc)
            return
        metrics.DLQ_PARKED.labels(**labels).inc()
        metrics.RECORDS_OUT.labels(topic=self._settings.kafka.parked_topic).inc()
        log.info("event=dlq_parked partition=%s offset=%s reason=%s stage=%s provider=%s",
                 msg.partition, msg.offset, reason, labels["stage"] or "-",
                 labels["provider"] or "-")

    def _note(self, partition: int, offset: int, state: str) -> None:
        part = self._parts.get(partition)
        if part is not None:
            part.states[offset] = state

    def _prune(self, tp: Hashable, partition: int) -> None:
        """Delete entries no re-delivery can need any more (from this event's task)."""
        part = self._parts.get(partition)
        if part is None or self.inflight is None:
            return
        for offset in prunable(part.states, oldest_unfinished=self.inflight.oldest_unfinished(tp),
                               first_delivered=part.first_delivered):
            self._table.pop(schedule_key(partition, offset), None)
            del part.states[offset]

    # --- gauges ---

    def update_gauges(self) -> None:
        """Records waiting on this worker, and how long the oldest has been failing."""
        metrics.DLQ_SCHEDULE_SIZE.set(len(self._waiting))
        oldest = self._waiting.oldest()
        metrics.DLQ_OLDEST_WAITING.set(max(0.0, self._clock() - oldest) if oldest else 0.0)


def _labels(facts: Mapping[str, str]) -> dict[str, str]:
    # The stage without the provider name: the provider has its own label.
    return {"stage": facts.get(H_STAGE, "").split(":")[0],
            "provider": facts.get(H_PROVIDER, ""),
            "error_class": facts.get(H_CLASS, "")}


def _float_ms(value: str | None) -> float | None:
    try:
        return int(value) / 1000 if value is not None else None
    except ValueError:
        return None


def register_reprocess_agent(app: faust.App, topics: Topics, settings: AgentSettings, *,
                             breaker_open_until: BreakerOpenUntil,
                             on_fatal: Callable[[BaseException], Awaitable[None]],
                             dlq: DlqSettings | None = None) -> RunningAgent:
    """Attach the DLQ reprocessing agent (and its schedule table) to ``app``.

    ``dlq`` overrides ``settings.dlq`` (tests); without either the defaults apply.
    """
    dlq = dlq or settings.dlq
    table = declare_table(app, DLQ_SCHEDULE_TABLE, settings)
    reprocessor = Reprocessor(send=producer_send(app), settings=settings, dlq=dlq, table=table,
                              breaker_open_until=breaker_open_until)
    # No key: dead letters of one track need no order, and a key would make a retry due in a
    # minute wait for one due in an hour.
    agent = run_agent(app, topics.dlq, name="trackflow.reprocess", handler=reprocessor.handle,
                      max_in_flight=dlq.max_waiting_per_partition,
                      max_queued=settings.worker.max_queued, on_fatal=on_fatal,
                      on_delivered=lambda msg: reprocessor.on_delivered(msg.partition,
                                                                        msg.offset),
                      on_revoke=reprocessor.revoke)
    reprocessor.inflight = agent.inflight

    async def refresh_gauges() -> None:
        reprocessor.update_gauges()

    app.timer(GAUGE_INTERVAL_S, name="trackflow.reprocess.gauges")(refresh_gauges)

    return agent
