"""Pacing: when a provider call may go, for every worker together.

The gate (``providers.gate``) asks :meth:`Pacer.wait_for_slot` after the breaker's permit and
before the call. The slot is reserved in the global limiter in Redis (``providers.limiter``: one
queue per provider for all workers, then a commit in its log of calls sent), or, while Redis is
unreachable, the partition's own next slot (``providers.ratelimit``, the durable fallback), after
any pause a 429/503/quota answer imposed. A call waits as long as its slot takes, unless the
record set a deadline (``providers.context.call_deadline``): then a slot past it raises
:class:`~providers.errors.RateLimitWait` without taking the slot. :meth:`Pacer.settle` counts an
answered call in the log for the window plus its measured delay.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn, Protocol

from trackflow.providers import metrics
from trackflow.providers.base import CallSpec
from trackflow.providers.context import (
    Priority,
    count_call,
    current_deadline,
    current_priority,
)
from trackflow.providers.errors import RateLimitWait
from trackflow.providers.limiter import GlobalLimiter
from trackflow.providers.policy import ProviderPolicy
from trackflow.providers.ratelimit import next_slot, slot_time


class SlotState(Protocol):
    """What pacing reads and writes of a partition's durable state (the gate's table entry)."""

    paused_until: float
    """Until when a limit answer paused the provider."""
    last_slot_at: float | None
    """The partition's last fallback slot taken."""


def paced_rate(rate: float, window_s: float, slack_s: float) -> float:
    """The rate the gate paces at: the provider's ``rate * window_s`` calls per window, spread
    over ``window_s + slack_s``.

    Jitter is a matter of milliseconds whatever the window, so the slack is a time, not a
    fraction: 0.1 s costs a 1 s window (MusicBrainz, Last.fm) 9 % of its rate, and a 30 s one
    (Spotify) 0.3 %.

    Why it suffices: slots are ``(window_s + slack_s) / limit`` apart. If every call leaves at
    most ``late_s`` after its slot and reaches the provider within ``reach_s`` after that, any
    window of ``window_s`` holds the calls of slots spread over at most
    ``window_s + late_s + reach_s``: no more than ``limit`` while ``late_s + reach_s`` stays
    within ``slack_s``. The gate lets a call leave up to a quarter of the slack late
    (:func:`late_tolerance`) and leaves the rest to the way there: on a loaded two-core test
    machine the simulator's own clock saw two requests 6 ms apart whose slots were 110 ms apart, and
    a half-and-half split let that through as an 11th call in a 1 s window.

    The slots of the global limiter are paced so too, but there the log of calls sent bounds
    the calls, each counting the window plus its own measured delay (:mod:`providers.limiter`).
    """
    return rate * window_s / (window_s + slack_s)


def late_tolerance(slack_s: float) -> float:
    """How late after its slot a call may still leave (see :func:`paced_rate`)."""
    return slack_s / 4.0


