"""Many records in flight per partition, committed only below the oldest unfinished one.

Provider calls are slow HTTP requests, so a partition processed one record at a time would crawl.
:class:`InFlight` runs up to ``max_in_flight`` records of a partition at once, keeps the outputs for
one key in order (a record waits for the previous record with the same key), and acknowledges
records to Faust strictly in offset order: a record is acked only when it and every record before
it in its partition has finished. Faust commits the highest contiguous acked offset, so the
committed offset never passes a record that is still being processed: a crash re-delivers the
unfinished ones (at-least-once) instead of losing them.

Acking in order matters because of how faust-streaming computes commit points (see
faust-streaming #606): given acked offsets with a hole at the front, it can commit past the hole.
:class:`OffsetTracker` never lets a hole reach Faust.

Most records need no task of their own: one answered from the result cache is decoded, encoded
and handed to the producer at once, and is finished when the broker acknowledges it. ``inline``
does that part in the agent's own loop and returns the acknowledgement to wait for; the record
is then tracked like any other (offset order, the in-flight bound, revocation), without an
asyncio task, its context copy and its scheduling (see :class:`InFlight`).

Some records wait long for little: a dead letter's replay waits for the provider budget fresh
records and refreshes leave. Submitted as ``background``, such a record does not take one of its
partition's ``max_in_flight`` places: at most ``max_background`` of them run per partition, and the
others wait their turn without holding anything back (see :class:`InFlight`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

log = logging.getLogger("trackflow.agents.inflight")

E = TypeVar("E")

Inline = asyncio.Future[Any] | Coroutine[Any, Any, None] | None
"""What ``inline(item)`` did: queued the record's output and returned the future that finishes
it; started it and returned the coroutine that finishes it (run as a task); or nothing at all
(None: the handler runs it in a task, from the start)."""


@dataclass(slots=True)
class _Slot(Generic[E]):
    offset: int
    item: E
    done: bool = False


class OffsetTracker(Generic[E]):
    """Offsets of one partition in arrival order; releases the finished prefix. Pure."""

    def __init__(self) -> None:
        self._slots: deque[_Slot[E]] = deque()
        self._by_offset: dict[int, _Slot[E]] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def start(self, offset: int, item: E) -> None:
        """Register a record as in flight. Offsets must arrive in increasing order."""
        if self._slots and offset <= self._slots[-1].offset:
            raise ValueError(f"offset {offset} arrived after {self._slots[-1].offset}")
        slot = _Slot(offset, item)
        self._slots.append(slot)
        self._by_offset[offset] = slot

    def finish(self, offset: int) -> list[E]:
        """Mark ``offset`` finished; return the items now safe to ack, in offset order."""
        slot = self._by_offset.pop(offset, None)
        if slot is None:
            raise KeyError(f"offset {offset} is not in flight")
        slot.done = True
        released: list[E] = []
        while self._slots and self._slots[0].done:
            released.append(self._slots.popleft().item)
        return released

    @property
    def newest(self) -> int | None:
        """The highest offset registered and not yet released."""
        return self._slots[-1].offset if self._slots else None

    @property
    def unfinished(self) -> int:
        """Records registered and not finished (finished ones wait here for those before)."""
        return len(self._by_offset)

    @property
    def oldest_unfinished(self) -> int | None:
        """The offset the committed position must not pass, or None when nothing is pending."""
        return self._slots[0].offset if self._slots else None


@dataclass(slots=True)
class _Queued(Generic[E]):
    offset: int
    key: Hashable
    item: E
    context: contextvars.Context
    """The context the record was received in: Faust's current event lives there, and table
    writes need it to know which changelog partition they belong to."""


@dataclass(slots=True)
class _Partition(Generic[E]):
    tracker: OffsetTracker[E]
    running: int = 0
    queued: deque[_Queued[E]] = field(default_factory=deque)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    pending: set[asyncio.Future[Any]] = field(default_factory=set)
    """Acknowledgements of records finished inline, not yet done."""
    background: asyncio.Semaphore | None = None
    """The background records' places (``max_background``)."""
    background_waiting: int = 0
    """Background records waiting for a place (counted as queued)."""
    received: int | None = None
    """The offset after the last record received (None: none since the assignment)."""


