"""The resilient call gate: cache -> breaker permit -> rate-limit slot -> call -> retries.

Every provider client sends each HTTP exchange through ``gate.run(spec, fetch)``. This gate:

1. answers from the two-level cache when it can (:mod:`providers.cache`; "not found" included);
2. asks the provider's circuit breaker for a permit (:mod:`providers.breaker`); an open breaker
   fails the call at once with a ``TransientError`` that is not retried here;
3. waits for the provider's next rate-limit slot (:mod:`providers.pacer`): reserved in the
   global limiter in Redis (:mod:`providers.limiter`, one queue per provider for all workers),
   or, while Redis is unreachable, the partition's own next slot (the durable fallback); and for
   the end of a pause a 429/503/quota answer imposed. Waiting is backpressure: a call waits as
   long as its slot takes, unless the record set a deadline
   (:func:`providers.context.call_deadline`, which the waterfall does for stages whose fields
   are optional); a slot past the deadline raises
   :class:`~providers.errors.RateLimitWait` without taking the slot, and the stage is deferred;
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

Breaker state, the pause and the last slot taken are kept per provider and partition
(:mod:`providers.partition_state`), in memory and in a changelogged table; the partition is the
record's: the worker enters a record context (``providers.context``) for each record it
processes, and a call outside one raises.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from trackflow.providers import metrics
from trackflow.providers.backoff import RetryBudget, retry_call
from trackflow.providers.base import JSON, CallSpec
from trackflow.providers.breaker import Decision, State, Transition
from trackflow.providers.cache import ProviderCache
from trackflow.providers.context import (
    current_record,
)
from trackflow.providers.errors import (
    BreakerOpen,
    CredentialsRejected,
    FeatureUnavailable,
    NotFound,
    PermanentError,
    ProviderDisabled,
    RateLimitWait,
    TransientError,
)
from trackflow.providers.limiter import GlobalLimiter
from trackflow.providers.pacer import Pacer
from trackflow.providers.partition_state import PartitionState, PartitionStates
from trackflow.providers.policy import ProviderPolicy
from trackflow.providers.ratelimit import next_slot, slot_time

log = logging.getLogger("trackflow.providers.gate")


@dataclass(frozen=True, slots=True)
class Disabled:
    """Why a provider is disabled in this worker."""

    at: float
    """Wall-clock time it was disabled."""
    error: str
    """The rejection that disabled it (message only: never a credential)."""
    variables: tuple[str, ...]
    """The environment variables an operator fixes (names only)."""


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
        self._cache = cache
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.pacer = Pacer(provider, policy, partitions=partitions, limiter=limiter, clock=clock,
                           sleep=sleep, rng=self._rng)
        """When each call may go (``providers.pacer``)."""
        self.states = PartitionStates(
            provider, policy.breaker, {} if state is None else state,
            policy.state_checkpoint_s, clock, self._export_gauges)
        """The breaker, pause and last slot of each partition (``providers.partition_state``)."""
        self._budget = RetryBudget(ratio=policy.retry_budget_ratio)
        metrics.RATELIMIT_CAPACITY.labels(provider=provider).set(0)
        self._disabled_gauge = metrics.PROVIDER_DISABLED.labels(provider=provider)
        self._disabled_gauge.set(0)

    # --- state per partition ---

    def key(self, partition: int) -> str:
        return self.states.key(partition)

    def forget(self, partitions: set[int]) -> None:
        """Drop in-memory state of partitions this worker no longer owns."""
        self.states.forget(partitions)

    def breaker_state(self, partition: int) -> State:
        """The breaker state for ``partition`` (read-only; restores from the table if needed)."""
        return self.states.breaker_state(partition)

    def open_until(self, partition: int) -> float:
        """When the breaker of ``partition`` may let a probe through (0 when not open)."""
        return self.states.open_until(partition)

    def _export_gauges(self) -> None:
        held = self.states.items()
        metrics.RATELIMIT_CAPACITY.labels(provider=self.provider).set(len(held))
        if not held:
            metrics.BREAKER_STATE.labels(provider=self.provider).set(0)
            metrics.RATELIMIT_TOKENS.labels(provider=self.provider).set(0)
            return
        states = [s.breaker for _, s in held]
        metrics.BREAKER_STATE.labels(provider=self.provider).set(
            max(metrics.BREAKER_STATE_VALUES[b.state] for b in states))
        metrics.BREAKER_FAILURE_RATE.labels(provider=self.provider).set(
            max(b.failure_rate() for b in states))
        now = self._clock()
        rate = self.pacer.rate
        period = self.partitions / rate
        # A partition holds one permit when its next slot is due now; the sum is what this
        # worker could send at once.
        ready = 0.0
        for p, s in held:
            k = next_slot(max(now, s.paused_until), rate=rate, partition=p,
                          partitions=self.partitions, after=s.last_slot_at)
            ready += max(0.0, 1.0 - (slot_time(k, rate) - now) / period)
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
        st = self.states.get(partition)
        decision = self._permit(spec, partition, st)
        try:
            committed = await self.pacer.wait_for_slot(partition, st, spec)
        except BaseException:
            if decision.probe:
                st.breaker.release_probe()
            raise
        try:
            return await self._send(spec, fetch, partition, st, decision)
        finally:
            if committed is not None:
                await self.pacer.settle(committed)

    async def _send(self, spec: CallSpec, fetch: Callable[[], Awaitable[JSON]], partition: int,
                    st: PartitionState, decision: Decision) -> JSON:
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
            self.states.save(partition, st)
            raise err from None
        except (NotFound, FeatureUnavailable, PermanentError) as exc:
            outcome = {NotFound: "not_found", FeatureUnavailable: "unavailable"}.get(
                type(exc), "permanent")
            self._observe(spec, outcome, time.monotonic() - mono)
            st.breaker.record_neutral()
            if decision.probe:
                st.breaker.release_probe()
            self.states.save(partition, st)
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
        self.states.save(partition, st)
        return result

    def _permit(self, spec: CallSpec, partition: int, st: PartitionState) -> Decision:
        """The breaker's permit for one call, or BreakerOpen."""
        decision = st.breaker.allow(self._clock())
        self._transition(decision.transition)
        if not decision.permitted:
            metrics.BREAKER_REJECTED_CALLS.labels(provider=self.provider).inc()
            metrics.PROVIDER_CALLS.labels(provider=self.provider, kind=spec.kind,
                                          outcome="rejected").inc()
            if decision.transition is not None:
                self.states.save(partition, st)
            raise BreakerOpen(self.provider, f"circuit breaker {decision.state}",
                              retry_after=decision.wait_s)
        return decision

    def _observe(self, spec: CallSpec, outcome: str, duration: float) -> None:
        metrics.PROVIDER_CALLS.labels(provider=self.provider, kind=spec.kind,
                                      outcome=outcome).inc()
        metrics.PROVIDER_CALL_DURATION.labels(provider=self.provider,
                                              kind=spec.kind).observe(duration)

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
