"""Circuit breaker per provider as a pure state machine: no I/O, time passed in as ``now``.

States: ``closed`` (calls flow, outcomes are counted) -> ``open`` (calls are refused until the
open period ends) -> ``half_open`` (at most ``half_open_max_probes`` probe calls in flight) ->
``closed`` after ``half_open_successes`` successful probes, or back to ``open`` on a failed one.

The breaker opens, from closed, on any of:
- a failure rate >= ``failure_rate_threshold`` over the last ``window_size`` calls, once at least
  ``minimum_calls`` are in the window;
- ``consecutive_failures`` failures in a row (catches a dead provider before the window fills);
- a slow-call rate >= ``slow_call_rate_threshold`` (a call taking ``slow_call_s`` or more is slow,
  whether it succeeded or failed), under the same minimum.

The open period doubles on each trip without a full recovery (``open_base_s`` * 2**(trips-1),
capped at ``open_cap_s``) and is at least the Retry-After of the failure that tripped it.

What counts: a failure is a ``TransientError`` (5xx, timeout, rate limit). ``NotFound`` is a
healthy answer: record it with :meth:`CircuitBreaker.record_success`. ``FeatureUnavailable`` or
a cancelled call say nothing about health: :meth:`CircuitBreaker.record_neutral` (or
:meth:`CircuitBreaker.release_probe` when the permitted call never ran) only frees its probe slot.
Every permitted call must end in exactly one ``record_*`` or ``release_probe``.

Each method returns the :class:`Transition` it caused (or ``None``) so the caller can count it in
``trackflow_breaker_transitions_total``. State lives in a changelogged Faust table as the dict
:meth:`CircuitBreaker.to_dict` returns; times are wall-clock seconds (``time.time()``).
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum
from typing import Any, NamedTuple

from trackflow.providers.policy import BreakerConfig

_STATE_VERSION = 1

# Window entries: bit 0 = failed, bit 1 = slow. Small ints keep the table value small.
_FAILED = 1
_SLOW = 2


class State(StrEnum):
    """Breaker state; the value is the metric label."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


class Transition(NamedTuple):
    """One state change."""

    from_state: State
    to_state: State
    at: float
    """Wall-clock time of the change."""
    reason: str
    """``failure_rate``, ``consecutive_failures``, ``slow_call_rate``, ``open_elapsed``,
    ``probe_failed``, ``probes_succeeded``."""


class Decision(NamedTuple):
    """Answer of :meth:`CircuitBreaker.allow`."""

    permitted: bool
    wait_s: float
    """When refused: seconds until asking again may succeed."""
    state: State
    """State after the decision."""
    probe: bool = False
    """The permit is a half-open probe: it must end in ``record_*`` or ``release_probe``."""
    transition: Transition | None = None
    """``open -> half_open`` when this call's ``now`` ended the open period."""


