"""The one module that talks to Faust's agent machinery: tables, agents, acks, revoke, crash.

An agent here is a handler of one event plus a few lines: :func:`run_agent` reads the topic with
``noack()`` and hands each event to :class:`~trackflow.agents.inflight.InFlight` (many records
per partition at once, acked strictly in offset order, so the committed offset never passes an
unfinished record); the :class:`RunningAgent` it returns forgets revoked partitions and cancels
what is in flight, when the worker's application object says so. Tables are declared here, by
name (``agents.tables.TABLES``).

A record whose handling failed for a reason that is not the record's own (Kafka gone, a bug) must
not be acked, and not acking it would stall its partition: the worker stops and a restart
re-delivers it from the last commit. Faust's ``app.crash`` starts that stop, but a crash while the
consumer or the producer is wedged can leave a process that neither consumes nor exits, holding
its web port and ignoring SIGTERM. A watchdog thread ends the process once the grace period is
over, whatever the event loop is doing.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

import faust

from trackflow.agents.inflight import InFlight, Inline
from trackflow.agents.publish import Headers, Send
from trackflow.agents.settings import AgentSettings
from trackflow.agents.tables import TABLES

log = logging.getLogger("trackflow.agents.runner")

#: The exit status of a worker stopped by a fatal error (``EX_SOFTWARE``).
CRASH_EXIT_CODE = 70


class ExitTimer:
    """Ends the process ``grace_s`` after :meth:`arm`, unless it ended by itself first: a daemon
    thread, so it fires whatever the event loop is doing. Subclasses say why in :meth:`_log`."""

    exit_code = 0

    def __init__(self, grace_s: float, *, exit: Callable[[int], Any] = os._exit) -> None:
        self.grace_s = grace_s
        self._exit = exit
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    @property
    def armed(self) -> bool:
        """Whether the countdown has started."""
        return self._timer is not None

    def arm(self) -> None:
        """Start the countdown (again or not: the first call counts)."""
        with self._lock:
            if self._timer is not None:
                return
            self._timer = threading.Timer(self.grace_s, self._fire)
            self._timer.daemon = True  # a clean exit before the deadline is not held up
            self._timer.start()

    def cancel(self) -> None:
        """Stop the countdown (tests)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()

    def _log(self) -> None:
        raise NotImplementedError

    def _fire(self) -> None:
        self._log()
        for handler in logging.getLogger().handlers:
            handler.flush()
        self._exit(self.exit_code)


class CrashWatchdog(ExitTimer):
    """Ends the process ``grace_s`` after the first fatal error, unless it ended by itself."""

    exit_code = CRASH_EXIT_CODE

    def _log(self) -> None:
        log.critical("event=crash_exit grace_s=%s exit_code=%s: the worker did not stop by "
                     "itself after a fatal error; exiting", self.grace_s, CRASH_EXIT_CODE)


def crash_handler(app: Any, watchdog: CrashWatchdog) -> Callable[[BaseException], Any]:
    """The ``on_fatal`` of an agent's in-flight tracker: crash the app, exit for sure."""

    async def on_fatal(exc: BaseException) -> None:
        if not watchdog.armed:
            log.critical("event=worker_crash error=%s detail=%r", type(exc).__name__,
                         str(exc)[:200])
        watchdog.arm()
        await app.crash(exc)

    return on_fatal


def declare_table(app: faust.App, name: str, settings: AgentSettings) -> Any:
    """One of :data:`TABLES`: string keys, JSON values, a changelog partitioned like the
    sources, stored as ``settings.tables`` says."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; trackflow's tables are {', '.join(TABLES)}")
    tables = settings.tables
    options = tables.rocksdb_options() if tables.store == "rocksdb" else None
    return app.Table(name, default=None, partitions=settings.kafka.partitions,
                     schema=faust.Schema(key_type=str, key_serializer="json",
                                         value_serializer="json"), options=options)


class AckGuard:
    """Lets only the agents' in-flight trackers acknowledge the records of the topics they read.

    Faust acks an event its stream skips by itself, even on a ``noack()`` stream: one read
    while the flow is stopped or after the generation changed (fetched before a rebalance,
    delivered after it). That record never reached a handler, yet its offset joins the acked
    ones: once the records before it are acked, Faust commits past it while its redelivery is
    still waiting (a refresh request waits for its due time), and a kill then loses it; an ack
    that lands after the revoke and before the seek is committed over the records before it
    too (no committed offset is known then to hold it back). A refused ack costs nothing: a
    skipped record is read again from the committed offset after the rebalance.
    """

    def __init__(self, consumer: Any) -> None:
        self._topics: set[str] = set()
        self._releasing = False
        self._consumer_ack: Callable[[Any], bool] = consumer.ack
        consumer.ack = self._ack

    def guard(self, topics: Any) -> None:
        """Refuse acks of ``topics`` (names) that do not come through :meth:`release`."""
        self._topics.update(topics)

    def release(self, event: Any) -> None:
        """Ack ``event``: its handler finished and so did every record before it."""
        self._releasing = True
        try:
            event.ack()
        finally:
            self._releasing = False

    def _ack(self, message: Any) -> bool:
        if self._releasing or message.topic not in self._topics:
            return self._consumer_ack(message)
        log.info("event=ack_refused topic=%s partition=%s offset=%s reason=not_handled",
                 message.topic, message.partition, message.offset)
        return False


_guards: weakref.WeakKeyDictionary[Any, AckGuard] = weakref.WeakKeyDictionary()


def ack_guard(app: faust.App) -> AckGuard:
    """The app's one :class:`AckGuard` (installed on its consumer on first use)."""
    guard = _guards.get(app)
    if guard is None:
        guard = _guards[app] = AckGuard(app.consumer)
    return guard