class InFlight(Generic[E]):
    """Runs a handler on many records per partition at once; acks in offset order.

    A partition with ``max_in_flight`` records running queues the next ones instead of making
    ``submit`` wait: waiting would stall the agent's single stream, and with it every other
    partition, behind the one partition that is slow (waiting for a provider's rate-limit
    slots, say). Only when ``max_queued`` records wait in all partitions together does
    ``submit`` wait, which bounds memory. (Faust's per-partition pause is no help here: pausing
    from an agent drops records already fetched for the partition, and its active-partition
    set is shared unguarded with the consumer thread.)

    ``handler`` must deal with every failure of a record itself (dead-letter it); an exception
    escaping it is a bug or a lost broker, and stops the worker through ``on_fatal`` rather than
    acking a record that was not handled.

    ``inline(item)`` (optional) may finish a record without a task (see :data:`Inline`). It is
    tried only when the record can start at once and no earlier record with its key is still
    running, so outputs keep their order per key: the producer sends what it was handed in
    order. A failed acknowledgement goes to ``recover(item, error)`` in a task, which must deal
    with it like ``handler`` (or raise, which is fatal).

    A record submitted with ``background=True`` runs beside the ``max_in_flight`` records, at
    most ``max_background`` of them per partition: the others wait for a place, counted as queued
    (``max_queued``), while the partition's other records go on. It is acked in offset order like
    any other, so while it waits the committed offset stays behind it; a later record with its
    key waits for it, in its own place. Revoked while waiting, it never runs.
    """

    def __init__(
        self,
        handler: Callable[[E], Awaitable[None]],
        ack: Callable[[E], object],
        *,
        max_in_flight: int,
        on_fatal: Callable[[BaseException], Awaitable[None]],
        max_queued: int = 10_000,
        inline: Callable[[E], Awaitable[Inline]] | None = None,
        recover: Callable[[E, BaseException], Awaitable[None]] | None = None,
        max_background: int = 1,
    ) -> None:
        if (inline is None) != (recover is None):
            raise ValueError("inline and recover go together")
        if max_background < 1:
            raise ValueError("max_background must be at least 1")
        self._max_background = max_background
        self._handler = handler
        self._inline = inline
        self._recover = recover
        self._ack = ack
        self._max = max_in_flight
        self._max_queued = max_queued
        self._queued = 0
        self._room = asyncio.Event()
        self._room.set()
        self._on_fatal = on_fatal
        self._partitions: dict[Hashable, _Partition[E]] = {}
        self._last_for_key: dict[Hashable, asyncio.Task[None]] = {}
        self._closed = False
        self.fatal: BaseException | None = None

    def in_flight(self) -> int:
        """Records received and not yet finished (running or queued)."""
        return sum(len(p.tracker) for p in self._partitions.values())

    def oldest_unfinished(self, tp: Hashable) -> int | None:
        """The oldest offset of ``tp`` still in flight (None when none or not owned). Read-only."""
        part = self._partitions.get(tp)
        return part.tracker.oldest_unfinished if part is not None else None

    def not_finished(self, tp: Hashable, end: int) -> int | None:
        """Records of ``tp`` up to ``end`` not finished here: those not received yet, and
        those received and not finished (None: nothing received since the assignment).
        Read-only."""
        part = self._partitions.get(tp)
        if part is None or part.received is None:
            return None
        return max(0, end - part.received) + part.tracker.unfinished

    async def submit(self, tp: Hashable, offset: int, key: Hashable, item: E, *,
                     background: bool = False) -> None:
        """Start processing ``item``, or queue it while its partition is at the maximum;
        ``background``: beside the others, in a place of its own (see the class)."""
        if self.fatal is not None:
            raise self.fatal
        if self._closed:
            return  # shutting down: not started, not acked, re-delivered after the restart
        part = self._partitions.get(tp)
        if part is None:
            part = self._partitions[tp] = _Partition(OffsetTracker())
        newest = part.tracker.newest
        if newest is not None and offset <= newest:
            # Delivered again (a seek during a rebalance can do that) while the first delivery
            # is still in flight: that one acks it.
            log.warning("event=redelivered_in_flight offset=%s newest=%s", offset, newest)
            return
        while ((background or part.running >= self._max)
               and self._queued >= self._max_queued):
            self._room.clear()
            await self._room.wait()
            if self._partitions.get(tp) is not part:
                return  # revoked (or shutting down) while we waited: its new owner reads it
        part.tracker.start(offset, item)
        part.received = offset + 1
        if background:
            self._start_background(tp, part, offset, key, item)
            return
        if part.running < self._max:
            if self._inline is not None and (key is None or (tp, key) not in self._last_for_key):
                await self._try_inline(tp, part, offset, key, item)
            else:
                self._start(tp, part, offset, key, item)
            return
        part.queued.append(_Queued(offset, key, item, contextvars.copy_context()))
        self._queued += 1

    async def _try_inline(self, tp: Hashable, part: _Partition[E], offset: int, key: Hashable,
                          item: E) -> None:
        assert self._inline is not None
        part.running += 1  # counted while it runs, like a task: the same bound holds
        try:
            done = await self._inline(item)
        except asyncio.CancelledError:
            part.running -= 1
            raise
        except BaseException as exc:  # as in a task: never acked, the worker stops
            part.running -= 1
            await self._fail(offset, exc)
            return
        if done is None:
            part.running -= 1
            self._start(tp, part, offset, key, item)
        elif isinstance(done, asyncio.Future):
            part.pending.add(done)
            done.add_done_callback(partial(self._inline_done, tp, part, offset, item))
        else:
            self._spawn(tp, part, offset, key, self._run(tp, part, offset, done, None))

    def _inline_done(self, tp: Hashable, part: _Partition[E], offset: int, item: E,
                     done: asyncio.Future[Any]) -> None:
        part.pending.discard(done)
        error = asyncio.CancelledError() if done.cancelled() else done.exception()
        if self._partitions.get(tp) is not part:
            return  # revoked (or shutting down) meanwhile: its new owner processes it again
        if error is not None:
            assert self._recover is not None
            # Still counted as running: the recovery finishes the record (or the worker).
            self._spawn(tp, part, offset, None,
                        self._run(tp, part, offset, self._recover(item, error), None))
            return
        part.running -= 1
        self._finished(tp, part, offset)

    def _start(self, tp: Hashable, part: _Partition[E], offset: int, key: Hashable,
               item: E, context: contextvars.Context | None = None) -> None:
        part.running += 1
        previous = self._last_for_key.get((tp, key)) if key is not None else None
        self._spawn(tp, part, offset, key,
                    self._run(tp, part, offset, self._handled(item), previous), context)

    async def _handled(self, item: E) -> None:
        await self._handler(item)

    def _start_background(self, tp: Hashable, part: _Partition[E], offset: int, key: Hashable,
                          item: E) -> None:
        # A task from the start, so that a later record with its key can wait for it; it
        # counts as queued until it has a place.
        if part.background is None:
            part.background = asyncio.Semaphore(self._max_background)
        part.background_waiting += 1
        self._queued += 1
        previous = self._last_for_key.get((tp, key)) if key is not None else None
        self._spawn(tp, part, offset, key, self._run(
            tp, part, offset, self._in_background(tp, part, item), previous, counted=False))

    async def _in_background(self, tp: Hashable, part: _Partition[E], item: E) -> None:
        assert part.background is not None
        async with part.background:
            if self._partitions.get(tp) is not part:
                return  # revoked while waiting (its count went with it): its new owner runs it
            part.background_waiting -= 1
            self._dequeued(1)
            await self._handler(item)

    def _spawn(self, tp: Hashable, part: _Partition[E], offset: int, key: Hashable,
               work: Coroutine[Any, Any, None], context: contextvars.Context | None = None
               ) -> None:
        task = asyncio.create_task(work, context=context)
        part.tasks.add(task)
        if key is not None:
            self._last_for_key[(tp, key)] = task
        task.add_done_callback(lambda t: self._forget(tp, key, t))

    def _forget(self, tp: Hashable, key: Hashable, task: asyncio.Task[None]) -> None:
        part = self._partitions.get(tp)
        if part is not None:
            part.tasks.discard(task)
        if key is not None and self._last_for_key.get((tp, key)) is task:
            del self._last_for_key[(tp, key)]

    async def _run(self, tp: Hashable, part: _Partition[E], offset: int,
                   work: Awaitable[None], previous: asyncio.Task[None] | None, *,
                   counted: bool = True) -> None:
        try:
            if previous is not None and not previous.done():
                # Same key, earlier offset: its output must be published first.
                await asyncio.wait([previous])
            await work
        except asyncio.CancelledError:
            if isinstance(work, Coroutine):
                work.close()  # not started when cancelled while waiting for ``previous``
            raise
        except BaseException as exc:  # an unhandled record must never be acked
            await self._fail(offset, exc)
            return
        finally:
            if counted:
                part.running -= 1
        self._finished(tp, part, offset)

    async def _fail(self, offset: int, exc: BaseException) -> None:
        log.critical("event=unhandled_record_error offset=%s error=%r", offset, exc)
        self.fatal = exc
        await self._on_fatal(exc)

    def _finished(self, tp: Hashable, part: _Partition[E], offset: int) -> None:
        if self._partitions.get(tp) is not part:
            return  # the partition was revoked meanwhile; its new owner re-processes it
        for done in part.tracker.finish(offset):
            self._ack(done)
        self._next(tp, part)

    def _next(self, tp: Hashable, part: _Partition[E]) -> None:
        while part.queued and part.running < self._max:
            q = part.queued.popleft()
            self._dequeued(1)
            self._start(tp, part, q.offset, q.key, q.item, q.context)

    def _dequeued(self, n: int) -> None:
        self._queued -= n
        if self._queued < self._max_queued:
            self._room.set()

    def revoke(self, tps: set[Hashable]) -> None:
        """Forget revoked partitions: late finishers of theirs must not ack anything, and their
        queued records are dropped (their new owner reads them again)."""
        for tp in tps:
            part = self._partitions.pop(tp, None)
            if part is not None and (part.queued or part.background_waiting):
                self._dequeued(len(part.queued) + part.background_waiting)
                part.background_waiting = 0

    async def close(self) -> None:
        """Cancel every record in flight and wait until they have stopped.

        For shutdown, before the producer stops: a record still running would try to publish
        through a stopped producer. None of them is acked, so the next owner of their
        partitions processes them again (at-least-once).
        """
        self._closed = True
        tasks = [t for p in self._partitions.values() for t in p.tasks]
        self.revoke(set(self._partitions))
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def drain(self) -> None:
        """Wait for every record in flight (queued ones included) to finish."""
        while True:
            waits: list[asyncio.Future[Any]] = [
                t for p in self._partitions.values() for t in (*p.tasks, *p.pending)]
            if not waits:
                return
            await asyncio.wait(waits)
