"""The resilient call gate: cache -> breaker permit -> rate-limit slot -> call -> retries.

Every provider client sends each HTTP exchange through ``gate.run(spec, fetch)``. This gate:

1. answers from the two-level cache when it can (:mod:`providers.cache`; "not found" included);
2. asks the provider's circuit breaker for a permit (:mod:`providers.breaker`); an open breaker
   fails the call at once with a ``TransientError`` that is not retried here;
3. waits for the provider's next rate-limit slot: reserved in the global limiter in Redis
   (:mod:`providers.limiter`, one queue per provider for all workers), or, while Redis is
   unreachable, the partition's own next slot (:func:`providers.ratelimit.next_slot`, the
   durable fallback); and for the end of a pause a 429/503/quota answer imposed. Waiting is
   backpressure: a call waits as long as its slot takes, unless the caller set a deadline
   (:func:`providers.context.call_deadline`, which the waterfall does for stages whose fields
   are optional); a slot past
   the deadline raises :class:`RateLimitWait` without taking the slot, and the stage is deferred;
4. calls, bounded by ``timeout_s``; records success, failure (slow calls too) or a neutral answer
   (not found, feature unavailable, permanent configuration errors are not the provider's fault);
   an answer rejecting our credentials (:class:`~providers.errors.CredentialsRejected`)
   disables the provider in this worker: from then on every call fails at once with
   :class:`~providers.errors.ProviderDisabled`, nothing is sent, ``trackflow_provider_disabled``
   is 1 and one log line names the variables to fix. The state lives next to the breakers but
   only in this process, never in the table: a restart (with the configuration fixed) enables
   the provider again, and :meth:`ResilientGate.enable` does the same for a reloaded one;
5. retries transient failures with capped exponential backoff and full jitter, honouring
   Retry-After, within a per-provider retry budget (:mod:`providers.backoff`).

Breaker state, the pause and the last slot taken live in one entry per provider and partition
(``spotify/3``) of a mapping the caller provides: a changelogged Faust table in the worker, a dict
in tests. The key carries the partition because a Faust table key must always be written from the
same partition; the worker enters a record context (``providers.context``) for each record it
processes, and a call outside one raises.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from trackflow.providers import metrics
from trackflow.providers.backoff import RetryBudget, retry_call
from trackflow.providers.base import JSON, CallSpec
from trackflow.providers.breaker import BreakerConfig, CircuitBreaker, Decision, State, Transition
from trackflow.providers.cache import ProviderCache
from trackflow.providers.context import (
    Priority,
    current_deadline,
    current_priority,
    current_record,
)
from trackflow.providers.errors import (
    CredentialsRejected,
    FeatureUnavailable,
    NotFound,
    PermanentError,
    ProviderDisabled,
    TransientError,
)
from trackflow.providers.limiter import GlobalLimiter
from trackflow.providers.ratelimit import next_slot, slot_time

log = logging.getLogger("trackflow.providers.gate")


class BreakerOpen(TransientError):
    """The provider's breaker refused the call; nothing was sent."""


class RateLimitWait(TransientError):
    """No rate-limit permit before the caller's deadline; nothing was sent, no slot was taken.
    The provider is busy, not down: the waterfall defers the stage rather than failing it."""


@dataclass(frozen=True, slots=True)
class ProviderPolicy:
    """How one provider is called."""

    rate: float
    """Calls per second the provider allows our whole application (all workers)."""
    window_s: float = 1.0
    """The provider's enforcement window: it allows ``rate * window_s`` calls per window."""
    rate_slack_s: float = 0.1
    """Pacing treats the window as this much longer (see :func:`paced_rate`); on the global
    limiter, a call answered later than this after its commit counts that much longer."""
    rate_slack_max_s: float = 2.0
    """On the global limiter, how long past the window a call counts while it has no answer
    (and the most a slow answer makes it count)."""
    max_wait_s: float = 5.0
    """Longest a stage that fills only optional fields waits for a rate-limit slot before it is
    deferred (the waterfall turns it into the stage's :func:`~providers.context.call_deadline`);
    stages that may fill a required field wait as long as it takes."""
    timeout_s: float = 15.0
    """Upper bound on one exchange, on top of the HTTP client's own timeouts."""
    max_attempts: int = 3
    """Attempts per call (first call included)."""
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 8.0
    retry_budget_ratio: float = 0.2
    """Retries allowed as a fraction of calls over a sliding window."""
    max_retry_delay_s: float = 20.0
    """A Retry-After longer than this is not slept on in the stream (the DLQ retries later)."""
    pause_default_s: float = 5.0
    """Pause after a limit answer that carried no Retry-After."""
    breaker: BreakerConfig = field(default_factory=BreakerConfig)