@dataclass(slots=True)
class RunningAgent:
    """An agent attached to an app: its in-flight tracker and what a revoke of its partitions
    must also forget. The worker's application object (``streams.worker.TrackflowApp``) calls
    :meth:`revoke` on every rebalance and :meth:`close` at shutdown, for all agents in one
    place."""

    name: str
    inflight: InFlight[Any]
    on_revoke: Callable[[set[Any]], None] | None = None

    def revoke(self, revoked: set[Any]) -> None:
        """Forget ``revoked`` (topic partitions): the agent's own state first, then the
        records in flight (their new owner handles them again)."""
        if self.on_revoke is not None:
            self.on_revoke(revoked)
        self.inflight.revoke(revoked)

    async def close(self) -> None:
        """Cancel what is in flight (nothing of it was acked: it is read again)."""
        await self.inflight.close()


def run_agent(app: faust.App, topic: Any, *, name: str,
              handler: Callable[[Any], Awaitable[None]], max_in_flight: int, max_queued: int,
              on_fatal: Callable[[BaseException], Awaitable[None]],
              key_of: Callable[[Any], Hashable] = lambda msg: None,
              on_delivered: Callable[[Any], None] | None = None,
              on_revoke: Callable[[set[Any]], None] | None = None,
              inline: Callable[[Any], Awaitable[Inline]] | None = None,
              recover: Callable[[Any, BaseException], Awaitable[None]] | None = None,
              background_of: Callable[[Any], bool] | None = None,
              max_background: int = 1,
              ) -> RunningAgent:
    """Attach an agent running ``handler`` on every event of ``topic``.

    ``key_of(message)`` orders records: those with the same key (not None) finish in offset
    order. ``on_delivered(message)`` sees every message before it is submitted;
    ``on_revoke(partitions)`` runs before the tracker forgets revoked partitions.
    ``inline`` and ``recover`` finish records without a task where they can, and records
    ``background_of(message)`` picks run beside the others, ``max_background`` per partition
    (see :class:`~trackflow.agents.inflight.InFlight`). Only the tracker acks the topic's records
    (see :class:`AckGuard`). The returned agent's revoke and close are the caller's to call.
    """
    acks = ack_guard(app)
    acks.guard(topic.topics)
    inflight: InFlight[Any] = InFlight(handler, acks.release,
                                       max_in_flight=max_in_flight, max_queued=max_queued,
                                       on_fatal=on_fatal, inline=inline, recover=recover,
                                       max_background=max_background)

    async def agent(stream: Any) -> None:
        async for event in stream.noack().events():
            msg = event.message
            if on_delivered is not None:
                on_delivered(msg)
            await inflight.submit(msg.tp, msg.offset, key_of(msg), event,
                                  background=background_of is not None and background_of(msg))

    app.agent(topic, name=name)(agent)
    return RunningAgent(name, inflight, on_revoke)


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics the agents read, as Faust topic objects (bytes in, bytes out). Outputs are
    sent by name through :func:`producer_send`."""

    raw: Any
    dlq: Any
    refresh: Any


def producer_send(app: faust.App) -> Send:
    """A :data:`Send` that goes straight to the app's Kafka producer.

    Faust's ``Topic.send`` wraps each record in a ``FutureMessage``, runs the send sensors and
    its callback chain: measured with a pass-through agent on the local broker it tops out near
    5,800 records/s, against 9,100 with ``app.producer.send``. Our outputs need none of that
    machinery: the topics exist (``streams.topics``), the values are encoded bytes, and the
    partition comes from the key with Kafka's default partitioner either way, so records keep
    the partition (and order) that ``Topic.send`` would have given them.
    """
    async def send(topic: str, key: bytes | None, value: bytes | None,
                   headers: Headers) -> Awaitable[Any]:
        return await app.producer.send(topic, key, value, None, None, headers)

    return send