class CircuitBreaker:
    """One provider's breaker. Methods change it in place; write it back after each change."""

    def __init__(self, config: BreakerConfig | None = None) -> None:
        self.config = config or BreakerConfig()
        self.state = State.CLOSED
        self.window: deque[int] = deque(maxlen=self.config.window_size)
        self.consecutive_failures = 0
        self.trips = 0
        """Trips since the breaker last closed from half-open (drives the open backoff)."""
        self.opened_at = 0.0
        self.open_until = 0.0
        self.probes_in_flight = 0
        self.probe_successes = 0
        self.last_probe_at = 0.0

    # --- permits ---

    def allow(self, now: float) -> Decision:
        """May a call go out at ``now``? A permitted half-open call is a probe."""
        transition = None
        if self.state is State.OPEN:
            if now < self.open_until:
                return Decision(False, self.open_until - now, self.state)
            transition = self._move(State.HALF_OPEN, now, "open_elapsed")
        if self.state is State.HALF_OPEN:
            if (
                self.probes_in_flight >= self.config.half_open_max_probes
                and now - self.last_probe_at >= self.config.probe_timeout_s
            ):
                self.probes_in_flight = 0
            if self.probes_in_flight >= self.config.half_open_max_probes:
                return Decision(False, self.config.probe_wait_s, self.state, False, transition)
            self.probes_in_flight += 1
            self.last_probe_at = now
            return Decision(True, 0.0, self.state, True, transition)
        return Decision(True, 0.0, self.state)

    def release_probe(self) -> None:
        """Give back a probe slot whose call never ran or ended without a health verdict."""
        if self.state is State.HALF_OPEN and self.probes_in_flight > 0:
            self.probes_in_flight -= 1

    # --- outcomes ---

    def record_success(self, now: float, duration_s: float | None = None) -> Transition | None:
        """The provider answered (a "not found" included), in ``duration_s`` seconds if known."""
        slow = duration_s is not None and duration_s >= self.config.slow_call_s
        if self.state is State.HALF_OPEN:
            if self.probes_in_flight == 0:
                return None  # a late answer to a call permitted before the trip, not a probe
            self.probes_in_flight -= 1
            if slow:
                return self._trip(now, None, "probe_failed")
            self.probe_successes += 1
            if self.probe_successes >= self.config.half_open_successes:
                return self._close(now)
            return None
        if self.state is State.OPEN:
            return None  # a late answer; only probes may close the breaker
        self.consecutive_failures = 0
        self.window.append(_SLOW if slow else 0)
        return self._evaluate(now, None)

    def record_failure(
        self, now: float, retry_after: float | None = None, duration_s: float | None = None
    ) -> Transition | None:
        """A transient failure; ``retry_after`` is the provider's Retry-After in seconds."""
        slow = duration_s is not None and duration_s >= self.config.slow_call_s
        if self.state is State.HALF_OPEN:
            if self.probes_in_flight == 0:
                return None
            self.probes_in_flight -= 1
            return self._trip(now, retry_after, "probe_failed")
        if self.state is State.OPEN:
            if retry_after is not None:
                self.open_until = max(self.open_until, now + self._clamp(retry_after))
            return None
        self.consecutive_failures += 1
        self.window.append(_FAILED | (_SLOW if slow else 0))
        return self._evaluate(now, retry_after)

    def record_neutral(self) -> None:
        """The call ended with an answer that says nothing about health (feature unavailable)."""
        self.release_probe()

    # --- views ---

    def failure_rate(self) -> float:
        """Failure rate over the window (0.0 when empty)."""
        if not self.window:
            return 0.0
        return sum(1 for c in self.window if c & _FAILED) / len(self.window)

    def slow_call_rate(self) -> float:
        """Slow-call rate over the window (0.0 when empty)."""
        if not self.window:
            return 0.0
        return sum(1 for c in self.window if c & _SLOW) / len(self.window)

    def open_duration(self, trips: int, retry_after: float | None = None) -> float:
        """Open period for the ``trips``-th trip in a row, at least ``retry_after``."""
        backoff = min(self.config.open_cap_s, self.config.open_base_s * 2.0 ** min(trips - 1, 60))
        if retry_after is None:
            return backoff
        return max(backoff, self._clamp(retry_after))

    # --- persistence ---

    def to_dict(self) -> dict[str, Any]:
        """The state as a small JSON-able dict (thresholds come from settings)."""
        return {
            "v": _STATE_VERSION,
            "state": self.state.value,
            "window": list(self.window),
            "consecutive_failures": self.consecutive_failures,
            "trips": self.trips,
            "opened_at": self.opened_at,
            "open_until": self.open_until,
            "probe_successes": self.probe_successes,
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any] | None, config: BreakerConfig | None = None
    ) -> CircuitBreaker:
        """Restore a breaker saved by :meth:`to_dict`; ``None`` or an unknown layout: closed.

        Probes in flight are not restored: their calls died with the process that made them.
        """
        breaker = cls(config)
        if not data or data.get("v") != _STATE_VERSION:
            return breaker
        breaker.state = State(data.get("state", State.CLOSED.value))
        breaker.window.extend(int(c) for c in data.get("window", ()))
        breaker.consecutive_failures = int(data.get("consecutive_failures", 0))
        breaker.trips = int(data.get("trips", 0))
        breaker.opened_at = float(data.get("opened_at", 0.0))
        breaker.open_until = float(data.get("open_until", 0.0))
        breaker.probe_successes = int(data.get("probe_successes", 0))
        return breaker

    # --- internals ---

    def _evaluate(self, now: float, retry_after: float | None) -> Transition | None:
        cfg = self.config
        if self.consecutive_failures >= cfg.consecutive_failures:
            return self._trip(now, retry_after, "consecutive_failures")
        if len(self.window) < cfg.minimum_calls:
            return None
        if self.failure_rate() >= cfg.failure_rate_threshold:
            return self._trip(now, retry_after, "failure_rate")
        if self.slow_call_rate() >= cfg.slow_call_rate_threshold:
            return self._trip(now, retry_after, "slow_call_rate")
        return None

    def _trip(self, now: float, retry_after: float | None, reason: str) -> Transition:
        self.trips += 1
        self.opened_at = now
        self.open_until = now + self.open_duration(self.trips, retry_after)
        return self._move(State.OPEN, now, reason)

    def _close(self, now: float) -> Transition:
        self.trips = 0
        return self._move(State.CLOSED, now, "probes_succeeded")

    def _move(self, to_state: State, now: float, reason: str) -> Transition:
        transition = Transition(self.state, to_state, now, reason)
        self.state = to_state
        # Each state starts with a clean slate: a reopened breaker judges fresh calls only.
        self.window.clear()
        self.consecutive_failures = 0
        self.probes_in_flight = 0
        self.probe_successes = 0
        return transition

    def _clamp(self, retry_after: float) -> float:
        return min(max(retry_after, 0.0), self.config.max_retry_after_s)
