"""How long a call takes from its commit in the limiter to the provider: the measured bound.

The global limiter's log of calls sent (:mod:`providers.limiter`) holds the provider's limit
over a window on the commit times. A provider counts arrivals instead, so if every call
arrives between 0 and ``D`` seconds after its commit, two arrivals less than ``window_s``
apart come from commits less than ``window_s + D`` apart: a log window of ``window_s + D``
keeps the provider's own window within its limit, and a shorter one does not once the delay
of an early call exceeds the log's extra length (a late stamp, then prompt ones, bunch up).

``D`` is not a constant: a busy event loop between the commit and the request leaving, a
connection pool, a process that has just started, a provider (or simulator) slow to read
what it was sent. The gate cannot see when the provider stamps a call, but the stamp comes
before the answer, so the time from just before the commit is asked until the answer is in
bounds it from above on the gate's own clock. :class:`TransitBound` keeps the longest such
delay of the last ``memory_s`` seconds; the log window is ``window_s`` plus that bound, never
less than the configured slack (what it costs while the machine is quiet) and never more than
``cap_s`` (one hung call must not halve the rate for the whole memory).

The bound includes the provider's own processing after its stamp, so it is conservative by
that much: a provider answering in 400 ms widens the window by 400 ms while the configured
slack is shorter. Pure and clock-free: callers pass the times.
"""

from __future__ import annotations

from collections import deque


class TransitBound:
    """The longest commit-to-answer delay of the last ``memory_s`` seconds, clamped to
    ``[floor_s, cap_s]``."""

    def __init__(self, *, floor_s: float, cap_s: float, memory_s: float = 30.0) -> None:
        self.floor_s = floor_s
        self.cap_s = max(cap_s, floor_s)
        self.memory_s = memory_s
        # (when observed, delay), delays strictly decreasing: an older delay no longer than a
        # newer one can never be the maximum again.
        self._seen: deque[tuple[float, float]] = deque()

    def observe(self, committed_at: float, answered_at: float) -> float:
        """Record one call asked to commit at ``committed_at`` and answered (or given up on)
        at ``answered_at``; returns its delay."""
        delay = max(0.0, answered_at - committed_at)
        while self._seen and self._seen[-1][1] <= delay:
            self._seen.pop()
        self._seen.append((answered_at, delay))
        return delay

    def longest(self, now: float) -> float:
        """The longest delay observed in the last ``memory_s`` seconds (0 when none)."""
        while self._seen and self._seen[0][0] <= now - self.memory_s:
            self._seen.popleft()
        return self._seen[0][1] if self._seen else 0.0

    def bound(self, now: float) -> float:
        """What the log window adds to the provider's window at ``now``."""
        return min(self.cap_s, max(self.floor_s, self.longest(now)))