class Pacer:
    """The slots of one provider's calls in this worker."""

    def __init__(self, provider: str, policy: ProviderPolicy, *, partitions: int,
                 limiter: GlobalLimiter | None, clock: Callable[[], float],
                 sleep: Callable[[float], Awaitable[object]], rng: random.Random) -> None:
        self.provider = provider
        self.policy = policy
        self.partitions = partitions
        self.limiter = limiter
        self._clock = clock
        self.sleep = sleep
        self._rng = rng
        self.rate = paced_rate(policy.rate, policy.window_s, policy.rate_slack_s)
        """Calls per second paced, all partitions and workers together."""
        self._late_tolerance = late_tolerance(policy.rate_slack_s)
        # When the per-partition fallback may start (after the global limiter's last horizon),
        # and the earliest slot the global limiter may hand out (after our fallback slots).
        self._fallback_not_before = 0.0
        self._global_floor = 0.0
        # Until the limiter answers, assume another worker may be using it.
        self._global = limiter is not None
        # Below fresh, one caller per priority asks the limiter at a time; the others wait
        # their turn here instead of polling Redis (hundreds of refreshes wait at once).
        self._asking = {p: asyncio.Lock() for p in Priority if p is not Priority.FRESH}
        # The global limiter's log of calls sent: at most ``rate * window_s`` calls count at
        # once on Redis's clock; a call counts ``window_s + rate_slack_max_s`` from its commit
        # until its answer settles it to ``window_s`` plus its delay (at least the slack), timed
        # from just before its commit: however late it leaves, it counts long enough.
        self._hold_s = policy.window_s + max(policy.rate_slack_s, policy.rate_slack_max_s)
        self._log_limit = max(1, math.floor(policy.rate * policy.window_s + 1e-9))
        self._transit = metrics.RATELIMIT_TRANSIT.labels(provider=provider)
        # A commit refused because earlier calls still count (they were slow to answer) waits
        # for the room once, up to one slot: the call goes a little late instead of losing its
        # slot (and, below fresh, its priority's minimum share).
        self._commit_wait_s = max(policy.rate_slack_s / 2, 1.0 / self.rate)
        self._mode = metrics.LIMITER_MODE.labels(provider=provider)
        self._mode.set(1 if limiter is not None else 0)
        self._waiting = metrics.WAITING_CALLS.labels(provider=provider)
        self._slots = {p: metrics.RATELIMIT_SLOTS.labels(provider=provider,
                                                         priority=p.name.lower())
                       for p in Priority}
        metrics.RATELIMIT_RATE.labels(provider=provider).set(self.rate)
        metrics.LIMITER_ERRORS.labels(provider=provider)
        metrics.RATELIMIT_SLOTS_LOST.labels(provider=provider)

    async def wait_for_slot(self, partition: int, st: SlotState, spec: CallSpec
                            ) -> Committed | None:
        """Wait until the call may go: its commit in the global limiter, or None when the
        per-partition fallback let it go."""
        deadline = current_deadline()
        self._waiting.inc()
        try:
            while True:
                if self.limiter is not None and self.limiter.available:
                    done = await self._global_slot(st, spec, deadline)
                    if isinstance(done, Committed):
                        self._slot_taken()
                        return done
                    if done is None and await self._partition_slot(partition, st, spec,
                                                                   deadline):
                        self._slot_taken()
                        return None  # Redis did not answer: the fallback took over
                else:
                    self._leave_global()
                    if await self._partition_slot(partition, st, spec, deadline):
                        self._slot_taken()
                        return None
        finally:
            self._waiting.dec()

    def _slot_taken(self) -> None:
        self._slots[current_priority()].inc()
        count_call(self.provider)

    def _give_up(self, spec: CallSpec, deadline: float, now: float, wait: float) -> NoReturn:
        metrics.PROVIDER_CALLS.labels(provider=self.provider, kind=spec.kind,
                                      outcome="deferred").inc()
        raise RateLimitWait(self.provider,
                            f"no rate-limit slot before the stage's deadline "
                            f"({max(0.0, deadline - now):.1f} s away)", retry_after=wait)

    async def _global_slot(self, st: SlotState, spec: CallSpec,
                           deadline: float | None) -> Committed | bool | None:
        """One reservation in the global limiter: its commit when the slot is due and ours,
        False when not, None when Redis did not answer."""
        assert self.limiter is not None
        now = self._clock()
        if st.paused_until > now:
            if deadline is not None and st.paused_until > deadline:
                self._give_up(spec, deadline, now, st.paused_until - now)
            await self.sleep(st.paused_until - now)
            return False
        if deadline is not None and deadline < now:
            self._give_up(spec, deadline, now, 0.0)
        priority = current_priority()
        if priority is Priority.FRESH:
            r = await self._reserve(spec, deadline, priority)
        else:
            async with self._asking[priority]:
                # Timed from here, not from before the wait for the lock: the slot's time is
                # the middle of the round trip, and a caller that waited its turn here would
                # otherwise wake that long before its slot, find the calls before it still
                # counting, and lose the slot (a quarter of the refreshes' minimum share).
                r = await self._reserve(spec, deadline, priority)
        if r is None:
            return None
        if not r.granted:
            return False
        now = r.asked_at
        due = now + r.wait_s - self._clock()
        if due > 0:
            metrics.RATELIMIT_WAITS.labels(provider=self.provider).inc()
            metrics.RATELIMIT_WAIT_SECONDS.labels(provider=self.provider).observe(due)
            await self.sleep(due)
        woke = self._clock()
        if st.paused_until > woke:
            return False
        # The slot orders the callers; what bounds the calls is the log of calls actually
        # sent, checked now: a caller the event loop woke late still goes if the provider's
        # window has room, instead of losing its slot. Its delay to the provider is timed from
        # just before the commit is asked for (Redis stamps it within the round trip).
        committed = Committed(woke, uuid.uuid4().hex)
        c = await self.limiter.commit(self.provider, limit=self._log_limit,
                                       member=committed.member, hold_s=self._hold_s)
        if c is not None and not c.granted and c.wait_s <= self._commit_wait_s:
            # Slots are as far apart as the log's window and slack allow, so a call on time
            # finds the call a window before still counting only when that one answered late
            # (or by a few milliseconds of jitter): wait those out and keep the slot.
            await self.sleep(c.wait_s)
            committed = Committed(self._clock(), committed.member)
            c = await self.limiter.commit(self.provider, limit=self._log_limit,
                                           member=committed.member, hold_s=self._hold_s)
        if c is None:
            self._leave_global()
            return None
        if not c.granted:
            metrics.RATELIMIT_SLOTS_LOST.labels(provider=self.provider).inc()
            return False
        return committed

    async def _reserve(self, spec: CallSpec, deadline: float | None, priority: Priority
                       ) -> _Reserved | None:
        """One request to the limiter; refused, it sleeps until asking again may succeed.
        None: Redis did not answer."""
        assert self.limiter is not None
        now = self._clock()
        ahead = math.inf if deadline is None else max(0.0, deadline - now)
        r = await self.limiter.reserve(self.provider, interval_s=1.0 / self.rate,
                                        ahead_s=ahead, floor=self._global_floor,
                                        priority=priority)
        # Redis timed the slot somewhere within the round trip: aim at its middle, so that
        # the round trip (which a busy event loop stretches) does not count as lateness.
        now = (now + self._clock()) / 2
        if r is None:
            self._leave_global()
            return None
        self._global = True
        self._mode.set(1)
        if not r.granted:
            if deadline is not None and now + r.wait_s > deadline:
                self._give_up(spec, deadline, now, r.wait_s)
            # Ask again once it may be granted. Fresh calls all ask for the end of the queue:
            # the jitter spreads their round trips over half the horizon. Below fresh, the one
            # caller asking is told when its turn comes; a little jitter only.
            spread = (min(self.limiter.horizon_s, r.wait_s) / 2 if priority is Priority.FRESH
                      else 0.1 / self.rate)
            await self.sleep(r.retry_s + self._rng.uniform(0, spread))
        return _Reserved(r.granted, r.wait_s, now)

    def _leave_global(self) -> None:
        if self._global and self.limiter is not None:
            # Redis is gone: nothing it handed out reaches past its reach (one horizon and a
            # slot per lower priority) from now, so the per-partition fallback starts after.
            self._fallback_not_before = self._clock() + self.limiter.reach_s(1.0 / self.rate)
            self._global = False
            self._mode.set(0)

    async def _partition_slot(self, partition: int, st: SlotState, spec: CallSpec,
                              deadline: float | None) -> bool:
        """The durable fallback: the partition's next own slot; True when it is due and ours."""
        now = self._clock()
        k = next_slot(max(now, st.paused_until, self._fallback_not_before), rate=self.rate,
                      partition=partition, partitions=self.partitions, after=st.last_slot_at)
        wait = slot_time(k, self.rate) - now
        if deadline is not None and now + wait > deadline:
            self._give_up(spec, deadline, now, wait)
        # Take the slot before sleeping so concurrent calls of this partition take later ones.
        st.last_slot_at = slot_time(k, self.rate)
        # Back on Redis, the global queue must not hand out slots before this one.
        self._global_floor = max(self._global_floor, st.last_slot_at + 1.0 / self.rate)
        if wait <= 0:
            return True
        metrics.RATELIMIT_WAITS.labels(provider=self.provider).inc()
        metrics.RATELIMIT_WAIT_SECONDS.labels(provider=self.provider).observe(wait)
        await self.sleep(wait)
        now = self._clock()
        # A busy event loop can wake us after our slot; sending late would bring this call
        # closer to the next partition's and, in a sliding window, over the provider's
        # limit. The slack leaves room for a quarter of it to be lateness; a slot missed by more
        # is given up for the next one.
        late = now - slot_time(k, self.rate) > self._late_tolerance
        # Late, or a limit answer arrived while we slept and our slot is inside the pause.
        return st.paused_until <= now and not late


    async def settle(self, committed: Committed) -> None:
        """The call's answer came (or it was not sent): count it in the log of calls sent for
        the window plus the time since just before its commit (an upper bound of its delay to
        the provider, who stamps a call before answering it), at least the slack."""
        assert self.limiter is not None
        p = self.policy
        delay = max(0.0, self._clock() - committed.at)
        self._transit.observe(delay)
        counted = p.window_s + min(max(p.rate_slack_s, delay), self._hold_s - p.window_s)
        await self.limiter.settle(self.provider, member=committed.member,
                                   shorten_s=self._hold_s - counted)


@dataclass(frozen=True, slots=True)
class Committed:
    """A call let go by the log of calls sent."""

    at: float
    """When (our clock) its commit was asked for."""
    member: str
    """Its entry in the log."""


@dataclass(frozen=True, slots=True)
class _Reserved:
    """The limiter's answer, and when (on our clock) it was given."""

    granted: bool
    wait_s: float
    asked_at: float
