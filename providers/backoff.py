"""Retry schedule: capped exponential backoff with full jitter, a retry budget, and a retry loop.

:func:`backoff_delay` draws uniformly from ``0 .. min(cap, base * 2**attempt)`` ("full jitter":
retries from many workers spread out instead of arriving together) and never returns less than
the provider's Retry-After. :class:`RetryBudget` caps retries at a fraction of calls over a
sliding time window, so a provider in trouble gets at most ~20% extra load from retries instead
of ``max_attempts`` times its load. Both are pure (time and randomness passed in).
:func:`retry_call` is the one async piece: it runs a call, retrying only :class:`TransientError`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from trackflow.providers.errors import TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")

_SYSTEM_RNG = random.Random()


class UniformRng(Protocol):
    """What the backoff needs from a random generator (``random.Random`` fits)."""

    def uniform(self, a: float, b: float) -> float: ...


def backoff_delay(
    attempt: int,
    base: float,
    cap: float,
    rng: UniformRng | None = None,
    *,
    retry_after: float | None = None,
) -> float:
    """Seconds to sleep before retry number ``attempt + 1`` (``attempt`` counts from 0).

    Uniform in ``0 .. min(cap, base * 2**attempt)``; at least ``retry_after`` when given.
    """
    if attempt < 0 or base < 0 or cap < 0:
        raise ValueError("attempt, base and cap must not be negative")
    ceiling = min(cap, base * 2.0 ** min(attempt, 60))
    delay = (rng or _SYSTEM_RNG).uniform(0.0, ceiling)
    if retry_after is not None and retry_after > delay:
        return retry_after
    return delay


class RetryBudget:
    """Allows retries up to ``ratio`` of first calls over the last ``window_s`` seconds.

    ``min_per_s`` adds a small allowance (``min_per_s * window_s`` retries per window) so a quiet
    provider can still retry once. Counts are kept in ``slots`` time slots, so memory does not
    grow with traffic. Call :meth:`record_call` for every first attempt and :meth:`record_retry`
    for every retry actually made. In-process state: it is not worth persisting.
    """

    def __init__(
        self,
        ratio: float = 0.2,
        window_s: float = 10.0,
        min_per_s: float = 0.1,
        slots: int = 10,
    ) -> None:
        if ratio < 0 or window_s <= 0 or min_per_s < 0 or slots < 1:
            raise ValueError("ratio, min_per_s >= 0; window_s > 0; slots >= 1")
        self.ratio = ratio
        self.window_s = window_s
        self.min_per_s = min_per_s
        self._slot_s = window_s / slots
        self._slots = slots
        # [slot index, calls, retries], oldest first.
        self._counts: deque[list[int]] = deque()

    def record_call(self, now: float) -> None:
        self._current(now)[1] += 1

    def record_retry(self, now: float) -> None:
        self._current(now)[2] += 1

    def can_retry(self, now: float) -> bool:
        """Whether one more retry stays within the budget at ``now``."""
        calls, retries = self.totals(now)
        allowance = self.ratio * calls + self.min_per_s * self.window_s
        return retries + 1 <= allowance + 1e-9

    def totals(self, now: float) -> tuple[int, int]:
        """``(calls, retries)`` in the window ending at ``now``."""
        self._expire(now)
        return sum(c[1] for c in self._counts), sum(c[2] for c in self._counts)

    def _current(self, now: float) -> list[int]:
        self._expire(now)
        index = math.floor(now / self._slot_s)
        if self._counts and self._counts[-1][0] >= index:
            # Same slot, or a clock that stepped back: count it in the newest slot.
            return self._counts[-1]
        entry = [index, 0, 0]
        self._counts.append(entry)
        return entry

    def _expire(self, now: float) -> None:
        oldest = math.floor(now / self._slot_s) - self._slots + 1
        while self._counts and self._counts[0][0] < oldest:
            self._counts.popleft()


OnRetry = Callable[[int, float, TransientError], None]
"""``on_retry(retry_number, delay_s, error)`` before each sleep; retries count from 1."""
OnGiveUp = Callable[[str, TransientError], None]
"""``on_give_up(reason, error)``; reason is ``attempts``, ``budget`` or ``retry_after``."""


async def retry_call(
    fn: Callable[[], Awaitable[T]],
    *,
    max_attempts: int = 3,
    base: float = 0.5,
    cap: float = 10.0,
    budget: RetryBudget | None = None,
    classify: Callable[[Exception], Exception] | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rng: UniformRng | None = None,
    clock: Callable[[], float] = time.monotonic,
    max_delay_s: float | None = None,
    on_retry: OnRetry | None = None,
    on_give_up: OnGiveUp | None = None,
) -> T:
    """Run ``fn``, retrying :class:`TransientError` with :func:`backoff_delay` between attempts.

    ``classify`` maps a raw exception (say an ``httpx.TimeoutException``) to the trackflow error
    to act on; anything that is not a ``TransientError`` after it is raised at once. The last
    error is raised when ``max_attempts`` are used, the ``budget`` is spent, or the delay
    (Retry-After included) exceeds ``max_delay_s`` -- a long wait belongs to the dead-letter
    schedule, not to a sleeping stream.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    if budget is not None:
        budget.record_call(clock())
    attempt = 0
    while True:
        try:
            return await fn()
        except Exception as exc:
            error = classify(exc) if classify is not None else exc
            if not isinstance(error, TransientError):
                if error is exc:
                    raise
                raise error from exc
            reason = _give_up_reason(attempt, max_attempts, budget, clock)
            delay = 0.0
            if reason is None:
                delay = backoff_delay(attempt, base, cap, rng, retry_after=error.retry_after)
                if max_delay_s is not None and delay > max_delay_s:
                    reason = "retry_after"
            if reason is not None:
                if on_give_up is not None:
                    on_give_up(reason, error)
                if error is exc:
                    raise
                raise error from exc
        attempt += 1
        if budget is not None:
            budget.record_retry(clock())
        if on_retry is not None:
            on_retry(attempt, delay, error)
        log.debug(
            "retrying provider=%s retry=%d delay_s=%.3f error_class=%s",
            error.provider,
            attempt,
            delay,
            type(error).__name__,
        )
        await sleep(delay)


def _give_up_reason(
    attempt: int, max_attempts: int, budget: RetryBudget | None, clock: Callable[[], float]
) -> str | None:
    if attempt + 1 >= max_attempts:
        return "attempts"
    if budget is not None and not budget.can_retry(clock()):
        return "budget"
    return None