@dataclass(frozen=True, slots=True)
class Disabled:
    """Why a provider is disabled in this worker."""

    at: float
    """Wall-clock time it was disabled."""
    error: str
    """The rejection that disabled it (message only: never a credential)."""
    variables: tuple[str, ...]
    """The environment variables an operator fixes (names only)."""


@dataclass(slots=True)
class _PartitionState:
    breaker: CircuitBreaker
    paused_until: float = 0.0
    last_slot_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"breaker": self.breaker.to_dict(), "paused_until": self.paused_until,
                "last_slot_at": self.last_slot_at}


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


class ResilientGate:
    """A :class:`~providers.base.CallGate` for one provider."""

    def __init__(
        self,
        provider: str,
        policy: ProviderPolicy,
        *,
        partitions: int,
        state: MutableMapping[str, Any] | None = None,
        cache: ProviderCache | None = None,
        limiter: GlobalLimiter | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
        config_variables: Sequence[str] = (),
    ) -> None:
        self.provider = provider
        self.config_variables = tuple(config_variables)
        """What to fix when the provider rejects our configuration (named in the log line)."""
        self.disabled: Disabled | None = None
        """Set once the provider rejected our credentials; None while it is enabled."""
        self.policy = policy
        self.partitions = partitions
        self._state: MutableMapping[str, Any] = {} if state is None else state
        self._cache = cache
        self._limiter = limiter
        # When the per-partition fallback may start (after the global limiter's last horizon),
        # and the earliest slot the global limiter may hand out (after our fallback slots).
        self._fallback_not_before = 0.0
        self._global_floor = 0.0
        # Until the limiter answers, assume another worker may be using it.
        self._global = limiter is not None
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        # Below fresh, one caller per priority asks the limiter at a time; the others wait
        # their turn here instead of polling Redis (hundreds of refreshes wait at once).
        self._asking = {p: asyncio.Lock() for p in Priority if p is not Priority.FRESH}
        self._local: dict[int, _PartitionState] = {}
        self._budget = RetryBudget(ratio=policy.retry_budget_ratio)
        self._rate = paced_rate(policy.rate, policy.window_s, policy.rate_slack_s)
        self._late_tolerance = late_tolerance(policy.rate_slack_s)
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
        self._commit_wait_s = max(policy.rate_slack_s / 2, 1.0 / self._rate)
        metrics.RATELIMIT_CAPACITY.labels(provider=provider).set(0)
        self._disabled_gauge = metrics.PROVIDER_DISABLED.labels(provider=provider)
        self._disabled_gauge.set(0)
        self._mode = metrics.LIMITER_MODE.labels(provider=provider)
        self._mode.set(1 if limiter is not None else 0)
        self._waiting = metrics.WAITING_CALLS.labels(provider=provider)
        metrics.RATELIMIT_RATE.labels(provider=provider).set(self._rate)
        metrics.LIMITER_ERRORS.labels(provider=provider)
        metrics.RATELIMIT_SLOTS_LOST.labels(provider=provider)

    # --- state per partition ---

    def key(self, partition: int) -> str:
        return f"{self.provider}/{partition}"

    def _partition_state(self, partition: int) -> _PartitionState:
        st = self._local.get(partition)
        if st is None:
            saved = self._state.get(self.key(partition))
            breaker = (CircuitBreaker.from_dict(saved["breaker"], self.policy.breaker)
                       if saved else CircuitBreaker(self.policy.breaker))
            st = _PartitionState(breaker, float(saved.get("paused_until", 0.0)) if saved else 0.0,
                                 saved.get("last_slot_at") if saved else None)
            if saved:
                log.info("event=gate_state_restored provider=%s partition=%d breaker=%s",
                         self.provider, partition, breaker.state)
            self._local[partition] = st
            metrics.RATELIMIT_CAPACITY.labels(provider=self.provider).set(len(self._local))
            self._export_gauges()
        return st

    def _save(self, partition: int, st: _PartitionState) -> None:
        self._state[self.key(partition)] = st.to_dict()
        self._export_gauges()

    def forget(self, partitions: set[int]) -> None:
        """Drop in-memory state of partitions this worker no longer owns."""
        for p in partitions:
            self._local.pop(p, None)
        metrics.RATELIMIT_CAPACITY.labels(provider=self.provider).set(len(self._local))
        self._export_gauges()

    def breaker_state(self, partition: int) -> State:
        """The breaker state for ``partition`` (read-only; restores from the table if needed)."""
        saved = self._local.get(partition)
        if saved is not None:
            return saved.breaker.state
        raw = self._state.get(self.key(partition))
        return CircuitBreaker.from_dict(raw["breaker"], self.policy.breaker).state if raw \
            else State.CLOSED

    def open_until(self, partition: int) -> float:
        """When the breaker of ``partition`` may let a probe through (0 when not open)."""
        st = self._local.get(partition)
        breaker = st.breaker if st else (
            CircuitBreaker.from_dict(self._state[self.key(partition)]["breaker"],
                                     self.policy.breaker)
            if self.key(partition) in self._state else None)
        return breaker.open_until if breaker and breaker.state is State.OPEN else 0.0

    def _export_gauges(self) -> None:
        if not self._local:
            metrics.BREAKER_STATE.labels(provider=self.provider).set(0)
            metrics.RATELIMIT_TOKENS.labels(provider=self.provider).set(0)
            return
        states = [s.breaker for s in self._local.values()]
        metrics.BREAKER_STATE.labels(provider=self.provider).set(
            max(metrics.BREAKER_STATE_VALUES[b.state] for b in states))
        metrics.BREAKER_FAILURE_RATE.labels(provider=self.provider).set(
            max(b.failure_rate() for b in states))
        now = self._clock()
        period = self.partitions / self._rate
        # A partition holds one permit when its next slot is due now; the sum is what this
        # worker could send at once.
        ready = 0.0
        for p, s in self._local.items():
            k = next_slot(max(now, s.paused_until), rate=self._rate, partition=p,
                          partitions=self.partitions, after=s.last_slot_at)
            ready += max(0.0, 1.0 - (slot_time(k, self._rate) - now) / period)
        metrics.RATELIMIT_TOKENS.labels(provider=self.provider).set(ready)

    def _transition(self, t: Transition | None) -> None:
        if t is None:
            return
        metrics.BREAKER_TRANSITIONS.labels(provider=self.provider, from_state=t.from_state.value,
                                           to_state=t.to_state.value).inc()
        log.warning("event=breaker_transition provider=%s from=%s to=%s reason=%s",
                    self.provider, t.from_state, t.to_state, t.reason)

    # --- disabled by a configuration error ---

    def _disable(self, error: CredentialsRejected) -> None:
        if self.disabled is not None:
            return  # calls in flight when the first rejection came: one log line in all
        self.disabled = Disabled(self._clock(), str(error), self.config_variables)
        self._disabled_gauge.set(1)
        log.error("event=provider_disabled provider=%s reason=credentials_rejected fix=%s "
                  "error=%r action=skipping_until_restart", self.provider,
                  ",".join(self.config_variables) or "-", str(error)[:300])

    def enable(self) -> None:
        """Enable the provider again (after its configuration was fixed and reloaded)."""
        if self.disabled is None:
            return
        self.disabled = None
        self._disabled_gauge.set(0)
        log.warning("event=provider_enabled provider=%s", self.provider)

    def _refuse_disabled(self) -> ProviderDisabled:
        assert self.disabled is not None
        return ProviderDisabled(self.provider, "disabled in this worker after a configuration "
                                f"error; fix {','.join(self.disabled.variables) or 'it'} "
                                "and restart")

    # --- the gate ---

    async def run(self, spec: CallSpec, fetch: Callable[[], Awaitable[JSON]]) -> JSON:
        if self.disabled is not None:
            raise self._refuse_disabled()
        if self._cache is not None and spec.cacheable:
            return await self._cache.get_or_fetch(spec, lambda: self._call(spec, fetch))
        return await self._call(spec, fetch)

    async def _call(self, spec: CallSpec, fetch: Callable[[], Awaitable[JSON]]) -> JSON:
        def on_retry(attempt: int, delay: float, error: TransientError) -> None:
            metrics.RETRIES.labels(provider=self.provider, attempt=str(attempt)).inc()
            metrics.RETRY_BACKOFF_SECONDS.labels(provider=self.provider).observe(delay)

        def on_give_up(reason: str, error: TransientError) -> None:
            if reason == "budget":
                metrics.RETRY_BUDGET_EXHAUSTED.labels(provider=self.provider).inc()

        def classify(exc: Exception) -> Exception:
            # Refusals before sending are not retried here: the breaker or the limiter already
            # said how long to wait, and the record's own retry (the DLQ) is the right place.
            if isinstance(exc, BreakerOpen | RateLimitWait):
                return _NoRetry(exc)
            return exc

        p = self.policy
        try:
            return await retry_call(
                lambda: self._attempt(spec, fetch), max_attempts=p.max_attempts,
                base=p.backoff_base_s, cap=p.backoff_cap_s, budget=self._budget,
                classify=classify, sleep=self._sleep, rng=self._rng,
                max_delay_s=p.max_retry_delay_s, on_retry=on_retry, on_give_up=on_give_up)
        except _NoRetry as wrapped:
            raise wrapped.error from None

    async def _attempt(self, spec: CallSpec, fetch: Callable[[], Awaitable[JSON]]) -> JSON:
        if self.disabled is not None:
            raise self._refuse_disabled()  # disabled while this call waited in the cache
        partition = current_record().partition
        st = self._partition_state(partition)
        decision = self._permit(spec, partition, st)
        try:
            committed = await self._wait_for_slot(partition, st, spec)
        except BaseException:
            if decision.probe:
                st.breaker.release_probe()
            raise
        try:
            return await self._send(spec, fetch, partition, st, decision)
        finally:
            if committed is not None:
                await self._settle(committed)

    async def _send(self, spec: CallSpec, fetch: Callable[[], Awaitable[JSON]], partition: int,
                    st: _PartitionState, decision: Decision) -> JSON:
        if st.breaker.state is not decision.state:
            # The breaker moved while this call waited for its slot (the calls ahead of it
            # failed and opened it): ask again, or every call queued behind those failures
            # would still go out to a provider that is down.
            if decision.probe:
                st.breaker.release_probe()
            decision = self._permit(spec, partition, st)
        started = self._clock()
        mono = time.monotonic()
        try:
            result = await asyncio.wait_for(fetch(), self.policy.timeout_s)
        except (TimeoutError, TransientError) as exc:
            duration = time.monotonic() - mono
            err = exc if isinstance(exc, TransientError) else TransientError(
                self.provider, f"no answer within {self.policy.timeout_s} s")
            self._observe(spec, "transient", duration)
            self._transition(st.breaker.record_failure(self._clock(), err.retry_after, duration))
            if err.rate_limited:
                metrics.RATELIMIT_LIMITED_ANSWERS.labels(provider=self.provider).inc()
                pause = err.retry_after if err.retry_after is not None \
                    else self.policy.pause_default_s
                st.paused_until = max(st.paused_until, self._clock() + pause)
                log.warning("event=provider_limited provider=%s pause_s=%.1f", self.provider,
                            pause)
            self._save(partition, st)
            raise err from None
        except (NotFound, FeatureUnavailable, PermanentError) as exc:
            outcome = {NotFound: "not_found", FeatureUnavailable: "unavailable"}.get(
                type(exc), "permanent")
            self._observe(spec, outcome, time.monotonic() - mono)
            st.breaker.record_neutral()
            if decision.probe:
                st.breaker.release_probe()
            self._save(partition, st)
            if isinstance(exc, CredentialsRejected):
                self._disable(exc)
                raise self._refuse_disabled() from None
            raise
        except BaseException:
            if decision.probe:
                st.breaker.release_probe()
            raise
        duration = time.monotonic() - mono
        empty = result in (None, [], {})
        self._observe(spec, "not_found" if empty else "found", duration)
        self._transition(st.breaker.record_success(started + duration, duration))
        self._save(partition, st)
        return result

    def _permit(self, spec: CallSpec, partition: int, st: _PartitionState) -> Decision:
        """The breaker's permit for one call, or BreakerOpen."""
        decision = st.breaker.allow(self._clock())
        self._transition(decision.transition)
        if not decision.permitted:
            metrics.BREAKER_REJECTED_CALLS.labels(provider=self.provider).inc()
            metrics.PROVIDER_CALLS.labels(provider=self.provider, kind=spec.kind,
                                          outcome="rejected").inc()
            if decision.transition is not None:
                self._save(partition, st)
            raise BreakerOpen(self.provider, f"circuit breaker {decision.state}",
                              retry_after=decision.wait_s)
        return decision

    async def _settle(self, committed: _Committed) -> None:
        """The call's answer came (or it was not sent): count it in the log of calls sent for
        the window plus the time since just before its commit (an upper bound of its delay to
        the provider, who stamps a call before answering it), at least the slack."""
        assert self._limiter is not None
        p = self.policy
        delay = max(0.0, self._clock() - committed.at)
        self._transit.observe(delay)
        counted = p.window_s + min(max(p.rate_slack_s, delay), self._hold_s - p.window_s)
        await self._limiter.settle(self.provider, member=committed.member,
                                   shorten_s=self._hold_s - counted)

    def _observe(self, spec: CallSpec, outcome: str, duration: float) -> None:
        metrics.PROVIDER_CALLS.labels(provider=self.provider, kind=spec.kind,
                                      outcome=outcome).inc()
        metrics.PROVIDER_CALL_DURATION.labels(provider=self.provider,
                                              kind=spec.kind).observe(duration)

    async def _wait_for_slot(self, partition: int, st: _PartitionState, spec: CallSpec
                             ) -> _Committed | None:
        """Wait until the call may go: its commit in the global limiter, or None when the
        per-partition fallback let it go."""
        deadline = current_deadline()
        self._waiting.inc()
        try:
            while True:
                if self._limiter is not None and self._limiter.available:
                    done = await self._global_slot(st, spec, deadline)
                    if isinstance(done, _Committed):
                        return done
                    if done is None and await self._partition_slot(partition, st, spec,
                                                                   deadline):
                        return None  # Redis did not answer: the fallback took over
                else:
                    self._leave_global()
                    if await self._partition_slot(partition, st, spec, deadline):
                        return None
        finally:
            self._waiting.dec()

    def _give_up(self, spec: CallSpec, deadline: float, now: float, wait: float) -> NoReturn:
        metrics.PROVIDER_CALLS.labels(provider=self.provider, kind=spec.kind,
                                      outcome="deferred").inc()
        raise RateLimitWait(self.provider,
                            f"no rate-limit slot before the stage's deadline "
                            f"({max(0.0, deadline - now):.1f} s away)", retry_after=wait)

    async def _global_slot(self, st: _PartitionState, spec: CallSpec,
                           deadline: float | None) -> _Committed | bool | None:
        """One reservation in the global limiter: its commit when the slot is due and ours,
        False when not, None when Redis did not answer."""
        assert self._limiter is not None
        now = self._clock()
        if st.paused_until > now:
            if deadline is not None and st.paused_until > deadline:
                self._give_up(spec, deadline, now, st.paused_until - now)
            await self._sleep(st.paused_until - now)
            return False
        ahead = math.inf if deadline is None else deadline - now
        if ahead < 0 and deadline is not None:
            self._give_up(spec, deadline, now, 0.0)
        priority = current_priority()
        if priority is Priority.FRESH:
            r = await self._reserve(spec, deadline, now, ahead, priority)
        else:
            async with self._asking[priority]:
                r = await self._reserve(spec, deadline, now, ahead, priority)
        if r is None:
            return None
        if not r.granted:
            return False
        now = r.asked_at
        due = now + r.wait_s - self._clock()
        if due > 0:
            metrics.RATELIMIT_WAITS.labels(provider=self.provider).inc()
            metrics.RATELIMIT_WAIT_SECONDS.labels(provider=self.provider).observe(due)
            await self._sleep(due)
        woke = self._clock()
        if st.paused_until > woke:
            return False
        # The slot orders the callers; what bounds the calls is the log of calls actually
        # sent, checked now: a caller the event loop woke late still goes if the provider's
        # window has room, instead of losing its slot. Its delay to the provider is timed from
        # just before the commit is asked for (Redis stamps it within the round trip).
        committed = _Committed(woke, uuid.uuid4().hex)
        c = await self._limiter.commit(self.provider, limit=self._log_limit,
                                       member=committed.member, hold_s=self._hold_s)
        if c is not None and not c.granted and c.wait_s <= self._commit_wait_s:
            # Slots are as far apart as the log's window and slack allow, so a call on time
            # finds the call a window before still counting only when that one answered late
            # (or by a few milliseconds of jitter): wait those out and keep the slot.
            await self._sleep(c.wait_s)
            committed = _Committed(self._clock(), committed.member)
            c = await self._limiter.commit(self.provider, limit=self._log_limit,
                                           member=committed.member, hold_s=self._hold_s)
        if c is None:
            self._leave_global()
            return None
        if not c.granted:
            metrics.RATELIMIT_SLOTS_LOST.labels(provider=self.provider).inc()
            return False
        return committed

    async def _reserve(self, spec: CallSpec, deadline: float | None, now: float,
                       ahead: float, priority: Priority) -> _Reserved | None:
        """One request to the limiter; refused, it sleeps until asking again may succeed.
        None: Redis did not answer."""
        assert self._limiter is not None
        r = await self._limiter.reserve(self.provider, interval_s=1.0 / self._rate,
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
            spread = (min(self._limiter.horizon_s, r.wait_s) / 2 if priority is Priority.FRESH
                      else 0.1 / self._rate)
            await self._sleep(r.retry_s + self._rng.uniform(0, spread))
        return _Reserved(r.granted, r.wait_s, now)

    def _leave_global(self) -> None:
        if self._global and self._limiter is not None:
            # Redis is gone: nothing it handed out reaches past its reach (one horizon and a
            # slot per lower priority) from now, so the per-partition fallback starts after.
            self._fallback_not_before = self._clock() + self._limiter.reach_s(1.0 / self._rate)
            self._global = False
            self._mode.set(0)

    async def _partition_slot(self, partition: int, st: _PartitionState, spec: CallSpec,
                              deadline: float | None) -> bool:
        """The durable fallback: the partition's next own slot; True when it is due and ours."""
        now = self._clock()
        k = next_slot(max(now, st.paused_until, self._fallback_not_before), rate=self._rate,
                      partition=partition, partitions=self.partitions, after=st.last_slot_at)
        wait = slot_time(k, self._rate) - now
        if deadline is not None and now + wait > deadline:
            self._give_up(spec, deadline, now, wait)
        # Take the slot before sleeping so concurrent calls of this partition take later ones.
        st.last_slot_at = slot_time(k, self._rate)
        # Back on Redis, the global queue must not hand out slots before this one.
        self._global_floor = max(self._global_floor, st.last_slot_at + 1.0 / self._rate)
        if wait <= 0:
            return True
        metrics.RATELIMIT_WAITS.labels(provider=self.provider).inc()
        metrics.RATELIMIT_WAIT_SECONDS.labels(provider=self.provider).observe(wait)
        await self._sleep(wait)
        now = self._clock()
        # A busy event loop can wake us after our slot; sending late would bring this call
        # closer to the next partition's and, in a sliding window, over the provider's
        # limit. The slack leaves room for a quarter of it to be lateness; a slot missed by more
        # is given up for the next one.
        late = now - slot_time(k, self._rate) > self._late_tolerance
        # Late, or a limit answer arrived while we slept and our slot is inside the pause.
        return st.paused_until <= now and not late


@dataclass(frozen=True, slots=True)
class _Committed:
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


class _NoRetry(Exception):
    """Carries a refusal through ``retry_call`` without it being retried."""

    def __init__(self, error: TransientError) -> None:
        super().__init__(str(error))
        self.error = error


class GateSet:
    """One :class:`ResilientGate` per provider behind the single gate the clients are given."""

    def __init__(self, gates: Mapping[str, ResilientGate]) -> None:
        self.gates = dict(gates)

    async def run(self, spec: CallSpec, fetch: Callable[[], Awaitable[JSON]]) -> JSON:
        return await self.gates[spec.provider].run(spec, fetch)

    def forget(self, partitions: set[int]) -> None:
        for gate in self.gates.values():
            gate.forget(partitions)

    def disabled(self, provider: str) -> Disabled | None:
        """Why ``provider`` is disabled in this worker, or None."""
        gate = self.gates.get(provider)
        return gate.disabled if gate is not None else None

    def open_until(self, provider: str, partition: int) -> float:
        """When ``provider``'s breaker for ``partition`` lets a probe through (0: not open)."""
        gate = self.gates.get(provider)
        return gate.open_until(partition) if gate is not None else 0.0
